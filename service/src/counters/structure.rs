//! Structure primitives, called by `quotas` under its write lock: insert,
//! update, reserve and release a parent's capacity, stop and charge a
//! deleted node, retire ended counters.

use super::*;

// === impl CounterStore: structure primitives (called under the write lock) ===

impl CounterStore {
    /// Inserts a node that the database already holds. Fails (returning the
    /// node) if the id was taken meanwhile.
    pub fn insert_node(&self, id: &str, node: Node) -> Result<(), Box<Node>> {
        match self.nodes.entry(id.into()) {
            dashmap::Entry::Occupied(_) => Err(Box::new(node)),
            dashmap::Entry::Vacant(v) => {
                v.insert(Box::new(Entry {
                    node,
                    extras: None,
                    dirty: false,
                    unsaved: false,
                    version: self.next_version(),
                }));
                Ok(())
            }
        }
    }

    /// Applies `f` to a node under its lock and records the change.
    pub fn update<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Node, &mut BTreeMap<String, Claim>, i64) -> T,
    ) -> Option<T> {
        self.with_entry(id, |e, now| {
            let Entry { node, extras, .. } = e;
            let x = extras.get_or_insert_with(Box::default);
            let out = f(node, &mut x.claims, now);
            e.tidy();
            e.version = self.next_version();
            out
        })
    }

    /// Like [`CounterStore::update`] for a fallible change: records a change
    /// only when `f` succeeds (a refused claim changes nothing).
    pub fn try_update<T, E>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Node, i64) -> Result<T, E>,
    ) -> Option<Result<T, E>> {
        self.with_entry(id, |e, now| {
            let out = f(&mut e.node, now);
            if out.is_ok() {
                e.version = self.next_version();
            }
            out
        })
    }

    /// Reserves a child's limits from `parent` (all or nothing).
    pub fn reserve(&self, parent: &str, wants: &[(String, Limit)]) -> Result<(), ReserveFailure> {
        self.reserve_growth(parent, wants, &[])
    }

    /// Reserves the growth of a child's limits from `parent`, counting what
    /// the child holds past its old `max` already (`held`: resource and
    /// amount; see [`Node::reserve_growth`]).
    pub fn reserve_growth(
        &self,
        parent: &str,
        wants: &[(String, Limit)],
        held: &[(ResourceName, u64)],
    ) -> Result<(), ReserveFailure> {
        self.with_entry(parent, |e, now| {
            if e.node.state == NodeState::Deleted {
                return Err(ReserveFailure::ParentNotFound(parent.to_owned()));
            }
            let held_of = |name: &str| {
                held.iter()
                    .find(|(n, _)| **n == *name)
                    .map_or(0, |(_, h)| *h)
            };
            e.node
                .reserve_growth(wants, held_of, now, self.auto_reset)?;
            e.version = self.next_version();
            Ok(())
        })
        .unwrap_or_else(|| Err(ReserveFailure::ParentNotFound(parent.to_owned())))
    }

    /// Gives back reservations made by [`CounterStore::reserve`].
    pub fn unreserve(&self, parent: &str, amounts: &[(String, u64)]) {
        if let Some(mut e) = self.nodes.get_mut(parent) {
            for (resource, amount) in amounts {
                e.node.unreserve(resource, *amount);
            }
            e.version = self.next_version();
        }
    }

    /// Stops a child (state `deleted`) and charges its current usage to
    /// its parent in one step at the parent: the parent's subtree usage
    /// never dips while the usage moves. Returns what was charged: per
    /// counted resource with usage, its period and amount.
    pub fn stop_and_charge(&self, id: &str) -> Vec<(ResourceName, Period, u64)> {
        let now = self.now();
        let Some(mut e) = self.nodes.get_mut(id) else {
            return Vec::new();
        };
        let before = e.node.shares(now, self.auto_reset);
        e.node.state = NodeState::Deleted;
        e.version = self.next_version();
        let charged = counted_usage(&e.node, now, self.auto_reset);
        let Some(parent) = e.node.parent.clone() else {
            return charged;
        };
        drop(e);
        let deltas = node::share_deltas(&before, &[]);
        self.with_entry(&parent, |p, now| {
            for d in &deltas {
                p.node.absorb(d, self.auto_reset);
            }
            let mut retired = Vec::new();
            for (resource, period, amount) in &charged {
                retired.extend(
                    p.node
                        .charge(resource, *period, *amount, now, self.auto_reset),
                );
            }
            self.mark_changed(p, &parent, retired, now);
        });
        charged
    }

    /// Queues the unflushed usage of counters that ended (history rows for
    /// the next flush).
    pub fn retire(&self, id: &str, ended: Vec<(ResourceName, Retired)>) {
        if let Some(mut e) = self.nodes.get_mut(id) {
            self.retire_locked(&mut e, id, ended, self.now());
        }
    }

    /// Marks a node's usage dirty (so the next flush writes it).
    pub fn mark_dirty(&self, id: &str) {
        if let Some(mut e) = self.nodes.get_mut(id) {
            self.set_dirty(&mut e, id);
            e.version = self.next_version();
        }
    }
}
