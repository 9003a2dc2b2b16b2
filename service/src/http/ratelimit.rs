//! The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers) on
//! consume answers: one policy per resource the call counted against, named
//! by the resource, in the resource's own units (messages, bytes, ...).
//!
//! ```text
//! RateLimit-Policy: "messages";q=1000;w=86400, "bandwidth";q=1073741824;w=2678400
//! RateLimit:        "messages";r=997;t=3600,   "bandwidth";r=1073739776;t=2250000
//! ```
//!
//! `q` is the node's limit and `w` its period's length; `r` is what the
//! node may still use (what the next call is checked against) and `t` the
//! seconds until the period ends. A capacity, or a service with automatic
//! resets off, has no `w` and no `t`. A refusal (429) carries `RateLimit`
//! alone, for the resource that refused, beside `Retry-After`.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::domain::headroom::Headroom;

pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Both fields of one answer, written before the answer's body is built
/// (their names borrow from the request).
#[derive(Debug, Default)]
pub struct Fields {
    policy: Option<HeaderValue>,
    limit: Option<HeaderValue>,
}

impl Fields {
    /// The fields for `headroom` (none when it is empty).
    pub fn of(headroom: &[Headroom<'_>]) -> Fields {
        if headroom.is_empty() {
            return Fields::default();
        }
        Fields {
            policy: value(policy_field(headroom)),
            limit: value(limit_field(headroom)),
        }
    }

    pub fn insert_into(self, headers: &mut HeaderMap) {
        if let Some(v) = self.policy {
            headers.insert(RATELIMIT_POLICY.clone(), v);
        }
        if let Some(v) = self.limit {
            headers.insert(RATELIMIT.clone(), v);
        }
    }
}

/// Adds `RateLimit` for the resource that refused a call: `remaining` of
/// it left, `reset_secs` until its window ends.
pub fn insert_refused(
    headers: &mut HeaderMap,
    resource: &str,
    remaining: u64,
    reset_secs: Option<u64>,
) {
    let mut field = Vec::with_capacity(48);
    item(&mut field, resource);
    param(&mut field, b";r=", remaining);
    if let Some(t) = reset_secs {
        param(&mut field, b";t=", t);
    }
    if let Some(v) = value(field) {
        headers.insert(RATELIMIT.clone(), v);
    }
}

/// `"messages";q=1000;w=86400, ...`
fn policy_field(headroom: &[Headroom<'_>]) -> Vec<u8> {
    list(
        headroom,
        (b";q=", |h| h.max),
        (b";w=", |h| h.window.map(|w| w.length)),
    )
}

/// `"messages";r=997;t=3600, ...`
fn limit_field(headroom: &[Headroom<'_>]) -> Vec<u8> {
    list(
        headroom,
        (b";r=", |h| h.remaining),
        (b";t=", |h| h.window.map(|w| w.reset)),
    )
}

type Param = for<'h, 'a> fn(&'h Headroom<'a>) -> u64;
type OptionalParam = for<'h, 'a> fn(&'h Headroom<'a>) -> Option<u64>;

/// One item per resource, each with a required and an optional parameter
/// (`key` is the parameter's `;k=`).
fn list(
    headroom: &[Headroom<'_>],
    (key, value): (&[u8], Param),
    (optional_key, optional): (&[u8], OptionalParam),
) -> Vec<u8> {
    let mut field = Vec::with_capacity(48 * headroom.len());
    for (n, h) in headroom.iter().enumerate() {
        if n > 0 {
            field.extend_from_slice(b", ");
        }
        item(&mut field, h.resource);
        param(&mut field, key, value(h));
        if let Some(v) = optional(h) {
            param(&mut field, optional_key, v);
        }
    }
    field
}

/// The policy's name as a structured-field String: quoted, with `"` and
/// `\` escaped (resource names have neither, so the name is copied whole;
/// the escape keeps any name well formed).
fn item(field: &mut Vec<u8>, name: &str) {
    field.push(b'"');
    if name.bytes().any(|b| b == b'"' || b == b'\\') {
        for b in name.bytes() {
            if b == b'"' || b == b'\\' {
                field.push(b'\\');
            }
            field.push(b);
        }
    } else {
        field.extend_from_slice(name.as_bytes());
    }
    field.push(b'"');
}

fn param(field: &mut Vec<u8>, key: &[u8], value: u64) {
    field.extend_from_slice(key);
    field.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `value` as a field value; `None` when it is not a valid one (a control
/// character in a name, which validation does not let through): then the
/// answer goes without the field rather than fail.
fn value(value: Vec<u8>) -> Option<HeaderValue> {
    HeaderValue::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::headroom::WindowSecs;

    fn day(remaining: u64, reset: u64) -> Headroom<'static> {
        Headroom {
            resource: "messages",
            max: 1000,
            remaining,
            window: Some(WindowSecs {
                length: 86_400,
                reset,
            }),
        }
    }

    fn fields(headroom: &[Headroom<'_>]) -> (Option<String>, Option<String>) {
        let mut h = HeaderMap::new();
        Fields::of(headroom).insert_into(&mut h);
        let get = |n: &HeaderName| h.get(n).map(|v| v.to_str().unwrap_or("?").to_string());
        (get(&RATELIMIT_POLICY), get(&RATELIMIT))
    }

    #[test]
    fn one_resource_names_its_limit_window_remaining_and_reset() {
        assert_eq!(
            fields(&[day(997, 3600)]),
            (
                Some(r#""messages";q=1000;w=86400"#.into()),
                Some(r#""messages";r=997;t=3600"#.into())
            )
        );
    }

    #[test]
    fn several_resources_are_one_list_in_call_order() {
        let bandwidth = Headroom {
            resource: "bandwidth",
            max: 5,
            remaining: 0,
            window: Some(WindowSecs {
                length: 2_678_400,
                reset: 10,
            }),
        };
        assert_eq!(
            fields(&[day(1, 2), bandwidth]),
            (
                Some(r#""messages";q=1000;w=86400, "bandwidth";q=5;w=2678400"#.into()),
                Some(r#""messages";r=1;t=2, "bandwidth";r=0;t=10"#.into())
            )
        );
    }

    #[test]
    fn without_a_window_there_is_no_w_and_no_t() {
        let gpu = Headroom {
            resource: "gpu",
            max: 8,
            remaining: 3,
            window: None,
        };
        assert_eq!(
            fields(&[gpu]),
            (Some(r#""gpu";q=8"#.into()), Some(r#""gpu";r=3"#.into()))
        );
    }

    #[test]
    fn nothing_counted_against_a_limit_adds_no_field() {
        assert_eq!(fields(&[]), (None, None));
    }

    #[test]
    fn a_refusal_has_the_refusing_resource_only() {
        let mut h = HeaderMap::new();
        insert_refused(&mut h, "messages", 2, Some(60));
        assert_eq!(
            h.get(&RATELIMIT).and_then(|v| v.to_str().ok()),
            Some(r#""messages";r=2;t=60"#)
        );
        assert!(h.get(&RATELIMIT_POLICY).is_none());
    }

    #[test]
    fn quotes_and_backslashes_in_a_name_are_escaped() {
        let mut field = Vec::new();
        item(&mut field, r#"a"b\c"#);
        assert_eq!(field, br#""a\"b\\c""#);
    }

    #[test]
    fn a_name_that_is_no_field_value_leaves_the_field_out() {
        let odd = Headroom {
            resource: "a\nb",
            ..day(1, 1)
        };
        assert_eq!(fields(&[odd]), (None, None));
    }
}
