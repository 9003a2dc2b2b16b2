//! The hierarchical `/api/v1` API on the real router and a real SQLite file
//! (or PostgreSQL with `EDGE_QUOTA_TEST_STORE=postgres`), a module per
//! subject; the helpers every module uses are here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod claims;
mod edits;
mod errors;
mod grants;
mod nodes;
mod usage;

use crate::common;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_error, break_audit_inserts, repair_audit_inserts};
use serde_json::{Value, json};

async fn put(app: &TestApp, id: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/api/v1/quotas/{id}"),
        Some(&body.to_string()),
    )
    .await
}

async fn node(app: &TestApp, id: &str) -> Value {
    let (status, v) = app.get(&format!("/api/v1/quotas/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn consume(app: &TestApp, id: &str, usage: Value) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/quotas/{id}/consume"),
        json!({ "usage": usage }),
    )
    .await
}

/// org: messages 100/day, storage 10 (capacity); team-a 40, team-b 30.
async fn tree(app: &TestApp) {
    let (s, v) = put(
        app,
        "org",
        json!({"limits": {"messages": {"max": 100}, "storage": {"max": 10, "window": "none"}}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for (id, max) in [("team-a", 40), ("team-b", 30)] {
        let (s, v) = app
            .post(
                "/api/v1/quotas/org/allocate",
                json!({"id": id, "name": id, "limits": {"messages": {"max": max}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
}

/// The actions of an audit page, newest first.
fn audit_actions(page: &Value) -> Vec<Value> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].clone())
        .collect()
}
