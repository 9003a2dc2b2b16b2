//! The OpenAPI document: current in the repository, served as built, and
//! describing every route the router has (and nothing it lacks).

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use quota_service::{Authenticator, app, openapi};
use serde_json::Value;
use tower::ServiceExt;

use crate::common::TestApp;

fn document() -> Value {
    serde_json::to_value(openapi::document()).expect("the document is JSON")
}

#[test]
fn the_committed_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(openapi::COMMITTED_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == openapi::to_json(&openapi::document()),
        "{} is stale: run `make generate` and commit the result",
        path.display()
    );
}

#[test]
fn the_document_is_openapi_3_1_with_the_bearer_scheme() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    // Operation ids name each operation once (clients' method names).
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        }
    }
}

#[tokio::test]
async fn get_openapi_json_serves_the_document_to_anyone() {
    // Access control on, and no token: the document is open.
    let app_ = TestApp::as_admin().await;
    let (auth, _) = app_.caller.clone().expect("access control");
    let resp = app(app_.quotas.clone(), auth)
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        openapi::to_json(&openapi::document())
    );
}

/// The paths the router matches, as its `Debug` lists them
/// (`path_router: ... paths: {RouteId(0): "/health", ...}`), without the
/// fallback's catch-all that follows them.
fn router_paths(debug: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let start = debug
        .find("path_router")
        .expect("the router's Debug names path_router");
    let end = debug
        .find("fallback_router")
        .expect("... and fallback_router");
    let mut rest = &debug[start..end];
    while let Some(at) = rest.find(": \"/") {
        rest = &rest[at + 3..];
        if let Some(end) = rest.find('"') {
            paths.insert(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    paths
}

#[tokio::test]
async fn every_route_the_router_has_is_in_the_document() {
    let test = TestApp::new().await;
    let router = app(test.quotas.clone(), Authenticator::none());
    let routed = router_paths(&format!("{router:?}"));
    let doc = document();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    assert!(
        routed.len() >= 20,
        "the router's paths were not found: {routed:?}"
    );
    assert_eq!(routed, documented, "router paths vs documented paths");

    // On each documented path, every method the document does not name is
    // 405: the router has no undocumented method either.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let uri = path
            .replace("{id}", "team-a")
            .replace("{tenant_id}", "t1")
            .replace("{resource_id}", "r1");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            if item.get(method.as_str().to_lowercase()).is_some() {
                continue;
            }
            let resp = router
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method.clone())
                        .uri(&uri)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is routed but not documented"
            );
        }
    }
}
