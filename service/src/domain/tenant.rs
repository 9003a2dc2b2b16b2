//! A flat tenant: daily messages and monthly bandwidth against two limits.
//!
//! This is the flat tracker's model kept as pure code: the counter store
//! holds one [`Tenant`] per id and calls these methods under its lock, so the
//! arithmetic is tested here without threads, HTTP or SQL.
//!
//! `exceeded` means the limit is reached: usage `>=` limit, no further unit
//! fits. A limit of 0 therefore allows nothing (the old tracker read 0 as
//! "unlimited"; here an unlimited tenant gets a large limit instead).

use super::counter::{Counter, Overflow, Retired};
use super::window::{Period, Window};

/// The two flat quota types, named as in the `quota_usage.quota_type` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaType {
    /// Messages per UTC day.
    Messages,
    /// Bytes per UTC month.
    Bandwidth,
}

impl QuotaType {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaType::Messages => "message_count",
            QuotaType::Bandwidth => "bandwidth",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message_count" => Some(QuotaType::Messages),
            "bandwidth" => Some(QuotaType::Bandwidth),
            _ => None,
        }
    }

    pub fn window(self) -> Window {
        match self {
            QuotaType::Messages => Window::Day,
            QuotaType::Bandwidth => Window::Month,
        }
    }
}

/// A tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages per day.
    pub message_limit: u64,
    /// Bytes per month.
    pub bandwidth_limit_bytes: u64,
}

/// An amount of usage to add or to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub messages: u64,
    pub bytes: u64,
}

/// Finished periods handed back by a rollover (their final values are history).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rolled {
    pub messages: Option<Retired>,
    pub bandwidth: Option<Retired>,
}

impl Rolled {
    pub fn iter(&self) -> impl Iterator<Item = (QuotaType, Retired)> + '_ {
        [
            (QuotaType::Messages, self.messages),
            (QuotaType::Bandwidth, self.bandwidth),
        ]
        .into_iter()
        .filter_map(|(t, r)| r.map(|r| (t, r)))
    }
}

/// A flat tenant's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub limits: Limits,
    pub messages: Counter,
    pub bandwidth: Counter,
    /// Unix seconds of the last change to usage or limits.
    pub last_updated: Option<i64>,
}

/// One quota of a tenant as seen at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaView {
    pub period: Period,
    pub used: u64,
    pub limit: u64,
}

/// A tenant as seen at an instant (what the API reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantView {
    pub limits: Limits,
    pub messages: QuotaView,
    pub bandwidth: QuotaView,
    pub last_updated: Option<i64>,
}

// === impl Tenant ===

impl Tenant {
    pub fn new(limits: Limits, now: i64) -> Self {
        Tenant {
            limits,
            messages: Counter::new(Window::Day.period_at(now)),
            bandwidth: Counter::new(Window::Month.period_at(now)),
            last_updated: None,
        }
    }

    pub fn counter(&self, t: QuotaType) -> &Counter {
        match t {
            QuotaType::Messages => &self.messages,
            QuotaType::Bandwidth => &self.bandwidth,
        }
    }

    /// Moves both counters into the periods that hold `now` (auto reset).
    pub fn roll(&mut self, now: i64, auto_reset: bool) -> Rolled {
        Rolled {
            messages: self.messages.roll(now, auto_reset),
            bandwidth: self.bandwidth.roll(now, auto_reset),
        }
    }

    /// Counts `usage` (always: tracking semantics). All or nothing: when
    /// either counter would overflow, neither changes.
    pub fn increment(
        &mut self,
        usage: Usage,
        now: i64,
        auto_reset: bool,
    ) -> Result<Rolled, Overflow> {
        let mut messages = self.messages;
        let mut bandwidth = self.bandwidth;
        let rolled = Rolled {
            messages: messages.roll(now, auto_reset),
            bandwidth: bandwidth.roll(now, auto_reset),
        };
        messages.add(usage.messages)?;
        bandwidth.add(usage.bytes)?;
        self.messages = messages;
        self.bandwidth = bandwidth;
        self.last_updated = Some(now);
        Ok(rolled)
    }

    /// Starts the current periods again from zero.
    pub fn reset(&mut self, now: i64, auto_reset: bool) -> Rolled {
        let rolled = self.roll(now, auto_reset);
        self.messages.used = 0;
        self.bandwidth.used = 0;
        self.last_updated = Some(now);
        rolled
    }

    pub fn set_limits(&mut self, limits: Limits, now: i64) {
        self.limits = limits;
        self.last_updated = Some(now);
    }

    /// The tenant as it counts at `now`, without changing it.
    pub fn view(&self, now: i64, auto_reset: bool) -> TenantView {
        let (mp, mu) = self.messages.used_at(now, auto_reset);
        let (bp, bu) = self.bandwidth.used_at(now, auto_reset);
        TenantView {
            limits: self.limits,
            messages: QuotaView {
                period: mp,
                used: mu,
                limit: self.limits.message_limit,
            },
            bandwidth: QuotaView {
                period: bp,
                used: bu,
                limit: self.limits.bandwidth_limit_bytes,
            },
            last_updated: self.last_updated,
        }
    }
}

// === impl QuotaView ===

impl QuotaView {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// The limit is reached: no further unit fits.
    pub fn exceeded(&self) -> bool {
        self.used >= self.limit
    }

    /// Whether `amount` more still fits within the limit.
    pub fn fits(&self, amount: u64) -> bool {
        self.used
            .checked_add(amount)
            .is_some_and(|u| u <= self.limit)
    }
}

// === impl TenantView ===

impl TenantView {
    pub fn exceeded(&self) -> bool {
        self.messages.exceeded() || self.bandwidth.exceeded()
    }

    /// Whether `usage` more fits within both limits.
    pub fn allows(&self, usage: Usage) -> bool {
        self.messages.fits(usage.messages) && self.bandwidth.fits(usage.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{SECS_PER_DAY, days_from_civil};
    use crate::domain::counter::MAX_COUNT;

    const LIMITS: Limits = Limits {
        message_limit: 10,
        bandwidth_limit_bytes: 1000,
    };

    fn t0() -> i64 {
        days_from_civil(2026, 11, 30) * SECS_PER_DAY + 12 * 3600
    }

    fn usage(messages: u64, bytes: u64) -> Usage {
        Usage { messages, bytes }
    }

    #[test]
    fn counts_and_reports_exceeded_at_the_limit() {
        let mut t = Tenant::new(LIMITS, t0());
        t.increment(usage(9, 999), t0(), true).ok();
        let v = t.view(t0(), true);
        assert!(!v.exceeded());
        assert_eq!((v.messages.remaining(), v.bandwidth.remaining()), (1, 1));
        assert!(v.allows(usage(1, 1)));
        assert!(!v.allows(usage(2, 0)));
        t.increment(usage(1, 0), t0(), true).ok();
        let v = t.view(t0(), true);
        assert!(v.messages.exceeded() && !v.bandwidth.exceeded() && v.exceeded());
        // Tracking semantics: counting continues past the limit.
        t.increment(usage(5, 0), t0(), true).ok();
        assert_eq!(t.view(t0(), true).messages.used, 15);
        assert_eq!(t.view(t0(), true).messages.remaining(), 0);
    }

    #[test]
    fn zero_limit_allows_nothing() {
        let t = Tenant::new(
            Limits {
                message_limit: 0,
                bandwidth_limit_bytes: 0,
            },
            t0(),
        );
        let v = t.view(t0(), true);
        assert!(v.exceeded());
        assert!(!v.allows(usage(1, 0)));
        assert!(v.allows(usage(0, 0)));
    }

    #[test]
    fn day_and_month_roll_independently() {
        let mut t = Tenant::new(LIMITS, t0());
        t.increment(usage(3, 300), t0(), true).ok();
        // Next day is 2026-12-01: both the day and the month change.
        let next_day = t0() + SECS_PER_DAY;
        let rolled = t.increment(usage(1, 10), next_day, true);
        let rolled = rolled.unwrap_or_default();
        let keys: Vec<_> = rolled
            .iter()
            .map(|(q, r)| (q, r.period.key(), r.used))
            .collect();
        assert_eq!(
            keys,
            vec![
                (QuotaType::Messages, "2026-11-30".to_owned(), 3),
                (QuotaType::Bandwidth, "2026-11".to_owned(), 300)
            ]
        );
        let v = t.view(next_day, true);
        assert_eq!((v.messages.used, v.bandwidth.used), (1, 10));
        // Two days later, still December: only messages roll.
        let later = next_day + 2 * SECS_PER_DAY;
        let rolled = t.increment(usage(1, 1), later, true).unwrap_or_default();
        assert!(rolled.messages.is_some() && rolled.bandwidth.is_none());
        assert_eq!(t.view(later, true).bandwidth.used, 11);
    }

    #[test]
    fn increment_is_all_or_nothing() {
        let mut t = Tenant::new(LIMITS, t0());
        t.increment(usage(1, MAX_COUNT), t0(), true).ok();
        let before = t.clone();
        assert!(t.increment(usage(1, 1), t0(), true).is_err());
        assert_eq!(t, before, "messages were not counted either");
        // In a new period both counters start from zero, so the same fits again.
        assert!(
            t.increment(usage(1, 1), t0() + 40 * SECS_PER_DAY, true)
                .is_ok()
        );
    }

    #[test]
    fn reset_zeroes_current_periods() {
        let mut t = Tenant::new(LIMITS, t0());
        t.increment(usage(4, 40), t0(), true).ok();
        let rolled = t.reset(t0() + 10, true);
        assert_eq!(rolled, Rolled::default());
        let v = t.view(t0() + 10, true);
        assert_eq!((v.messages.used, v.bandwidth.used), (0, 0));
        assert_eq!(v.messages.period.key(), "2026-11-30");
    }

    #[test]
    fn view_of_an_idle_tenant_after_rollover_is_zero() {
        let mut t = Tenant::new(LIMITS, t0());
        t.increment(usage(4, 40), t0(), true).ok();
        let v = t.view(t0() + SECS_PER_DAY, true);
        assert_eq!(
            (v.messages.used, v.messages.period.key().as_str()),
            (0, "2026-12-01")
        );
        let v = t.view(t0() + SECS_PER_DAY, false);
        assert_eq!(
            (v.messages.used, v.messages.period.key().as_str()),
            (4, "2026-11-30")
        );
    }
}
