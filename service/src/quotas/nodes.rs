//! Nodes of the v1 API: reads, create and update (`PUT`, allocate), state.

use super::*;

impl Quotas {
    pub fn node(&self, id: &str) -> Option<NodeView> {
        self.counters.view(id)
    }

    /// Whether node (or flat tenant) `id` exists, in any state.
    pub fn contains(&self, id: &str) -> bool {
        self.counters.contains(id)
    }

    /// Nodes sorted by id, at most `limit` of those `visible` with ids after
    /// `after`, and the id to continue after when more follow.
    pub fn list_nodes(
        &self,
        limit: usize,
        after: Option<&str>,
        visible: impl Fn(&str) -> bool,
    ) -> (Vec<NodeView>, Option<String>) {
        let ids = self.counters.ids();
        let start = match after {
            Some(a) => ids.partition_point(|id| id.as_str() <= a),
            None => 0,
        };
        let mut page: Vec<NodeView> = ids[start..]
            .iter()
            .filter(|id| visible(id))
            .filter_map(|id| self.counters.view(id))
            .take(limit + 1)
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = more.then(|| page.last().map(|v| v.id.clone())).flatten();
        (page, next)
    }

    /// Creates or updates a node idempotently. Returns the node and whether
    /// it was created.
    pub async fn put(
        &self,
        actor: &str,
        id: &str,
        spec: NodeSpec,
    ) -> Result<(NodeView, bool), QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        let created = self.put_locked(actor, "put", id, spec).await?;
        let view = self
            .counters
            .view(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))?;
        Ok((view, created))
    }

    /// Creates a child of `parent` (fails if the id exists).
    pub async fn allocate(
        &self,
        actor: &str,
        parent: &str,
        id: &str,
        mut spec: NodeSpec,
    ) -> Result<NodeView, QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        if self
            .counters
            .node(id)
            .is_some_and(|n| n.state != NodeState::Deleted)
        {
            return Err(QuotaError::Conflict {
                kind: Conflict::AlreadyExists,
                message: format!(
                    "quota node {id:?} already exists; use PUT /api/v1/quotas/{id} to change it"
                ),
            });
        }
        spec.parent = Some(parent.to_owned());
        self.put_locked(actor, "allocate", id, spec).await?;
        self.counters
            .view(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))
    }

    /// Create or update, under the write lock. Returns whether it created.
    pub(super) async fn put_locked(
        &self,
        actor: &str,
        action: &str,
        id: &str,
        spec: NodeSpec,
    ) -> Result<bool, QuotaError> {
        let now = self.now();
        let existing = self
            .counters
            .node(id)
            .filter(|n| n.state != NodeState::Deleted);
        if spec.state == Some(NodeState::Deleted) {
            return Err(QuotaError::Invalid(
                "state must be active or suspended; delete with DELETE".into(),
            ));
        }
        match existing {
            None => self
                .create(actor, action, id, spec, now)
                .await
                .map(|()| true),
            Some(old) => self
                .update(actor, action, id, old, spec, now)
                .await
                .map(|()| false),
        }
    }

    pub(super) async fn create(
        &self,
        actor: &str,
        action: &str,
        id: &str,
        spec: NodeSpec,
        now: i64,
    ) -> Result<(), QuotaError> {
        let parent = match &spec.parent {
            // The node being created is not there to be its own parent.
            Some(p) if p == id => return Err(QuotaError::ParentNotFound(p.clone())),
            Some(p) => Some(
                self.counters
                    .node(p)
                    .filter(|n| n.state != NodeState::Deleted)
                    .ok_or_else(|| QuotaError::ParentNotFound(p.clone()))?,
            ),
            None => None,
        };
        let limits = resolve_limits(&spec.limits, parent.as_ref())?;
        if let Some(old) = self.counters.node(id) {
            // The id was deleted: what a deleted root left (its usage of
            // the period, its claims) carries on, so the same rules as for
            // a change of its limits apply.
            let mut alive = old;
            alive.state = NodeState::Active;
            let claimed = self.claimed_resources(id);
            plan_limit_change(&alive, &limits, &claimed, now, self.counters.auto_reset())?;
        }
        let mut node = Node::new(spec.parent.as_deref(), &limits, now);
        node.state = spec.state.unwrap_or(NodeState::Active);
        node.strict = spec.strict.unwrap_or(false);
        node.set_name(spec.name.clone());
        node.set_description(spec.description.clone());
        node.last_updated = Some(now);

        // 1. Reserve the child's limits from the parent.
        if let Some(p) = &spec.parent {
            self.counters.reserve(p, &limits)?;
        }
        // 2. Write it, with the grants it is created with.
        for subject in &spec.admins {
            grants::validate_subject(subject)?;
        }
        let mut ops = node_ops(id, &node, now);
        ops.push(self.audit(actor, action, id, None, Some(node_json(&node))));
        for subject in &spec.admins {
            ops.extend(self.grant_ops(actor, id, subject, Role::Admin));
        }
        if let Err(e) = self.write(&ops).await {
            if let Some(p) = &spec.parent {
                self.counters.unreserve(p, &amounts(&limits));
            }
            return Err(e.into());
        }
        // 3. Make it visible.
        if self.counters.contains(id) {
            // A deleted node comes back. A child's usage was charged to its
            // parent when it was deleted (its counters are zero); a root's
            // stays its own: the counters of this period carry on, so
            // deleting and creating again lifts no limit.
            let auto_reset = self.counters.auto_reset();
            let ended = self.counters.update(id, |n, _, now| {
                let mut old = std::mem::replace(n, node);
                let ended = old.set_limits(&limits, now, auto_reset);
                for r in old.removed() {
                    n.add_removed(r.clone());
                }
                n.resources = old.resources;
                ended
            });
            self.counters.retire(id, ended.unwrap_or_default());
        } else if let Err(node) = self.counters.insert_node(id, node) {
            // A flat increment created the id meanwhile: keep ours, which is
            // what the database now holds.
            self.counters.update(id, |n, _, _| *n = *node);
        }
        if let Some(p) = &spec.parent {
            self.counters.update(p, |n, _, _| n.add_child(id));
        }
        for subject in &spec.admins {
            self.counters.add_grant(id, subject, Role::Admin);
        }
        Ok(())
    }

    pub(super) async fn update(
        &self,
        actor: &str,
        action: &str,
        id: &str,
        old: Node,
        spec: NodeSpec,
        now: i64,
    ) -> Result<(), QuotaError> {
        if spec.parent.as_deref() != old.parent.as_deref() {
            return Err(QuotaError::Conflict {
                kind: Conflict::ParentImmutable,
                message: format!(
                    "the parent of {id:?} is {:?} and cannot change (asked for {:?})",
                    old.parent.as_deref(),
                    spec.parent.as_deref()
                ),
            });
        }
        let parent = match &old.parent {
            Some(p) => Some(
                self.counters
                    .node(p)
                    .ok_or_else(|| QuotaError::ParentNotFound(p.to_string()))?,
            ),
            None => None,
        };
        let limits = resolve_limits(&spec.limits, parent.as_ref())?;
        let auto_reset = self.counters.auto_reset();
        let claimed = self.claimed_resources(id);
        let plan = plan_limit_change(&old, &limits, &claimed, now, auto_reset)?;

        let strict = spec.strict.unwrap_or(old.strict);
        let mut new = old.clone();
        new.state = spec.state.unwrap_or(old.state);
        new.strict = strict;
        new.set_name(spec.name.clone().or(old.name().map(str::to_owned)));
        new.set_description(
            spec.description
                .clone()
                .or(old.description().map(str::to_owned)),
        );
        new.set_limits(&limits, now, auto_reset);
        new.last_updated = Some(now);

        if spec_of(&new) == spec_of(&old) {
            // Nothing to change: no write, no audit entry, no new version
            // (a controller re-applying the same spec costs a lookup).
            return Ok(());
        }
        if strict && !old.strict {
            // From now on the database checks the limit: it must hold every
            // count this process made so far.
            self.flusher.flush_locked().await?;
        }
        // 1. Reserve the growth from the parent (what the node holds past
        //    its old max is held already).
        if let (Some(p), false) = (&old.parent, plan.grow.is_empty()) {
            self.counters.reserve_growth(p, &plan.grow, &plan.held)?;
        }
        // 2. Write it.
        let mut ops = node_ops(id, &new, now);
        ops.push(self.audit(
            actor,
            action,
            id,
            Some(node_json(&old)),
            Some(node_json(&new)),
        ));
        if let Err(e) = self.write(&ops).await {
            if let (Some(p), false) = (&old.parent, plan.grow.is_empty()) {
                self.counters.unreserve(p, &amounts(&plan.grow));
            }
            return Err(e.into());
        }
        // 3. Apply (the node's usage past a lowered max goes on being held
        //    by its parent), then release the shrink.
        let ended = self.counters.update(id, |n, _, now| {
            let ended = n.set_limits(&limits, now, auto_reset);
            n.state = new.state;
            n.strict = new.strict;
            n.set_name(new.name().map(str::to_owned));
            n.set_description(new.description().map(str::to_owned));
            n.last_updated = new.last_updated;
            ended
        });
        self.counters.retire(id, ended.unwrap_or_default());
        if let (Some(p), false) = (&old.parent, plan.shrink.is_empty()) {
            self.counters.unreserve(p, &plan.shrink);
        }
        Ok(())
    }

    /// Changes a node's state (`active` or `suspended`).
    pub async fn set_state(
        &self,
        actor: &str,
        id: &str,
        state: NodeState,
    ) -> Result<NodeView, QuotaError> {
        if state == NodeState::Deleted {
            return Err(QuotaError::Invalid(
                "state must be active or suspended; delete with DELETE".into(),
            ));
        }
        let _serialised = self.flusher.write_lock().await;
        let old = self
            .counters
            .node(id)
            .filter(|n| n.state != NodeState::Deleted)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))?;
        let now = self.now();
        let mut new = old.clone();
        new.state = state;
        new.last_updated = Some(now);
        let mut ops = vec![node_row(id, &new, now)]; // limits are unchanged
        ops.push(self.audit(
            actor,
            "state",
            id,
            Some(json!({"state": old.state.as_str()})),
            Some(json!({"state": state.as_str()})),
        ));
        self.write(&ops).await?;
        self.counters.update(id, |n, _, _| {
            n.state = state;
            n.last_updated = new.last_updated;
        });
        self.counters
            .view(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))
    }
}
