//! The IETF RateLimit fields on consume answers: `RateLimit-Policy` (each
//! counted resource's limit and window) and `RateLimit` (what is left and
//! the seconds until the window resets) on a counted consume with
//! `RATELIMIT_FIELDS=true`, and `RateLimit` on every refusal; the flat
//! increment answers its figures in its body only. The
//! model test (`model.rs`) checks the same figures against the reference
//! model for random sequences.
//!
//! The clock stands at noon, 2026-11-22: a day resets in 43,200 s,
//! November (30 days) in 8.5 days.

use crate::common::TestApp;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

const NOON_TO_MIDNIGHT: u64 = 43_200;
const NOON_TO_DECEMBER: u64 = 8 * 86_400 + 43_200;
const NOVEMBER: u64 = 30 * 86_400;

fn field(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("an ASCII field").to_owned())
}

/// The service with `RATELIMIT_FIELDS=true`.
async fn on() -> TestApp {
    TestApp::with(&[("RATELIMIT_FIELDS", "true")]).await
}

async fn put(app: &TestApp, id: &str, body: Value) {
    let (s, v) = app
        .call(
            axum::http::Method::PUT,
            &format!("/api/v1/quotas/{id}"),
            Some(&body.to_string()),
        )
        .await;
    assert!(s.is_success(), "PUT {id}: {s} {v}");
}

async fn consume(app: &TestApp, id: &str, usage: Value) -> (StatusCode, HeaderMap, Value) {
    app.post_with_headers(
        &format!("/api/v1/quotas/{id}/consume"),
        json!({ "usage": usage }),
    )
    .await
}

#[tokio::test]
async fn a_consume_answers_the_limit_what_is_left_and_when_it_resets() {
    let app = on().await;
    put(&app, "org", json!({"limits": {"messages": {"max": 100}}})).await;
    put(
        &app,
        "team",
        json!({"parent": "org", "limits": {"messages": {"max": 40}}}),
    )
    .await;

    let (s, h, v) = consume(&app, "team", json!({"messages": 10})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        field(&h, "ratelimit-policy").as_deref(),
        Some(r#""messages";q=40;w=86400"#),
        "the team's own limit: what it is checked against"
    );
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(r#""messages";r=30;t={NOON_TO_MIDNIGHT}"#))
    );

    // The parent's own share is max - allocated - used.
    let (_, h, _) = consume(&app, "org", json!({"messages": 5})).await;
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(r#""messages";r=55;t={NOON_TO_MIDNIGHT}"#))
    );

    // r is what the next consume is checked against: all of it fits,
    // one more does not.
    let (s, h, _) = consume(&app, "team", json!({"messages": 30})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(r#""messages";r=0;t={NOON_TO_MIDNIGHT}"#))
    );
    let (s, h, v) = consume(&app, "team", json!({"messages": 1})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(r#""messages";r=0;t={NOON_TO_MIDNIGHT}"#)),
        "a refusal says what is left of the refusing resource"
    );
    assert_eq!(field(&h, "retry-after"), Some(NOON_TO_MIDNIGHT.to_string()));
    assert_eq!(
        field(&h, "ratelimit-policy"),
        None,
        "a refusal names no policy"
    );
}

#[tokio::test]
async fn a_refusal_of_more_than_is_left_says_what_is_left() {
    let app = on().await;
    put(&app, "org", json!({"limits": {"messages": {"max": 10}}})).await;
    let (s, h, v) = consume(&app, "org", json!({"messages": 11})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(r#""messages";r=10;t={NOON_TO_MIDNIGHT}"#))
    );
    assert_eq!(v["available"], 10);
}

#[tokio::test]
async fn every_resource_of_a_consume_is_a_policy_of_its_window() {
    let app = on().await;
    put(
        &app,
        "org",
        json!({"limits": {
            "messages": {"max": 100},
            "bandwidth": {"max": 1000},
            "requests": {"max": 60, "window": "minute"},
            "storage": {"max": 5, "window": "none"},
        }}),
    )
    .await;
    let (s, h, v) = consume(
        &app,
        "org",
        json!({"messages": 1, "bandwidth": 10, "requests": 2}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        field(&h, "ratelimit-policy"),
        Some(format!(
            r#""bandwidth";q=1000;w={NOVEMBER}, "messages";q=100;w=86400, "requests";q=60;w=60"#
        ))
    );
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(
            r#""bandwidth";r=990;t={NOON_TO_DECEMBER}, "messages";r=99;t={NOON_TO_MIDNIGHT}, "requests";r=58;t=60"#
        ))
    );
}

#[tokio::test]
async fn a_strict_node_answers_the_fields_from_the_database_totals() {
    let app = on().await;
    put(
        &app,
        "org",
        json!({"strict": true, "limits": {"messages": {"max": 10}}}),
    )
    .await;
    let (s, h, v) = consume(&app, "org", json!({"messages": 3})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(r#""messages";r=7;t={NOON_TO_MIDNIGHT}"#))
    );
    let (s, h, _) = consume(&app, "org", json!({"messages": 8})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(r#""messages";r=7;t={NOON_TO_MIDNIGHT}"#))
    );
}

#[tokio::test]
async fn without_automatic_resets_there_is_no_window_and_no_reset() {
    let app = TestApp::with(&[("RATELIMIT_FIELDS", "true"), ("ENABLE_AUTO_RESET", "false")]).await;
    put(&app, "org", json!({"limits": {"messages": {"max": 10}}})).await;
    let (s, h, v) = consume(&app, "org", json!({"messages": 3})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        field(&h, "ratelimit-policy").as_deref(),
        Some(r#""messages";q=10"#)
    );
    assert_eq!(field(&h, "ratelimit").as_deref(), Some(r#""messages";r=7"#));
}

#[tokio::test]
async fn the_flat_increment_answers_its_figures_in_the_body_only() {
    let app = TestApp::new().await;
    let (s, h, v) = app
        .post_with_headers(
            "/api/quota/increment",
            json!({"tenant_id": "acme", "message_count": 4, "bytes_sent": 2048}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["messages_remaining"].is_u64(), "{v}");
    assert_eq!(
        (field(&h, "ratelimit-policy"), field(&h, "ratelimit")),
        (None, None),
        "the hot tracking call carries no RateLimit fields (docs/decisions/31-ratelimit-fields.md)"
    );
}

#[tokio::test]
async fn by_default_only_a_refusal_carries_ratelimit() {
    let app = TestApp::new().await;
    put(&app, "org", json!({"limits": {"messages": {"max": 10}}})).await;
    let (s, h, v) = consume(&app, "org", json!({"messages": 10})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (field(&h, "ratelimit-policy"), field(&h, "ratelimit")),
        (None, None),
        "RATELIMIT_FIELDS is off"
    );
    let (s, h, _) = consume(&app, "org", json!({"messages": 1})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        field(&h, "ratelimit"),
        Some(format!(r#""messages";r=0;t={NOON_TO_MIDNIGHT}"#)),
        "beside Retry-After"
    );
}
