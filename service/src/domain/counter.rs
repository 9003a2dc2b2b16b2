//! One usage counter: how much of a resource was used in one period.
//!
//! The rules every counter follows, whatever stores it:
//! - it belongs to the period it was last counted in;
//! - with auto reset on, entering a later period starts it from zero and
//!   hands back the finished period's final value (kept as history);
//!   with auto reset off it keeps counting in the period it started in;
//! - it never wraps: an addition past [`MAX_COUNT`] is refused whole.
//!
//! [`MAX_COUNT`] is `i64::MAX` because SQLite and PostgreSQL store signed
//! 64-bit integers; anything larger could be counted but not persisted.

use super::window::{Period, Window};

/// Largest value a counter (or a limit) may hold.
pub const MAX_COUNT: u64 = i64::MAX as u64;

/// Bytes in one GiB (the flat tracker's "GB").
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A non-negative number of GiB (fractions allowed) as whole bytes, or
/// `None` when it is not finite, negative, or past [`MAX_COUNT`].
pub fn gib_to_bytes(gib: f64) -> Option<u64> {
    if !gib.is_finite() || gib < 0.0 {
        return None;
    }
    let bytes = (gib * GIB).round();
    // `MAX_COUNT as f64` is 2^63 (one past MAX_COUNT, rounded up): a float
    // below it is at most 2^63 - 1024.
    (bytes < MAX_COUNT as f64).then_some(bytes as u64)
}

/// An addition that would pass [`MAX_COUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("counter would overflow: {used} + {amount} exceeds {MAX_COUNT}")]
pub struct Overflow {
    pub used: u64,
    pub amount: u64,
}

/// Usage of one resource in one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub period: Period,
    /// Usage as this process sees it: the stored total plus `unflushed`.
    pub used: u64,
    /// The part of `used` this process counted and has not handed to a
    /// flush yet: what the next flush adds to the stored total. Only
    /// [`Counter::add`] grows it; a flush takes it ([`Counter::take_unflushed`]).
    pub unflushed: u64,
    /// The id of the database row holding this period's usage, when known
    /// (loaded with it, or learned from the flush that inserted it): the
    /// flush then addresses the row by id instead of looking its key up in
    /// the unique index. Only a hint; the flush checks it.
    pub stored_row: Option<RowId>,
}

/// A `quota_usage` row id (SQLite's rowid; ids start at 1).
pub type RowId = std::num::NonZeroI64;

/// A period's final value, handed back when the counter moves on.
pub type Retired = Counter;

impl Counter {
    pub fn new(period: Period) -> Self {
        Counter {
            period,
            used: 0,
            unflushed: 0,
            stored_row: None,
        }
    }

    /// A counter holding `used` that is already stored (in row `row`).
    pub fn stored(period: Period, used: u64, row: Option<RowId>) -> Self {
        Counter {
            period,
            used,
            unflushed: 0,
            stored_row: row,
        }
    }

    /// Hands over the usage not flushed yet (the flush adds it to the stored
    /// total); `used` is unchanged.
    pub fn take_unflushed(&mut self) -> u64 {
        std::mem::take(&mut self.unflushed)
    }

    /// Replaces the stored part of `used` with `total` (read from the
    /// database, which other replicas add to), keeping what is not flushed.
    pub fn set_stored_total(&mut self, total: u64) {
        self.used = total.saturating_add(self.unflushed).min(MAX_COUNT);
    }

    /// Moves the counter into the period of `window` that holds `now`, when
    /// auto reset is on and that period is later than the counter's.
    /// Returns the finished period when it had usage.
    pub fn roll(&mut self, now: i64, auto_reset: bool) -> Option<Retired> {
        if !auto_reset || self.period.surely_holds(now) {
            return None;
        }
        let current = self.period.window().period_at(now);
        // A clock stepped backwards never re-opens an old period.
        if current.start() <= self.period.start() {
            return None;
        }
        let finished = std::mem::replace(self, Counter::new(current));
        (finished.used > 0).then_some(finished)
    }

    /// The usage that counts at `now`: zero when the counter's period is over
    /// and auto reset is on, without changing the counter.
    pub fn used_at(&self, now: i64, auto_reset: bool) -> (Period, u64) {
        let mut view = *self;
        view.roll(now, auto_reset);
        (view.period, view.used)
    }

    /// Adds `amount`, refusing (and changing nothing) past [`MAX_COUNT`].
    pub fn add(&mut self, amount: u64) -> Result<u64, Overflow> {
        let used = self
            .used
            .checked_add(amount)
            .filter(|&u| u <= MAX_COUNT)
            .ok_or(Overflow {
                used: self.used,
                amount,
            })?;
        self.used = used;
        // unflushed <= used, so this cannot overflow either.
        self.unflushed = self.unflushed.saturating_add(amount);
        Ok(used)
    }

    /// Whether adding `amount` keeps usage within `limit`.
    pub fn fits(&self, amount: u64, limit: u64) -> bool {
        self.used.checked_add(amount).is_some_and(|u| u <= limit)
    }

    pub fn window(&self) -> Window {
        self.period.window()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{SECS_PER_DAY, days_from_civil};

    const DAY: i64 = SECS_PER_DAY;

    fn nov22() -> i64 {
        days_from_civil(2026, 11, 22) * DAY + 3600
    }

    #[test]
    fn period_change_between_two_increments_starts_from_zero() {
        let mut c = Counter::new(Window::Day.period_at(nov22()));
        c.add(5).ok();
        assert_eq!(c.roll(nov22() + 60, true), None, "same day: no roll");
        assert_eq!(c.used, 5);
        let retired = c.roll(nov22() + DAY, true);
        assert_eq!(
            retired.map(|r| (r.period.key(), r.used)),
            Some(("2026-11-22".into(), 5))
        );
        assert_eq!(c.used, 0);
        assert_eq!(c.period.key(), "2026-11-23");
    }

    #[test]
    fn a_counter_with_its_row_id_takes_four_words() {
        // Two per resident tenant: a million tenants hold two million.
        assert_eq!(std::mem::size_of::<Counter>(), 32);
    }

    #[test]
    fn without_auto_reset_keeps_counting() {
        let mut c = Counter::new(Window::Day.period_at(nov22()));
        c.add(5).ok();
        assert_eq!(c.roll(nov22() + 40 * DAY, false), None);
        c.add(1).ok();
        assert_eq!((c.period.key().as_str(), c.used), ("2026-11-22", 6));
        assert_eq!(c.used_at(nov22() + 40 * DAY, false).1, 6);
    }

    #[test]
    fn an_empty_period_retires_nothing() {
        let mut c = Counter::new(Window::Month.period_at(nov22()));
        assert_eq!(c.roll(nov22() + 10 * DAY, true), None);
        assert_eq!(c.period.key(), "2026-12");
    }

    #[test]
    fn clock_going_backwards_does_not_reopen_a_period() {
        let mut c = Counter::new(Window::Day.period_at(nov22() + DAY));
        c.add(3).ok();
        assert_eq!(c.roll(nov22(), true), None);
        assert_eq!((c.period.key().as_str(), c.used), ("2026-11-23", 3));
    }

    #[test]
    fn used_at_is_a_view() {
        let mut c = Counter::new(Window::Day.period_at(nov22()));
        c.add(7).ok();
        let (p, used) = c.used_at(nov22() + DAY, true);
        assert_eq!((p.key().as_str(), used), ("2026-11-23", 0));
        assert_eq!(c.used, 7, "the counter itself is unchanged");
    }

    #[test]
    fn gib_to_bytes_rounds_and_refuses_the_impossible() {
        assert_eq!(gib_to_bytes(1.0), Some(1 << 30));
        assert_eq!(gib_to_bytes(0.5), Some(1 << 29));
        assert_eq!(gib_to_bytes(0.0), Some(0));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e30] {
            assert_eq!(gib_to_bytes(bad), None, "{bad}");
        }
        // The document's bound: every GiB amount below 2^33 fits, 2^33 does not.
        let bound = quota_api::rules::GIB_LIMIT_BOUND;
        assert_eq!(gib_to_bytes(bound), None);
        let below = f64::from_bits(bound.to_bits() - 1);
        assert!(gib_to_bytes(below).is_some_and(|b| b <= MAX_COUNT));
    }

    proptest::proptest! {
        #[test]
        fn every_gib_amount_below_the_bound_fits(gib in 0.0..quota_api::rules::GIB_LIMIT_BOUND) {
            proptest::prop_assert!(gib_to_bytes(gib).is_some_and(|b| b <= MAX_COUNT));
        }
    }

    #[test]
    fn unflushed_tracks_what_the_next_flush_adds() {
        let mut c = Counter::stored(Window::Day.period_at(nov22()), 10, None);
        c.add(3).ok();
        c.add(4).ok();
        assert_eq!((c.used, c.unflushed), (17, 7));
        assert_eq!(c.take_unflushed(), 7);
        assert_eq!((c.used, c.unflushed), (17, 0));
        c.add(2).ok();
        // Another replica added 100 meanwhile: the database says 117.
        c.set_stored_total(117);
        assert_eq!((c.used, c.unflushed), (119, 2));
        // A finished period hands back its unflushed part with it.
        let retired = c.roll(nov22() + DAY, true);
        assert_eq!(retired.map(|r| (r.used, r.unflushed)), Some((119, 2)));
        assert_eq!((c.used, c.unflushed), (0, 0));
        // A refused addition changes neither.
        let mut full = Counter::stored(Window::Day.period_at(nov22()), MAX_COUNT, None);
        assert!(full.add(1).is_err());
        assert_eq!(full.unflushed, 0);
    }

    #[test]
    fn never_wraps() {
        let mut c = Counter::new(Window::None.period_at(0));
        assert_eq!(c.add(MAX_COUNT), Ok(MAX_COUNT));
        assert_eq!(
            c.add(1),
            Err(Overflow {
                used: MAX_COUNT,
                amount: 1
            })
        );
        assert_eq!(c.used, MAX_COUNT);
        let mut d = Counter::new(Window::None.period_at(0));
        d.add(1).ok();
        assert!(d.add(u64::MAX).is_err());
        assert_eq!(d.used, 1);
        assert!(!d.fits(u64::MAX, u64::MAX));
        assert!(d.fits(9, 10));
        assert!(!d.fits(10, 10));
    }
}
