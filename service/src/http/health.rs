//! `GET /health`: liveness, with the persistence state for humans.
//! `GET /ready`: readiness: 503 while the store is unreachable or its last
//! write failed (the service keeps counting in memory meanwhile).
//!
//! It answers 200 while the process serves requests, also when the database
//! is unreachable (the service keeps counting in memory then; `store.status`
//! says `degraded`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{AppError, ErrorCode, Unavailable};
use crate::domain::calendar::rfc3339;
use crate::quotas::Quotas;

/// The answer of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process serves requests.
    #[schema(value_type = String)]
    status: &'static str,
    /// The service's version.
    #[schema(value_type = String)]
    version: &'static str,
    /// Tenants and nodes held in memory.
    tenants: usize,
    store: StoreHealth,
}

/// The database as the service sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreHealth {
    /// `ok`, or `degraded` while the last write failed (the service serves
    /// from memory and catches up).
    #[schema(value_type = String)]
    status: &'static str,
    /// RFC 3339; null before the first flush.
    #[schema(required = true)]
    last_flush_at: Option<String>,
    #[schema(required = true)]
    last_error: Option<String>,
    /// Usage rows waiting for the next flush.
    pending_rows: usize,
}

/// The answer of `GET /ready` while ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    #[schema(value_type = String)]
    status: &'static str,
    /// `ok`.
    #[schema(value_type = String)]
    store: &'static str,
}

/// Liveness
///
/// 200 while the process serves requests, also while the database is
/// unreachable (`store.status` says `degraded` then).
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "service",
    security(()),
    responses((status = 200, description = "Serving.", body = Health)),
)]
pub async fn health(State(quotas): State<Arc<Quotas>>) -> Json<Health> {
    let h = quotas.flush_health();
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        tenants: quotas.tenant_count(),
        store: StoreHealth {
            status: if h.degraded { "degraded" } else { "ok" },
            last_flush_at: h.last_flush_at.map(rfc3339),
            last_error: h.last_error,
            pending_rows: quotas.pending_rows(),
        },
    })
}

/// Readiness
///
/// 503 while the database is unreachable or its last write failed.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "service",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Ready),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn ready(State(quotas): State<Arc<Quotas>>) -> Result<Json<Ready>, AppError> {
    match quotas.ready().await {
        Ok(()) => Ok(Json(Ready {
            status: "ready",
            store: "ok",
        })),
        Err(why) => Err(AppError::new(
            ErrorCode::StoreUnavailable,
            format!("not ready: {why}"),
        )),
    }
}
