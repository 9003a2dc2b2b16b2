//! The quota service's operations, independent of HTTP.
//!
//! ```text
//!   http handlers ──▶ Quotas ──▶ CounterStore (memory, every call)
//!                        └─────▶ Flusher lock ──▶ Store (write-through ops, flushes)
//! ```
//!
//! Usage (`increment`, `consume`, `check`, reads) touches memory only.
//! Everything else is written through, under the flusher's lock (so the
//! database sees changes in the order memory does), in three steps:
//!
//! 1. take what must be reserved in memory first (a parent's capacity for a
//!    new or growing child, a claim, a stop of usage on delete): changes that
//!    only ever make less available, so no concurrent usage call can slip
//!    past a limit meanwhile;
//! 2. write the rows and the audit record in one transaction;
//! 3. finish in memory (create, shrink, release); if step 2 failed, undo
//!    step 1 instead and answer `store_unavailable`: nothing changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::counters::{CounterStore, NodeView, ReserveFailure, UsageError};
use crate::domain::limit_change::{LimitChangeError, plan_limit_change};
use crate::domain::node::{Limit, Node, NodeState, Refusal, ReserveError, Shortage};
use crate::domain::resource::{BANDWIDTH, MESSAGES, builtin_window, validate_resource_name};
use crate::domain::tenant::{Limits, TenantView, Usage};
use crate::domain::window::{Period, Window};
use crate::flush::{FlushHealth, FlushReport, Flusher};
use crate::persistence::{
    AuditEntry, AuditRecord, GrantRow, Store, StoreError, StrictAdd, WriteOp,
};
use crate::rows::{Claim, UsageRow};

/// A change of flat limits; `None` keeps the current (or default) value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsUpdate {
    pub message_limit: Option<u64>,
    pub bandwidth_limit_bytes: Option<u64>,
}

/// A limit as a caller asks for it: the window may be left to the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    pub max: u64,
    pub window: Option<Window>,
}

/// The desired state of a node (`PUT /api/v1/quotas/{id}`, allocate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSpec {
    pub parent: Option<String>,
    pub limits: BTreeMap<String, LimitSpec>,
    /// `active` or `suspended`; `None` keeps the current one (active if new).
    pub state: Option<NodeState>,
    /// Count usage in the database, exactly across replicas (see
    /// `persistence::flush`); `None` keeps the current setting (off if new).
    pub strict: Option<bool>,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// A capacity claim request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSpec {
    pub resource: String,
    pub resource_id: String,
    pub amount: u64,
    pub reason: String,
}

/// Roles a grant can give.
pub const ROLES: [&str; 3] = ["reader", "reporter", "admin"];

/// Which state a request conflicts with (the API answers `409` with the
/// matching code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    AlreadyExists,
    ParentImmutable,
    HasChildren,
    WindowInUse,
    ResourceInUse,
    ClaimConflict,
    ClaimNotFound,
    GrantNotFound,
    StrictNode,
    DoesNotFit,
}

/// Why an operation was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("no quota node {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("parent {0:?} does not exist")]
    ParentNotFound(String),
    #[error("{message}")]
    DoesNotFit {
        message: String,
        shortages: Vec<Shortage>,
    },
    #[error("{message}")]
    Conflict { kind: Conflict, message: String },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UsageError> for QuotaError {
    fn from(e: UsageError) -> Self {
        match e {
            UsageError::NotFound(id) => QuotaError::NotFound(id),
            UsageError::Refused(r) => QuotaError::Refused(r),
            UsageError::Strict(id) => QuotaError::Conflict {
                kind: Conflict::StrictNode,
                message: format!("quota node {id:?} counts in the database"),
            },
        }
    }
}

impl From<LimitChangeError> for QuotaError {
    fn from(e: LimitChangeError) -> Self {
        let kind = match e {
            LimitChangeError::WindowInUse { .. } => Conflict::WindowInUse,
            LimitChangeError::ResourceInUse { .. } => Conflict::ResourceInUse,
        };
        QuotaError::Conflict {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<ReserveFailure> for QuotaError {
    fn from(e: ReserveFailure) -> Self {
        match e {
            ReserveFailure::ParentNotFound(p) => QuotaError::ParentNotFound(p),
            ReserveFailure::DoesNotFit(ReserveError::Short(shortages)) => QuotaError::DoesNotFit {
                message: format!(
                    "the limits do not fit in the parent: {}",
                    crate::domain::node::describe_shortages(&shortages)
                ),
                shortages,
            },
            ReserveFailure::DoesNotFit(e) => QuotaError::Conflict {
                kind: Conflict::DoesNotFit,
                message: e.to_string(),
            },
        }
    }
}

/// The service's state and operations.
#[derive(Debug)]
pub struct Quotas {
    counters: Arc<CounterStore>,
    db: Store,
    flusher: Arc<Flusher>,
    /// Identifies this process: a new value means the service restarted (the
    /// operator re-pushes its specs when it sees one).
    instance_id: String,
}

// === impl Quotas: lifecycle and reads ===

impl Quotas {
    /// Opens the database named by the configuration and loads every node.
    pub async fn open(config: &Config, clock: SharedClock) -> Result<Self, StoreError> {
        let db = Store::open(&config.database).await?;
        let defaults = Limits {
            message_limit: config.default_message_limit,
            bandwidth_limit_bytes: config.default_bandwidth_limit_bytes,
        };
        let now = clock.now();
        let counters = Arc::new(CounterStore::with_capacity(
            clock,
            defaults,
            config.enable_auto_reset,
            db.node_count().await?,
        ));
        // Each page goes into the store as soon as it is built, while the
        // next one is read.
        let (version, loading) = db.load_into(now, counters.loading()).await?;
        loading.finish();
        let instance_id = format!("{:x}-{:x}", std::process::id(), now_nanos());
        let flusher = Arc::new(Flusher::new(
            counters.clone(),
            db.clone(),
            instance_id.clone(),
            version,
        ));
        Ok(Quotas {
            counters,
            db,
            flusher,
            instance_id,
        })
    }

    pub fn tenant_count(&self) -> usize {
        self.counters.len()
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn now(&self) -> i64 {
        self.counters.now()
    }

    /// Flushes dirty counters now.
    pub async fn flush(&self) -> Result<FlushReport, StoreError> {
        self.flusher.flush().await
    }

    /// Ready to take traffic that needs the store: it answers a ping within
    /// two seconds and the last write to it succeeded. `Err` says why not.
    pub async fn ready(&self) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(2), self.db.ping()).await {
            Err(_) => return Err("the database did not answer within 2 s".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(())) => {}
        }
        let h = self.flusher.health();
        if h.degraded {
            return Err(format!(
                "the last write failed: {}",
                h.last_error.unwrap_or_default()
            ));
        }
        Ok(())
    }

    pub fn flush_health(&self) -> FlushHealth {
        self.flusher.health()
    }

    pub fn flush_stats(&self) -> crate::flush::FlushStats {
        self.flusher.stats()
    }

    pub fn pending_rows(&self) -> usize {
        self.counters.pending_rows()
    }

    /// Starts the periodic flusher.
    pub fn spawn_flusher(
        &self,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        self.flusher.clone().spawn_periodic(interval, stop)
    }

    /// The database (tests and tools read it directly).
    pub fn database(&self) -> &Store {
        &self.db
    }

    /// The resources a node holds claims of (a claim of nothing too).
    fn claimed_resources(&self, id: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .counters
            .claims(id)
            .unwrap_or_default()
            .into_values()
            .map(|c| c.resource)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Writes `ops` in one transaction, recording the store's health.
    async fn write(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        match self.db.apply(ops).await {
            Ok(()) => {
                self.flusher.record_success();
                Ok(())
            }
            Err(e) => {
                self.flusher.record_failure(&e);
                Err(e)
            }
        }
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        node_id: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> WriteOp {
        WriteOp::Audit(AuditRecord {
            ts: self.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            node_id: node_id.to_owned(),
            before,
            after,
        })
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

// === impl Quotas: the flat API ===

impl Quotas {
    /// Counts usage (always) and returns the tenant after it. Awaits only
    /// for a strict node.
    pub async fn increment(&self, tenant_id: &str, usage: Usage) -> Result<TenantView, QuotaError> {
        match self.counters.increment_flat(tenant_id, usage) {
            Err(UsageError::Strict(_)) => {
                let pairs = [(MESSAGES, usage.messages), (BANDWIDTH, usage.bytes)];
                let counted: Vec<(&str, u64)> = pairs.into_iter().filter(|(_, n)| *n > 0).collect();
                self.usage_strict(tenant_id, &counted, false).await?;
                self.counters
                    .flat(tenant_id)
                    .ok_or_else(|| QuotaError::NotFound(tenant_id.to_owned()))
            }
            other => Ok(other?),
        }
    }

    /// The tenant (or an unknown tenant's defaults). Changes nothing.
    pub fn check(&self, tenant_id: &str) -> TenantView {
        self.counters.flat_or_default(tenant_id)
    }

    pub fn get(&self, tenant_id: &str) -> Option<TenantView> {
        self.counters.flat(tenant_id)
    }

    pub fn list(&self) -> Vec<(String, TenantView)> {
        self.counters.flat_list()
    }

    /// Sets the `messages` and/or `bandwidth` limits of a tenant (created as
    /// a root node with the default limits if unknown), written through.
    pub async fn set_limits(
        &self,
        actor: &str,
        tenant_id: &str,
        update: LimitsUpdate,
    ) -> Result<TenantView, QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        let defaults = self.counters.default_limits();
        let mut spec = match self.counters.node(tenant_id) {
            Some(n) if n.state != NodeState::Deleted => spec_of(&n),
            _ => NodeSpec {
                limits: [
                    (
                        MESSAGES.to_owned(),
                        LimitSpec {
                            max: defaults.message_limit,
                            window: Some(Window::Day),
                        },
                    ),
                    (
                        BANDWIDTH.to_owned(),
                        LimitSpec {
                            max: defaults.bandwidth_limit_bytes,
                            window: Some(Window::Month),
                        },
                    ),
                ]
                .into(),
                ..NodeSpec::default()
            },
        };
        if let Some(m) = update.message_limit {
            spec.limits.insert(
                MESSAGES.to_owned(),
                LimitSpec {
                    max: m,
                    window: Some(Window::Day),
                },
            );
        }
        if let Some(b) = update.bandwidth_limit_bytes {
            spec.limits.insert(
                BANDWIDTH.to_owned(),
                LimitSpec {
                    max: b,
                    window: Some(Window::Month),
                },
            );
        }
        self.put_locked(actor, "limits", tenant_id, spec).await?;
        self.counters
            .flat(tenant_id)
            .ok_or_else(|| QuotaError::NotFound(tenant_id.to_owned()))
    }

    /// Zeroes the current periods of every counted resource of a node,
    /// written through. `Ok(None)` for an unknown node.
    pub async fn reset(
        &self,
        actor: &str,
        tenant_id: &str,
    ) -> Result<Option<TenantView>, QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        let Some(node) = self
            .counters
            .node(tenant_id)
            .filter(|n| n.state != NodeState::Deleted)
        else {
            return Ok(None);
        };
        let now = self.now();
        let auto_reset = self.counters.auto_reset();
        let rows = usage_rows(tenant_id, &node, now, auto_reset, true);
        let before = usage_json(&node, now, auto_reset);
        let mut ops = Vec::new();
        if self.counters.is_unsaved(tenant_id) {
            // A flat tenant not flushed yet: its row must exist before its audit.
            ops.extend(node_ops(tenant_id, &node, now));
        }
        ops.push(WriteOp::Usage(rows));
        ops.push(self.audit(actor, "reset", tenant_id, Some(before), None));
        self.write(&ops).await?;
        let retired = self
            .counters
            .update(tenant_id, |n, _, now| n.reset_usage(now, auto_reset));
        self.counters.retire(tenant_id, retired.unwrap_or_default());
        self.counters.mark_dirty(tenant_id);
        Ok(self.counters.flat(tenant_id))
    }
}

// === impl Quotas: the v1 API ===

impl Quotas {
    pub fn node(&self, id: &str) -> Option<NodeView> {
        self.counters.view(id)
    }

    /// Nodes sorted by id, at most `limit` of them with ids after `after`.
    pub fn list_nodes(&self, limit: usize, after: Option<&str>) -> (Vec<NodeView>, Option<String>) {
        let ids = self.counters.ids();
        let start = match after {
            Some(a) => ids.partition_point(|id| id.as_str() <= a),
            None => 0,
        };
        let page: Vec<NodeView> = ids[start..]
            .iter()
            .take(limit)
            .filter_map(|id| self.counters.view(id))
            .collect();
        let next = (start + limit < ids.len())
            .then(|| page.last().map(|v| v.id.clone()))
            .flatten();
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
    async fn put_locked(
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

    async fn create(
        &self,
        actor: &str,
        action: &str,
        id: &str,
        spec: NodeSpec,
        now: i64,
    ) -> Result<(), QuotaError> {
        let parent = match &spec.parent {
            Some(p) if p == id => {
                return Err(QuotaError::Invalid(
                    "a node cannot be its own parent".into(),
                ));
            }
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
        // 2. Write it.
        let mut ops = node_ops(id, &node, now);
        ops.push(self.audit(actor, action, id, None, Some(node_json(&node))));
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
        Ok(())
    }

    async fn update(
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
            n.last_updated = Some(now);
            ended
        });
        self.counters.retire(id, ended.unwrap_or_default());
        if let (Some(p), false) = (&old.parent, plan.shrink.is_empty()) {
            self.counters.unreserve(p, &plan.shrink);
        }
        Ok(())
    }

    /// Atomic check-and-increment over every resource in `usage`. Awaits
    /// only for a strict node.
    pub async fn consume(&self, id: &str, usage: &[(&str, u64)]) -> Result<(), QuotaError> {
        match self.counters.consume(id, usage) {
            Err(UsageError::Strict(_)) => self.usage_strict(id, usage, true).await,
            other => Ok(other?),
        }
    }

    /// Tracking increment over every resource in `usage` (batch). Awaits
    /// only for a strict node.
    pub async fn increment_node(&self, id: &str, usage: &[(&str, u64)]) -> Result<(), QuotaError> {
        match self.counters.increment(id, usage) {
            Err(UsageError::Strict(_)) => self.usage_strict(id, usage, false).await,
            other => Ok(other?),
        }
    }

    /// Usage of a strict node: added in the database, checked against
    /// `max - allocated` in the same statement when `enforce`; memory then
    /// takes the totals the database returned.
    async fn usage_strict(
        &self,
        id: &str,
        usage: &[(&str, u64)],
        enforce: bool,
    ) -> Result<(), QuotaError> {
        let items = self.counters.plan_strict(id, usage, enforce)?;
        let adds: Vec<StrictAdd> = items
            .iter()
            .map(|i| StrictAdd {
                resource: i.resource.to_string(),
                period: i.period,
                amount: i.amount,
                cap: i.cap,
            })
            .collect();
        let now = self.now();
        match self.db.add_within(id, &adds, now).await {
            Err(e) => {
                self.flusher.record_failure(&e);
                Err(e.into())
            }
            Ok(Err(refused)) => {
                let period = items
                    .iter()
                    .find(|i| *i.resource == *refused.resource)
                    .map(|i| i.period);
                if enforce {
                    Err(Refusal::Exhausted {
                        resource: refused.resource,
                        requested: refused.requested,
                        available: refused.available,
                        retry_after_secs: period.and_then(|p| p.secs_until_end(now)),
                    }
                    .into())
                } else {
                    Err(Refusal::Overflow {
                        resource: refused.resource,
                    }
                    .into())
                }
            }
            Ok(Ok(totals)) => {
                let totals: Vec<(&str, Period, u64)> = items
                    .iter()
                    .zip(totals)
                    .map(|(i, t)| (&*i.resource, i.period, t))
                    .collect();
                self.counters.set_totals(id, &totals);
                Ok(())
            }
        }
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
        self.counters.update(id, |n, _, now| {
            n.state = state;
            n.last_updated = Some(now);
        });
        self.counters
            .view(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))
    }

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
                    kind: Conflict::ClaimConflict,
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
            self.counters.update(p, |n, parent_claims, now| {
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
            self.counters.update(id, |n, c, now| {
                // The claims moved to the parent, the usage was charged to
                // it: nothing is left here.
                c.clear();
                n.clear_usage();
                n.last_updated = Some(now);
            });
        }
        self.counters
            .view(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))
    }

    /// Claims capacity; idempotent per `resource_id` (the same claim again
    /// answers as the first time). Returns the claim and whether it is new.
    pub async fn claim(
        &self,
        actor: &str,
        id: &str,
        spec: ClaimSpec,
    ) -> Result<(Claim, bool), QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        self.counters.check_usable(id, &[])?;
        if let Some(existing) = self
            .counters
            .claims(id)
            .and_then(|c| c.get(&spec.resource_id).cloned())
        {
            if existing.resource == spec.resource && existing.amount == spec.amount {
                return Ok((existing, false));
            }
            return Err(QuotaError::Conflict {
                kind: Conflict::ClaimConflict,
                message: format!(
                    "resource_id {:?} already claims {} of {:?}; release it before claiming something else under that id",
                    spec.resource_id, existing.amount, existing.resource
                ),
            });
        }
        self.counters.check_usable(id, &[&spec.resource])?;
        let now = self.now();
        // 1. Take the capacity.
        self.counters
            .try_update(id, |n, now| n.claim(&spec.resource, spec.amount, now))
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))??;
        let claim = Claim {
            resource: spec.resource.clone(),
            amount: spec.amount,
            reason: spec.reason.clone(),
            created_at: now,
        };
        // 2. Write it.
        let ops = [
            WriteOp::Touch { node_id: id.to_owned(), at: now },
            WriteOp::InsertClaim { node_id: id.to_owned(), resource_id: spec.resource_id.clone(), claim: claim.clone() },
            self.audit(actor, "claim", id, None, Some(json!({"resource_id": spec.resource_id, "resource": spec.resource, "amount": spec.amount, "reason": spec.reason}))),
        ];
        if let Err(e) = self.write(&ops).await {
            self.counters
                .update(id, |n, _, now| n.release(&spec.resource, spec.amount, now));
            return Err(e.into());
        }
        // 3. Record it.
        self.counters.update(id, |_, claims, _| {
            claims.insert(spec.resource_id.clone(), claim.clone())
        });
        Ok((claim, true))
    }

    /// Releases a claim.
    pub async fn release(
        &self,
        actor: &str,
        id: &str,
        resource_id: &str,
    ) -> Result<Claim, QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        let claims = self
            .counters
            .claims(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))?;
        let claim = claims.get(resource_id).cloned().ok_or_else(|| QuotaError::Conflict {
            kind: Conflict::ClaimNotFound,
            message: format!("{id:?} holds no claim {resource_id:?} (claims of a deleted node move to its parent)"),
        })?;
        let ops = [
            WriteOp::Touch { node_id: id.to_owned(), at: self.now() },
            WriteOp::DeleteClaim { node_id: id.to_owned(), resource_id: resource_id.to_owned() },
            self.audit(actor, "release", id, Some(json!({"resource_id": resource_id, "resource": claim.resource, "amount": claim.amount, "reason": claim.reason})), None),
        ];
        self.write(&ops).await?;
        self.counters.update(id, |n, claims, now| {
            claims.remove(resource_id);
            n.release(&claim.resource, claim.amount, now);
        });
        Ok(claim)
    }

    /// Stores a grant (enforced by the access-control layer).
    pub async fn grant(
        &self,
        actor: &str,
        id: &str,
        subject: &str,
        role: &str,
    ) -> Result<bool, QuotaError> {
        validate_grant(subject, role)?;
        let _serialised = self.flusher.write_lock().await;
        self.counters
            .node(id)
            .filter(|n| n.state != NodeState::Deleted)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))?;
        let exists = self
            .db
            .grants(id)
            .await?
            .iter()
            .any(|g| g.subject == subject && g.role == role);
        if exists {
            return Ok(false);
        }
        let ops = [
            WriteOp::InsertGrant {
                node_id: id.to_owned(),
                subject: subject.to_owned(),
                role: role.to_owned(),
                created_at: self.now(),
            },
            self.audit(
                actor,
                "grant",
                id,
                None,
                Some(json!({"subject": subject, "role": role})),
            ),
        ];
        self.write(&ops).await?;
        Ok(true)
    }

    /// Removes a grant.
    pub async fn revoke(
        &self,
        actor: &str,
        id: &str,
        subject: &str,
        role: &str,
    ) -> Result<(), QuotaError> {
        validate_grant(subject, role)?;
        let _serialised = self.flusher.write_lock().await;
        if !self.counters.contains(id) {
            return Err(QuotaError::NotFound(id.to_owned()));
        }
        let exists = self
            .db
            .grants(id)
            .await?
            .iter()
            .any(|g| g.subject == subject && g.role == role);
        if !exists {
            return Err(QuotaError::Conflict {
                kind: Conflict::GrantNotFound,
                message: format!("{id:?} has no grant of role {role:?} to {subject:?}"),
            });
        }
        let ops = [
            WriteOp::DeleteGrant {
                node_id: id.to_owned(),
                subject: subject.to_owned(),
                role: role.to_owned(),
            },
            self.audit(
                actor,
                "revoke",
                id,
                Some(json!({"subject": subject, "role": role})),
                None,
            ),
        ];
        self.write(&ops).await?;
        Ok(())
    }

    pub async fn grants(&self, id: &str) -> Result<Vec<GrantRow>, QuotaError> {
        if !self.counters.contains(id) {
            return Err(QuotaError::NotFound(id.to_owned()));
        }
        Ok(self.db.grants(id).await?)
    }

    /// The audit trail of a node, newest first.
    pub async fn audit_log(
        &self,
        id: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, QuotaError> {
        if !self.counters.contains(id) {
            return Err(QuotaError::NotFound(id.to_owned()));
        }
        Ok(self.db.audit_page(id, limit, before).await?)
    }

    /// Nodes changed since version `since`, and the version to ask from next.
    pub fn snapshot(&self, since: u64) -> (u64, Vec<NodeView>) {
        self.counters.changed_since(since)
    }
}

/// The spec that reproduces a node.
fn spec_of(n: &Node) -> NodeSpec {
    NodeSpec {
        parent: n.parent.as_deref().map(str::to_owned),
        limits: n
            .resources
            .iter()
            .map(|r| {
                (
                    r.name.to_string(),
                    LimitSpec {
                        max: r.max,
                        window: Some(r.window()),
                    },
                )
            })
            .collect(),
        state: Some(n.state),
        strict: Some(n.strict),
        name: n.name().map(str::to_owned),
        description: n.description().map(str::to_owned),
    }
}

/// Checks resource names and windows; a missing window comes from the
/// parent's limit of the same resource (or the built-in window).
fn resolve_limits(
    limits: &BTreeMap<String, LimitSpec>,
    parent: Option<&Node>,
) -> Result<Vec<(String, Limit)>, QuotaError> {
    let mut out = Vec::with_capacity(limits.len());
    for (name, spec) in limits {
        validate_resource_name(name).map_err(|e| QuotaError::Invalid(e.to_string()))?;
        if spec.max > crate::domain::counter::MAX_COUNT {
            return Err(QuotaError::Invalid(format!(
                "max of {name:?} is {}; the maximum is {}",
                spec.max,
                crate::domain::counter::MAX_COUNT
            )));
        }
        let inherited = parent.and_then(|p| p.resource(name)).map(|r| r.window());
        let window = match (spec.window, builtin_window(name), inherited) {
            (Some(w), Some(b), _) if w != b => {
                return Err(QuotaError::Invalid(format!(
                    "{name:?} is built in with window {b}; it cannot have window {w}"
                )));
            }
            (Some(w), _, _) => w,
            (None, Some(b), _) => b,
            (None, None, Some(w)) => w,
            (None, None, None) => {
                return Err(QuotaError::Invalid(format!(
                    "{name:?} needs a window (minute, hour, day, month or none){}",
                    if parent.is_some() {
                        ": the parent has no limit for it to inherit"
                    } else {
                        ""
                    }
                )));
            }
        };
        out.push((
            name.clone(),
            Limit {
                max: spec.max,
                window,
            },
        ));
    }
    Ok(out)
}

fn amounts(limits: &[(String, Limit)]) -> Vec<(String, u64)> {
    limits.iter().map(|(n, l)| (n.clone(), l.max)).collect()
}

/// The node's row (no limits).
fn node_row(id: &str, n: &Node, now: i64) -> WriteOp {
    WriteOp::UpsertNode {
        id: id.to_owned(),
        parent: n.parent.as_deref().map(str::to_owned),
        state: n.state,
        strict: n.strict,
        name: n.name().map(str::to_owned),
        description: n.description().map(str::to_owned),
        created_at: n.created_at,
        updated_at: now,
    }
}

/// The node row and its limits.
fn node_ops(id: &str, n: &Node, now: i64) -> Vec<WriteOp> {
    vec![
        node_row(id, n, now),
        WriteOp::ReplaceLimits {
            node_id: id.to_owned(),
            limits: n
                .resources
                .iter()
                .map(|r| (r.name.to_string(), r.limit()))
                .collect(),
        },
    ]
}

/// Usage rows of a node's counted resources at `now` (with `used` replaced
/// by `zero` when resetting).
fn usage_rows(id: &str, n: &Node, now: i64, auto_reset: bool, zero: bool) -> Vec<UsageRow> {
    n.counted_usage(now, auto_reset)
        .map(|(resource, period, used)| UsageRow {
            node_id: id.to_owned(),
            resource,
            period,
            used: if zero { 0 } else { used },
            last_updated: now,
        })
        .collect()
}

/// A node's spec as audit JSON.
fn node_json(n: &Node) -> serde_json::Value {
    let limits: serde_json::Map<String, serde_json::Value> = n
        .resources
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                json!({"max": r.max, "window": r.window().as_str()}),
            )
        })
        .collect();
    json!({
        "parent": n.parent.as_deref(),
        "state": n.state.as_str(),
        "strict": n.strict,
        "name": n.name(),
        "description": n.description(),
        "limits": limits,
    })
}

fn usage_json(n: &Node, now: i64, auto_reset: bool) -> serde_json::Value {
    let usage: serde_json::Map<String, serde_json::Value> = n
        .resources
        .iter()
        .map(|r| {
            let (period, used) = r.used_at(now, auto_reset);
            (
                r.name.to_string(),
                json!({"period": period.key(), "used": used}),
            )
        })
        .collect();
    json!({ "usage": usage })
}

fn validate_grant(subject: &str, role: &str) -> Result<(), QuotaError> {
    if subject.is_empty() || subject.len() > 512 || subject.chars().any(char::is_control) {
        return Err(QuotaError::Invalid(
            "subject must be 1-512 printable characters".into(),
        ));
    }
    if !ROLES.contains(&role) {
        return Err(QuotaError::Invalid(format!(
            "role {role:?} is unknown; expected reader, reporter or admin"
        )));
    }
    Ok(())
}
