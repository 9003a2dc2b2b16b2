//! A change of a node's limits: which counters carry on.

use super::*;

impl Node {
    /// Sets the node's limits to `limits` (sorted by name), keeping the
    /// counters of limits that stay (their `max` changed), carrying on the
    /// counter of a limit removed earlier in the same period and window,
    /// and keeping the counter of a limit removed now for the rest of its
    /// period when it has usage there. Returns the counters that ended: a
    /// removed or replaced counter with usage not flushed yet (history for
    /// the flush).
    pub fn set_limits(
        &mut self,
        limits: &[(String, Limit)],
        now: i64,
        auto_reset: bool,
    ) -> Vec<(ResourceName, Retired)> {
        let mut ended = Vec::new();
        let mut removed: Vec<Resource> = self
            .details
            .as_mut()
            .map(|d| std::mem::take(&mut d.removed))
            .unwrap_or_default();
        let mut old = std::mem::take(&mut self.resources);
        let mut next = Resources::new();
        for (name, limit) in limits {
            let kept = old
                .iter()
                .position(|r| *r.name == **name && r.window() == limit.window)
                .map(|i| old.remove(i))
                .or_else(|| {
                    removed
                        .iter()
                        .position(|r| *r.name == **name && r.window() == limit.window)
                        .map(|i| removed.remove(i))
                });
            next.push(match kept {
                Some(mut r) => {
                    r.max = limit.max;
                    r
                }
                None => Resource::new(name, *limit, now),
            });
        }
        for mut r in old.into_iter().chain(removed) {
            let replaced = next.iter().any(|n| n.name == r.name);
            let below = self.rollup_at(&r.name, now, auto_reset).0;
            if !replaced && (r.used_at(now, auto_reset).1 > 0 || below > 0) {
                // The rest of its period's usage stays here, refusing more
                // (and its unflushed part with it, for the flush: a reset
                // must be able to zero it).
                r.allocated = 0;
                r.max = 0;
                removed_push(self, r);
            } else if r.counter.unflushed > 0 {
                // A counter that ends hands its unflushed part to the flush.
                ended.push((r.name.clone(), r.counter));
            }
        }
        next.sort_by(|a, b| a.name.cmp(&b.name));
        self.resources = next;
        self.edit_details(|_| {});
        ended
    }
}
