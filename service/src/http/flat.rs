//! The flat, compatible API under `/api/quota`.
//!
//! | route | does |
//! |---|---|
//! | `POST /api/quota/increment` | counts `message_count` (default 1) and `bytes_sent` (default 0); always counts, reports `exceeded` |
//! | `POST /api/quota/check` | whether the tenant is over a limit, and whether the given amounts would still fit (`allowed`) |
//! | `POST /api/quota/limits` | sets `message_limit` and/or `bandwidth_limit_bytes` (written through) |
//! | `GET /api/quota/{tenant_id}` | one tenant's metrics, 404 when unknown |
//! | `GET /api/quota` | every tracked tenant, sorted by id |
//! | `POST /api/quota/{tenant_id}/reset` | zeroes the current periods (written through), 404 when unknown |
//!
//! A `tenant_id` names a root node: `increment` and `check` need `reporter`
//! on it, `limits` and `reset` need `owner`, reads need `reader`; `GET
//! /api/quota` lists only what the caller may read. Usage for an unknown
//! tenant creates it only for the admins of every node (`AUTH_ADMINS`).
//!
//! Response fields keep the flat tracker's names (`message_count`,
//! `bytes_sent`, `message_limit`, `bandwidth_limit_bytes`, `period`) and add
//! the remaining amounts, both period keys, reset times and exceeded flags.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use quota_api::schema::{Amount, NodeId, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::caller::Caller;
use super::error::{
    AppError, BodyErrors, CallErrors, Conflict, ErrorCode, Forbidden, Gone, NodeErrors,
};
use super::extract::{ApiJson, ApiPath};
use super::json_writer::{JsonAnswer, JsonWriter, WriteJson, key};
use crate::domain::access::Action;
use crate::domain::calendar::rfc3339_stamp;
use crate::domain::counter::{GIB, MAX_COUNT, gib_to_bytes};
use crate::domain::stamp::Stamp;
use crate::domain::tenant::{TenantView, Usage};
use crate::domain::tenant_id::{MAX_NODE_ID_LEN, validate_id, validate_tenant_id};
use crate::quotas::{Access, LimitsUpdate, Quotas};

/// Usage of a tenant to count (`increment`) or to check (`check`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tenant_id": "tenant-1", "message_count": 1, "bytes_sent": 512}))]
pub struct UsageRequest {
    #[schema(value_type = TenantId)]
    pub tenant_id: String,
    /// Messages to count; 1 when absent (one call per message).
    #[serde(default)]
    #[schema(value_type = Amount, nullable = false)]
    pub message_count: Option<u64>,
    /// Bytes to count; 0 when absent.
    #[serde(default)]
    #[schema(value_type = Amount, nullable = false)]
    pub bytes_sent: Option<u64>,
}

/// Body of `limits`: at least one limit; bandwidth in bytes or in GiB,
/// not both (the schema is written out below: the derive cannot say that).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub tenant_id: String,
    pub message_limit: Option<u64>,
    pub bandwidth_limit_bytes: Option<u64>,
    /// The flat tracker's unit (GiB); an alternative to `bandwidth_limit_bytes`.
    pub bandwidth_limit_gb: Option<f64>,
}

/// A tenant's metrics.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct QuotaMetrics {
    /// The tenant: every root node is one, so a listed id may be a node id
    /// of the v1 API (up to 253 characters).
    #[schema(value_type = NodeId)]
    pub tenant_id: String,
    /// Messages counted in the current day.
    pub message_count: u64,
    pub message_limit: u64,
    pub messages_remaining: u64,
    /// The day period key, `YYYY-MM-DD`.
    #[schema(value_type = String)]
    pub message_period: Stamp,
    /// When the day ends (RFC 3339).
    #[schema(value_type = Option<String>, required = true)]
    pub message_reset_at: Option<Stamp>,
    pub message_quota_exceeded: bool,
    /// Bytes counted in the current month.
    pub bytes_sent: u64,
    pub bandwidth_limit_bytes: u64,
    pub bandwidth_remaining_bytes: u64,
    /// The month period key, `YYYY-MM`.
    #[schema(value_type = String)]
    pub bandwidth_period: Stamp,
    /// When the month ends (RFC 3339).
    #[schema(value_type = Option<String>, required = true)]
    pub bandwidth_reset_at: Option<Stamp>,
    pub bandwidth_quota_exceeded: bool,
    /// Either limit is reached.
    pub exceeded: bool,
    /// Same as `message_period` (the flat tracker's field).
    #[schema(value_type = String)]
    pub period: Stamp,
    /// Last change to usage or limits (RFC 3339), null if never changed.
    #[schema(value_type = Option<String>, required = true)]
    pub last_updated: Option<Stamp>,
}

/// Answer of `check`.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct CheckResponse {
    /// The requested amounts (default: one message) fit within both limits.
    pub allowed: bool,
    #[serde(flatten)]
    pub metrics: QuotaMetrics,
}

// === impl LimitsRequest ===

impl PartialSchema for LimitsRequest {
    fn schema() -> RefOr<Schema> {
        let amount = || RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Amount"));
        let object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Sets a tenant's limits (created with the defaults when new): at least one limit; bandwidth in bytes or in GiB, not both.",
            ))
            .property(
                "tenant_id",
                RefOr::Ref(utoipa::openapi::Ref::from_schema_name("TenantId")),
            )
            .required("tenant_id")
            .property("message_limit", amount())
            .property("bandwidth_limit_bytes", amount())
            .property(
                "bandwidth_limit_gb",
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Double,
                    )))
                    .description(Some(
                        "The bandwidth limit in GiB (the flat tracker's unit); fractions are rounded to whole bytes.",
                    ))
                    .minimum(Some(0))
                    .exclusive_maximum(Some(quota_api::rules::GIB_LIMIT_BOUND)),
            )
            .min_properties(Some(2))
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
            // `not` is not in the builder: JSON Schema keywords beyond it go in
            // as extensions, which are written into the schema object as is.
            .extensions(Some(utoipa::openapi::extensions::Extensions::from_iter([(
                "not",
                serde_json::json!({"required": ["bandwidth_limit_bytes", "bandwidth_limit_gb"]}),
            )])))
            .examples([serde_json::json!({"tenant_id": "tenant-1", "message_limit": 10000})]);
        RefOr::T(Schema::Object(object.build()))
    }
}

impl ToSchema for LimitsRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((TenantId::name().into_owned(), TenantId::schema()));
        schemas.push((Amount::name().into_owned(), Amount::schema()));
    }
}

// === impl QuotaMetrics ===

impl QuotaMetrics {
    pub fn new(tenant_id: String, v: &TenantView) -> Self {
        let messages = v.messages.period.stamps();
        let bandwidth = v.bandwidth.period.stamps();
        QuotaMetrics {
            tenant_id,
            message_count: v.messages.used,
            message_limit: v.messages.limit,
            messages_remaining: v.messages.remaining(),
            period: messages.key,
            message_period: messages.key,
            message_reset_at: messages.reset_at,
            message_quota_exceeded: v.messages.exceeded(),
            bytes_sent: v.bandwidth.used,
            bandwidth_limit_bytes: v.bandwidth.limit,
            bandwidth_remaining_bytes: v.bandwidth.remaining(),
            bandwidth_period: bandwidth.key,
            bandwidth_reset_at: bandwidth.reset_at,
            bandwidth_quota_exceeded: v.bandwidth.exceeded(),
            exceeded: v.exceeded(),
            last_updated: v.last_updated.map(rfc3339_stamp),
        }
    }
}

// The hot answers, written without serde (see `json_writer`); the field
// order is the derive's, which the tests compare byte for byte.
impl QuotaMetrics {
    fn write_fields(&self, w: &mut JsonWriter) {
        w.str_field(key!("tenant_id"), &self.tenant_id);
        w.u64_field(key!("message_count"), self.message_count);
        w.u64_field(key!("message_limit"), self.message_limit);
        w.u64_field(key!("messages_remaining"), self.messages_remaining);
        w.stamp_field(key!("message_period"), &self.message_period);
        w.opt_stamp_field(key!("message_reset_at"), self.message_reset_at.as_ref());
        w.bool_field(key!("message_quota_exceeded"), self.message_quota_exceeded);
        w.u64_field(key!("bytes_sent"), self.bytes_sent);
        w.u64_field(key!("bandwidth_limit_bytes"), self.bandwidth_limit_bytes);
        w.u64_field(
            key!("bandwidth_remaining_bytes"),
            self.bandwidth_remaining_bytes,
        );
        w.stamp_field(key!("bandwidth_period"), &self.bandwidth_period);
        w.opt_stamp_field(key!("bandwidth_reset_at"), self.bandwidth_reset_at.as_ref());
        w.bool_field(
            key!("bandwidth_quota_exceeded"),
            self.bandwidth_quota_exceeded,
        );
        w.bool_field(key!("exceeded"), self.exceeded);
        w.stamp_field(key!("period"), &self.period);
        w.opt_stamp_field(key!("last_updated"), self.last_updated.as_ref());
    }
}

impl WriteJson for QuotaMetrics {
    fn size_hint(&self) -> usize {
        768
    }

    fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object();
        self.write_fields(w);
        w.end_object();
    }
}

impl WriteJson for CheckResponse {
    fn size_hint(&self) -> usize {
        768
    }

    fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object();
        w.bool_field(key!("allowed"), self.allowed);
        self.metrics.write_fields(w);
        w.end_object();
    }
}

impl UsageRequest {
    fn usage(&self) -> Result<Usage, AppError> {
        let usage = Usage {
            messages: self.message_count.unwrap_or(1),
            bytes: self.bytes_sent.unwrap_or(0),
        };
        for (name, n) in [
            ("message_count", usage.messages),
            ("bytes_sent", usage.bytes),
        ] {
            if n > MAX_COUNT {
                return Err(AppError::new(
                    ErrorCode::InvalidBody,
                    format!("{name} is {n}; the maximum is {MAX_COUNT}"),
                ));
            }
        }
        Ok(usage)
    }
}

/// Reporting usage needs `reporter` on the tenant; creating the tenant by
/// its first use needs an admin of every node. A tenant this replica does
/// not know may have been created through another one moments ago: it is
/// looked for in a shared database before the answer.
async fn may_report(caller: &Caller, quotas: &Quotas, tenant_id: &str) -> Result<(), AppError> {
    match quotas
        .access_caught_up(caller.identity(), Action::Report, tenant_id)
        .await
    {
        Access::Allowed => Ok(()),
        Access::Denied => caller.may_now(quotas, Action::Report, tenant_id),
        Access::NoSuchNode => caller.must_be_admin(
            quotas,
            &format!("create tenant {tenant_id:?} by reporting usage"),
        ),
    }
}

/// Count usage of a tenant
///
/// Always counts (tracking) and reports whether a limit is now exceeded. An
/// unknown tenant is created with the default limits (admins only).
#[utoipa::path(
    post,
    path = "/api/quota/increment",
    operation_id = "increment",
    tag = "flat",
    request_body = UsageRequest,
    responses(
        (status = 200, description = "Counted; the tenant's metrics after the call.", body = QuotaMetrics),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        CallErrors,
        BodyErrors,
    ),
)]
pub async fn increment(
    caller: Caller,
    State(quotas): State<Arc<Quotas>>,
    ApiJson(req): ApiJson<UsageRequest>,
) -> Result<JsonAnswer<QuotaMetrics>, AppError> {
    validate_tenant_id(&req.tenant_id)?;
    let usage = req.usage()?;
    may_report(&caller, &quotas, &req.tenant_id).await?;
    let view = quotas.increment(&req.tenant_id, usage).await?;
    Ok(JsonAnswer(QuotaMetrics::new(req.tenant_id, &view)))
}

/// Check a tenant's quota
///
/// Whether the tenant is over a limit, and whether the given amounts (one
/// message when left out) would still fit. Counts nothing.
#[utoipa::path(
    post,
    path = "/api/quota/check",
    operation_id = "check",
    tag = "flat",
    request_body = UsageRequest,
    responses(
        (status = 200, description = "The tenant's metrics and whether the amounts fit.", body = CheckResponse),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        CallErrors,
        BodyErrors,
    ),
)]
pub async fn check(
    caller: Caller,
    State(quotas): State<Arc<Quotas>>,
    ApiJson(req): ApiJson<UsageRequest>,
) -> Result<JsonAnswer<CheckResponse>, AppError> {
    validate_tenant_id(&req.tenant_id)?;
    let usage = req.usage()?;
    may_report(&caller, &quotas, &req.tenant_id).await?;
    let view = quotas.check(&req.tenant_id);
    Ok(JsonAnswer(CheckResponse {
        allowed: view.allows(usage),
        metrics: QuotaMetrics::new(req.tenant_id, &view),
    }))
}

/// Set a tenant's limits
///
/// Written to the database before the answer; an unknown tenant is created
/// (admins only).
#[utoipa::path(
    post,
    path = "/api/quota/limits",
    operation_id = "setLimits",
    tag = "flat",
    request_body = LimitsRequest,
    responses(
        (status = 200, description = "The tenant's metrics with the new limits.", body = QuotaMetrics),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        CallErrors,
        BodyErrors,
    ),
)]
pub async fn set_limits(
    caller: Caller,
    State(quotas): State<Arc<Quotas>>,
    ApiJson(req): ApiJson<LimitsRequest>,
) -> Result<Json<QuotaMetrics>, AppError> {
    validate_tenant_id(&req.tenant_id)?;
    let invalid = |msg: String| AppError::new(ErrorCode::InvalidBody, msg);
    let bandwidth_limit_bytes = match (req.bandwidth_limit_bytes, req.bandwidth_limit_gb) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give bandwidth_limit_bytes or bandwidth_limit_gb, not both".into(),
            ));
        }
        (Some(b), None) => Some(b),
        (None, Some(gb)) => Some(gib_to_bytes(gb).ok_or_else(|| {
            invalid(format!(
                "bandwidth_limit_gb is {gb}; expected a non-negative number of GiB up to {}",
                MAX_COUNT as f64 / GIB
            ))
        })?),
        (None, None) => None,
    };
    let update = LimitsUpdate {
        message_limit: req.message_limit,
        bandwidth_limit_bytes,
    };
    if update.message_limit.is_none() && update.bandwidth_limit_bytes.is_none() {
        return Err(invalid(
            "nothing to set: give message_limit and/or bandwidth_limit_bytes".into(),
        ));
    }
    for (name, v) in [
        ("message_limit", update.message_limit),
        ("bandwidth_limit_bytes", update.bandwidth_limit_bytes),
    ] {
        if let Some(n) = v.filter(|n| *n > MAX_COUNT) {
            return Err(invalid(format!(
                "{name} is {n}; the maximum is {MAX_COUNT}"
            )));
        }
    }
    if quotas.contains(&req.tenant_id) {
        caller.may(&quotas, Action::Change, &req.tenant_id).await?;
    } else {
        caller.must_be_admin(&quotas, &format!("create tenant {:?}", req.tenant_id))?;
    }
    let view = quotas
        .set_limits(caller.subject(), &req.tenant_id, update)
        .await?;
    Ok(Json(QuotaMetrics::new(req.tenant_id, &view)))
}

/// Get a tenant's metrics
#[utoipa::path(
    get,
    path = "/api/quota/{tenant_id}",
    operation_id = "getTenant",
    tag = "flat",
    params(("tenant_id" = NodeId, Path, description = "The tenant: any root node (the list holds root nodes of the v1 API too, with ids up to 253 characters).")),
    responses(
        (status = 200, description = "The tenant's metrics.", body = QuotaMetrics),
        CallErrors,
        NodeErrors,
    ),
)]
pub async fn get_tenant(
    caller: Caller,
    State(quotas): State<Arc<Quotas>>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Json<QuotaMetrics>, AppError> {
    validate_listed_id(&tenant_id)?;
    caller.may(&quotas, Action::Read, &tenant_id).await?;
    let view = quotas.get(&tenant_id).ok_or_else(|| unknown(&tenant_id))?;
    Ok(Json(QuotaMetrics::new(tenant_id, &view)))
}

/// List tenants
///
/// Every tenant the caller may read, sorted by id.
#[utoipa::path(
    get,
    path = "/api/quota",
    operation_id = "listTenants",
    tag = "flat",
    responses(
        (status = 200, description = "The tenants' metrics.", body = Vec<QuotaMetrics>),
        CallErrors,
    ),
)]
pub async fn list(caller: Caller, State(quotas): State<Arc<Quotas>>) -> Json<Vec<QuotaMetrics>> {
    Json(
        quotas
            .list()
            .into_iter()
            .filter(|(id, _)| quotas.may(caller.identity(), Action::Read, id))
            .map(|(id, v)| QuotaMetrics::new(id, &v))
            .collect(),
    )
}

/// Reset a tenant's usage
///
/// Zeroes the current day's messages and month's bytes (written to the
/// database before the answer).
#[utoipa::path(
    post,
    path = "/api/quota/{tenant_id}/reset",
    operation_id = "resetTenant",
    tag = "flat",
    params(("tenant_id" = NodeId, Path, description = "The tenant: any root node (the list holds root nodes of the v1 API too, with ids up to 253 characters).")),
    responses(
        (status = 200, description = "The tenant's metrics after the reset.", body = QuotaMetrics),
        CallErrors,
        NodeErrors,
    ),
)]
pub async fn reset(
    caller: Caller,
    State(quotas): State<Arc<Quotas>>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Json<QuotaMetrics>, AppError> {
    validate_listed_id(&tenant_id)?;
    caller.may(&quotas, Action::Change, &tenant_id).await?;
    let view = quotas
        .reset(caller.subject(), &tenant_id)
        .await?
        .ok_or_else(|| unknown(&tenant_id))?;
    Ok(Json(QuotaMetrics::new(tenant_id, &view)))
}

/// Reads and resets address any tenant `GET /api/quota` lists: every root
/// node, whose id may be a v1 node id (up to 253 characters); creating one
/// through this API keeps the flat tracker's 128.
fn validate_listed_id(tenant_id: &str) -> Result<(), AppError> {
    Ok(validate_id("tenant_id", tenant_id, MAX_NODE_ID_LEN)?)
}

fn unknown(tenant_id: &str) -> AppError {
    AppError::new(
        ErrorCode::TenantNotFound,
        format!(
            "no tenant {tenant_id:?} is tracked; it appears with its first increment or limits"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(with_times: bool) -> QuotaMetrics {
        let t = with_times.then(|| Stamp::from("2026-11-23T10:00:00Z"));
        QuotaMetrics {
            tenant_id: "tenant-\"quoted\"".into(),
            message_count: 7,
            message_limit: u64::MAX,
            messages_remaining: 0,
            message_period: Stamp::from("2026-11-23"),
            message_reset_at: t,
            message_quota_exceeded: true,
            bytes_sent: 512,
            bandwidth_limit_bytes: 1 << 40,
            bandwidth_remaining_bytes: (1 << 40) - 512,
            bandwidth_period: Stamp::from("2026-11"),
            bandwidth_reset_at: t,
            bandwidth_quota_exceeded: false,
            exceeded: true,
            period: Stamp::from("2026-11-23"),
            last_updated: t,
        }
    }

    fn written<T: WriteJson>(v: &T) -> Vec<u8> {
        let mut w = JsonWriter::default();
        v.write_json(&mut w);
        w.into_bytes()
    }

    #[test]
    fn metrics_are_written_byte_for_byte_as_serde_json_writes_them() {
        for with_times in [true, false] {
            let m = metrics(with_times);
            assert_eq!(
                String::from_utf8_lossy(&written(&m)),
                serde_json::to_string(&m).unwrap_or_default()
            );
        }
    }

    #[test]
    fn check_answers_too() {
        for allowed in [true, false] {
            let c = CheckResponse {
                allowed,
                metrics: metrics(allowed),
            };
            assert_eq!(
                String::from_utf8_lossy(&written(&c)),
                serde_json::to_string(&c).unwrap_or_default()
            );
        }
    }
}
