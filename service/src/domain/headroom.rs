//! What a consume leaves of each limit it counted against: the numbers of
//! the IETF RateLimit fields (`RateLimit-Policy`: the limit and its window;
//! `RateLimit`: what remains and when it resets), computed where the
//! counters are, under the node's lock, and written as headers by the HTTP
//! layer.
//!
//! ```text
//!  consume ──▶ Node::headroom ──▶ [Headroom] ──▶ http::ratelimit ──▶ headers
//! ```

use smallvec::SmallVec;

use super::window::Period;

/// One resource's limit after a usage call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom<'a> {
    /// The resource, which names the policy.
    pub resource: &'a str,
    /// The limit of the node that counted (`q`).
    pub max: u64,
    /// What the node may still use in this period (`r`): the same figure
    /// the next call is checked against.
    pub remaining: u64,
    /// The period's length and the seconds until it ends (`w`, `t`);
    /// `None` when usage does not restart (window `none`, or automatic
    /// resets turned off).
    pub window: Option<WindowSecs>,
}

/// A period's length and what is left of it, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSecs {
    pub length: u64,
    pub reset: u64,
}

/// The headroom of the resources of one call: inline for one (most
/// consumes count one resource), so a consume with the fields off moves
/// only an empty vector through its layers.
pub type Headrooms<'a> = SmallVec<[Headroom<'a>; 1]>;

// === impl WindowSecs ===

impl WindowSecs {
    /// `period` as of `now`; `None` when it never ends or when counting goes
    /// on across periods (`auto_reset` off), or when `now` is past its end.
    pub fn of(period: Period, now: i64, auto_reset: bool) -> Option<WindowSecs> {
        if !auto_reset {
            return None;
        }
        let end = period.end()?;
        if now >= end {
            return None;
        }
        Some(WindowSecs {
            length: u64::try_from(end.saturating_sub(period.start())).ok()?,
            reset: u64::try_from(end - now).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::days_from_civil;
    use crate::domain::window::Window;

    fn ts(y: i64, m: u32, d: u32, secs: i64) -> i64 {
        days_from_civil(y, m, d) * 86_400 + secs
    }

    #[test]
    fn a_day_is_86400_seconds_and_resets_at_midnight() {
        let now = ts(2026, 12, 5, 3_600);
        let w = WindowSecs::of(Window::Day.period_at(now), now, true);
        assert_eq!(
            w,
            Some(WindowSecs {
                length: 86_400,
                reset: 82_800
            })
        );
    }

    #[test]
    fn a_month_is_its_own_length() {
        for (y, m, days) in [(2026, 2, 28), (2028, 2, 29), (2026, 4, 30), (2026, 12, 31)] {
            let now = ts(y, m, 1, 0);
            let w = WindowSecs::of(Window::Month.period_at(now), now, true);
            assert_eq!(
                w,
                Some(WindowSecs {
                    length: days * 86_400,
                    reset: days * 86_400
                }),
                "{y}-{m}"
            );
        }
    }

    #[test]
    fn minute_and_hour_reset_within_their_length() {
        let now = ts(2026, 12, 5, 3_600 + 61);
        let minute = WindowSecs::of(Window::Minute.period_at(now), now, true);
        let hour = WindowSecs::of(Window::Hour.period_at(now), now, true);
        assert_eq!(
            minute,
            Some(WindowSecs {
                length: 60,
                reset: 59
            })
        );
        assert_eq!(
            hour,
            Some(WindowSecs {
                length: 3_600,
                reset: 3_539
            })
        );
    }

    #[test]
    fn no_window_when_usage_does_not_restart() {
        let now = ts(2026, 12, 5, 0);
        assert_eq!(WindowSecs::of(Window::None.period_at(now), now, true), None);
        assert_eq!(WindowSecs::of(Window::Day.period_at(now), now, false), None);
        // A period that has ended (a counter not rolled yet) says nothing.
        let yesterday = Window::Day.period_at(now - 1);
        assert_eq!(WindowSecs::of(yesterday, now, true), None);
    }
}
