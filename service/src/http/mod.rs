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
pub mod openapi;
mod ratelimit;
pub mod strict_json;
mod v1;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{AppError, ErrorCode};
pub use flat::UsageRequest;

use crate::auth::Authenticator;
use crate::quotas::Quotas;
use openapi::OpenApiJson;

/// Largest accepted request body (enforced by `extract::ApiJson`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted batch body (`POST /api/v1/usage/batch`).
pub const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;

/// What every handler may reach: the operations, the authenticator and
/// the API document.
#[derive(Debug, Clone)]
pub struct AppState {
    pub quotas: Arc<Quotas>,
    pub auth: Arc<Authenticator>,
    pub openapi: OpenApiJson,
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

impl FromRef<AppState> for OpenApiJson {
    fn from_ref(s: &AppState) -> Self {
        s.openapi.clone()
    }
}

/// The quota service's router. The API document is built here, once.
pub fn app(quotas: Arc<Quotas>, auth: Arc<Authenticator>) -> Router {
    let (router, doc) = routes().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState {
            quotas,
            auth,
            openapi: OpenApiJson::new(&doc),
        })
}

/// The OpenAPI document of [`app`] (what `GET /openapi.json` answers).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// Every route, each with its description for the document: a route
/// cannot be added without one.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        // the flat API
        .routes(routes!(flat::list))
        .routes(routes!(flat::increment))
        .routes(routes!(flat::check))
        .routes(routes!(flat::set_limits))
        .routes(routes!(flat::get_tenant))
        .routes(routes!(flat::reset))
        // the hierarchical API
        .routes(routes!(v1::nodes::list))
        .routes(routes!(v1::nodes::put, v1::nodes::get, v1::nodes::delete))
        .routes(routes!(v1::nodes::allocate))
        .routes(routes!(v1::usage::consume))
        .routes(routes!(v1::claims::claim))
        .routes(routes!(v1::claims::release))
        .routes(routes!(v1::nodes::set_state))
        .routes(routes!(v1::grants::grants))
        .routes(routes!(v1::grants::grant))
        .routes(routes!(v1::grants::revoke))
        .routes(routes!(v1::grants::audit))
        .routes(routes!(v1::usage::batch))
        .routes(routes!(v1::grants::snapshot))
        // open to every caller
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::serve))
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
