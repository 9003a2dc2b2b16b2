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

use super::error::{AppError, ErrorCode};
use crate::domain::calendar::rfc3339;
use crate::quotas::Quotas;

#[derive(Debug, Serialize)]
pub struct Health {
    status: &'static str,
    version: &'static str,
    tenants: usize,
    store: StoreHealth,
}

#[derive(Debug, Serialize)]
pub struct StoreHealth {
    status: &'static str,
    last_flush_at: Option<String>,
    last_error: Option<String>,
    pending_rows: usize,
}

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

pub async fn ready(State(quotas): State<Arc<Quotas>>) -> Result<Json<serde_json::Value>, AppError> {
    match quotas.ready().await {
        Ok(()) => Ok(Json(serde_json::json!({"status": "ready", "store": "ok"}))),
        Err(why) => Err(AppError::new(
            ErrorCode::StoreUnavailable,
            format!("not ready: {why}"),
        )),
    }
}
