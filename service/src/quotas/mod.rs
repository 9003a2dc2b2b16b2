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
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the specs callers pass, the errors, the `Quotas` handle |
//! | `lifecycle.rs` | open, flush, readiness; the write-through primitives |
//! | `flat.rs` | the flat API (tenants as root nodes) |
//! | `nodes.rs` | reads, create and update (`PUT`, allocate), state |
//! | `usage.rs` | consume and increment, in memory or strict |
//! | `delete.rs` | delete: usage and claims move to the parent |
//! | `claims.rs` | capacity claims and releases |
//! | `grants.rs` | grants, the audit trail, snapshots |
//! | `access.rs` | the access check: may this caller do this on this node |
//! | `spec.rs`, `ops.rs` | a spec resolved into limits; the rows a change writes |
//!
//! The pure planning of a limit change is `domain::limit_change`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::counters::{CounterStore, NodeView, ReserveFailure, UsageError};
use crate::domain::access::Role;
use crate::domain::headroom::Headrooms;
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

mod access;
mod claims;

pub use access::Access;
mod delete;
mod flat;
mod grants;
mod lifecycle;
mod nodes;
mod ops;
mod spec;
mod usage;

use ops::{amounts, node_json, node_ops, node_row, usage_json, usage_rows};
use spec::{resolve_limits, spec_of};

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
    /// Subjects made admins of a node when it is created (allocate's
    /// `admin_user_ids`); an update leaves grants as they are.
    pub admins: Vec<String>,
}

/// A capacity claim request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSpec {
    pub resource: String,
    pub resource_id: String,
    pub amount: u64,
    pub reason: String,
}

/// Which state a request conflicts with (the API answers `409` with the
/// matching code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    AlreadyExists,
    ParentImmutable,
    HasChildren,
    WindowInUse,
    ResourceInUse,
    ClaimIdTaken,
    ClaimNotFound,
    GrantNotFound,
    StrictNode,
    DoesNotFit,
    /// A limit without a window, and no window to inherit from the parent.
    NoWindowToInherit,
}

/// Why an operation was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("no quota node {0:?}")]
    NotFound(String),
    /// The caller may not do this (nothing changed).
    #[error("{0}")]
    Forbidden(String),
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
    /// A consume answers what it left of each limit (`RATELIMIT_FIELDS`).
    ratelimit_fields: bool,
}
