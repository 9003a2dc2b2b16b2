//! Tenant ids: what a caller may name a tenant.
//!
//! Ids appear in URLs, SQL rows, logs and Kubernetes object names, so they are
//! restricted to a small, safe alphabet: 1 to 128 characters of
//! `[A-Za-z0-9._:-]`.

/// Longest accepted tenant id, in bytes (= characters: the alphabet is ASCII).
pub const MAX_TENANT_ID_LEN: usize = 128;

/// Why a tenant id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    #[error("tenant_id must not be empty")]
    Empty,
    #[error("tenant_id is {0} characters long; the maximum is {MAX_TENANT_ID_LEN}")]
    TooLong(usize),
    #[error("tenant_id contains {0:?} at position {1}; allowed are letters, digits and . _ : -")]
    InvalidChar(char, usize),
}

/// Checks a tenant id against the rules above.
pub fn validate_tenant_id(id: &str) -> Result<(), TenantIdError> {
    if id.is_empty() {
        return Err(TenantIdError::Empty);
    }
    let len = id.chars().count();
    if len > MAX_TENANT_ID_LEN {
        return Err(TenantIdError::TooLong(len));
    }
    match id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        Some((pos, c)) => Err(TenantIdError::InvalidChar(c, pos)),
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
    }

    #[test]
    fn refuses_empty_long_and_foreign_characters() {
        assert_eq!(validate_tenant_id(""), Err(TenantIdError::Empty));
        assert_eq!(
            validate_tenant_id(&"x".repeat(129)),
            Err(TenantIdError::TooLong(129))
        );
        assert_eq!(
            validate_tenant_id("a b"),
            Err(TenantIdError::InvalidChar(' ', 1))
        );
        assert_eq!(
            validate_tenant_id("a/b"),
            Err(TenantIdError::InvalidChar('/', 1))
        );
        assert_eq!(
            validate_tenant_id("ü"),
            Err(TenantIdError::InvalidChar('ü', 0))
        );
        assert!(validate_tenant_id("a\0").is_err());
        assert!(validate_tenant_id("%2e").is_err());
    }
}
