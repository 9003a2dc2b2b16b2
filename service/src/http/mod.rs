//! The HTTP API: routes, body limit and the error format.
//!
//! [`app`] builds the whole router from the shared state; the binary serves
//! it and the tests drive it directly (`tower::ServiceExt::oneshot`).
//!
//! Every `/api` handler takes a [`caller::Caller`] first (authentication:
//! `401` before the body is read) and asks `Quotas::authorize` before it
//! reads or changes a node (`403`). `/health`, `/ready` and `/metrics`
//! are open.

mod caller;
mod error;
mod extract;
mod flat;
mod health;
mod json_writer;
mod metrics;
pub mod strict_json;
mod v1;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{delete, get, post, put};

pub use error::{AppError, ErrorCode};
pub use flat::UsageRequest;

use crate::auth::Authenticator;
use crate::quotas::Quotas;

/// Largest accepted request body (enforced by `extract::ApiJson`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted batch body (`POST /api/v1/usage/batch`).
pub const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;

/// What every handler may reach: the operations and the authenticator.
#[derive(Debug, Clone)]
pub struct AppState {
    pub quotas: Arc<Quotas>,
    pub auth: Arc<Authenticator>,
}

impl FromRef<AppState> for Arc<Quotas> {
    fn from_ref(s: &AppState) -> Self {
        s.quotas.clone()
    }
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(s: &AppState) -> Self {
        s.auth.clone()
    }
}

/// The quota service's router.
pub fn app(quotas: Arc<Quotas>, auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/api/quota", get(flat::list))
        .route("/api/quota/increment", post(flat::increment))
        .route("/api/quota/check", post(flat::check))
        .route("/api/quota/limits", post(flat::set_limits))
        .route("/api/quota/{tenant_id}", get(flat::get_tenant))
        .route("/api/quota/{tenant_id}/reset", post(flat::reset))
        .route("/api/v1/quotas", get(v1::list))
        .route(
            "/api/v1/quotas/{id}",
            put(v1::put).get(v1::get).delete(v1::delete),
        )
        .route("/api/v1/quotas/{id}/allocate", post(v1::allocate))
        .route("/api/v1/quotas/{id}/consume", post(v1::consume))
        .route("/api/v1/quotas/{id}/usage/allocate", post(v1::claim))
        .route(
            "/api/v1/quotas/{id}/usage/{resource_id}",
            delete(v1::release),
        )
        .route("/api/v1/quotas/{id}/state", post(v1::set_state))
        .route("/api/v1/quotas/{id}/permissions", get(v1::grants))
        .route("/api/v1/quotas/{id}/permissions/grant", post(v1::grant))
        .route("/api/v1/quotas/{id}/permissions/revoke", post(v1::revoke))
        .route("/api/v1/quotas/{id}/audit", get(v1::audit))
        .route("/api/v1/usage/batch", post(v1::batch))
        .route("/api/v1/snapshot", get(v1::snapshot))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState { quotas, auth })
}

async fn not_found() -> AppError {
    AppError::new(
        ErrorCode::NotFound,
        "no such route; see the README for the API",
    )
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}
