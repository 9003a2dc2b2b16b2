//! Windows and the periods they cut time into.
//!
//! ```text
//!   window = day        |  2026-11-21  |  2026-11-22  |  2026-11-23  |
//!   time  ──────────────┼──────────────┼──────●───────┼──────────────┼──▶
//!                                      start  now    end (= reset_at)
//! ```
//!
//! A [`Window`] maps any instant to the [`Period`] that holds it. Periods are
//! aligned to the UTC calendar, so "today" is the same for every replica and
//! every restart. A counter belongs to one period; when the clock enters a new
//! period the counter starts again from zero (with auto reset on).
//! Window `none` has a single endless period: usage of a capacity is claimed
//! and released, never reset.
//!
//! A period is identified by its window and its start (Unix seconds); its
//! textual key (`YYYY-MM-DD` for a day, `YYYY-MM` for a month, ...) is what the
//! database and the API show.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use super::calendar::{self, SECS_PER_DAY};
use super::stamp::Stamp;

/// How often a resource's usage starts again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
    /// A capacity: never resets.
    None,
}

/// One period of a window: `[start, end)`.
///
/// Packed in one word, the window in the low three bits and the start in
/// whole minutes above them (every period but `none`'s starts on a
/// minute): each of a million resident tenants holds two, and eight
/// bytes less per counter is what leaves room for its row id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period(i64);

/// A period's key and reset time as text, as every flat answer shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodStamps {
    /// [`Period::key`].
    pub key: Stamp,
    /// [`Period::end`] in RFC 3339; `None` for window `none`.
    pub reset_at: Option<Stamp>,
}

thread_local! {
    /// The last [`PeriodStamps`] this thread made, one per window.
    static LAST_STAMPS: [Cell<Option<(Period, PeriodStamps)>>; 5] =
        const { [const { Cell::new(None) }; 5] };
}

/// The key of the single period of window `none`.
pub const NONE_PERIOD_KEY: &str = "all";

// === impl Window ===

impl Window {
    pub const ALL: [Window; 5] = [
        Window::Minute,
        Window::Hour,
        Window::Day,
        Window::Month,
        Window::None,
    ];

    /// The period of this window that contains the instant `ts`.
    pub fn period_at(self, ts: i64) -> Period {
        let start = match self {
            Window::Minute => ts - ts.rem_euclid(60),
            Window::Hour => ts - ts.rem_euclid(3600),
            Window::Day => ts - ts.rem_euclid(SECS_PER_DAY),
            Window::Month => {
                let d = calendar::date_of(ts);
                calendar::days_from_civil(d.year, d.month, 1) * SECS_PER_DAY
            }
            Window::None => i64::MIN,
        };
        Period::new(self, start)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
            Window::None => "none",
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a window name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown window {0:?}: expected one of minute, hour, day, month, none")]
pub struct UnknownWindow(pub String);

impl FromStr for Window {
    type Err = UnknownWindow;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Window::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| UnknownWindow(s.to_owned()))
    }
}

// === impl Period ===

impl Period {
    /// `start` is a whole minute (any `i64` divided by 60 fits in 61 bits);
    /// window `none` has one period and ignores it.
    fn new(window: Window, start: i64) -> Period {
        let minutes = match window {
            Window::None => 0,
            _ => start.div_euclid(60),
        };
        Period((minutes << 3) | window as i64)
    }

    pub fn window(self) -> Window {
        match self.0 & 7 {
            0 => Window::Minute,
            1 => Window::Hour,
            2 => Window::Day,
            3 => Window::Month,
            _ => Window::None,
        }
    }

    /// First second of the period (`i64::MIN` for window `none`).
    pub fn start(self) -> i64 {
        match self.window() {
            Window::None => i64::MIN,
            _ => (self.0 >> 3) * 60,
        }
    }

    /// First second of the next period: when usage resets. `None` for window
    /// `none`, which never resets.
    pub fn end(self) -> Option<i64> {
        match self.window() {
            Window::Minute => Some(self.start() + 60),
            Window::Hour => Some(self.start() + 3600),
            Window::Day => Some(self.start() + SECS_PER_DAY),
            Window::Month => {
                let d = calendar::date_of(self.start());
                let (y, m) = if d.month == 12 {
                    (d.year + 1, 1)
                } else {
                    (d.year, d.month + 1)
                };
                Some(calendar::days_from_civil(y, m, 1) * SECS_PER_DAY)
            }
            Window::None => None,
        }
    }

    /// Whether `ts` falls in this period, decided without calendar
    /// arithmetic: true when `ts` is less than the shortest length this
    /// window can have past the start (a month is at least 28 days). A
    /// `false` only means "compute it" (the last days of a month). Every
    /// usage call asks this of each counter, several times.
    pub fn surely_holds(self, ts: i64) -> bool {
        let shortest = match self.window() {
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => SECS_PER_DAY,
            Window::Month => 28 * SECS_PER_DAY,
            Window::None => return true,
        };
        ts.checked_sub(self.start())
            .is_some_and(|into| (0..shortest).contains(&into))
    }

    /// Whole seconds from `now` until the period ends (at least 1 while the
    /// period is current), or `None` for window `none`.
    pub fn secs_until_end(self, now: i64) -> Option<u64> {
        self.end()
            .map(|end| u64::try_from(end.saturating_sub(now)).unwrap_or(0).max(1))
    }

    /// The textual key stored in the database and shown by the API:
    /// `YYYY-MM-DDTHH:MM` (minute), `YYYY-MM-DDTHH` (hour), `YYYY-MM-DD` (day),
    /// `YYYY-MM` (month), `all` (none).
    pub fn key(self) -> String {
        self.key_stamp().to_string()
    }

    /// The key and reset time as stamps. All tenants share the current day
    /// and month, so each thread remembers the last ones per window: a flat
    /// answer needs four of these texts, and making them each time was a
    /// visible share of an `increment` (docs/perf-history).
    pub fn stamps(self) -> PeriodStamps {
        let make = || PeriodStamps {
            key: self.key_stamp(),
            reset_at: self.end().map(calendar::rfc3339_stamp),
        };
        LAST_STAMPS
            .try_with(|last| {
                let slot = &last[self.window() as usize];
                match slot.get() {
                    Some((p, stamps)) if p == self => stamps,
                    _ => {
                        let stamps = make();
                        slot.set(Some((self, stamps)));
                        stamps
                    }
                }
            })
            // Only while the thread is being torn down.
            .unwrap_or_else(|_| make())
    }

    /// [`Period::key`] without allocating (for responses on the hot path).
    pub fn key_stamp(self) -> Stamp {
        if self.window() == Window::None {
            return Stamp::from(NONE_PERIOD_KEY);
        }
        let d = calendar::date_of(self.start());
        let secs = self.start().rem_euclid(SECS_PER_DAY);
        match self.window() {
            Window::Minute | Window::Hour => {
                let mut s = calendar::date_stamp(d, true);
                s.push_byte(b'T');
                s.push_padded(secs / 3600, 2);
                if self.window() == Window::Minute {
                    s.push_byte(b':');
                    s.push_padded((secs / 60) % 60, 2);
                }
                s
            }
            Window::Day => calendar::date_stamp(d, true),
            Window::Month | Window::None => calendar::date_stamp(d, false),
        }
    }

    /// Parses a key written by [`Period::key`] for the given window.
    pub fn parse_key(window: Window, key: &str) -> Option<Period> {
        let start = match window {
            Window::None => return (key == NONE_PERIOD_KEY).then_some(window.period_at(0)),
            Window::Month => {
                let (y, m) = calendar::parse_year_month(key)?;
                calendar::days_from_civil(y, m, 1) * SECS_PER_DAY
            }
            Window::Day => {
                let d = calendar::parse_date(key)?;
                calendar::days_from_civil(d.year, d.month, d.day) * SECS_PER_DAY
            }
            Window::Hour | Window::Minute => {
                let d = calendar::parse_date(key.get(..10)?)?;
                let day_start = calendar::days_from_civil(d.year, d.month, d.day) * SECS_PER_DAY;
                let rest = key.get(10..)?;
                let (hour, minute) = match (window, rest.as_bytes()) {
                    (Window::Hour, [b'T', h1, h2]) => (two_digits(*h1, *h2)?, 0),
                    (Window::Minute, [b'T', h1, h2, b':', m1, m2]) => {
                        (two_digits(*h1, *h2)?, two_digits(*m1, *m2)?)
                    }
                    _ => return None,
                };
                if hour > 23 || minute > 59 {
                    return None;
                }
                day_start + hour * 3600 + minute * 60
            }
        };
        Some(Period::new(window, start))
    }
}

impl fmt::Debug for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Period")
            .field("window", &self.window())
            .field("start", &self.start())
            .finish()
    }
}

fn two_digits(a: u8, b: u8) -> Option<i64> {
    (a.is_ascii_digit() && b.is_ascii_digit())
        .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use calendar::days_from_civil;
    use proptest::prelude::*;

    proptest! {
        // The fast path never disagrees with the calendar.
        #[test]
        fn surely_holds_only_what_period_at_confirms(
            start in -10_000_000_000i64..10_000_000_000,
            offset in -100_000i64..40 * SECS_PER_DAY,
            w in 0usize..5,
        ) {
            let window = Window::ALL[w];
            let p = window.period_at(start);
            let ts = p.start().saturating_add(offset);
            if p.surely_holds(ts) {
                prop_assert_eq!(window.period_at(ts), p);
            }
        }
    }

    #[test]
    fn stamps_are_the_key_and_end_whether_remembered_or_not() {
        for ts in [
            at(2026, 11, 23, 10, 0, 0),
            at(2026, 12, 31, 23, 59, 59),
            at(2027, 1, 1, 0, 0, 0),
        ] {
            for window in Window::ALL {
                let p = window.period_at(ts);
                for _ in 0..2 {
                    let s = p.stamps();
                    assert_eq!(s.key.as_str(), p.key());
                    assert_eq!(
                        s.reset_at.map(|r| r.to_string()),
                        p.end().map(calendar::rfc3339)
                    );
                }
            }
        }
    }

    #[test]
    fn surely_holds_the_first_28_days_of_a_month_and_no_second_past_a_day() {
        let nov = Window::Month.period_at(at(2026, 11, 15, 0, 0, 0));
        assert!(nov.surely_holds(at(2026, 11, 28, 23, 59, 59)));
        assert!(!nov.surely_holds(at(2026, 11, 29, 0, 0, 0)));
        assert!(!nov.surely_holds(at(2026, 10, 31, 23, 59, 59)));
        let day = Window::Day.period_at(at(2026, 11, 15, 12, 0, 0));
        assert!(day.surely_holds(at(2026, 11, 15, 23, 59, 59)));
        assert!(!day.surely_holds(at(2026, 11, 16, 0, 0, 0)));
    }

    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + s
    }

    #[test]
    fn day_boundary() {
        let before = Window::Day.period_at(at(2026, 11, 22, 23, 59, 59));
        let after = Window::Day.period_at(at(2026, 11, 23, 0, 0, 0));
        assert_eq!(before.key(), "2026-11-22");
        assert_eq!(after.key(), "2026-11-23");
        assert_ne!(before, after);
        assert_eq!(before.end(), Some(after.start()));
        assert_eq!(before.secs_until_end(at(2026, 11, 22, 23, 59, 59)), Some(1));
    }

    #[test]
    fn month_boundary_and_lengths() {
        let nov = Window::Month.period_at(at(2026, 11, 30, 23, 59, 59));
        let dec = Window::Month.period_at(at(2026, 12, 1, 0, 0, 0));
        assert_eq!(nov.key(), "2026-11");
        assert_eq!(dec.key(), "2026-12");
        assert_eq!(nov.end(), Some(dec.start()));
        assert_eq!(nov.end().map(|e| e - nov.start()), Some(30 * SECS_PER_DAY));
        assert_eq!(dec.end().map(|e| e - dec.start()), Some(31 * SECS_PER_DAY));
    }

    #[test]
    fn year_end() {
        let last_second = at(2026, 12, 31, 23, 59, 59);
        let first_second = last_second + 1;
        assert_eq!(Window::Day.period_at(last_second).key(), "2026-12-31");
        assert_eq!(Window::Day.period_at(first_second).key(), "2027-01-01");
        assert_eq!(Window::Month.period_at(last_second).key(), "2026-12");
        assert_eq!(Window::Month.period_at(first_second).key(), "2027-01");
        assert_eq!(
            Window::Month.period_at(last_second).end(),
            Some(first_second)
        );
        assert_eq!(Window::Hour.period_at(last_second).key(), "2026-12-31T23");
        assert_eq!(
            Window::Minute.period_at(first_second).key(),
            "2027-01-01T00:00"
        );
    }

    #[test]
    fn leap_day() {
        let feb29 = at(2028, 2, 29, 12, 0, 0);
        assert_eq!(Window::Day.period_at(feb29).key(), "2028-02-29");
        let feb = Window::Month.period_at(feb29);
        assert_eq!(feb.key(), "2028-02");
        assert_eq!(feb.end().map(|e| e - feb.start()), Some(29 * SECS_PER_DAY));
        assert_eq!(feb.end(), Some(at(2028, 3, 1, 0, 0, 0)));
        let feb_2027 = Window::Month.period_at(at(2027, 2, 10, 0, 0, 0));
        assert_eq!(
            feb_2027.end().map(|e| e - feb_2027.start()),
            Some(28 * SECS_PER_DAY)
        );
    }

    #[test]
    fn minute_and_hour() {
        let t = at(2026, 11, 22, 21, 5, 9);
        let m = Window::Minute.period_at(t);
        assert_eq!(m.start(), at(2026, 11, 22, 21, 5, 0));
        assert_eq!(m.end(), Some(at(2026, 11, 22, 21, 6, 0)));
        assert_eq!(m.secs_until_end(t), Some(51));
        let h = Window::Hour.period_at(t);
        assert_eq!(h.key(), "2026-11-22T21");
        assert_eq!(h.end(), Some(at(2026, 11, 22, 22, 0, 0)));
    }

    #[test]
    fn a_period_is_one_word_holding_its_window_and_start() {
        assert_eq!(std::mem::size_of::<Period>(), 8);
        // Before 1970, at the edges of what an i64 of seconds can hold.
        for t in [i64::MIN + 86_400 * 62, -1, 0, 59, 60, i64::MAX - 1] {
            for w in Window::ALL {
                let p = w.period_at(t);
                assert_eq!(p.window(), w, "{w} at {t}");
                if w != Window::None {
                    assert!(p.start() <= t && p.start() % 60 == 0, "{w} at {t}: {p:?}");
                    assert!(t - p.start() < 31 * SECS_PER_DAY, "{w} at {t}: {p:?}");
                }
            }
        }
        assert_eq!(Window::None.period_at(5).start(), i64::MIN);
    }

    #[test]
    fn none_never_resets() {
        let a = Window::None.period_at(0);
        let b = Window::None.period_at(at(2100, 1, 1, 0, 0, 0));
        assert_eq!(a, b);
        assert_eq!(a.end(), None);
        assert_eq!(a.secs_until_end(5), None);
        assert_eq!(a.key(), "all");
    }

    #[test]
    fn keys_round_trip_for_every_window() {
        for t in [
            at(2026, 11, 22, 21, 5, 9),
            at(2028, 2, 29, 0, 0, 0),
            at(1999, 12, 31, 23, 59, 59),
            -1,
        ] {
            for w in Window::ALL {
                let p = w.period_at(t);
                assert_eq!(Period::parse_key(w, &p.key()), Some(p), "{w} {t}");
            }
        }
    }

    #[test]
    fn rejects_malformed_keys() {
        assert_eq!(Period::parse_key(Window::Day, "2026-11"), None);
        assert_eq!(Period::parse_key(Window::Month, "2026-11-22"), None);
        assert_eq!(Period::parse_key(Window::Hour, "2026-11-22T24"), None);
        assert_eq!(Period::parse_key(Window::Minute, "2026-11-22T23:60"), None);
        assert_eq!(Period::parse_key(Window::Minute, "2026-11-22T23"), None);
        assert_eq!(Period::parse_key(Window::None, "2026"), None);
    }

    #[test]
    fn parses_window_names() {
        for w in Window::ALL {
            assert_eq!(w.as_str().parse::<Window>(), Ok(w));
        }
        assert!("weekly".parse::<Window>().is_err());
    }
}
