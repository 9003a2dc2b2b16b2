//! The request path: consume and increment, their propagation up the
//! tree, the flat API's tenants, the strict path's plan.

use super::*;

// === impl CounterStore: usage (the request path) ===

impl CounterStore {
    /// Atomic check-and-increment on a node (v1 `consume`); with `headroom`,
    /// what is left of each limit counted against, read under the same lock.
    pub fn consume<'a>(
        &self,
        id: &str,
        usage: &[(&'a str, u64)],
        headroom: bool,
    ) -> Result<Headrooms<'a>, UsageError> {
        let names = names_of(usage);
        self.apply_usage(
            id,
            &names,
            true,
            |node, now, auto_reset| node.consume(usage, now, auto_reset),
            |node, now, auto_reset| match headroom {
                true => node.headroom(usage, now, auto_reset),
                false => Headrooms::new(),
            },
        )
    }

    /// Tracking increment on a node: always counts (v1 batch `increment`).
    pub fn increment(&self, id: &str, usage: &[(&str, u64)]) -> Result<(), UsageError> {
        let names = names_of(usage);
        self.apply_usage(
            id,
            &names,
            false,
            |node, now, auto_reset| node.increment(usage, now, auto_reset),
            |_, _, _| (),
        )
    }

    /// What is left of each limit of `usage` on node `id` (after a strict
    /// call, whose totals memory has just taken); empty for an unknown node.
    pub fn headroom<'a>(&self, id: &str, usage: &[(&'a str, u64)]) -> Headrooms<'a> {
        let now = self.now();
        self.nodes
            .get(id)
            .map(|e| e.node.headroom(usage, now, self.auto_reset))
            .unwrap_or_default()
    }

    /// Checks that the node and its ancestors accept usage (and, to
    /// `admit` it, are not overcommitted in one of `names`), then applies
    /// `f` (which changes only `names`) under the node's lock (re-checking
    /// its own state there), reads `after` of the changed node under the
    /// same lock, and sends the change up the tree.
    pub(super) fn apply_usage<T>(
        &self,
        id: &str,
        names: &[&str],
        admit: bool,
        f: impl FnOnce(&mut Node, i64, bool) -> Result<Vec<(ResourceName, Retired)>, Refusal>,
        after: impl FnOnce(&Node, i64, bool) -> T,
    ) -> Result<T, UsageError> {
        let now = self.now();
        // A root has no ancestors to check: one lookup (the common case of
        // flat tenants and top-level quotas). Otherwise the ancestors are
        // read first, without holding this entry's lock (the guard must be
        // dropped before: a shard lock held across check_usable deadlocks).
        let root = self.nodes.get_mut(id).filter(|e| e.node.parent.is_none());
        let mut e = match root {
            Some(e) => e,
            None => {
                self.check_usable(id, if admit { names } else { &[] })?;
                self.nodes
                    .get_mut(id)
                    .ok_or_else(|| UsageError::NotFound(id.to_owned()))?
            }
        };
        accepts_usage(id, e.node.state)?;
        if e.node.strict {
            return Err(UsageError::Strict(id.to_owned()));
        }
        let Some(parent) = e.node.parent.clone() else {
            let retired = f(&mut e.node, now, self.auto_reset)?;
            self.mark_changed(&mut e, id, retired, now);
            return Ok(after(&e.node, now, self.auto_reset));
        };
        let before = shares_of(&e.node, names, now, self.auto_reset);
        let retired = f(&mut e.node, now, self.auto_reset)?;
        self.mark_changed(&mut e, id, retired, now);
        let shares = shares_of(&e.node, names, now, self.auto_reset);
        let out = after(&e.node, now, self.auto_reset);
        drop(e);
        self.propagate(&parent, node::share_of_deltas(names, &before, &shares), now);
        Ok(out)
    }

    /// Applies `f` to an entry under its lock, then sends the change of the
    /// node's shares up the tree (one ancestor at a time, never two locks
    /// held). Every change of a child's usage, limits or state goes
    /// through here or [`CounterStore::apply_usage`].
    pub(super) fn with_entry<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Entry, i64) -> T,
    ) -> Option<T> {
        let now = self.now();
        let mut e = self.nodes.get_mut(id)?;
        // A root holds nothing of anyone (a deleted root created again as
        // a child starts holding with this change).
        let before = match e.node.parent {
            Some(_) => e.node.shares(now, self.auto_reset),
            None => node::Shares::new(),
        };
        let out = f(&mut e, now);
        if let Some(parent) = e.node.parent.clone() {
            let after = e.node.shares(now, self.auto_reset);
            drop(e);
            self.propagate(&parent, node::share_deltas(&before, &after), now);
        }
        Some(out)
    }

    /// Adds a child's share deltas to `parent`'s rollups, and the parent's
    /// own resulting deltas to its parent, up to the root.
    pub(super) fn propagate(&self, parent: &str, mut deltas: ShareDeltas<'_>, now: i64) {
        // One buffer for the ids on the way up (no allocation per level).
        let mut cur = String::with_capacity(64);
        cur.push_str(parent);
        // Depth is bounded by the tree (parents are immutable and exist
        // first, so there is no cycle); the bound only guards.
        for _ in 0..1_000 {
            if deltas.is_empty() {
                return;
            }
            let Some(mut e) = self.nodes.get_mut(cur.as_str()) else {
                return;
            };
            // Only the resources that changed below change here.
            let mut names: SmallVec<[&str; 4]> = SmallVec::new();
            for d in &deltas {
                if !names.contains(&d.name) {
                    names.push(d.name);
                }
            }
            let has_parent = e.node.parent.is_some();
            let before = if has_parent {
                shares_of(&e.node, &names, now, self.auto_reset)
            } else {
                SmallVec::new()
            };
            for d in &deltas {
                e.node.absorb(d, self.auto_reset);
            }
            e.version = self.next_version();
            let (true, Some(next)) = (has_parent, e.node.parent.as_deref()) else {
                return;
            };
            cur.clear();
            cur.push_str(next);
            let after = shares_of(&e.node, &names, now, self.auto_reset);
            drop(e);
            deltas = node::share_of_deltas(&names, &before, &after);
        }
    }

    /// The flat `increment`: counts messages and bytes for `tenant_id`,
    /// creating it as a root node with the default limits if unknown, and
    /// returns the tenant as it stands after the increment.
    pub fn increment_flat(&self, tenant_id: &str, usage: Usage) -> Result<TenantView, UsageError> {
        let now = self.now();
        let mut e = match self.nodes.get_mut(tenant_id) {
            Some(e) => e,
            None => self.nodes.entry(tenant_id.into()).or_insert_with(|| {
                lock(&self.changed).note(tenant_id);
                Box::new(Entry {
                    node: flat_node(self.default_limits, now),
                    extras: None,
                    dirty: false,
                    unsaved: true,
                    version: 0,
                })
            }),
        };
        if e.node.strict {
            return Err(UsageError::Strict(tenant_id.to_owned()));
        }
        // Zero amounts are skipped: a node without a `bandwidth` limit still
        // counts messages (counting zero of something it lacks is no error).
        let pairs = [(MESSAGES, usage.messages), (BANDWIDTH, usage.bytes)];
        let counted: SmallVec<[(&str, u64); 2]> =
            pairs.into_iter().filter(|(_, n)| *n > 0).collect();
        if e.node.parent.is_some() || e.node.state != NodeState::Active {
            // Rare: a v1 node used through the flat API. Its ancestry is
            // checked without holding this entry.
            drop(e);
            let names = names_of(&counted);
            self.apply_usage(
                tenant_id,
                &names,
                false,
                |node, now, auto_reset| node.increment(&counted, now, auto_reset),
                |_, _, _| (),
            )?;
            return self
                .flat(tenant_id)
                .ok_or_else(|| UsageError::NotFound(tenant_id.to_owned()));
        }
        let retired = e.node.increment(&counted, now, self.auto_reset)?;
        self.mark_changed(&mut e, tenant_id, retired, now);
        Ok(flat_view(&e.node, now, self.auto_reset))
    }

    /// What a strict usage call on `id` must add in the database (see
    /// [`Node::plan_strict`]), after checking the node and its ancestors
    /// accept usage.
    pub fn plan_strict(
        &self,
        id: &str,
        usage: &[(&str, u64)],
        enforce: bool,
    ) -> Result<Vec<StrictItem>, UsageError> {
        let names = names_of(usage);
        self.check_usable(id, if enforce { &names } else { &[] })?;
        let e = self
            .nodes
            .get(id)
            .ok_or_else(|| UsageError::NotFound(id.to_owned()))?;
        Ok(e.node
            .plan_strict(usage, self.now(), self.auto_reset, enforce)?)
    }

    /// Records the totals the database returned for a strict call.
    pub fn set_totals(&self, id: &str, totals: &[(&str, Period, u64)]) {
        self.with_entry(id, |e, now| {
            let retired = e.node.set_totals(totals, now, self.auto_reset);
            self.retire_locked(e, id, retired, now);
            e.version = self.next_version();
        });
    }

    /// The flat view of a node, or `None` when unknown.
    pub fn flat(&self, tenant_id: &str) -> Option<TenantView> {
        let now = self.now();
        self.nodes
            .get(tenant_id)
            .filter(|e| e.node.state != NodeState::Deleted)
            .map(|e| flat_view(&e.node, now, self.auto_reset))
    }

    /// The flat view, or a fresh tenant's with the default limits when unknown
    /// (not stored: a check creates nothing).
    pub fn flat_or_default(&self, tenant_id: &str) -> TenantView {
        let now = self.now();
        self.flat(tenant_id).unwrap_or_else(|| {
            flat_view(&flat_node(self.default_limits, now), now, self.auto_reset)
        })
    }

    /// Every node's flat view, sorted by id.
    pub fn flat_list(&self) -> Vec<(String, TenantView)> {
        let now = self.now();
        let mut all: Vec<_> = self
            .nodes
            .iter()
            .filter(|e| e.node.state != NodeState::Deleted)
            .map(|e| {
                (
                    e.key().to_string(),
                    flat_view(&e.node, now, self.auto_reset),
                )
            })
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(super) fn mark_changed(
        &self,
        e: &mut Entry,
        id: &str,
        retired: Vec<(ResourceName, Retired)>,
        now: i64,
    ) {
        self.retire_locked(e, id, retired, now);
        self.set_dirty(e, id);
        e.version = self.next_version();
    }

    /// Marks an entry dirty, noting its id for the flush when it was clean.
    pub(super) fn set_dirty(&self, e: &mut Entry, id: &str) {
        if !e.dirty && !e.unsaved {
            lock(&self.changed).note(id);
        }
        e.dirty = true;
    }

    /// Queues what finished periods had not flushed yet.
    pub(super) fn retire_locked(
        &self,
        e: &mut Entry,
        id: &str,
        retired: Vec<(ResourceName, Retired)>,
        now: i64,
    ) {
        if retired.is_empty() {
            return;
        }
        let last_updated = e.node.last_updated.unwrap_or(now);
        let mut pending = lock(&self.pending);
        for (resource, r) in retired.iter().filter(|(_, r)| r.unflushed > 0) {
            pending.push(UsageDelta {
                node_id: id,
                resource,
                period: r.period,
                delta: r.unflushed,
                last_updated,
                stored_row: r.stored_row,
            });
        }
        drop(pending);
        e.version = self.next_version();
    }
}

/// A flat tenant: a root node with messages per day and bandwidth per month.
pub fn flat_node(limits: Limits, now: i64) -> Node {
    Node::new(
        None,
        &[
            (
                BANDWIDTH.to_owned(),
                Limit {
                    max: limits.bandwidth_limit_bytes,
                    window: Window::Month,
                },
            ),
            (
                MESSAGES.to_owned(),
                Limit {
                    max: limits.message_limit,
                    window: Window::Day,
                },
            ),
        ],
        now,
    )
}

/// The flat view of any node: its `messages` and `bandwidth` resources
/// (a node without one shows limit 0 and no usage for it).
pub fn flat_view(node: &Node, now: i64, auto_reset: bool) -> TenantView {
    let quota = |name: &str, window: Window| match node.resource(name) {
        Some(r) => {
            let (period, used) = r.used_at(now, auto_reset);
            QuotaView {
                period,
                used,
                limit: r.max,
                allocated: r.allocated,
                tracked: true,
            }
        }
        None => QuotaView {
            period: window.period_at(now),
            used: 0,
            limit: 0,
            allocated: 0,
            tracked: false,
        },
    };
    let messages = quota(MESSAGES, Window::Day);
    let bandwidth = quota(BANDWIDTH, Window::Month);
    TenantView {
        limits: Limits {
            message_limit: messages.limit,
            bandwidth_limit_bytes: bandwidth.limit,
        },
        messages,
        bandwidth,
        last_updated: node.last_updated,
    }
}
