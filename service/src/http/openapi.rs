//! The OpenAPI 3.1 document of both APIs, derived from the handlers and
//! their types (utoipa): every route is registered with its description
//! (`routes!` in [`super::routes`]), so the router and the document cannot
//! differ.
//!
//! ```text
//!   #[utoipa::path] on each handler ──┐
//!   ToSchema on the bodies (quota-api)├─▶ routes() ─▶ (axum Router, OpenApi)
//!   base(): info, security, errors ───┘                      │
//!                                          serialized once ──┴─▶ GET /openapi.json
//! ```
//!
//! `make generate` writes the same document to `openapi/edge-quota.json`;
//! a test fails when that copy is stale.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, OpenApi as Document};

use super::error::error_responses;

/// Where the committed copy of the document lives, from the workspace root.
pub const COMMITTED_PATH: &str = "openapi/edge-quota.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "edge-quota",
        description = "The quota service's REST API: the flat API under `/api/quota` (a tenant with a daily message and a monthly bandwidth limit) and the hierarchical API under `/api/v1` (quota nodes with any resources, allocation to children, consume, capacity claims, grants and the audit trail).\n\nEvery `/api` call needs `Authorization: Bearer <token>` unless the service runs with `AUTH_MODE=none`. Errors answer `{\"error\": {\"code\": ..., \"message\": ...}}`; each code comes with one status.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "flat", description = "The flat API: one tenant, a daily message limit and a monthly bandwidth limit."),
        (name = "nodes", description = "Quota nodes: create, read, list, allocate children, state, delete."),
        (name = "usage", description = "Counting usage: consume (check-and-increment) and the batch."),
        (name = "claims", description = "Capacity claims: hold part of a `none`-window resource by `resource_id`."),
        (name = "access", description = "Grants, the audit trail and the snapshot the operator polls."),
        (name = "service", description = "Health, readiness, metrics and this document; open to every caller."),
    ),
    modifiers(&Security),
)]
struct Base;

/// The document before the routes are added: info, tags, the bearer
/// scheme (required on every operation unless it says otherwise) and the
/// error responses the operations refer to.
pub fn base() -> Document {
    let mut doc = Base::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, response) in error_responses() {
        components.responses.insert(name, response);
    }
    doc
}

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc
            .components
            .get_or_insert_with(|| ComponentsBuilder::new().build());
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from AUTH_TOKENS_FILE (AUTH_MODE=static) or a ServiceAccount token for the audience edge-quota (AUTH_MODE=kubernetes).",
                    ))
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The document as served: serialized once, when the router is built.
#[derive(Debug, Clone)]
pub struct OpenApiJson(Bytes);

impl OpenApiJson {
    pub fn new(doc: &Document) -> Self {
        OpenApiJson(Bytes::from(to_json(doc)))
    }
}

/// The document as JSON text, as committed (pretty, with a final newline).
pub fn to_json(doc: &Document) -> String {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    camel_case_links(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// utoipa 5 writes a Link Object's fields in snake case (`operation_id`,
/// `request_body`); OpenAPI names them `operationId`, `operationRef` and
/// `requestBody`, and tools (schemathesis' stateful phase, generators)
/// ignore the others.
fn camel_case_links(value: &mut serde_json::Value) {
    let Some(paths) = value.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(from) {
                link.insert(to.to_owned(), v);
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "service",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object)),
)]
pub async fn serve(State(json): State<OpenApiJson>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json.0)
}
