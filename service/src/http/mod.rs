//! The HTTP API: routes, body limit and the error format.
//!
//! [`app`] builds the whole router from the shared state; the binary serves
//! it and the tests drive it directly (`tower::ServiceExt::oneshot`).

mod error;
mod extract;
pub mod flat;
mod health;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

pub use error::AppError;

use crate::quotas::Quotas;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The quota service's router.
pub fn app(quotas: Arc<Quotas>) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/api/quota", get(flat::list))
        .route("/api/quota/increment", post(flat::increment))
        .route("/api/quota/check", post(flat::check))
        .route("/api/quota/limits", post(flat::set_limits))
        .route("/api/quota/{tenant_id}", get(flat::get_tenant))
        .route("/api/quota/{tenant_id}/reset", post(flat::reset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(quotas)
}

async fn not_found() -> AppError {
    AppError::not_found("not_found", "no such route; see the README for the API")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
