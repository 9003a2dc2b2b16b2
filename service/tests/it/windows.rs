//! Auto reset across day and month boundaries, with the clock set by the
//! test, through the real router and a real SQLite file; history rows stay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{TestApp, at};
use serde_json::{Value, json};

async fn inc(app: &TestApp, tenant: &str, messages: u64, bytes: u64) -> Value {
    let (status, m) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": tenant, "message_count": messages, "bytes_sent": bytes}),
        )
        .await;
    assert!(status.is_success(), "{m}");
    m
}

async fn stored(app: &TestApp, tenant: &str, q: &str, period: &str) -> Option<u64> {
    app.quotas
        .database()
        .stored_usage(tenant, q, period)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_day_change_restarts_messages_and_keeps_bandwidth() {
    let app = TestApp::new().await;
    app.clock.set(at(2026, 11, 22, 23, 59, 59));
    inc(&app, "acme", 7, 100).await;
    app.clock.advance(1); // 2026-11-23T00:00:00Z
    let m = inc(&app, "acme", 2, 50).await;
    assert_eq!(m["message_period"], "2026-11-23");
    assert_eq!(m["message_count"], 2);
    assert_eq!(m["bandwidth_period"], "2026-11");
    assert_eq!(m["bytes_sent"], 150, "same month: bandwidth keeps counting");

    app.quotas.flush().await.unwrap();
    assert_eq!(
        stored(&app, "acme", "messages", "2026-11-22").await,
        Some(7),
        "history row stays"
    );
    assert_eq!(
        stored(&app, "acme", "messages", "2026-11-23").await,
        Some(2)
    );
    assert_eq!(
        stored(&app, "acme", "bandwidth", "2026-11").await,
        Some(150)
    );
}

#[tokio::test]
async fn a_month_change_restarts_both() {
    let app = TestApp::new().await;
    app.clock.set(at(2026, 11, 30, 23, 59, 0));
    inc(&app, "acme", 3, 1000).await;
    app.quotas.flush().await.unwrap();
    inc(&app, "acme", 1, 1).await; // dirty again before the rollover
    app.clock.set(at(2026, 12, 1, 0, 0, 30));
    let m = inc(&app, "acme", 1, 10).await;
    assert_eq!(
        (m["message_period"].clone(), m["message_count"].clone()),
        (json!("2026-12-01"), json!(1))
    );
    assert_eq!(
        (m["bandwidth_period"].clone(), m["bytes_sent"].clone()),
        (json!("2026-12"), json!(10))
    );
    assert_eq!(m["bandwidth_reset_at"], "2027-01-01T00:00:00Z");

    app.quotas.flush().await.unwrap();
    assert_eq!(
        stored(&app, "acme", "messages", "2026-11-30").await,
        Some(4)
    );
    assert_eq!(
        stored(&app, "acme", "bandwidth", "2026-11").await,
        Some(1001)
    );
    assert_eq!(
        stored(&app, "acme", "messages", "2026-12-01").await,
        Some(1)
    );
    assert_eq!(stored(&app, "acme", "bandwidth", "2026-12").await, Some(10));
}

#[tokio::test]
async fn an_idle_tenant_reads_zero_in_a_new_period_and_after_restart() {
    let app = TestApp::new().await;
    inc(&app, "acme", 5, 5).await;
    app.quotas.flush().await.unwrap();
    app.clock.set(at(2027, 1, 1, 0, 0, 0)); // year end passed
    let (_, m) = app.get("/api/quota/acme").await;
    assert_eq!(
        (m["message_period"].clone(), m["message_count"].clone()),
        (json!("2027-01-01"), json!(0))
    );
    assert_eq!(
        (m["bandwidth_period"].clone(), m["bytes_sent"].clone()),
        (json!("2027-01"), json!(0))
    );
    let reopened = app.reopen().await;
    let v = reopened.get("acme").unwrap();
    assert_eq!(
        (v.messages.used, v.messages.period.key()),
        (0, "2027-01-01".to_owned())
    );
    assert_eq!(
        stored(&app, "acme", "messages", "2026-11-22").await,
        Some(5)
    );
}

#[tokio::test]
async fn several_rollovers_between_flushes_keep_every_period() {
    let app = TestApp::new().await;
    for (day, n) in [(22, 1), (23, 2), (24, 3)] {
        app.clock.set(at(2026, 11, day, 10, 0, 0));
        inc(&app, "acme", n, 0).await;
    }
    app.quotas.flush().await.unwrap();
    for (day, n) in [("2026-11-22", 1), ("2026-11-23", 2), ("2026-11-24", 3)] {
        assert_eq!(
            stored(&app, "acme", "messages", day).await,
            Some(n),
            "{day}"
        );
    }
}

#[tokio::test]
async fn leap_day_is_its_own_period() {
    let app = TestApp::new().await;
    app.clock.set(at(2028, 2, 28, 23, 0, 0));
    inc(&app, "acme", 1, 0).await;
    app.clock.set(at(2028, 2, 29, 1, 0, 0));
    let m = inc(&app, "acme", 1, 0).await;
    assert_eq!(
        (m["message_period"].clone(), m["message_count"].clone()),
        (json!("2028-02-29"), json!(1))
    );
    assert_eq!(m["message_reset_at"], "2028-03-01T00:00:00Z");
    assert_eq!(m["bandwidth_reset_at"], "2028-03-01T00:00:00Z");
}

#[tokio::test]
async fn without_auto_reset_counting_goes_on_across_days_months_and_restarts() {
    let app = TestApp::with(&[("ENABLE_AUTO_RESET", "false")]).await;
    inc(&app, "acme", 5, 50).await;
    app.clock.set(at(2026, 12, 3, 8, 0, 0));
    let m = inc(&app, "acme", 1, 1).await;
    assert_eq!(
        (m["message_count"].clone(), m["bytes_sent"].clone()),
        (json!(6), json!(51))
    );
    assert_eq!(
        m["message_period"], "2026-11-22",
        "the counter stays in the period it started in"
    );
    app.quotas.flush().await.unwrap();

    let reopened = app.reopen().await;
    let v = reopened.get("acme").unwrap();
    assert_eq!((v.messages.used, v.bandwidth.used), (6, 51));
}

async fn v1_consume(app: &TestApp, id: &str, usage: Value) -> axum::http::StatusCode {
    app.post(
        &format!("/api/v1/quotas/{id}/consume"),
        json!({ "usage": usage }),
    )
    .await
    .0
}

/// Each window resets at its own calendar boundary; a capacity never does.
#[tokio::test]
async fn every_window_kind_resets_at_its_boundary() {
    let app = TestApp::new().await;
    // 2026-11-30T23:59:30Z: a minute, hour, day and month all end in 30 s.
    app.clock.set(at(2026, 11, 30, 23, 59, 30));
    let body = json!({"limits": {
        "per-minute": {"max": 5, "window": "minute"},
        "per-hour": {"max": 5, "window": "hour"},
        "per-day": {"max": 5, "window": "day"},
        "per-month": {"max": 5, "window": "month"},
        "disk": {"max": 5, "window": "none"},
    }});
    let (s, v) = app
        .call(
            axum::http::Method::PUT,
            "/api/v1/quotas/n",
            Some(&body.to_string()),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let all = json!({"per-minute": 5, "per-hour": 5, "per-day": 5, "per-month": 5});
    assert_eq!(
        v1_consume(&app, "n", all.clone()).await,
        axum::http::StatusCode::OK
    );
    let (s, _) = app
        .post(
            "/api/v1/quotas/n/usage/allocate",
            json!({"resource": "disk", "resource_id": "v1", "amount": 5, "reason": "r"}),
        )
        .await;
    assert!(s.is_success());
    for r in ["per-minute", "per-hour", "per-day", "per-month"] {
        assert_eq!(
            v1_consume(&app, "n", json!({ r: 1 })).await,
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "{r}"
        );
    }
    // Each resource resets at the end of its own period: step through them.
    // (time, resources that start again from zero, resources still used up)
    let checks: [(i64, &[&str], &[&str]); 4] = [
        (
            at(2026, 12, 1, 0, 0, 0),
            &["per-minute", "per-hour", "per-day", "per-month"],
            &[],
        ),
        (
            at(2026, 12, 1, 0, 0, 59),
            &[],
            &["per-minute", "per-hour", "per-day", "per-month"],
        ),
        (
            at(2026, 12, 1, 0, 1, 0),
            &["per-minute"],
            &["per-hour", "per-day", "per-month"],
        ),
        (
            at(2026, 12, 1, 1, 0, 0),
            &["per-minute", "per-hour"],
            &["per-day", "per-month"],
        ),
    ];
    for (t, resets, stays) in checks {
        app.clock.set(t);
        for r in resets {
            assert_eq!(
                v1_consume(&app, "n", json!({ *r: 5 })).await,
                axum::http::StatusCode::OK,
                "{r} at {t}"
            );
        }
        for r in stays {
            assert_eq!(
                v1_consume(&app, "n", json!({ *r: 1 })).await,
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "{r} at {t}"
            );
        }
    }
    app.clock.set(at(2026, 12, 2, 0, 0, 0));
    assert_eq!(
        v1_consume(&app, "n", json!({"per-day": 5})).await,
        axum::http::StatusCode::OK
    );
    assert_eq!(
        v1_consume(&app, "n", json!({"per-month": 1})).await,
        axum::http::StatusCode::TOO_MANY_REQUESTS
    );
    app.clock.set(at(2027, 1, 1, 0, 0, 0));
    assert_eq!(
        v1_consume(&app, "n", json!({"per-month": 5})).await,
        axum::http::StatusCode::OK
    );
    // The capacity is still fully claimed, a year later.
    let (_, n) = app.get("/api/v1/quotas/n").await;
    assert_eq!(n["resources"]["disk"]["used"], 5);
    assert_eq!(n["resources"]["disk"]["reset_at"], json!(null));
    assert_eq!(n["resources"]["disk"]["period"], "all");
    // History rows of the finished periods are in the database.
    app.quotas.flush().await.unwrap();
    assert_eq!(stored(&app, "n", "per-day", "2026-11-30").await, Some(5));
    assert_eq!(stored(&app, "n", "per-month", "2026-11").await, Some(5));
    assert_eq!(
        stored(&app, "n", "per-hour", "2026-11-30T23").await,
        Some(5)
    );
}

/// A subtree shares its parent's window: when the parent's period ends, the
/// children's usage and the usage charged to the parent by a deleted child
/// reset too, while reservations stay.
#[tokio::test]
async fn a_subtree_resets_with_its_parent() {
    let app = TestApp::new().await;
    app.clock.set(at(2026, 11, 22, 23, 0, 0));
    app.call(
        axum::http::Method::PUT,
        "/api/v1/quotas/org",
        Some(r#"{"limits": {"messages": {"max": 100}}}"#),
    )
    .await;
    for (id, max) in [("team-a", 40), ("team-b", 40)] {
        let (s, _) = app
            .post(
                "/api/v1/quotas/org/allocate",
                json!({"id": id, "limits": {"messages": {"max": max}}}),
            )
            .await;
        assert!(s.is_success());
    }
    let (s, _) = app
        .post(
            "/api/v1/quotas/team-a/allocate",
            json!({"id": "squad", "limits": {"messages": {"max": 10}}}),
        )
        .await;
    assert!(s.is_success());
    for (id, n) in [("org", 20), ("team-a", 30), ("squad", 10), ("team-b", 40)] {
        assert_eq!(
            v1_consume(&app, id, json!({"messages": n})).await,
            axum::http::StatusCode::OK,
            "{id}"
        );
    }
    app.call(axum::http::Method::DELETE, "/api/v1/quotas/team-b", None)
        .await;
    let (_, org) = app.get("/api/v1/quotas/org").await;
    assert_eq!(
        org["resources"]["messages"]["used"], 60,
        "20 own + 40 charged by team-b"
    );
    assert_eq!(org["resources"]["messages"]["subtree_used"], 100);

    app.clock.set(at(2026, 11, 23, 0, 0, 0));
    let (_, org) = app.get("/api/v1/quotas/org").await;
    let m = &org["resources"]["messages"];
    assert_eq!(
        (m["used"].clone(), m["subtree_used"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(
        (m["allocated"].clone(), m["available"].clone()),
        (json!(40), json!(60))
    );
    assert_eq!(
        v1_consume(&app, "squad", json!({"messages": 10})).await,
        axum::http::StatusCode::OK
    );
    assert_eq!(
        v1_consume(&app, "team-a", json!({"messages": 30})).await,
        axum::http::StatusCode::OK
    );
    assert_eq!(
        v1_consume(&app, "org", json!({"messages": 60})).await,
        axum::http::StatusCode::OK
    );
    assert_eq!(
        v1_consume(&app, "org", json!({"messages": 1})).await,
        axum::http::StatusCode::TOO_MANY_REQUESTS
    );
}
