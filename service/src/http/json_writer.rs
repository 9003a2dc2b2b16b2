//! JSON answers of the hot routes, written straight into one buffer.
//!
//! `axum::Json` serializes through serde_json into a `BytesMut` that starts
//! at 128 bytes: a flat `increment` answer (about 570 bytes, 16 fields)
//! grows it three times, and serde_json scans every key and value for
//! characters to escape: a fifth of the service's instructions per
//! `increment` (docs/perf-history/02-second-pass-callgrind.md). Here the
//! keys are `'static` and known to need no escaping, values that need none
//! are copied as they are, and the buffer is sized once.
//!
//! ```text
//!  handler ─▶ JsonAnswer(T) ─▶ T::write_json(&mut JsonWriter) ─▶ Vec<u8> ─▶ 200 application/json
//! ```
//!
//! The output is byte for byte what serde_json writes for the same value
//! (the types keep `#[derive(Serialize)]`; tests compare both).

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::domain::stamp::Stamp;

/// An object key, quoted at compile time: `key!("name")` is `"name":`.
/// Names must not need escaping (checked in debug builds).
macro_rules! key {
    ($name:literal) => {
        $crate::http::json_writer::Key(concat!("\"", $name, "\":"))
    };
}
pub(crate) use key;

/// See [`key!`].
#[derive(Debug, Clone, Copy)]
pub struct Key(pub &'static str);

/// A value that writes itself as JSON.
pub trait WriteJson {
    /// A guess of the encoded size, so the buffer is allocated once.
    fn size_hint(&self) -> usize {
        256
    }

    fn write_json(&self, w: &mut JsonWriter);
}

/// A `200 OK` JSON answer written with [`WriteJson`].
#[derive(Debug)]
pub struct JsonAnswer<T>(pub T);

/// Appends JSON to a buffer; object keys come from [`key!`].
#[derive(Debug, Default)]
pub struct JsonWriter {
    buf: Vec<u8>,
}

// === impl JsonAnswer ===

impl<T: WriteJson> IntoResponse for JsonAnswer<T> {
    fn into_response(self) -> Response {
        let mut w = JsonWriter::with_capacity(self.0.size_hint());
        self.0.write_json(&mut w);
        let mut res = Response::new(Body::from(w.into_bytes()));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

// === impl JsonWriter ===

impl JsonWriter {
    pub fn with_capacity(n: usize) -> Self {
        JsonWriter {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// `{`, as a value (top level or array element).
    #[inline(always)]
    pub fn begin_object(&mut self) {
        self.separate();
        self.buf.push(b'{');
    }

    /// `"key":{`
    #[inline(always)]
    pub fn begin_object_field(&mut self, key: Key) {
        self.key(key);
        self.buf.push(b'{');
    }

    #[inline(always)]
    pub fn end_object(&mut self) {
        self.buf.push(b'}');
    }

    /// `"key":[`
    #[inline(always)]
    pub fn begin_array_field(&mut self, key: Key) {
        self.key(key);
        self.buf.push(b'[');
    }

    #[inline(always)]
    pub fn end_array(&mut self) {
        self.buf.push(b']');
    }

    #[inline(always)]
    pub fn str_field(&mut self, key: Key, v: &str) {
        self.key(key);
        write_str(&mut self.buf, v);
    }

    /// A key only known at run time (a map's key): escaped like a value.
    #[inline(always)]
    pub fn u64_entry(&mut self, key: &str, v: u64) {
        self.separate();
        write_str(&mut self.buf, key);
        self.buf.push(b':');
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    #[inline(always)]
    pub fn u64_field(&mut self, key: Key, v: u64) {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    #[inline(always)]
    pub fn bool_field(&mut self, key: Key, v: bool) {
        self.key(key);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// A [`Stamp`], copied as it is: it never holds a byte JSON escapes.
    #[inline(always)]
    pub fn stamp_field(&mut self, key: Key, v: &Stamp) {
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(b'"');
    }

    /// The stamp or `null`.
    #[inline(always)]
    pub fn opt_stamp_field(&mut self, key: Key, v: Option<&Stamp>) {
        match v {
            Some(s) => self.stamp_field(key, s),
            None => self.null_field(key),
        }
    }

    #[inline(always)]
    fn null_field(&mut self, key: Key) {
        self.key(key);
        self.buf.extend_from_slice(b"null");
    }

    #[inline(always)]
    fn key(&mut self, key: Key) {
        debug_assert!(
            key.0.len() >= 3
                && key.0.starts_with('"')
                && key.0.ends_with("\":")
                && !needs_escape(&key.0[1..key.0.len() - 2]),
            "{key:?} is not a key!()"
        );
        self.separate();
        self.buf.extend_from_slice(key.0.as_bytes());
    }

    /// A comma unless this is the first member of an object or array.
    #[inline(always)]
    fn separate(&mut self) {
        if !matches!(self.buf.last(), None | Some(b'{' | b'[' | b':')) {
            self.buf.push(b',');
        }
    }
}

fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A JSON string, escaped exactly as serde_json escapes it.
fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    if needs_escape(s) {
        for &b in s.as_bytes() {
            match b {
                b'"' => buf.extend_from_slice(b"\\\""),
                b'\\' => buf.extend_from_slice(b"\\\\"),
                b'\x08' => buf.extend_from_slice(b"\\b"),
                b'\x0c' => buf.extend_from_slice(b"\\f"),
                b'\n' => buf.extend_from_slice(b"\\n"),
                b'\r' => buf.extend_from_slice(b"\\r"),
                b'\t' => buf.extend_from_slice(b"\\t"),
                0..0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    buf.extend_from_slice(b"\\u00");
                    buf.push(HEX[usize::from(b >> 4)]);
                    buf.push(HEX[usize::from(b & 0xf)]);
                }
                _ => buf.push(b),
            }
        }
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(f: impl FnOnce(&mut JsonWriter)) -> String {
        let mut w = JsonWriter::default();
        f(&mut w);
        String::from_utf8(w.into_bytes()).unwrap_or_default()
    }

    #[test]
    fn writes_nested_objects_with_commas_where_serde_json_puts_them() {
        let out = written(|w| {
            w.begin_object();
            w.bool_field(key!("allowed"), true);
            w.str_field(key!("id"), "a\"b");
            w.begin_object_field(key!("usage"));
            w.u64_entry("messages", 1);
            w.u64_entry("bytes", u64::MAX);
            w.end_object();
            w.opt_stamp_field(key!("reset_at"), None);
            w.end_object();
        });
        let expected = serde_json::json!({
            "allowed": true, "id": "a\"b",
            "usage": {"messages": 1, "bytes": u64::MAX}, "reset_at": null,
        });
        // serde_json's map is sorted; compare as values, then the exact
        // text of one that keeps order.
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(parsed, expected);
        assert_eq!(
            out,
            r#"{"allowed":true,"id":"a\"b","usage":{"messages":1,"bytes":18446744073709551615},"reset_at":null}"#
        );
    }

    #[test]
    fn empty_object() {
        assert_eq!(
            written(|w| {
                w.begin_object();
                w.end_object();
            }),
            "{}"
        );
    }

    proptest! {
        #[test]
        fn strings_are_escaped_exactly_as_serde_json_does(s in any::<String>()) {
            let mut buf = Vec::new();
            write_str(&mut buf, &s);
            prop_assert_eq!(buf, serde_json::to_vec(&s).unwrap_or_default());
        }

        #[test]
        fn control_characters_too(s in "[\\x00-\\x1f\"\\\\a-z\\x7f]{0,20}") {
            let mut buf = Vec::new();
            write_str(&mut buf, &s);
            prop_assert_eq!(buf, serde_json::to_vec(&s).unwrap_or_default());
        }
    }
}
