//! Proleptic Gregorian calendar arithmetic on Unix seconds (UTC).
//!
//! The quota windows are calendar-aligned, so the service needs "which day /
//! month is this instant in" on every increment. These are the classic
//! days-from-civil conversions (H. Hinnant, "chrono-Compatible Low-Level Date
//! Algorithms"): a few integer operations, no allocation, no table, valid for
//! every `i64` day count the service can meet.

use super::stamp::Stamp;

/// Seconds in one day.
pub const SECS_PER_DAY: i64 = 86_400;

/// A calendar date (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
}

/// Days since 1970-01-01 of the given civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date { year, month, day }
}

/// The date that contains the Unix timestamp `ts`.
pub fn date_of(ts: i64) -> Date {
    civil_from_days(ts.div_euclid(SECS_PER_DAY))
}

/// Formats a Unix timestamp as RFC 3339 in UTC, e.g. `2026-11-22T21:05:09Z`.
pub fn rfc3339(ts: i64) -> String {
    rfc3339_stamp(ts).to_string()
}

/// [`rfc3339`] without allocating (for responses on the hot path).
pub fn rfc3339_stamp(ts: i64) -> Stamp {
    let d = date_of(ts);
    let secs = ts.rem_euclid(SECS_PER_DAY);
    if let Ok(year) = u32::try_from(d.year)
        && year <= 9999
    {
        // Every time the service meets: fixed width, written in one go.
        let mut b = *b"0000-00-00T00:00:00Z";
        put_date(&mut b, year, d);
        put_digits(&mut b[11..13], (secs / 3600) as u32);
        put_digits(&mut b[14..16], (secs / 60 % 60) as u32);
        put_digits(&mut b[17..19], (secs % 60) as u32);
        return Stamp::from_bytes(&b).unwrap_or_default();
    }
    let mut s = date_stamp(d, true);
    s.push_byte(b'T');
    s.push_padded(secs / 3600, 2);
    s.push_byte(b':');
    s.push_padded((secs / 60) % 60, 2);
    s.push_byte(b':');
    s.push_padded(secs % 60, 2);
    s.push_byte(b'Z');
    s
}

/// `YYYY-MM-DD` (or `YYYY-MM` without the day).
pub fn date_stamp(d: Date, with_day: bool) -> Stamp {
    if let Ok(year) = u32::try_from(d.year)
        && year <= 9999
    {
        let mut b = *b"0000-00-00";
        put_date(&mut b, year, d);
        let len = if with_day { 10 } else { 7 };
        return Stamp::from_bytes(&b[..len]).unwrap_or_default();
    }
    let mut s = Stamp::new();
    s.push_padded(d.year, 4);
    s.push_byte(b'-');
    s.push_padded(i64::from(d.month), 2);
    if with_day {
        s.push_byte(b'-');
        s.push_padded(i64::from(d.day), 2);
    }
    s
}

/// Writes `YYYY-MM-DD` into the first 10 bytes of `out` (a template with
/// the dashes in place).
fn put_date(out: &mut [u8], year: u32, d: Date) {
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], d.month);
    put_digits(&mut out[8..10], d.day);
}

/// Writes `v` as zero-padded decimal digits filling `out` (higher digits
/// than fit are dropped; callers pass values that fit).
fn put_digits(out: &mut [u8], mut v: u32) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Parses the RFC 3339 form [`rfc3339`] writes (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let d = parse_date(&s[..10])?;
    let h: i64 = parse_digits(&s[11..13])?;
    let m: i64 = parse_digits(&s[14..16])?;
    let sec: i64 = parse_digits(&s[17..19])?;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(days_from_civil(d.year, d.month, d.day) * SECS_PER_DAY + h * 3600 + m * 60 + sec)
}

/// Parses `YYYY-MM-DD` into a date, checking that the day exists.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month) = parse_year_month(&s[..7])?;
    let day: u32 = parse_digits(&s[8..10])?;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(Date { year, month, day })
}

/// Parses `YYYY-MM` into a year and a month.
pub fn parse_year_month(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' {
        return None;
    }
    let year: i64 = parse_digits(&s[..4])?;
    let month: u32 = parse_digits(&s[5..7])?;
    (1..=12).contains(&month).then_some((year, month))
}

fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.bytes().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Whether `year` is a Gregorian leap year.
pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in the given month.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_1970_01_01() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            civil_from_days(0),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
    }

    #[test]
    fn round_trips_every_day_over_four_centuries() {
        // 1800-01-01 .. 2200-01-01 covers 1900 (not leap) and 2000 (leap).
        let start = days_from_civil(1800, 1, 1);
        let end = days_from_civil(2200, 1, 1);
        let mut prev = civil_from_days(start - 1);
        for days in start..end {
            let d = civil_from_days(days);
            assert_eq!(days_from_civil(d.year, d.month, d.day), days);
            assert!(d > prev, "dates strictly increase");
            assert!(d.day >= 1 && d.day <= days_in_month(d.year, d.month));
            prev = d;
        }
    }

    #[test]
    fn leap_days() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2026));
        let feb29 = days_from_civil(2024, 2, 29);
        assert_eq!(
            civil_from_days(feb29 + 1),
            Date {
                year: 2024,
                month: 3,
                day: 1
            }
        );
        assert_eq!(parse_date("2024-02-29").map(|d| d.day), Some(29));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("1900-02-29"), None);
    }

    #[test]
    fn negative_timestamps_floor_towards_the_past() {
        assert_eq!(
            date_of(-1),
            Date {
                year: 1969,
                month: 12,
                day: 31
            }
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn formats_rfc3339() {
        // 2026-11-22T21:05:09Z
        let ts = days_from_civil(2026, 11, 22) * SECS_PER_DAY + 21 * 3600 + 5 * 60 + 9;
        assert_eq!(rfc3339(ts), "2026-11-22T21:05:09Z");
        assert_eq!(parse_rfc3339("2026-11-22T21:05:09Z"), Some(ts));
        assert_eq!(parse_rfc3339("2026-11-22T24:05:09Z"), None);
        assert_eq!(parse_rfc3339("2026-11-22 21:05:09Z"), None);
        assert_eq!(parse_rfc3339("2026-11-22T21:05:09+01:00"), None);
    }

    /// The allocation-free formatter writes what `format!` wrote before it,
    /// across centuries, negative timestamps and years past 9999.
    #[test]
    fn stamp_formatting_matches_format() {
        let reference = |ts: i64| {
            let d = date_of(ts);
            let secs = ts.rem_euclid(SECS_PER_DAY);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                d.year,
                d.month,
                d.day,
                secs / 3600,
                (secs / 60) % 60,
                secs % 60
            )
        };
        let mut ts: i64 = -70_000_000_000;
        while ts < 400_000_000_000 {
            assert_eq!(rfc3339(ts), reference(ts), "{ts}");
            let d = date_of(ts);
            let month = format!("{:04}-{:02}", d.year, d.month);
            assert_eq!(date_stamp(d, false).as_str(), month, "{ts}");
            assert_eq!(
                date_stamp(d, true).as_str(),
                format!("{month}-{:02}", d.day),
                "{ts}"
            );
            ts += 7_777_777;
        }
        for ts in [
            0,
            -1,
            86_399,
            86_400,
            253_402_300_799,
            253_402_300_800,
            i64::MAX / 1000,
        ] {
            assert_eq!(rfc3339(ts), reference(ts), "{ts}");
        }
    }

    #[test]
    fn parses_only_well_formed_dates() {
        assert_eq!(parse_year_month("2026-11"), Some((2026, 11)));
        for bad in [
            "2026-13", "2026-00", "2026-1", "20261-1", "2026/11", "+026-11", "2026-1a",
        ] {
            assert_eq!(parse_year_month(bad), None, "{bad}");
        }
        for bad in [
            "2026-11-31",
            "2026-11-00",
            "2026-11-1",
            "2026-11-1x",
            "2026-11_01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
