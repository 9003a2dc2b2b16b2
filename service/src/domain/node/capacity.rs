//! A parent's capacity: reservations of children (and their growth),
//! charges of deleted children, claims and releases.

use super::*;

impl Node {
    /// Reserves a child's limits (or the growth of them) from this node:
    /// all or nothing.
    pub fn reserve(
        &mut self,
        wants: &[(String, Limit)],
        now: i64,
        auto_reset: bool,
    ) -> Result<(), ReserveError> {
        self.reserve_growth(wants, |_| 0, now, auto_reset)
    }
    /// [`Node::reserve`] for a child that already holds `held(name)` past
    /// its `max` (its usage beyond a lowered limit): that part is held
    /// already, so only the rest must be available. The child's update
    /// then gives it back, as its usage falls within the larger `max`.
    pub fn reserve_growth(
        &mut self,
        wants: &[(String, Limit)],
        held: impl Fn(&str) -> u64,
        now: i64,
        auto_reset: bool,
    ) -> Result<(), ReserveError> {
        let mut short = Vec::new();
        let mut idx = Vec::with_capacity(wants.len());
        for (name, want) in wants {
            let i = self
                .index(name)
                .ok_or_else(|| ReserveError::MissingResource(name.clone()))?;
            let r = &self.resources[i];
            if r.window() != want.window {
                return Err(ReserveError::WindowMismatch {
                    resource: name.clone(),
                    parent: r.window(),
                    child: want.window,
                });
            }
            let available = self.available(i, now, auto_reset);
            let needed = want.max.saturating_sub(held(name).min(want.max));
            if needed > available {
                short.push(Shortage {
                    resource: name.clone(),
                    requested: needed,
                    available,
                });
            }
            idx.push(i);
        }
        if !short.is_empty() {
            return Err(ReserveError::Short(short));
        }
        for (i, (_, want)) in idx.into_iter().zip(wants) {
            let r = &mut self.resources[i];
            r.allocated = r.allocated.saturating_add(want.max);
        }
        Ok(())
    }
    /// Gives back what [`Node::reserve`] took.
    pub fn unreserve(&mut self, resource: &str, amount: u64) {
        if let Some(i) = self.index(resource) {
            let r = &mut self.resources[i];
            r.allocated = r.allocated.saturating_sub(amount);
        }
    }
    /// Charges usage of a deleted child to this node, if it belongs to this
    /// node's current period (an older period is over and charges nothing).
    pub fn charge(
        &mut self,
        resource: &str,
        period: Period,
        amount: u64,
        now: i64,
        auto_reset: bool,
    ) -> Vec<(ResourceName, Retired)> {
        let retired = self.roll(now, auto_reset);
        if let Some(i) = self.index(resource) {
            let c = &mut self.resources[i].counter;
            if c.period == period || !auto_reset || c.window() == Window::None {
                c.used = c.used.saturating_add(amount).min(MAX_COUNT);
            }
        } else if period.window() != Window::None {
            // This node's limit was removed too: the charge goes to its
            // removed limit's counter (kept while children used it).
            self.edit_details(|d| {
                let found = d
                    .removed
                    .iter_mut()
                    .find(|r| *r.name == *resource && r.window() == period.window());
                match found {
                    Some(r) => {
                        if r.counter.period != period {
                            if auto_reset && period.start() < r.counter.period.start() {
                                return;
                            }
                            r.counter = Counter::new(period);
                        }
                        r.counter.used = r.counter.used.saturating_add(amount).min(MAX_COUNT);
                    }
                    None => {
                        let r = Resource::removed(resource, period, amount.min(MAX_COUNT), None);
                        let pos = d
                            .removed
                            .binary_search_by(|x| x.name.cmp(&r.name))
                            .unwrap_or_else(|p| p);
                        d.removed.insert(pos, r);
                    }
                }
            });
        }
        self.last_updated = Some(now);
        retired
    }
    /// The counter a charge of `resource` in `period` went to (see
    /// [`Node::charge`]), if any.
    pub fn charged_counter(
        &self,
        resource: &str,
        period: Period,
        auto_reset: bool,
    ) -> Option<&Counter> {
        match self.resource(resource) {
            Some(r) => {
                let c = &r.counter;
                let taken = c.window() != Window::None && (c.period == period || !auto_reset);
                taken.then_some(c)
            }
            None => self
                .removed()
                .iter()
                .find(|r| *r.name == *resource && r.counter.period == period)
                .map(|r| &r.counter),
        }
    }
    /// Claims `amount` of a capacity: refused beyond `max - allocated - used`.
    pub fn claim(&mut self, resource: &str, amount: u64, now: i64) -> Result<(), Refusal> {
        let i = self
            .index(resource)
            .ok_or_else(|| Refusal::UnknownResource {
                resource: resource.to_owned(),
            })?;
        if self.resources[i].window() != Window::None {
            return Err(Refusal::NotCapacity {
                resource: resource.to_owned(),
            });
        }
        let available = self.available(i, now, false);
        let r = &mut self.resources[i];
        if amount > available {
            return Err(Refusal::Exhausted {
                resource: resource.to_owned(),
                requested: amount,
                available,
                retry_after_secs: None,
            });
        }
        r.counter.used += amount;
        self.last_updated = Some(now);
        Ok(())
    }
    /// Gives back a claim.
    pub fn release(&mut self, resource: &str, amount: u64, now: i64) {
        if let Some(i) = self.index(resource) {
            let c = &mut self.resources[i].counter;
            c.used = c.used.saturating_sub(amount);
            self.last_updated = Some(now);
        }
    }
}
