//! [`Stamp`]: a short text on the stack (an RFC 3339 time, a period key).
//!
//! Every flat `increment` answer carries three period keys and three times.
//! Built as `String`s through `format!` they cost six allocations and the
//! `core::fmt` machinery per call, a measurable share of the service's CPU
//! under load (docs/perf-history); a `Stamp` writes the digits straight
//! into a fixed buffer.

use std::fmt;

/// Room for any RFC 3339 time or period key of an `i64` timestamp (years
/// outside 0..=9999 take the slow path and up to 12 digits).
const CAP: usize = 40;

/// A short ASCII text held inline: printable characters other than `"`
/// and `\\` only, so it is a valid JSON string body as it is (the response
/// writer copies it without an escape scan).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    buf: [u8; CAP],
    len: u8,
}

// === impl Stamp ===

impl Stamp {
    pub const fn new() -> Self {
        Stamp {
            buf: [0; CAP],
            len: 0,
        }
    }

    /// The text's bytes: see the type's invariant.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// Bytes allowed in a stamp.
    pub fn allowed(b: u8) -> bool {
        (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
    }

    /// A stamp of `bytes`, or `None` if one is not allowed or they do not fit.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        // No early exit: the compiler turns this into a few wide compares.
        let all_allowed = bytes.iter().fold(true, |ok, &b| ok & Stamp::allowed(b));
        if bytes.len() > CAP || !all_allowed {
            return None;
        }
        let mut st = Stamp::new();
        st.buf[..bytes.len()].copy_from_slice(bytes);
        st.len = bytes.len() as u8;
        Some(st)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever pushed (see push_*), so this never fails.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Appends `s`; text past the capacity is dropped (never reached by the
    /// formats this type holds: see `CAP`), and so is text with a byte that
    /// is not allowed.
    pub fn push_str(&mut self, s: &str) {
        if !s.bytes().all(Stamp::allowed) {
            return;
        }
        let at = usize::from(self.len);
        let n = s.len().min(CAP - at);
        self.buf[at..at + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n as u8;
    }

    pub fn push_byte(&mut self, b: u8) {
        if Stamp::allowed(b) && usize::from(self.len) < CAP {
            self.buf[usize::from(self.len)] = b;
            self.len += 1;
        }
    }

    /// Appends `v` zero-padded to `width` digits, as `{:0width$}` would.
    pub fn push_padded(&mut self, v: i64, width: usize) {
        if (0..10_000).contains(&v) && width <= 4 {
            let digits = [
                (v / 1000 % 10) as u8,
                (v / 100 % 10) as u8,
                (v / 10 % 10) as u8,
                (v % 10) as u8,
            ];
            let needed = if v >= 1000 {
                4
            } else if v >= 100 {
                3
            } else if v >= 10 {
                2
            } else {
                1
            };
            for d in &digits[4 - needed.max(width)..] {
                self.push_byte(b'0' + d);
            }
        } else {
            let _ = fmt::Write::write_fmt(self, format_args!("{v:0width$}"));
        }
    }
}

impl Default for Stamp {
    fn default() -> Self {
        Stamp::new()
    }
}

impl From<&str> for Stamp {
    fn from(s: &str) -> Self {
        let mut st = Stamp::new();
        st.push_str(s);
        st
    }
}

impl fmt::Write for Stamp {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<&str> for Stamp {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Stamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Stamp::from_bytes(s.as_bytes()).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected printable ASCII text without quotes or backslashes, at most {CAP} bytes, got {s:?}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_numbers_match_format() {
        for v in [
            0, 1, 9, 10, 99, 100, 999, 1000, 2026, 9999, 10_000, 123_456, -1, -42,
        ] {
            for width in [2, 4] {
                let mut s = Stamp::new();
                s.push_padded(v, width);
                assert_eq!(s.as_str(), format!("{v:0width$}"), "{v} width {width}");
            }
        }
    }

    #[test]
    fn json_round_trip_and_limits() {
        let s = Stamp::from("2026-11-23T00:00:00Z");
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(json, "\"2026-11-23T00:00:00Z\"");
        let back: Stamp = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Stamp>(&format!("\"{}\"", "x".repeat(41))).is_err());
        assert!(serde_json::from_str::<Stamp>(r#""a\"b""#).is_err());
        assert_eq!(Stamp::from("a\"b\n").as_str(), "");
        assert_eq!(Stamp::from_bytes(b"2026-11"), Some(Stamp::from("2026-11")));
        let mut full = Stamp::new();
        full.push_str(&"y".repeat(50));
        assert_eq!(full.as_str().len(), CAP);
    }
}
