//! Auto reset across day and month boundaries, with the clock set by the
//! test, through the real router and a real SQLite file; history rows stay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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
