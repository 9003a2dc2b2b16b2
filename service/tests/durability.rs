//! Persistence promises, proved on the real binary and a real SQLite file:
//! - a graceful stop (SIGTERM) loses nothing that was acknowledged;
//! - a crash (SIGKILL) keeps everything flushed before it, and loses at most
//!   what was acknowledged since the last flush.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::process::ServiceProcess;
use quota_service::domain::window::Window;
use quota_service::persistence::SqliteStore;
use serde_json::{Value, json};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

async fn increment(client: &reqwest::Client, base: &str, tenant: &str, bytes: u64) {
    let r = client
        .post(format!("{base}/api/quota/increment"))
        .json(&json!({"tenant_id": tenant, "bytes_sent": bytes}))
        .send()
        .await
        .expect("increment");
    assert!(r.status().is_success(), "{}", r.status());
}

async fn metrics(client: &reqwest::Client, base: &str, tenant: &str) -> Value {
    let r = client
        .get(format!("{base}/api/quota/{tenant}"))
        .send()
        .await
        .expect("get");
    assert!(r.status().is_success(), "{tenant}: {}", r.status());
    r.json().await.expect("json")
}

fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Window::Day.period_at(now).key()
}

#[tokio::test]
async fn sigterm_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A flush interval far longer than the test: only the shutdown flush writes.
    let env = [("PERSISTENCE_INTERVAL_SECS", "3600")];
    let svc = ServiceProcess::start(&data, &env).await;
    let client = reqwest::Client::new();
    const N: u64 = 300;
    for i in 0..N {
        for t in TENANTS {
            increment(&client, &svc.base, t, i).await;
        }
    }
    let (ok, log) = svc.terminate().await;
    assert!(ok, "clean exit on SIGTERM; log:\n{log}");
    assert!(log.contains("final flush done"), "log:\n{log}");

    let svc = ServiceProcess::start(&data, &env).await;
    for t in TENANTS {
        let m = metrics(&client, &svc.base, t).await;
        assert_eq!(m["message_count"], N, "{t}: {m}");
        assert_eq!(m["bytes_sent"], N * (N - 1) / 2, "{t}: {m}");
    }
    let (ok, log) = svc.terminate().await;
    assert!(ok, "{log}");
}

#[tokio::test]
async fn sigint_stops_as_gracefully_as_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [("PERSISTENCE_INTERVAL_SECS", "3600")];
    let svc = ServiceProcess::start(&data, &env).await;
    let client = reqwest::Client::new();
    for _ in 0..50 {
        increment(&client, &svc.base, "acme", 10).await;
    }
    let (ok, log) = svc.stop_with(nix::sys::signal::Signal::SIGINT).await;
    assert!(ok && log.contains("final flush done"), "log:\n{log}");
    let svc = ServiceProcess::start(&data, &env).await;
    let m = metrics(&client, &svc.base, "acme").await;
    assert_eq!(
        (m["message_count"].as_u64(), m["bytes_sent"].as_u64()),
        (Some(50), Some(500))
    );
    svc.terminate().await;
}

#[tokio::test]
async fn sigkill_keeps_what_was_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [("PERSISTENCE_INTERVAL_SECS", "1")];
    let svc = ServiceProcess::start(&data, &env).await;
    let client = reqwest::Client::new();
    const FLUSHED: u64 = 200;
    const MORE: u64 = 100;
    for _ in 0..FLUSHED {
        increment(&client, &svc.base, "acme", 1).await;
    }
    // Wait until a flush has put all of it in the database file.
    let day = today();
    let db = SqliteStore::open(&data.join("quotas.db")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = db.stored_usage("acme", "messages", &day).await.unwrap();
        if stored == Some(FLUSHED) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no flush within 20 s (stored {stored:?}); log:\n{}",
            svc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.close().await;
    for _ in 0..MORE {
        increment(&client, &svc.base, "acme", 1).await;
    }
    svc.kill9().await;

    let svc = ServiceProcess::start(&data, &env).await;
    let m = metrics(&client, &svc.base, "acme").await;
    let count = m["message_count"].as_u64().unwrap();
    assert!(
        (FLUSHED..=FLUSHED + MORE).contains(&count),
        "after SIGKILL: {count}; flushed before the crash: {FLUSHED}, acknowledged since: {MORE}"
    );
    assert_eq!(
        m["bytes_sent"].as_u64().unwrap(),
        count,
        "both counters come from the same flush"
    );
    let (ok, log) = svc.terminate().await;
    assert!(ok, "{log}");
}

#[tokio::test]
async fn a_bad_setting_is_a_clear_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quota-service"))
        .env_clear()
        .env("QUOTA_DATA_DIR", tmp.path())
        .env("QUOTA_PORT", "eighty")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("QUOTA_PORT") && err.contains("eighty"),
        "{err}"
    );
}
