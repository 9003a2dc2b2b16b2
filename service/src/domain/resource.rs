//! Resource names: what a quota limits (`messages`, `bandwidth`, `storage`, ...).
//!
//! Two are built in and fed by the flat API: `messages` (window `day`, fed by
//! `message_count`) and `bandwidth` (window `month`, bytes, fed by
//! `bytes_sent`). Any other name is allowed: 1 to 63 characters of
//! `[a-z0-9._-]`, starting and ending with a letter or digit (so a name is
//! also a valid Kubernetes map key and label value).

use std::sync::{Arc, LazyLock};

use super::window::Window;

/// A resource's name as nodes hold it. Shared: the built-in names are one
/// allocation for all nodes (a million flat tenants would otherwise hold two
/// million copies of "messages" and "bandwidth").
pub type ResourceName = Arc<str>;

static MESSAGES_NAME: LazyLock<ResourceName> = LazyLock::new(|| MESSAGES.into());
static BANDWIDTH_NAME: LazyLock<ResourceName> = LazyLock::new(|| BANDWIDTH.into());

/// `name` as a [`ResourceName`], shared for the built-in names.
pub fn resource_name(name: &str) -> ResourceName {
    match name {
        MESSAGES => MESSAGES_NAME.clone(),
        BANDWIDTH => BANDWIDTH_NAME.clone(),
        _ => name.into(),
    }
}

/// Messages per day, fed by the flat API's `message_count`.
pub const MESSAGES: &str = "messages";
/// Bytes per month, fed by the flat API's `bytes_sent`.
pub const BANDWIDTH: &str = "bandwidth";

/// Longest resource name.
pub const MAX_RESOURCE_LEN: usize = 63;

/// How `quota_usage` (the flat tracker's table) names messages: a resource
/// of this name would share its rows with `messages`.
pub const MESSAGES_STORED_AS: &str = "message_count";

/// The window a built-in resource always has.
pub fn builtin_window(resource: &str) -> Option<Window> {
    match resource {
        MESSAGES => Some(Window::Day),
        BANDWIDTH => Some(Window::Month),
        _ => None,
    }
}

/// Why a resource name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource name {name:?} is invalid: {reason}")]
pub struct ResourceNameError {
    pub name: String,
    pub reason: &'static str,
}

/// Checks a resource name.
pub fn validate_resource_name(name: &str) -> Result<(), ResourceNameError> {
    let bad = |reason| {
        Err(ResourceNameError {
            name: name.chars().take(80).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_RESOURCE_LEN {
        return bad("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("allowed are lowercase letters, digits and . _ -");
    }
    if name == MESSAGES_STORED_AS {
        return bad("it is reserved: the database stores `messages` under that name");
    }
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
        return bad("it must start and end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "messages",
            "gpu-seconds",
            "storage",
            "a",
            "x.y_z-1",
            &"a".repeat(63),
        ] {
            assert_eq!(validate_resource_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "GPU",
            "-a",
            "a-",
            "a b",
            "ä",
            &"a".repeat(64),
            "a/b",
            "message_count",
        ] {
            assert!(validate_resource_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builtins() {
        assert_eq!(builtin_window(MESSAGES), Some(Window::Day));
        assert_eq!(builtin_window(BANDWIDTH), Some(Window::Month));
        assert_eq!(builtin_window("storage"), None);
    }
}
