//! Kubernetes quantities as whole numbers: what a limit's `max` means.
//!
//! `100`, `2k`, `10Gi`, `1e3` parse; fractions (`0.5`), milli-units (`100m`)
//! and negative values are refused (the CRD's CEL rule refuses them at
//! admission too, so here they only come from objects stored before it).
//! Formatting goes the other way, for the `summary` printer column.

/// Why a quantity is not a whole, non-negative number that fits in 2^63-1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a whole, non-negative quantity up to 2^63-1 (e.g. 100, 2k, 10Gi)")]
pub struct QuantityError(pub String);

const BINARY: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL: [(&str, u32); 6] = [("k", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5), ("E", 6)];

/// Parses a quantity into a whole number.
pub fn parse(q: &str) -> Result<u64, QuantityError> {
    let err = || QuantityError(q.to_owned());
    let s = q.trim();
    let (number, multiplier): (&str, u128) = if let Some((n, p)) = BINARY
        .iter()
        .find_map(|(suf, p)| s.strip_suffix(suf).map(|n| (n, *p)))
    {
        (n, 1024u128.pow(p))
    } else if let Some((n, p)) = DECIMAL
        .iter()
        .find_map(|(suf, p)| s.strip_suffix(suf).map(|n| (n, *p)))
    {
        (n, 1000u128.pow(p))
    } else if let Some((n, e)) = s.split_once(['e', 'E']) {
        let e: u32 = e.parse().map_err(|_| err())?;
        (n, 10u128.checked_pow(e).ok_or_else(err)?)
    } else {
        (s, 1)
    };
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u128 = number.parse().map_err(|_| err())?;
    let v = n.checked_mul(multiplier).ok_or_else(err)?;
    u64::try_from(v)
        .ok()
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(err)
}

/// Formats a number for people: exact values below 10,000 as they are;
/// larger ones with a suffix, binary (`5Gi`) when `binary`, decimal
/// (`12.3k`) otherwise: whole as Kubernetes writes them (`10Gi`) when the
/// value is a whole multiple, else with one decimal (`1.5Gi`).
pub fn format(v: u64, binary: bool) -> String {
    if v < 10_000 {
        return v.to_string();
    }
    let (base, suffixes): (f64, [&str; 6]) = if binary {
        (1024.0, ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
    } else {
        (1000.0, ["k", "M", "G", "T", "P", "E"])
    };
    let step = base as u64;
    let (mut x, mut unit, mut i) = (v as f64, 1u64, 0);
    while x >= base && i < suffixes.len() {
        x /= base;
        unit = unit.saturating_mul(step);
        i += 1;
    }
    let suffix = suffixes[i.saturating_sub(1)];
    if v.is_multiple_of(unit) {
        format!("{}{suffix}", v / unit)
    } else {
        format!("{x:.1}{suffix}")
    }
}

/// Whether a quantity was written with a binary suffix (`10Gi`): its usage is
/// then shown in binary units too.
pub fn is_binary(q: &str) -> bool {
    BINARY.iter().any(|(suf, _)| q.trim().ends_with(suf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_quantities() {
        for (q, v) in [
            ("0", 0),
            ("100", 100),
            ("+7", 7),
            ("2k", 2_000),
            ("3M", 3_000_000),
            ("10Gi", 10 * 1024 * 1024 * 1024),
            ("1Ki", 1024),
            ("1e3", 1_000),
            ("5E", 5_000_000_000_000_000_000),
            ("7Ei", 7 * (1u64 << 60)),
        ] {
            assert_eq!(parse(q), Ok(v), "{q}");
        }
    }

    #[test]
    fn refuses_fractions_negatives_and_overflow() {
        for q in [
            "",
            "-1",
            "0.5",
            "100m",
            "1.5Gi",
            "abc",
            "10Zi",
            "8Ei",
            "9223372036854775808",
            "1e30",
            "Gi",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format(40, false), "40");
        assert_eq!(format(9_999, true), "9999");
        assert_eq!(format(12_345, false), "12.3k");
        assert_eq!(format(5 * 1024 * 1024 * 1024, true), "5Gi");
        assert_eq!(
            format(10 * 1024 * 1024 * 1024, true),
            "10Gi",
            "as Kubernetes writes it"
        );
        assert_eq!(format(3 * 1024 * 1024 * 1024 / 2, true), "1.5Gi");
        assert_eq!(format(20_000, false), "20k");
        assert_eq!(format(1_500_000, false), "1.5M");
        assert!(is_binary("10Gi") && !is_binary("10G") && !is_binary("100"));
    }
}
