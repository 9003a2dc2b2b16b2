//! The hierarchical API under `/api/v1`.
//!
//! | route | does |
//! |---|---|
//! | `PUT /api/v1/quotas/{id}` | create or update a node idempotently (201 created, 200 updated; 409 when it does not fit) |
//! | `GET /api/v1/quotas/{id}` | the node with per-resource usage, allocated, available, children, state |
//! | `GET /api/v1/quotas?limit=&after=` | nodes sorted by id, paged |
//! | `DELETE /api/v1/quotas/{id}` | soft delete (409 while it has children) |
//! | `POST /api/v1/quotas/{id}/allocate` | create a child of this node (409 with what is missing) |
//! | `POST /api/v1/quotas/{id}/consume` | atomic check-and-increment; 429 with `retry_after_secs` when refused |
//! | `POST /api/v1/quotas/{id}/usage/allocate` | claim capacity, idempotent per `resource_id` |
//! | `DELETE /api/v1/quotas/{id}/usage/{resource_id}` | release a claim |
//! | `POST /api/v1/quotas/{id}/state` | `active` or `suspended` |
//! | `POST /api/v1/quotas/{id}/permissions/grant` / `revoke`, `GET .../permissions` | grants |
//! | `GET /api/v1/quotas/{id}/audit?limit=&after=` | the audit trail, newest first, paged |
//! | `POST /api/v1/usage/batch` | many increments (or consumes) in one request, answered in order |
//! | `GET /api/v1/snapshot?since=N` | nodes changed since version N, and the new version |
//!
//! What each route needs of the caller (`domain::access`): reads and
//! grants' listing `reader`; consume, claims and batch items `reporter`;
//! allocate and the audit trail `admin`; PUT, delete, state, grant and
//! revoke a change of the node (`owner` on it or `admin` above); a new
//! node by PUT `admin` on its parent (a root: `AUTH_ADMINS`); the
//! snapshot returns only nodes the caller administers.

pub(super) mod claims;
pub(super) mod grants;
pub(super) mod nodes;
pub(super) mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quota_api::schema::{NodeId, ResourceName, Usage};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use utoipa::{IntoParams, ToSchema};

use super::MAX_BATCH_BODY_BYTES;
use super::caller::Caller;
use super::error::{
    AppError, BadRequest, BodyErrors, CallErrors, Conflict, ErrorBody, ErrorCode, ErrorDetail,
    NodeErrors, NotFound,
};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::json_writer::{JsonAnswer, JsonWriter, WriteJson, key};
use super::ratelimit;
use quota_api::v1::{
    AllocateBody, AuditBody, AuditPage, BatchBody, BatchMode, ClaimBody, ClaimResponse, GrantBody,
    LimitBody, NodeBody, NodePage, Page, PutBody, ResourceBody, SnapshotBody, StateBody, UsageBody,
};

use crate::counters::NodeView;
use crate::domain::access::Action;
use crate::domain::calendar::rfc3339;
use crate::domain::counter::MAX_COUNT;
use crate::domain::node::{NodeState, Refusal};
use crate::domain::resource::validate_resource_name;
use crate::domain::tenant_id::{validate_id, validate_node_id};
use crate::domain::window::Window;
use crate::persistence::AuditEntry;
use crate::quotas::{ClaimSpec, LimitSpec, NodeSpec, QuotaError, Quotas};
use crate::rows::Claim;

/// Most items in one batch request.
pub const MAX_BATCH_ITEMS: usize = 10_000;
/// Largest page of a list.
pub const MAX_PAGE: usize = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Most nodes in the page: 1 to 1000 (100 when left out).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_after` of the page before: nodes whose id sorts after it.
    pub after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Most records in the page: 1 to 1000 (50 when left out).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_after` of the page before: records older than this id.
    pub after: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// The `version` of the last snapshot (0, the default, for all nodes).
    #[serde(default)]
    #[param(maximum = 9223372036854775807_u64)]
    pub since: u64,
}

// === response bodies (from the domain's views) ===

impl From<&NodeView> for NodeBody {
    fn from(v: &NodeView) -> Self {
        NodeBody {
            id: v.id.clone(),
            parent: v.parent.clone(),
            state: v.state.as_str().to_owned(),
            strict: v.strict,
            name: v.name.clone(),
            description: v.description.clone(),
            resources: v
                .resources
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        ResourceBody {
                            max: r.max,
                            window: r.window.as_str().to_owned(),
                            used: r.used,
                            subtree_used: r.subtree_used,
                            allocated: r.allocated,
                            available: r.available,
                            period: r.period.key(),
                            reset_at: r.reset_at.map(rfc3339),
                            exceeded: r.exceeded,
                            overcommitted: r.overcommitted,
                        },
                    )
                })
                .collect(),
            children: v.children.clone(),
            claims: v.claims,
            exceeded: v.exceeded(),
            overcommitted: v.overcommitted(),
            version: v.version,
            created_at: rfc3339(v.created_at),
            last_updated: v.last_updated.map(rfc3339),
        }
    }
}

impl From<AuditEntry> for AuditBody {
    fn from(e: AuditEntry) -> Self {
        AuditBody {
            id: e.id,
            ts: rfc3339(e.record.ts),
            actor: e.record.actor,
            action: e.record.action,
            node_id: e.record.node_id,
            before: e.record.before,
            after: e.record.after,
        }
    }
}

/// A deleted node is gone for reads too (the list, the snapshot and the
/// audit trail still show it, as the record of its deletion).
fn gone(id: &str) -> AppError {
    AppError::from(Refusal::Deleted {
        node: id.to_owned(),
    })
}

fn check_id(id: &str) -> Result<(), AppError> {
    validate_node_id(id).map_err(|e| AppError::new(ErrorCode::InvalidId, e.to_string()))
}
