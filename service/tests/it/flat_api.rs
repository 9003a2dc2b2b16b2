//! The flat `/api/quota` API on the real router and a real SQLite file:
//! every endpoint, and every error case with proof that it changed nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{TestApp, assert_error};
use serde_json::{Value, json};

const GIB: u64 = 1024 * 1024 * 1024;

/// Everything observable: all tenants' metrics.
async fn snapshot(app: &TestApp) -> Value {
    let (status, body) = app.get("/api/quota").await;
    assert_eq!(status, StatusCode::OK);
    body
}

#[tokio::test]
async fn increment_creates_unknown_tenants_with_the_defaults() {
    let app = TestApp::new().await;
    let (status, m) = app
        .post("/api/quota/increment", json!({"tenant_id": "acme"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["tenant_id"], "acme");
    assert_eq!(m["message_count"], 1, "message_count defaults to 1");
    assert_eq!(m["bytes_sent"], 0);
    assert_eq!(m["message_limit"], 100);
    assert_eq!(m["bandwidth_limit_bytes"], GIB);
    assert_eq!(m["messages_remaining"], 99);
    assert_eq!(m["bandwidth_remaining_bytes"], GIB);
    assert_eq!(m["message_period"], "2026-11-22");
    assert_eq!(m["period"], "2026-11-22");
    assert_eq!(m["bandwidth_period"], "2026-11");
    assert_eq!(m["message_reset_at"], "2026-11-23T00:00:00Z");
    assert_eq!(m["bandwidth_reset_at"], "2026-12-01T00:00:00Z");
    assert_eq!(m["last_updated"], "2026-11-22T12:00:00Z");
    assert_eq!(m["exceeded"], false);

    let (_, m) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "acme", "message_count": 4, "bytes_sent": 2048}),
        )
        .await;
    assert_eq!(
        (m["message_count"].clone(), m["bytes_sent"].clone()),
        (json!(5), json!(2048))
    );

    // An explicit zero counts zero (bandwidth-only report).
    let (_, m) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "acme", "message_count": 0, "bytes_sent": 1}),
        )
        .await;
    assert_eq!(
        (m["message_count"].clone(), m["bytes_sent"].clone()),
        (json!(5), json!(2049))
    );

    // The default limits are persisted with the next flush, which then
    // copies SQLite's WAL into the database file (commits do not).
    let report = app.quotas.flush().await.unwrap();
    match common::store_kind() {
        common::StoreKind::Sqlite => {
            let c = report.checkpoint.expect("a SQLite flush checkpoints");
            assert!(c.complete && c.frames > 0, "{c:?}");
        }
        common::StoreKind::Postgres => assert_eq!(report.checkpoint, None),
    }
    let reopened = app.reopen().await;
    let v = reopened.get("acme").expect("acme persisted");
    assert_eq!(
        (v.limits.message_limit, v.limits.bandwidth_limit_bytes),
        (100, GIB)
    );
    assert_eq!((v.messages.used, v.bandwidth.used), (5, 2049));
}

#[tokio::test]
async fn increment_reports_exceeded_and_keeps_counting() {
    let app = TestApp::new().await;
    let (_, m) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "t", "message_count": 99}),
        )
        .await;
    assert_eq!(m["exceeded"], false);
    let (_, m) = app
        .post("/api/quota/increment", json!({"tenant_id": "t"}))
        .await;
    assert_eq!(
        (m["message_count"].clone(), m["exceeded"].clone()),
        (json!(100), json!(true))
    );
    assert_eq!(m["message_quota_exceeded"], true);
    assert_eq!(m["bandwidth_quota_exceeded"], false);
    assert_eq!(m["messages_remaining"], 0);
    let (_, m) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "t", "message_count": 5}),
        )
        .await;
    assert_eq!(m["message_count"], 105, "increment always counts");
    let (_, m) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "b", "message_count": 0, "bytes_sent": GIB}),
        )
        .await;
    assert_eq!(
        (m["bandwidth_quota_exceeded"].clone(), m["exceeded"].clone()),
        (json!(true), json!(true))
    );
}

#[tokio::test]
async fn check_answers_without_creating_or_counting() {
    let app = TestApp::new().await;
    let (status, c) = app
        .post("/api/quota/check", json!({"tenant_id": "ghost"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (c["allowed"].clone(), c["exceeded"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(c["message_limit"], 100);
    assert_eq!(
        app.get("/api/quota/ghost").await.0,
        StatusCode::NOT_FOUND,
        "check creates nothing"
    );

    app.post(
        "/api/quota/increment",
        json!({"tenant_id": "t", "message_count": 98}),
    )
    .await;
    let (_, c) = app
        .post(
            "/api/quota/check",
            json!({"tenant_id": "t", "message_count": 2}),
        )
        .await;
    assert_eq!(c["allowed"], true);
    let (_, c) = app
        .post(
            "/api/quota/check",
            json!({"tenant_id": "t", "message_count": 3}),
        )
        .await;
    assert_eq!(
        (c["allowed"].clone(), c["exceeded"].clone()),
        (json!(false), json!(false))
    );
    let (_, c) = app
        .post(
            "/api/quota/check",
            json!({"tenant_id": "t", "message_count": 0, "bytes_sent": GIB + 1}),
        )
        .await;
    assert_eq!(c["allowed"], false);
    assert_eq!(c["message_count"], 98, "check counted nothing");

    app.post(
        "/api/quota/increment",
        json!({"tenant_id": "t", "message_count": 2}),
    )
    .await;
    let (_, c) = app
        .post("/api/quota/check", json!({"tenant_id": "t"}))
        .await;
    assert_eq!(
        (c["allowed"].clone(), c["exceeded"].clone()),
        (json!(false), json!(true))
    );
}

#[tokio::test]
async fn limits_are_written_through_and_merge_with_the_current_ones() {
    let app = TestApp::new().await;
    let (status, m) = app
        .post(
            "/api/quota/limits",
            json!({"tenant_id": "acme", "message_limit": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(
        (
            m["message_limit"].clone(),
            m["bandwidth_limit_bytes"].clone()
        ),
        (json!(10), json!(GIB))
    );

    let (_, m) = app
        .post(
            "/api/quota/limits",
            json!({"tenant_id": "acme", "bandwidth_limit_bytes": 5000}),
        )
        .await;
    assert_eq!(
        (
            m["message_limit"].clone(),
            m["bandwidth_limit_bytes"].clone()
        ),
        (json!(10), json!(5000))
    );

    let (_, m) = app
        .post(
            "/api/quota/limits",
            json!({"tenant_id": "acme", "bandwidth_limit_gb": 2.5}),
        )
        .await;
    assert_eq!(m["bandwidth_limit_bytes"], 5 * GIB / 2);

    // Written through: another process opening the file sees them, no flush.
    let reopened = app.reopen().await;
    let v = reopened.get("acme").unwrap();
    assert_eq!(
        (v.limits.message_limit, v.limits.bandwidth_limit_bytes),
        (10, 5 * GIB / 2)
    );

    // Limits apply at once.
    let (_, m) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "acme", "message_count": 10}),
        )
        .await;
    assert_eq!(m["exceeded"], true);
    let (_, m) = app
        .post(
            "/api/quota/limits",
            json!({"tenant_id": "acme", "message_limit": 11}),
        )
        .await;
    assert_eq!(
        (m["exceeded"].clone(), m["messages_remaining"].clone()),
        (json!(false), json!(1))
    );
}

#[tokio::test]
async fn get_one_and_list_all() {
    let app = TestApp::new().await;
    assert_error(
        &app.get("/api/quota/nobody").await,
        StatusCode::NOT_FOUND,
        "tenant_not_found",
    );
    assert_eq!(snapshot(&app).await, json!([]));
    for t in ["zeta", "alpha", "mid"] {
        app.post("/api/quota/increment", json!({"tenant_id": t}))
            .await;
    }
    let (status, m) = app.get("/api/quota/mid").await;
    assert_eq!(
        (status, m["message_count"].clone()),
        (StatusCode::OK, json!(1))
    );
    let all = snapshot(&app).await;
    let ids: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["tenant_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("alpha"), json!("mid"), json!("zeta")]);
}

#[tokio::test]
async fn reset_zeroes_the_current_periods_and_is_durable_at_once() {
    let app = TestApp::new().await;
    assert_error(
        &app.post("/api/quota/nobody/reset", json!({})).await,
        StatusCode::NOT_FOUND,
        "tenant_not_found",
    );
    app.post(
        "/api/quota/increment",
        json!({"tenant_id": "acme", "message_count": 7, "bytes_sent": 70}),
    )
    .await;
    app.quotas.flush().await.unwrap();
    let db = app.quotas.database();
    assert_eq!(
        db.stored_usage("acme", "messages", "2026-11-22")
            .await
            .unwrap(),
        Some(7)
    );

    let (status, m) = app.call(Method::POST, "/api/quota/acme/reset", None).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(
        (m["message_count"].clone(), m["bytes_sent"].clone()),
        (json!(0), json!(0))
    );
    // In the database before the call answered, without a flush.
    assert_eq!(
        db.stored_usage("acme", "messages", "2026-11-22")
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        db.stored_usage("acme", "bandwidth", "2026-11")
            .await
            .unwrap(),
        Some(0)
    );
    // Counting goes on from zero.
    let (_, m) = app
        .post("/api/quota/increment", json!({"tenant_id": "acme"}))
        .await;
    assert_eq!(m["message_count"], 1);

    // Usage counted but not flushed before a reset is reset too: it never
    // reaches the database later.
    app.post(
        "/api/quota/increment",
        json!({"tenant_id": "acme", "message_count": 5}),
    )
    .await;
    app.call(Method::POST, "/api/quota/acme/reset", None).await;
    app.post(
        "/api/quota/increment",
        json!({"tenant_id": "acme", "message_count": 2}),
    )
    .await;
    app.quotas.flush().await.unwrap();
    assert_eq!(
        db.stored_usage("acme", "messages", "2026-11-22")
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(app.reopen().await.get("acme").unwrap().messages.used, 2);
}

#[tokio::test]
async fn health_reports_ok() {
    let app = TestApp::new().await;
    let (status, h) = app.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["store"]["status"], "ok");
    assert_eq!(h["tenants"], 0);
    let (status, r) = app.get("/ready").await;
    assert_eq!(
        (status, r["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
}

/// `/metrics` in Prometheus text format, with values that follow the state.
#[tokio::test]
async fn metrics_follow_tenants_and_flushes() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let app = TestApp::new().await;
    let scrape = || async {
        let req = Request::get("/metrics").body(Body::empty()).unwrap();
        let resp = quota_service::app(app.quotas.clone(), quota_service::Authenticator::none())
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.split(' ').next() == Some(name))
                .unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "not `name value`: {line}");
        }
        (
            value("edge_quota_tenants"),
            value("edge_quota_flushes_total"),
            value("edge_quota_flushed_rows_total"),
            value("edge_quota_store_degraded"),
            value("edge_quota_flush_seconds_total"),
        )
    };
    let before = scrape().await;
    assert_eq!(before.0, 0.0);
    for t in ["a", "b", "c"] {
        app.post("/api/quota/increment", json!({"tenant_id": t}))
            .await;
    }
    app.quotas.flush().await.unwrap();
    let after = scrape().await;
    assert_eq!(after.0, 3.0);
    assert_eq!(after.1, before.1 + 1.0);
    assert!(after.2 >= before.2 + 3.0, "{after:?}");
    assert_eq!(after.3, 0.0);
    assert!(after.4 > before.4, "the flush's time is counted: {after:?}");
}

/// Each bad request gets the expected status and code, and leaves every
/// tenant (in memory and in the database) as it was.
#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    bad_requests_on(TestApp::new().await).await;
}

/// The same answers with access control on, for an owner of every node.
#[tokio::test]
async fn with_access_control_bad_requests_get_the_same_errors() {
    bad_requests_on(TestApp::as_admin().await).await;
}

async fn bad_requests_on(app: TestApp) {
    app.post(
        "/api/quota/increment",
        json!({"tenant_id": "acme", "message_count": 3}),
    )
    .await;
    app.post(
        "/api/quota/limits",
        json!({"tenant_id": "capped", "message_limit": 5}),
    )
    .await;
    app.quotas.flush().await.unwrap();
    let before = snapshot(&app).await;

    let long_id = "x".repeat(129);
    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        // Malformed JSON.
        (
            "POST",
            "/api/quota/increment",
            "{\"tenant_id\": ".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "POST",
            "/api/quota/increment",
            "not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "a",}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        // Wrong types and missing fields.
        (
            "POST",
            "/api/quota/increment",
            "{}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": 5}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "acme", "message_count": "3"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "acme", "message_count": 1.5}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/increment",
            "[]".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/check",
            r#"{"tenant_id": null}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "acme", "message_limit": true}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        // Negative and overflowing numbers.
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "acme", "message_count": -1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "acme", "bytes_sent": -5}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "acme", "bytes_sent": 18446744073709551616}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "acme", "message_count": 9223372036854775808}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/check",
            r#"{"tenant_id": "acme", "message_count": -1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "acme", "message_limit": -1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "acme", "message_limit": 9223372036854775808}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "acme", "bandwidth_limit_gb": -1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "acme", "bandwidth_limit_gb": 1e300}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "acme", "bandwidth_limit_gb": 1, "bandwidth_limit_bytes": 1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "acme"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        // Tenant ids: empty, too long, characters outside the alphabet.
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": ""}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/api/quota/increment",
            format!(r#"{{"tenant_id": "{long_id}"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "a b"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "a/b"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/api/quota/increment",
            r#"{"tenant_id": "caf\u00e9"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/api/quota/check",
            r#"{"tenant_id": "a\nb"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/api/quota/limits",
            r#"{"tenant_id": "", "message_limit": 1}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "GET",
            "/api/quota/a%20b",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "GET",
            // Reads address any listed root: past a node id's 253 characters.
            &*Box::leak(format!("/api/quota/{}", "x".repeat(254)).into_boxed_str()),
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "POST",
            "/api/quota/a%2Fb/reset",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
        ),
        (
            "GET",
            "/api/quota/%FF",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        // Routes and methods.
        (
            "GET",
            "/api/nothing",
            String::new(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "DELETE",
            "/api/quota/acme",
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            "/api/quota/increment",
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, body, status, code) in &cases {
        let resp = app
            .call(
                method.parse().unwrap(),
                uri,
                (!body.is_empty()).then_some(body.as_str()),
            )
            .await;
        assert_eq!(resp.0, *status, "{method} {uri} {body}: {}", resp.1);
        assert_eq!(
            resp.1["error"]["code"], *code,
            "{method} {uri} {body}: {}",
            resp.1
        );
        assert_eq!(
            snapshot(&app).await,
            before,
            "{method} {uri} {body} changed state"
        );
    }

    // Body over 64 KiB: 413.
    let big = format!(
        r#"{{"tenant_id": "acme", "pad": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    assert_error(
        &app.call(Method::POST, "/api/quota/increment", Some(&big))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // A body just under the limit is fine (here mostly whitespace).
    let ok = format!(
        r#"{{"tenant_id": "acme", {} "message_count": 0}}"#,
        " ".repeat(60 * 1024)
    );
    assert_eq!(
        app.call(Method::POST, "/api/quota/increment", Some(&ok))
            .await
            .0,
        StatusCode::OK
    );

    // Missing content type: 415.
    let req = Request::post("/api/quota/increment")
        .body(Body::from(r#"{"tenant_id": "acme"}"#))
        .unwrap();
    assert_error(
        &common::send(&app.quotas, req).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // Counter overflow: refused whole, never wraps.
    app.post(
        "/api/quota/increment",
        json!({"tenant_id": "big", "message_count": 0, "bytes_sent": i64::MAX}),
    )
    .await;
    let before_big = snapshot(&app).await;
    let resp = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "big", "message_count": 1, "bytes_sent": 1}),
        )
        .await;
    assert_error(&resp, StatusCode::CONFLICT, "counter_overflow");
    assert_eq!(snapshot(&app).await, before_big, "overflow changed state");

    // Nothing reached the database either.
    app.quotas.flush().await.unwrap();
    let db = app.quotas.database();
    assert_eq!(
        db.stored_usage("acme", "messages", "2026-11-22")
            .await
            .unwrap(),
        Some(3)
    );
    // (Flushes add deltas: a counter that never counted writes no row.)
    assert_eq!(
        db.stored_usage("big", "messages", "2026-11-22")
            .await
            .unwrap()
            .unwrap_or(0),
        0
    );
    assert_eq!(
        db.stored_usage("big", "bandwidth", "2026-11")
            .await
            .unwrap(),
        Some(i64::MAX as u64)
    );
}

#[tokio::test]
async fn a_listed_root_with_a_long_id_is_read_and_reset_by_its_id() {
    let app = TestApp::new().await;
    let id = "r".repeat(200);
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/api/v1/quotas/{id}"),
            Some(r#"{"limits": {"messages": {"max": 10}}}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, list) = app.get("/api/quota").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["tenant_id"] == id.as_str())
    );
    let (s, v) = app.get(&format!("/api/quota/{id}")).await;
    assert_eq!(
        (s, v["tenant_id"].clone()),
        (StatusCode::OK, json!(id)),
        "{v}"
    );
    let (s, _) = app.post(&format!("/api/quota/{id}/reset"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    // Past a node id's 253 characters it is still refused.
    let (s, v) = app.get(&format!("/api/quota/{}", "r".repeat(254))).await;
    assert_error(&(s, v), StatusCode::BAD_REQUEST, "invalid_tenant_id");
}
