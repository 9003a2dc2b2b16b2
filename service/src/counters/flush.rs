//! What a flush takes from the store and gives back: dirty batches,
//! learned row ids, stored totals and nodes other replicas changed.

use super::*;

// === impl CounterStore: flushing ===

impl CounterStore {
    /// Hands over everything that must be written, clearing the dirty marks.
    /// If the write fails, pass the batch to [`CounterStore::requeue`].
    pub fn take_dirty(&self) -> DirtyBatch {
        // Counted before taking the lock: an entry's lock is held while
        // noting it, and `len` takes every shard's.
        let limit = Changed::limit_for(self.nodes.len());
        let (changed, all) = {
            let mut c = lock(&self.changed);
            c.limit = limit;
            (std::mem::take(&mut c.ids), std::mem::take(&mut c.all))
        };
        let mut batch = DirtyBatch {
            new_tenants: std::mem::take(&mut *lock(&self.pending_tenants)),
            children: std::mem::take(&mut *lock(&self.pending_children)),
            usage: std::mem::take(&mut *lock(&self.pending)),
        };
        let now = self.now();
        // An entry that changes from here on is noted for the next flush.
        if all {
            for mut e in self.nodes.iter_mut() {
                let (id, entry) = e.pair_mut();
                self.take_entry(id, entry, &mut batch, now);
            }
        } else {
            for id in &changed {
                if let Some(mut e) = self.nodes.get_mut(&**id) {
                    let (id, entry) = e.pair_mut();
                    self.take_entry(id, entry, &mut batch, now);
                }
            }
        }
        batch
    }

    /// Moves what one entry has for the flush into `batch`.
    pub(super) fn take_entry(&self, id: &str, e: &mut Entry, batch: &mut DirtyBatch, now: i64) {
        if e.unsaved {
            e.unsaved = false;
            let view = flat_view(&e.node, now, self.auto_reset);
            batch.new_tenants.push(NewTenantRow {
                tenant_id: id.to_string(),
                limits: view.limits,
                created_at: e.node.created_at,
            });
        }
        if e.dirty {
            e.dirty = false;
            let last_updated = e.node.last_updated.unwrap_or(now);
            let child = e.node.parent.is_some();
            let mut counted = false;
            for r in e.node.counters_mut() {
                let delta = r.counter.take_unflushed();
                if r.window() == Window::None || delta == 0 {
                    continue; // capacities are written through as claims
                }
                counted = true;
                batch.usage.push(UsageDelta {
                    node_id: id,
                    resource: &r.name,
                    period: r.counter.period,
                    delta,
                    last_updated,
                    stored_row: r.counter.stored_row,
                });
            }
            if child && counted {
                batch.children.push(id.to_owned());
            }
        }
    }

    /// Remembers the ids of rows a flush wrote by key: each counter still
    /// in that row's period addresses it by id from the next flush on.
    pub fn remember_rows(&self, rows: &StoredRows) {
        for (node_id, resource, period, row) in rows.iter() {
            let Some(mut e) = self.nodes.get_mut(node_id) else {
                continue;
            };
            if let Some(r) = e
                .node
                .counters_mut()
                .find(|r| r.name == *resource && r.counter.period == period)
            {
                r.counter.stored_row = Some(row);
            }
        }
    }

    /// Gives back a batch that was certainly not written (its transaction
    /// failed before the commit); the next flush adds its deltas with the
    /// newer ones.
    pub fn requeue(&self, batch: DirtyBatch) {
        lock(&self.pending).append(batch.usage);
        lock(&self.pending_tenants).extend(batch.new_tenants);
        lock(&self.pending_children).extend(batch.children);
    }

    /// Takes the stored totals read back from a shared database: each
    /// counter in that period becomes `total + unflushed` (what other
    /// replicas added shows up here). Rows of periods a counter has left, or
    /// not reached, are history and ignored.
    pub fn apply_totals(&self, totals: &[StoredTotal]) {
        for t in totals {
            self.with_entry(t.node_id.as_str(), |e, now| {
                let retired = e.node.roll(now, self.auto_reset);
                let mut changed = false;
                if let Some(r) = e
                    .node
                    .resources
                    .iter_mut()
                    .find(|r| *r.name == *t.resource && r.window() != Window::None)
                    && r.counter.period.key() == t.period
                {
                    let before = r.counter.used;
                    r.counter.set_stored_total(t.used);
                    changed = r.counter.used != before;
                }
                self.retire_locked(e, &t.node_id, retired, now);
                if changed {
                    e.version = self.next_version();
                }
            });
        }
    }

    /// Takes nodes another replica created or changed (read back from a
    /// shared database): their rows, limits, state, claims and grants replace what
    /// memory holds, usage not flushed yet stays, and the reservations and
    /// children lists of their old and new parents follow. Called under the
    /// write lock, so no local structure change runs meanwhile.
    pub fn sync_nodes(&self, nodes: Vec<LoadedNode>) {
        let now = self.now();
        for loaded in nodes {
            let id = loaded.id.as_str();
            // What the node reserved from its parent before, and now.
            let old = self.nodes.get(id).map(|e| reservation(&e.node));
            let new = reservation(&loaded.node);
            if self.contains(id) {
                let (node, claims, grants) = (loaded.node, loaded.claims, loaded.grants);
                self.with_entry(id, |e, now| {
                    let mut retired = e.node.roll(now, self.auto_reset);
                    let before = e.node.clone();
                    retired.extend(merge_synced(&mut e.node, node));
                    let extras = extras(claims, grants);
                    // A read-back of this replica's own write (or of a
                    // change undone meanwhile) changes nothing: the node
                    // keeps its version, so snapshots do not report it.
                    let changed = e.node != before || e.extras != extras;
                    e.extras = extras;
                    self.retire_locked(e, id, retired, now);
                    if changed {
                        e.version = self.next_version();
                    }
                });
            } else {
                let shares = loaded.node.shares(now, self.auto_reset);
                let parent = loaded.node.parent.clone();
                self.nodes.insert(
                    id.into(),
                    Box::new(Entry {
                        node: loaded.node,
                        extras: extras(loaded.claims, loaded.grants),
                        dirty: false,
                        unsaved: false,
                        version: self.next_version(),
                    }),
                );
                if let Some(p) = parent {
                    self.propagate(&p, node::share_deltas(&[], &shares), now);
                }
            }
            if old.as_ref() == Some(&new) {
                continue;
            }
            if let Some(Some((parent, amounts))) = &old
                && let Some(mut p) = self.nodes.get_mut(parent.as_str())
            {
                for (resource, amount) in amounts {
                    p.node.unreserve(resource, *amount);
                }
                p.node.remove_child(id);
                p.version = self.next_version();
            }
            if let Some((parent, amounts)) = &new
                && let Some(mut p) = self.nodes.get_mut(parent.as_str())
            {
                for (resource, amount) in amounts {
                    if let Some(r) = p.node.resources.iter_mut().find(|r| *r.name == **resource) {
                        r.allocated = r.allocated.saturating_add(*amount);
                    }
                }
                p.node.add_child(id);
                p.version = self.next_version();
            }
        }
    }

    /// Rows waiting in the pending queue (finished periods, failed flushes).
    pub fn pending_rows(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Whether the node still waits for its first flush (a flat tenant
    /// created on first use).
    pub fn is_unsaved(&self, id: &str) -> bool {
        self.nodes.get(id).is_some_and(|e| e.unsaved)
    }
}

/// `node` takes the stored definition `synced`: its counters continue where
/// the resource and window stay the same (keeping unflushed usage), and
/// take the stored usage otherwise; capacities take the stored claims'
/// sum; `allocated` and the children (kept by this store) stay. Returns the
/// unflushed usage of counters that end (a resource removed or its window
/// changed), to be flushed for their period.
pub(super) fn merge_synced(node: &mut Node, synced: Node) -> Vec<(ResourceName, Retired)> {
    let mut ended: Vec<(ResourceName, Retired)> = node
        .resources
        .iter()
        .filter(|old| {
            synced
                .resource(&old.name)
                .is_none_or(|r| r.window() != old.window())
        })
        .map(|old| (old.name.clone(), old.counter))
        .collect();
    ended.retain(|(_, c)| c.unflushed > 0);
    node.set_name(synced.name().map(str::to_owned));
    node.set_description(synced.description().map(str::to_owned));
    let mut resources = synced.resources;
    for r in &mut resources {
        if let Some(old) = node.resource(&r.name) {
            r.allocated = old.allocated;
            if old.window() == r.window() && r.window() != Window::None {
                let stored = if old.counter.period == r.counter.period {
                    r.counter.used
                } else {
                    old.counter.used.saturating_sub(old.counter.unflushed)
                };
                r.counter = old.counter;
                r.counter.set_stored_total(stored);
            }
        }
    }
    node.resources = resources;
    node.parent = synced.parent;
    node.state = synced.state;
    node.strict = synced.strict;
    node.created_at = synced.created_at;
    node.last_updated = node.last_updated.max(synced.last_updated);
    ended
}
