//! Usage: consume (within the share), increment (always), the strict
//! path's plan and totals, resets.

use super::*;

impl Node {
    /// Atomic check-and-increment: counts every amount only if each fits in
    /// `max - allocated - used`; otherwise counts nothing.
    pub fn consume(
        &mut self,
        usage: &[(&str, u64)],
        now: i64,
        auto_reset: bool,
    ) -> Result<Vec<(ResourceName, Retired)>, Refusal> {
        let idx = self.counted_indices(usage)?;
        for (&i, &(_, amount)) in idx.iter().zip(usage) {
            let r = &self.resources[i];
            let available = self.available(i, now, auto_reset);
            if amount > available {
                let (period, _) = r.used_at(now, auto_reset);
                return Err(Refusal::Exhausted {
                    resource: r.name.to_string(),
                    requested: amount,
                    available,
                    retry_after_secs: period.secs_until_end(now),
                });
            }
        }
        let retired = self.roll(now, auto_reset);
        for (&i, &(_, amount)) in idx.iter().zip(usage) {
            // Cannot fail: amount <= available <= MAX_COUNT - used.
            let _ = self.resources[i].counter.add(amount);
        }
        self.touch_if_counted(usage, now);
        Ok(retired)
    }
    /// Where each resource of `usage` the node has a limit for stands at
    /// `now`: the figures of the RateLimit fields of a usage answer.
    pub fn headroom<'a>(
        &self,
        usage: &[(&'a str, u64)],
        now: i64,
        auto_reset: bool,
    ) -> Headrooms<'a> {
        usage
            .iter()
            .filter_map(|&(name, _)| {
                let i = self.index(name)?;
                let r = &self.resources[i];
                let (period, _) = r.used_at(now, auto_reset);
                Some(Headroom {
                    resource: name,
                    max: r.max,
                    remaining: self.available(i, now, auto_reset),
                    window: WindowSecs::of(period, now, auto_reset),
                })
            })
            .collect()
    }

    /// Tracking increment: counts every amount whatever the limit (all or
    /// nothing only against overflow and unknown resources).
    pub fn increment(
        &mut self,
        usage: &[(&str, u64)],
        now: i64,
        auto_reset: bool,
    ) -> Result<Vec<(ResourceName, Retired)>, Refusal> {
        let idx = self.counted_indices(usage)?;
        for (&i, &(_, amount)) in idx.iter().zip(usage) {
            let r = &self.resources[i];
            let (_, used) = r.used_at(now, auto_reset);
            if used.checked_add(amount).is_none_or(|u| u > MAX_COUNT) {
                return Err(Refusal::Overflow {
                    resource: r.name.to_string(),
                });
            }
        }
        let retired = self.roll(now, auto_reset);
        for (&i, &(_, amount)) in idx.iter().zip(usage) {
            let _ = self.resources[i].counter.add(amount);
        }
        self.touch_if_counted(usage, now);
        Ok(retired)
    }
    /// A usage call of nothing (all amounts 0) changes nothing, so it does
    /// not move `last_updated` either: no row would be flushed to record it,
    /// and a restart must show what memory showed.
    pub(super) fn touch_if_counted(&mut self, usage: &[(&str, u64)], now: i64) {
        if usage.iter().any(|&(_, amount)| amount > 0) {
            self.last_updated = Some(now);
        }
    }
    /// What a strict usage call asks the database to add: for each named
    /// resource its current period, the amount, and the highest total the
    /// row may reach (`max - allocated` when `enforce`, else the counter's
    /// ceiling). Unknown resources and capacities are refused here.
    pub fn plan_strict(
        &self,
        usage: &[(&str, u64)],
        now: i64,
        auto_reset: bool,
        enforce: bool,
    ) -> Result<Vec<StrictItem>, Refusal> {
        let idx = self.counted_indices(usage)?;
        Ok(idx
            .iter()
            .zip(usage)
            .map(|(&i, &(_, amount))| {
                let r = &self.resources[i];
                let (period, _) = r.used_at(now, auto_reset);
                StrictItem {
                    resource: r.name.clone(),
                    period,
                    amount,
                    cap: if enforce {
                        r.max.saturating_sub(self.held(i, now, auto_reset))
                    } else {
                        MAX_COUNT
                    },
                }
            })
            .collect())
    }
    /// Takes the totals the database returned for a strict call: rolls the
    /// counters into `now`'s period and sets each named resource's stored
    /// total (keeping any usage not flushed yet).
    pub fn set_totals(
        &mut self,
        totals: &[(&str, Period, u64)],
        now: i64,
        auto_reset: bool,
    ) -> Vec<(ResourceName, Retired)> {
        let retired = self.roll(now, auto_reset);
        for (name, period, total) in totals {
            if let Some(i) = self.index(name)
                && self.resources[i].counter.period == *period
            {
                self.resources[i].counter.set_stored_total(*total);
            }
        }
        self.last_updated = Some(now);
        retired
    }
    /// Indices of the counted (non-capacity) resources named in `usage`.
    pub(super) fn counted_indices(
        &self,
        usage: &[(&str, u64)],
    ) -> Result<SmallVec<[usize; 4]>, Refusal> {
        let mut idx = SmallVec::new();
        for (name, _) in usage {
            let i = self.index(name).ok_or_else(|| Refusal::UnknownResource {
                resource: (*name).to_owned(),
            })?;
            if self.resources[i].window() == Window::None {
                return Err(Refusal::Capacity {
                    resource: (*name).to_owned(),
                });
            }
            idx.push(i);
        }
        Ok(idx)
    }
    /// Zeroes the current period of every counted resource, removed
    /// limits' counters included (a reset; usage not flushed yet goes too:
    /// the stored rows are zero now and must not receive it later).
    pub fn reset_usage(&mut self, now: i64, auto_reset: bool) -> Vec<(ResourceName, Retired)> {
        let retired = self.roll(now, auto_reset);
        let zero = |r: &mut Resource| {
            if r.window() != Window::None {
                r.counter = Counter {
                    used: 0,
                    unflushed: 0,
                    ..r.counter
                };
            }
        };
        self.resources.iter_mut().for_each(zero);
        if let Some(d) = self.details.as_mut() {
            d.removed.retain(|r| r.used_at(now, auto_reset).1 > 0);
            d.removed.iter_mut().for_each(zero);
        }
        self.last_updated = Some(now);
        retired
    }
    /// Zeroes every counter and claim sum after the node's usage moved to
    /// its parent (a delete): what the node stored is subtracted from its
    /// rows in the same transaction.
    pub fn clear_usage(&mut self) {
        for r in self.resources.iter_mut() {
            r.counter.used = 0;
            r.counter.unflushed = 0;
        }
        self.edit_details(|d| d.removed.clear());
    }
}
