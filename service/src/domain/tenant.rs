//! The flat API's view of a quota node: daily messages and monthly
//! bandwidth against two limits.
//!
//! A flat tenant is a root node with the built-in resources `messages`
//! (window day) and `bandwidth` (window month); see the counter store (`counters`).
//!
//! `exceeded` means the limit is reached: no further unit fits. A limit of 0
//! therefore allows nothing (the old tracker read 0 as "unlimited"; here an
//! unlimited tenant gets a large limit instead).

use super::window::Period;

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

/// One quota of a tenant as seen at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaView {
    pub period: Period,
    pub used: u64,
    pub limit: u64,
    /// Reserved by the node's children (0 for a flat tenant).
    pub allocated: u64,
    /// The node has a limit for this resource (a v1 node may lack one; then
    /// nothing of it fits, but nothing is exceeded either).
    pub tracked: bool,
}

/// A tenant as seen at an instant (what the flat API reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantView {
    pub limits: Limits,
    pub messages: QuotaView,
    pub bandwidth: QuotaView,
    pub last_updated: Option<i64>,
}

// === impl QuotaView ===

impl QuotaView {
    /// What the tenant itself may still use.
    pub fn remaining(&self) -> u64 {
        self.limit
            .saturating_sub(self.allocated)
            .saturating_sub(self.used)
    }

    /// The limit is reached: no further unit fits (and something was used,
    /// or the limit is zero).
    pub fn exceeded(&self) -> bool {
        self.tracked && self.remaining() == 0 && (self.used > 0 || self.limit == 0)
    }

    /// Whether `amount` more still fits.
    pub fn fits(&self, amount: u64) -> bool {
        amount <= self.remaining()
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
    use crate::domain::window::Window;

    fn q(used: u64, limit: u64, allocated: u64) -> QuotaView {
        QuotaView {
            period: Window::Day.period_at(0),
            used,
            limit,
            allocated,
            tracked: true,
        }
    }

    #[test]
    fn exceeded_means_the_limit_is_reached() {
        assert!(!q(9, 10, 0).exceeded());
        assert!(q(10, 10, 0).exceeded());
        assert!(q(15, 10, 0).exceeded(), "tracking may pass the limit");
        assert_eq!(q(15, 10, 0).remaining(), 0);
        assert!(q(0, 0, 0).exceeded(), "a zero limit allows nothing");
        assert!(
            !q(0, 10, 10).exceeded(),
            "all delegated to children, nothing used"
        );
        assert!(q(1, 10, 9).exceeded());
        let untracked = QuotaView {
            tracked: false,
            ..q(0, 0, 0)
        };
        assert!(!untracked.exceeded() && !untracked.fits(1) && untracked.fits(0));
    }

    #[test]
    fn fits_checks_what_is_left() {
        assert!(q(9, 10, 0).fits(1));
        assert!(!q(9, 10, 0).fits(2));
        assert!(q(0, 0, 0).fits(0));
        assert!(!q(0, 0, 0).fits(1));
        assert!(!q(5, 10, 0).fits(u64::MAX));
    }
}
