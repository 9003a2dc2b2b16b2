//! The rules a request must follow to be read, in one place: the service
//! enforces them and the OpenAPI document states them (as patterns and
//! bounds), so a generated client and a fuzzer know them too.

/// A node id of the v1 API: 1 to 253 characters of `[A-Za-z0-9._:-]`, not
/// `.` or `..` (HTTP clients resolve those as path segments).
pub const NODE_ID_PATTERN: &str = r"^(?!\.{1,2}$)[A-Za-z0-9._:-]{1,253}$";
/// Longest node id.
pub const MAX_NODE_ID_LEN: usize = 253;

/// A tenant id of the flat API: as a node id, 1 to 128 characters.
pub const TENANT_ID_PATTERN: &str = r"^(?!\.{1,2}$)[A-Za-z0-9._:-]{1,128}$";
/// Longest tenant id.
pub const MAX_TENANT_ID_LEN: usize = 128;

/// A resource name: 1 to 63 characters of `[a-z0-9._-]`, starting and
/// ending with a letter or digit, and not `message_count` (the database
/// stores `messages` under that name).
pub const RESOURCE_NAME_PATTERN: &str =
    r"^(?!message_count$)[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$";

/// Largest amount, limit or counter value: 2^63 - 1 (PostgreSQL's BIGINT).
pub const MAX_AMOUNT: u64 = i64::MAX as u64;

/// Bandwidth limits given in GiB (the flat API's `bandwidth_limit_gb`) are
/// below this many GiB: 2^33 GiB is 2^63 bytes, one past [`MAX_AMOUNT`].
pub const GIB_LIMIT_BOUND: f64 = 8_589_934_592.0;

/// Longest `name`, `description` and claim `reason`, in characters.
pub const MAX_TEXT_CHARS: usize = 1024;

/// A claim's reason holds a character that is not white space (Unicode
/// `White_Space`, what `char::is_whitespace` tests).
pub const REASON_PATTERN: &str =
    r"[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// A grant's subject: 1 to [`MAX_SUBJECT_CHARS`] characters, none of them
/// a control character (Unicode `Cc`, what `char::is_control` tests).
pub const SUBJECT_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F]+$";
/// Longest grant subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 512;

/// The windows a limit may have.
pub const WINDOWS: [&str; 5] = ["minute", "hour", "day", "month", "none"];

/// The states a node can be set to.
pub const SETTABLE_STATES: [&str; 2] = ["active", "suspended"];

/// The states a node can be in (`deleted` by `DELETE`).
pub const NODE_STATES: [&str; 3] = ["active", "suspended", "deleted"];

/// The roles a grant may give (`read` is the older name of `reporter`).
pub const ROLES: [&str; 5] = ["reader", "reporter", "read", "admin", "owner"];

/// Largest page of a list (`limit`).
pub const MAX_PAGE: usize = 1_000;

/// Most items in one batch request.
pub const MAX_BATCH_ITEMS: usize = 10_000;
