//! Tenant and node ids: what a caller may name a quota.
//!
//! Ids appear in URLs, SQL rows, logs and Kubernetes object names, so they are
//! restricted to a small, safe alphabet, `[A-Za-z0-9._:-]`: 1 to 128
//! characters for a flat tenant (the flat tracker's rule), 1 to 253 for a
//! node of the v1 API (the length of a Kubernetes name).

/// Longest accepted tenant id (flat API), in bytes (= characters: ASCII).
pub const MAX_TENANT_ID_LEN: usize = 128;
/// Longest accepted node id (v1 API).
pub const MAX_NODE_ID_LEN: usize = 253;

/// Why an id was refused; the first field names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} is {1} characters long; the maximum is {2}")]
    TooLong(&'static str, usize, usize),
    #[error("{0} contains {1:?} at position {2}; allowed are letters, digits and . _ : -")]
    InvalidChar(&'static str, char, usize),
    #[error("{0} must not be {1:?}: HTTP clients resolve it as a path segment")]
    DotSegment(&'static str, &'static str),
}

/// Checks a flat tenant id (at most 128 characters).
pub fn validate_tenant_id(id: &str) -> Result<(), TenantIdError> {
    validate_id("tenant_id", id, MAX_TENANT_ID_LEN)
}

/// Checks a v1 node id (at most 253 characters).
pub fn validate_node_id(id: &str) -> Result<(), TenantIdError> {
    validate_id("id", id, MAX_NODE_ID_LEN)
}

/// Checks an id named `what` (for the error) of at most `max` characters.
pub fn validate_id(what: &'static str, id: &str, max: usize) -> Result<(), TenantIdError> {
    if id.is_empty() {
        return Err(TenantIdError::Empty(what));
    }
    // `.` and `..` never reach the service intact: clients normalise them
    // out of URLs (`/api/quota/../reset`), so such a node could not be
    // addressed.
    for dots in [".", ".."] {
        if id == dots {
            return Err(TenantIdError::DotSegment(what, dots));
        }
    }
    let len = id.chars().count();
    if len > max {
        return Err(TenantIdError::TooLong(what, len, max));
    }
    match id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        Some((pos, c)) => Err(TenantIdError::InvalidChar(what, c, pos)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_alphabet() {
        for ok in ["a", "acme", "Acme-01", "org.team_a:eu-1", &"x".repeat(128)] {
            assert_eq!(validate_tenant_id(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_node_id(&"x".repeat(253)), Ok(()));
    }

    #[test]
    fn refuses_empty_long_and_foreign_characters() {
        assert_eq!(
            validate_tenant_id(""),
            Err(TenantIdError::Empty("tenant_id"))
        );
        assert_eq!(
            validate_tenant_id(&"x".repeat(129)),
            Err(TenantIdError::TooLong("tenant_id", 129, 128))
        );
        assert_eq!(
            validate_tenant_id("a b"),
            Err(TenantIdError::InvalidChar("tenant_id", ' ', 1))
        );
        assert_eq!(
            validate_tenant_id("a/b"),
            Err(TenantIdError::InvalidChar("tenant_id", '/', 1))
        );
        assert_eq!(
            validate_tenant_id("ü"),
            Err(TenantIdError::InvalidChar("tenant_id", 'ü', 0))
        );
        assert!(validate_tenant_id("a\0").is_err());
        assert_eq!(
            validate_node_id("."),
            Err(TenantIdError::DotSegment("id", "."))
        );
        assert_eq!(
            validate_tenant_id(".."),
            Err(TenantIdError::DotSegment("tenant_id", ".."))
        );
        assert_eq!(validate_node_id("..."), Ok(()), "only whole dot segments");
        assert!(validate_tenant_id("%2e").is_err());
        assert_eq!(
            validate_node_id(&"x".repeat(254)),
            Err(TenantIdError::TooLong("id", 254, 253))
        );
    }
}
