//! Request bodies read strictly: a body means exactly one thing or is
//! refused (422 `invalid_body`, naming the field and the position).
//!
//! serde, left to itself, reads a struct from a JSON array by position
//! (`["acme", 3, 0]` as an increment of 3), takes `null` for an absent
//! optional field, ignores unknown fields (`limitz` instead of `limits`)
//! and lets the last of two equal keys of a map win. Here:
//!
//! - a struct must be a JSON object ([`Strict`] reads it as a map only);
//! - `null` is refused everywhere: leave a field out instead ([`Strict`]);
//! - unknown fields are refused (`#[serde(deny_unknown_fields)]` on every
//!   body);
//! - a key may appear once: serde refuses a struct's duplicate fields, and
//!   maps are `quota_api::UniqueMap`s (in the API crate, which both sides use);
//! - a whole number may be written with a fraction or an exponent (`4.0`,
//!   `1e3`), as JSON Schema's `integer` allows, up to 2^53: past that a
//!   number with a fraction or exponent no longer names one integer exactly,
//!   and is refused ([`Integral`]).
//!
//! ```text
//!   bytes ─▶ serde_json::Deserializer ─▶ Strict (objects for structs, no null) ─▶ body type
//!                      └─ on failure, again with the path tracked: "items[3].usage: ... at line 1 column 42"
//! ```

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};

/// Reads `T` from JSON strictly (see the module docs).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(Strict(&mut de))?;
    de.end()?;
    Ok(value)
}

/// Why `bytes` is not a `T`: whether the JSON itself is malformed (rather
/// than of the wrong shape), and a message naming the path of the value
/// that failed and its position. Reads the body again, tracking the path,
/// which costs more than reading it: only for a failure.
pub fn explain<T: DeserializeOwned>(bytes: &[u8]) -> (bool, String) {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let (path, err) = match serde_path_to_error::deserialize::<_, T>(Strict(&mut de)) {
        Ok(_) => match de.end() {
            Ok(()) => return (false, "the body could not be read".into()),
            Err(e) => (String::new(), e),
        },
        Err(e) => (e.path().to_string(), e.into_inner()),
    };
    // Whether the text is JSON at all is asked of the text alone: serde_json
    // reports some wrong shapes as syntax (`"mode": null` for an enum is
    // "expected value").
    let syntax = serde_json::from_slice::<de::IgnoredAny>(bytes).is_err();
    let message = if path.is_empty() || path == "." {
        err.to_string()
    } else {
        format!("{path}: {err}")
    };
    (syntax, message)
}

/// A deserializer that reads structs from objects only and refuses `null`,
/// at every depth (every value it hands out is wrapped again).
#[derive(Debug)]
pub struct Strict<D>(pub D);

struct StrictVisitor<V>(V);
struct StrictSeed<S>(S);
struct StrictSeq<A>(A);
struct StrictMap<A>(A);

const NULL: &str = "null is not accepted: leave the field out instead";

// === impl Strict ===

macro_rules! forward_deserialize {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(StrictVisitor(visitor))
        }
    )*};
}

macro_rules! forward_integral {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Integral(StrictVisitor(visitor)))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any deserialize_bool deserialize_i128 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_option deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    forward_integral! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, StrictVisitor(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_newtype_struct(name, StrictVisitor(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, StrictVisitor(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, StrictVisitor(visitor))
    }

    /// An object only: serde's own reading takes an array by position.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(StrictVisitor(visitor))
    }

    /// Unit variants only are read (the bodies have no others), so the
    /// variant's access needs no wrapping.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_enum(name, variants, StrictVisitor(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

// === impl StrictVisitor ===

macro_rules! forward_visit {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit! {
        visit_bool: bool
        visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64 visit_i128: i128
        visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64 visit_u128: u128
        visit_f32: f32 visit_f64: f64 visit_char: char
        visit_str: &str visit_borrowed_str: &'de str visit_string: String
        visit_bytes: &[u8] visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(NULL))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(NULL))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(StrictSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(StrictMap(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(data)
    }
}

// === impl Integral ===

/// A visitor of an integer that takes a whole number written as a float
/// (`4.0`, `1e3`) too, while the float is exact (at most 2^53 away from 0).
struct Integral<V>(V);

/// Floats up to this magnitude are exact integers when they have no fraction.
const EXACT_FLOAT: f64 = 9_007_199_254_740_992.0; // 2^53

impl<'de, V: Visitor<'de>> Visitor<'de> for Integral<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.0.visit_u64(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.0.visit_i64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() != 0.0 || !v.is_finite() {
            return self.0.visit_f64(v);
        }
        if v.abs() > EXACT_FLOAT {
            return Err(E::custom(format_args!(
                "{v} is past 2^53: write a whole number that large without a fraction or exponent"
            )));
        }
        if v >= 0.0 {
            self.0.visit_u64(v as u64)
        } else {
            self.0.visit_i64(v as i64)
        }
    }

    // Everything else is not a number: the wrapped visitor refuses it.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.0.visit_bool(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.visit_str(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map)
    }
}

// === impl StrictSeed, StrictSeq, StrictMap ===

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(StrictSeed(seed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use quota_api::UniqueMap;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        max: u64,
        window: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        id: String,
        count: Option<u64>,
        #[serde(default)]
        limits: UniqueMap<Inner>,
        #[serde(default)]
        items: Vec<Inner>,
    }

    fn err(json: &str) -> String {
        assert!(from_slice::<Body>(json.as_bytes()).is_err(), "{json}");
        let (syntax, message) = explain::<Body>(json.as_bytes());
        assert!(!syntax, "{json}: {message}");
        message
    }

    #[test]
    fn a_whole_number_may_have_a_fraction_or_exponent_while_it_is_exact() {
        for (json, n) in [
            (r#"{"id":"a","count":4.0}"#, 4),
            (r#"{"id":"a","count":1e3}"#, 1000),
            (r#"{"id":"a","count":0.0}"#, 0),
            (r#"{"id":"a","count":9007199254740992.0}"#, 1 << 53),
        ] {
            let b: Body = from_slice(json.as_bytes()).unwrap();
            assert_eq!(b.count, Some(n), "{json}");
        }
        let m = err(r#"{"id":"a","count":4.5}"#);
        assert!(m.contains("floating point `4.5`"), "{m}");
        let m = err(r#"{"id":"a","count":1e19}"#);
        assert!(m.contains("past 2^53"), "{m}");
        let m = err(r#"{"id":"a","count":-1.0}"#);
        assert!(m.contains("invalid value: integer `-1`"), "{m}");
        let m = err(r#"{"id":"a","count":-1}"#);
        assert!(m.contains("invalid value: integer `-1`"), "{m}");
    }

    proptest::proptest! {
        #[test]
        fn whole_floats_read_as_their_integer(n in 0u64..=(1 << 53), exp in proptest::bool::ANY) {
            let text = if exp { format!("{n}e0") } else { format!("{n}.0") };
            let json = format!(r#"{{"id":"a","count":{text}}}"#);
            let b: Body = from_slice(json.as_bytes()).unwrap();
            proptest::prop_assert_eq!(b.count, Some(n));
        }

        #[test]
        fn fractions_are_refused(n in 0u64..(1 << 40), frac in 1u32..1000) {
            let json = format!(r#"{{"id":"a","count":{n}.{frac:03}}}"#);
            proptest::prop_assert!(from_slice::<Body>(json.as_bytes()).is_err());
        }
    }

    #[test]
    fn reads_well_formed_bodies_as_serde_does() {
        let b: Body = from_slice(
            br#"{"id":"a","count":3,"limits":{"m":{"max":1,"window":"day"}},"items":[{"max":2}]}"#,
        )
        .unwrap();
        assert_eq!(b.count, Some(3));
        assert_eq!(b.limits["m"].window.as_deref(), Some("day"));
        assert_eq!(b.items[0].window, None, "absent is still fine");
        let b: Body = from_slice(br#"{"id":"a"}"#).unwrap();
        assert_eq!((b.count, b.limits.len()), (None, 0));
    }

    #[test]
    fn refuses_what_serde_would_read_loosely_and_names_the_place() {
        let m = err(r#"["a",3]"#);
        assert!(m.contains("expected struct Body"), "{m}");
        let m = err(r#"{"id":"a","items":[[2,"day"]]}"#);
        assert!(m.starts_with("items[0]:"), "{m}");
        let m = err(r#"{"id":"a","count":null}"#);
        assert!(m.starts_with("count:") && m.contains("null"), "{m}");
        assert!(m.contains("line 1 column"), "{m}");
        let m = err(r#"{"id":"a","limits":{"m":{"max":1},"m":{"max":2}}}"#);
        assert!(m.contains("duplicate key \"m\""), "{m}");
        let m = err(r#"{"id":"a","limitz":{}}"#);
        assert!(m.contains("unknown field `limitz`"), "{m}");
        let m = err(r#"{"id":"a","id":"b"}"#);
        assert!(m.contains("duplicate field `id`"), "{m}");
        let m = err(r#"{"id":"a","limits":{"m":{"max":1,"window":null}}}"#);
        assert!(m.starts_with("limits.m.window:"), "{m}");
    }

    #[test]
    fn malformed_json_is_a_syntax_error() {
        let (syntax, m) = explain::<Body>(br#"{"id":"#);
        assert!(syntax, "{m}");
        let (syntax, m) = explain::<Body>(br#"{"id":"a"} x"#);
        assert!(syntax, "{m}");
    }
}
