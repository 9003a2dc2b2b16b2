//! Deleting a node: its usage and claims move to its parent.

use super::*;

impl Quotas {
    /// Soft-deletes a node: refused while it has children; its unused limits
    /// return to the parent, its current usage stays charged to the parent,
    /// its claims move to the parent.
    pub async fn delete(&self, actor: &str, id: &str) -> Result<NodeView, QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        let old = self
            .counters
            .node(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))?;
        if old.state == NodeState::Deleted {
            return self
                .counters
                .view(id)
                .ok_or_else(|| QuotaError::NotFound(id.to_owned()));
        }
        if !old.children().is_empty() {
            return Err(QuotaError::Conflict {
                kind: Conflict::HasChildren,
                message: format!(
                    "{id:?} has children and cannot be deleted: {}",
                    old.children()
                        .iter()
                        .map(|c| c.as_ref())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let claims = self.counters.claims(id).unwrap_or_default();
        if let Some(p) = &old.parent {
            let parent_claims = self.counters.claims(p).unwrap_or_default();
            if let Some(rid) = claims.keys().find(|rid| parent_claims.contains_key(*rid)) {
                return Err(QuotaError::Conflict {
                    kind: Conflict::ClaimIdTaken,
                    message: format!(
                        "claim {rid:?} would move to the parent {p:?}, which holds a claim with the same resource_id; release one first"
                    ),
                });
            }
        }
        let now = self.now();
        let auto_reset = self.counters.auto_reset();
        if old.parent.is_some() && !crate::counters::counted_usage(&old, now, auto_reset).is_empty()
        {
            // The usage moves from the node's rows to its parent's: every
            // part of it must be in those rows or in the counters, not in
            // a queue between them (a removed limit's last deltas).
            self.flusher.flush_locked().await?;
        }

        // 1. Stop usage of the node; charge its current usage to the parent
        //    (in one step there, so the parent's subtree usage never dips).
        let charged = if old.parent.is_some() {
            self.counters.stop_and_charge(id)
        } else {
            self.counters
                .update(id, |n, _, _| n.state = NodeState::Deleted);
            Vec::new()
        };
        // Read the child's counters after usage is stopped: nothing moves now.
        let stopped = self.counters.node(id).unwrap_or_else(|| old.clone());

        // 2. Write it: the node, its claims re-homed, the parent's usage.
        let mut deleted = old.clone();
        deleted.state = NodeState::Deleted;
        deleted.last_updated = Some(now);
        let mut ops = vec![node_row(id, &deleted, now)];
        if let Some(p) = &old.parent {
            ops.push(WriteOp::MoveClaims {
                from: id.to_owned(),
                to: p.to_string(),
            });
            // The node's rows of the period move to the parent's: what
            // they hold when this transaction runs (other replicas' flushed
            // counts too) plus this process's part not flushed yet (dropped
            // with the node's counters below). So a node created again
            // under this id starts from zero, after a restart too. In
            // memory the charge is not "unflushed": this write stores it.
            // Only what `charge` took: the parent's current period.
            let parent_now = self.counters.node(p);
            let rows: Vec<UsageRow> = stopped
                .counted()
                .filter_map(|r| {
                    let (period, _) = r.used_at(now, auto_reset);
                    parent_now
                        .as_ref()?
                        .charged_counter(&r.name, period, auto_reset)?;
                    (period == r.counter.period).then(|| UsageRow {
                        node_id: id.to_owned(),
                        resource: r.name.clone(),
                        period,
                        used: r.counter.unflushed,
                        last_updated: now,
                    })
                })
                .collect();
            if !rows.is_empty() {
                ops.push(WriteOp::MoveUsage {
                    to: p.to_string(),
                    rows,
                });
            }
            // The parent changed (capacity back, claims, usage) even when
            // no usage row did.
            ops.push(WriteOp::Touch {
                node_id: p.to_string(),
                at: now,
            });
        }
        ops.push(self.audit(actor, "delete", id, Some(node_json(&old)), Some(json!({"state": "deleted", "charged_to_parent": charged.iter().map(|(r, _, u)| json!({"resource": r.as_ref(), "used": u})).collect::<Vec<_>>()}))));
        if let Err(e) = self.write(&ops).await {
            // Back in the reverse order: the node's usage counts again
            // before the parent's charge goes (for a moment both count).
            self.counters.update(id, |n, _, _| n.state = old.state);
            if let Some(p) = &old.parent {
                self.counters.update(p, |n, _, _| {
                    for (resource, _, amount) in &charged {
                        n.release(resource, *amount, now);
                    }
                });
            }
            return Err(e.into());
        }

        // 3. Return the child's limits to the parent; its claims move there.
        if let Some(p) = &old.parent {
            let limits: Vec<(String, u64)> = old
                .resources
                .iter()
                .map(|r| (r.name.to_string(), r.max))
                .collect();
            // `last_updated` is the time the rows above were written with,
            // so memory and the database agree (after a restart too).
            self.counters.update(p, |n, parent_claims, _| {
                for (resource, max) in &limits {
                    n.unreserve(resource, *max);
                }
                for (rid, c) in &claims {
                    if let Some(r) = n.resources.iter_mut().find(|r| *r.name == *c.resource) {
                        r.counter.used = r.counter.used.saturating_add(c.amount);
                    }
                    parent_claims.insert(rid.clone(), c.clone());
                }
                n.remove_child(id);
                n.last_updated = Some(now);
            });
            self.counters.mark_dirty(p);
            self.counters.update(id, |n, c, _| {
                // The claims moved to the parent, the usage was charged to
                // it: nothing is left here.
                c.clear();
                n.clear_usage();
                n.last_updated = deleted.last_updated;
            });
        }
        self.counters
            .view(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))
    }
}
