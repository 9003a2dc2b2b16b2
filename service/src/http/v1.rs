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

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::MAX_BATCH_BODY_BYTES;
use super::error::{AppError, ErrorCode};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::flat::ACTOR;
use super::json_writer::{JsonAnswer, JsonWriter, WriteJson, key};
use quota_api::v1::{
    AllocateBody, AuditBody, BatchBody, BatchMode, ClaimBody, ClaimResponse, GrantBody, LimitBody,
    NodeBody, Page, PutBody, ResourceBody, SnapshotBody, StateBody, UsageBody,
};

use crate::counters::NodeView;
use crate::domain::calendar::rfc3339;
use crate::domain::counter::MAX_COUNT;
use crate::domain::node::{NodeState, Refusal};
use crate::domain::tenant_id::{validate_id, validate_node_id};
use crate::domain::window::Window;
use crate::persistence::AuditEntry;
use crate::quotas::{ClaimSpec, LimitSpec, NodeSpec, QuotaError, Quotas};
use crate::rows::Claim;

/// Most items in one batch request.
pub const MAX_BATCH_ITEMS: usize = 10_000;
/// Largest page of a list.
pub const MAX_PAGE: usize = 1_000;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub limit: Option<u32>,
    pub after: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct SnapshotQuery {
    #[serde(default)]
    pub since: u64,
}

// === response bodies ===

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

/// One item's outcome in a batch answer. Fields in alphabetical order: the
/// order the answer has always had (it was built as a JSON map).
#[derive(Debug, Serialize)]
pub struct BatchResult<'a> {
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BatchError>,
    pub id: &'a str,
    pub status: u16,
}

#[derive(Debug, Serialize)]
pub struct BatchError {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// Answer of `POST /api/v1/usage/batch`, written without serde on this hot
/// route (see `json_writer`).
#[derive(Debug, Serialize)]
pub struct BatchAnswer<'a> {
    pub counted: usize,
    pub results: Vec<BatchResult<'a>>,
}

impl WriteJson for BatchAnswer<'_> {
    fn size_hint(&self) -> usize {
        32 + self.results.len() * 64
    }

    fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object();
        w.u64_field(key!("counted"), self.counted as u64);
        w.begin_array_field(key!("results"));
        for r in &self.results {
            w.begin_object();
            w.bool_field(key!("allowed"), r.allowed);
            if let Some(e) = &r.error {
                w.begin_object_field(key!("error"));
                w.str_field(key!("code"), e.code);
                w.str_field(key!("message"), &e.message);
                if let Some(secs) = e.retry_after_secs {
                    w.u64_field(key!("retry_after_secs"), secs);
                }
                w.end_object();
            }
            w.str_field(key!("id"), r.id);
            w.u64_field(key!("status"), u64::from(r.status));
            w.end_object();
        }
        w.end_array();
        w.end_object();
    }
}

// === handlers ===

fn check_id(id: &str) -> Result<(), AppError> {
    validate_node_id(id).map_err(|e| AppError::new(ErrorCode::InvalidId, e.to_string()))
}

fn node_spec(
    parent: Option<String>,
    limits: BTreeMap<String, LimitBody>,
    state: Option<String>,
    strict: Option<bool>,
    name: Option<String>,
    description: Option<String>,
) -> Result<NodeSpec, AppError> {
    let invalid = |m: String| AppError::new(ErrorCode::InvalidBody, m);
    if let Some(p) = &parent {
        validate_id("parent", p, crate::domain::tenant_id::MAX_NODE_ID_LEN)
            .map_err(|e| invalid(e.to_string()))?;
    }
    let state = match state.as_deref() {
        None => None,
        Some("active") => Some(NodeState::Active),
        Some("suspended") => Some(NodeState::Suspended),
        Some(other) => {
            return Err(invalid(format!(
                "state {other:?} is not active or suspended"
            )));
        }
    };
    for (field, v) in [("name", &name), ("description", &description)] {
        if v.as_ref().is_some_and(|s| s.chars().count() > 1024) {
            return Err(invalid(format!("{field} is longer than 1024 characters")));
        }
    }
    let mut out = BTreeMap::new();
    for (resource, l) in limits {
        let window = match l.window.as_deref() {
            None => None,
            Some(w) => Some(
                w.parse::<Window>()
                    .map_err(|e| invalid(format!("limits.{resource}.window: {e}")))?,
            ),
        };
        if l.max > MAX_COUNT {
            return Err(invalid(format!(
                "limits.{resource}.max is {}; the maximum is {MAX_COUNT}",
                l.max
            )));
        }
        out.insert(resource, LimitSpec { max: l.max, window });
    }
    Ok(NodeSpec {
        parent,
        limits: out,
        state,
        strict,
        name,
        description,
    })
}

pub async fn put(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutBody>,
) -> Result<Response, AppError> {
    check_id(&id)?;
    let spec = node_spec(
        body.parent,
        body.limits.0,
        body.state,
        body.strict,
        body.name,
        body.description,
    )?;
    let (view, created) = q.put(ACTOR, &id, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(NodeBody::from(&view))).into_response())
}

pub async fn get(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeBody>, AppError> {
    check_id(&id)?;
    let view = q.node(&id).ok_or(QuotaError::NotFound(id))?;
    Ok(Json(NodeBody::from(&view)))
}

pub async fn list(
    State(q): State<Arc<Quotas>>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<NodeBody>>, AppError> {
    let limit = page.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1-{MAX_PAGE}"),
        ));
    }
    let (items, next) = q.list_nodes(limit, page.after.as_deref());
    Ok(Json(Page {
        items: items.iter().map(NodeBody::from).collect(),
        next_after: next.map(serde_json::Value::String),
    }))
}

pub async fn delete(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeBody>, AppError> {
    check_id(&id)?;
    let view = q.delete(ACTOR, &id).await?;
    Ok(Json(NodeBody::from(&view)))
}

pub async fn allocate(
    State(q): State<Arc<Quotas>>,
    ApiPath(parent): ApiPath<String>,
    ApiJson(body): ApiJson<AllocateBody>,
) -> Result<Response, AppError> {
    check_id(&parent)?;
    check_id(&body.id)?;
    let spec = node_spec(None, body.limits.0, None, None, body.name, body.description)?;
    let view = q.allocate(ACTOR, &parent, &body.id, spec).await?;
    Ok((StatusCode::CREATED, Json(NodeBody::from(&view))).into_response())
}

/// The amounts as pairs (inline for up to 4 resources: no allocation per
/// call or batch item).
fn usage_pairs(usage: &BTreeMap<String, u64>) -> Result<SmallVec<[(&str, u64); 4]>, AppError> {
    if usage.is_empty() {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            "usage must name at least one resource",
        ));
    }
    usage
        .iter()
        .map(|(r, &n)| {
            if n > MAX_COUNT {
                Err(AppError::new(
                    ErrorCode::InvalidBody,
                    format!("usage.{r} is {n}; the maximum is {MAX_COUNT}"),
                ))
            } else {
                Ok((r.as_str(), n))
            }
        })
        .collect()
}

pub async fn consume(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UsageBody>,
) -> Result<Response, AppError> {
    check_id(&id)?;
    let usage = usage_pairs(&body.usage)?;
    let outcome = q.consume(&id, &usage).await;
    drop(usage);
    match outcome {
        Ok(()) => Ok(JsonAnswer(Consumed {
            id,
            usage: body.usage.0,
        })
        .into_response()),
        Err(QuotaError::Refused(r)) => Ok(refusal_response(&id, r)),
        Err(e) => Err(e.into()),
    }
}

/// A counted consume: `{"allowed":true,"id":..,"usage":{..}}`, written
/// without serde on this hot route (see `json_writer`).
/// Refusals answer through [`refusal_response`].
#[derive(Debug)]
struct Consumed {
    id: String,
    usage: BTreeMap<String, u64>,
}

impl WriteJson for Consumed {
    fn size_hint(&self) -> usize {
        128
    }

    fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object();
        w.bool_field(key!("allowed"), true);
        w.str_field(key!("id"), &self.id);
        w.begin_object_field(key!("usage"));
        for (resource, n) in &self.usage {
            w.u64_entry(resource, *n);
        }
        w.end_object();
        w.end_object();
    }
}

/// A refused consume: `allowed: false` with the reason, plus the error
/// envelope every error has; 429 with `Retry-After` when a window reset will
/// help, 403 when a node is suspended.
fn refusal_response(id: &str, r: Refusal) -> Response {
    let err = AppError::from(r.clone());
    let (resource, requested, available, retry) = match &r {
        Refusal::Exhausted {
            resource,
            requested,
            available,
            retry_after_secs,
        } => (
            Some(resource.clone()),
            Some(*requested),
            Some(*available),
            *retry_after_secs,
        ),
        Refusal::Overcommitted {
            resource,
            retry_after_secs,
            ..
        } => (Some(resource.clone()), None, None, *retry_after_secs),
        Refusal::UnknownResource { resource }
        | Refusal::Capacity { resource }
        | Refusal::NotCapacity { resource }
        | Refusal::Overflow { resource } => (Some(resource.clone()), None, None, None),
        Refusal::Suspended { .. } | Refusal::Deleted { .. } => (None, None, None, None),
    };
    let body = serde_json::json!({
        "allowed": false,
        "id": id,
        "resource": resource,
        "reason": err.code,
        "requested": requested,
        "available": available,
        "retry_after_secs": retry,
        "error": {"code": err.code, "message": err.message},
    });
    let mut resp = (err.status, Json(body)).into_response();
    if let Some(secs) = retry
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

pub async fn claim(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Result<Response, AppError> {
    check_id(&id)?;
    validate_id(
        "resource_id",
        &body.resource_id,
        crate::domain::tenant_id::MAX_NODE_ID_LEN,
    )
    .map_err(|e| AppError::new(ErrorCode::InvalidBody, e.to_string()))?;
    if body.amount > MAX_COUNT
        || body.reason.trim().is_empty()
        || body.reason.chars().count() > 1024
    {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            "amount must be at most 2^63-1 and reason 1-1024 characters",
        ));
    }
    let spec = ClaimSpec {
        resource: body.resource,
        resource_id: body.resource_id.clone(),
        amount: body.amount,
        reason: body.reason,
    };
    match q.claim(ACTOR, &id, spec).await {
        Ok((c, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(claim_response(&id, &body.resource_id, c, created)),
            )
                .into_response())
        }
        Err(QuotaError::Refused(r)) => Ok(refusal_response(&id, r)),
        Err(e) => Err(e.into()),
    }
}

fn claim_response(id: &str, resource_id: &str, c: Claim, created: bool) -> ClaimResponse {
    ClaimResponse {
        id: id.to_owned(),
        resource_id: resource_id.to_owned(),
        resource: c.resource,
        amount: c.amount,
        reason: c.reason,
        created_at: rfc3339(c.created_at),
        created,
    }
}

pub async fn release(
    State(q): State<Arc<Quotas>>,
    ApiPath((id, resource_id)): ApiPath<(String, String)>,
) -> Result<Json<ClaimResponse>, AppError> {
    check_id(&id)?;
    let c = q.release(ACTOR, &id, &resource_id).await?;
    Ok(Json(claim_response(&id, &resource_id, c, false)))
}

pub async fn set_state(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StateBody>,
) -> Result<Json<NodeBody>, AppError> {
    check_id(&id)?;
    let state = match body.state.as_str() {
        "active" => NodeState::Active,
        "suspended" => NodeState::Suspended,
        other => {
            return Err(AppError::new(
                ErrorCode::InvalidBody,
                format!("state {other:?} is not active or suspended"),
            ));
        }
    };
    let view = q.set_state(ACTOR, &id, state).await?;
    Ok(Json(NodeBody::from(&view)))
}

pub async fn grant(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Response, AppError> {
    check_id(&id)?;
    let created = q.grant(ACTOR, &id, &body.subject, &body.role).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let out = serde_json::json!({"id": id, "subject": body.subject, "role": body.role, "created": created});
    Ok((status, Json(out)).into_response())
}

pub async fn revoke(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_id(&id)?;
    q.revoke(ACTOR, &id, &body.subject, &body.role).await?;
    Ok(Json(
        serde_json::json!({"id": id, "subject": body.subject, "role": body.role, "revoked": true}),
    ))
}

pub async fn grants(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_id(&id)?;
    let rows = q.grants(&id).await?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|g| serde_json::json!({"subject": g.subject, "role": g.role, "created_at": rfc3339(g.created_at)}))
        .collect();
    Ok(Json(serde_json::json!({"id": id, "items": items})))
}

pub async fn audit(
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditBody>>, AppError> {
    check_id(&id)?;
    let limit = page.limit.unwrap_or(50);
    if limit == 0 || limit as usize > MAX_PAGE {
        return Err(AppError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1-{MAX_PAGE}"),
        ));
    }
    let rows = q.audit_log(&id, limit + 1, page.after).await?;
    let more = rows.len() > limit as usize;
    let items: Vec<AuditBody> = rows
        .into_iter()
        .take(limit as usize)
        .map(AuditBody::from)
        .collect();
    let next_after = more
        .then(|| items.last().map(|a| serde_json::Value::from(a.id)))
        .flatten();
    Ok(Json(Page { items, next_after }))
}

pub async fn batch(
    State(q): State<Arc<Quotas>>,
    ApiJson(body): ApiJson<BatchBody, MAX_BATCH_BODY_BYTES>,
) -> Result<Response, AppError> {
    if body.items.is_empty() || body.items.len() > MAX_BATCH_ITEMS {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            format!("items must hold 1-{MAX_BATCH_ITEMS} entries"),
        ));
    }
    let mut counted = 0usize;
    let mut results: Vec<BatchResult<'_>> = Vec::with_capacity(body.items.len());
    for item in &body.items {
        let outcome = match check_id(&item.id).and_then(|()| usage_pairs(&item.usage)) {
            Err(e) => Err((e, None)),
            Ok(usage) => {
                let r = match body.mode {
                    BatchMode::Increment => q.increment_node(&item.id, &usage).await,
                    BatchMode::Consume => q.consume(&item.id, &usage).await,
                };
                r.map_err(|e| {
                    let retry = match &e {
                        QuotaError::Refused(
                            Refusal::Exhausted {
                                retry_after_secs, ..
                            }
                            | Refusal::Overcommitted {
                                retry_after_secs, ..
                            },
                        ) => *retry_after_secs,
                        _ => None,
                    };
                    (AppError::from(e), retry)
                })
            }
        };
        results.push(match outcome {
            Ok(()) => {
                counted += 1;
                BatchResult {
                    id: &item.id,
                    status: 200,
                    allowed: true,
                    error: None,
                }
            }
            Err((e, retry_after_secs)) => BatchResult {
                id: &item.id,
                status: e.status.as_u16(),
                allowed: false,
                error: Some(BatchError {
                    code: e.code,
                    message: e.message,
                    retry_after_secs,
                }),
            },
        });
    }
    Ok(JsonAnswer(BatchAnswer { counted, results }).into_response())
}

pub async fn snapshot(
    State(q): State<Arc<Quotas>>,
    ApiQuery(s): ApiQuery<SnapshotQuery>,
) -> Json<SnapshotBody> {
    let (version, nodes) = q.snapshot(s.since);
    Json(SnapshotBody {
        instance_id: q.instance_id().to_owned(),
        version,
        nodes: nodes.iter().map(NodeBody::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_is_written_as_serde_json_writes_it() {
        let answer = BatchAnswer {
            counted: 1,
            results: vec![
                BatchResult {
                    allowed: true,
                    error: None,
                    id: "team-a",
                    status: 200,
                },
                BatchResult {
                    allowed: false,
                    error: Some(BatchError {
                        code: "quota_exceeded",
                        message: "messages: \"quoted\"\n".into(),
                        retry_after_secs: Some(60),
                    }),
                    id: "team-b",
                    status: 429,
                },
                BatchResult {
                    allowed: false,
                    error: Some(BatchError {
                        code: "node_not_found",
                        message: "no node".into(),
                        retry_after_secs: None,
                    }),
                    id: "nobody",
                    status: 404,
                },
            ],
        };
        let mut w = JsonWriter::default();
        answer.write_json(&mut w);
        assert_eq!(
            String::from_utf8_lossy(&w.into_bytes()),
            serde_json::to_string(&answer).unwrap_or_default()
        );
    }

    #[test]
    fn a_counted_consume_is_written_as_serde_json_writes_it() {
        let usage = BTreeMap::from([("bytes".to_string(), 512), ("messages".to_string(), 1)]);
        let mut w = JsonWriter::default();
        Consumed {
            id: "team-a".into(),
            usage: usage.clone(),
        }
        .write_json(&mut w);
        let expected = serde_json::json!({"allowed": true, "id": "team-a", "usage": usage});
        assert_eq!(
            String::from_utf8_lossy(&w.into_bytes()),
            serde_json::to_string(&expected).unwrap_or_default()
        );
    }
}
