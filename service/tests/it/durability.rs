//! Persistence promises, proved on the real binary and a real SQLite file:
//! - a graceful stop (SIGTERM) loses nothing that was acknowledged;
//! - a crash (SIGKILL) keeps everything flushed before it, and loses at most
//!   what was acknowledged since the last flush.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::open_store;
use common::process::ServiceProcess;
use quota_service::domain::window::Window;
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
    let db = open_store(&data).await;
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

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Everything observable about the tree: nodes (without versions), grants
/// and audit trails.
async fn observe(client: &reqwest::Client, base: &str, ids: &[&str]) -> Value {
    let (_, snap) = call(
        client,
        reqwest::Method::GET,
        format!("{base}/api/v1/snapshot"),
        None,
    )
    .await;
    let mut nodes = snap["nodes"].as_array().cloned().unwrap_or_default();
    for n in &mut nodes {
        n["version"] = Value::Null;
    }
    let mut grants = Vec::new();
    let mut audits = Vec::new();
    for id in ids {
        grants.push(
            call(
                client,
                reqwest::Method::GET,
                format!("{base}/api/v1/quotas/{id}/permissions"),
                None,
            )
            .await
            .1,
        );
        audits.push(
            call(
                client,
                reqwest::Method::GET,
                format!("{base}/api/v1/quotas/{id}/audit?limit=1000"),
                None,
            )
            .await
            .1,
        );
    }
    json!({"nodes": nodes, "grants": grants, "audits": audits})
}

#[tokio::test]
async fn a_three_level_tree_survives_sigterm_and_restart_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [("PERSISTENCE_INTERVAL_SECS", "3600")];
    let svc = ServiceProcess::start(&data, &env).await;
    let c = reqwest::Client::new();
    let b = svc.base.clone();
    let ok = |r: (u16, Value)| {
        assert!((200..300).contains(&r.0), "{r:?}");
        r.1
    };
    use reqwest::Method as M;
    ok(call(&c, M::PUT, format!("{b}/api/v1/quotas/org"), Some(json!({"limits": {"messages": {"max": 1000}, "storage": {"max": 100, "window": "none"}, "gpu-seconds": {"max": 600, "window": "hour"}}}))).await);
    for (parent, id, m, s) in [
        ("org", "team-a", 300, 40),
        ("org", "team-b", 200, 20),
        ("team-a", "squad-1", 100, 10),
        ("team-a", "squad-2", 50, 5),
        ("org", "team-c", 100, 10),
    ] {
        ok(call(&c, M::POST, format!("{b}/api/v1/quotas/{parent}/allocate"), Some(json!({"id": id, "name": id, "limits": {"messages": {"max": m}, "storage": {"max": s}}}))).await);
    }
    for (id, n) in [
        ("org", 50),
        ("team-a", 70),
        ("squad-1", 90),
        ("squad-2", 5),
        ("team-b", 10),
        ("team-c", 33),
    ] {
        ok(call(
            &c,
            M::POST,
            format!("{b}/api/v1/quotas/{id}/consume"),
            Some(json!({"usage": {"messages": n}})),
        )
        .await);
    }
    ok(call(
        &c,
        M::POST,
        format!("{b}/api/v1/quotas/org/consume"),
        Some(json!({"usage": {"gpu-seconds": 120}})),
    )
    .await);
    for (id, rid, amount) in [
        ("squad-1", "pvc-1", 7),
        ("team-b", "pvc-2", 20),
        ("team-c", "pvc-3", 4),
    ] {
        ok(call(&c, M::POST, format!("{b}/api/v1/quotas/{id}/usage/allocate"), Some(json!({"resource": "storage", "resource_id": rid, "amount": amount, "reason": "volume"}))).await);
    }
    ok(call(
        &c,
        M::POST,
        format!("{b}/api/v1/quotas/team-b/state"),
        Some(json!({"state": "suspended"})),
    )
    .await);
    ok(call(&c, M::DELETE, format!("{b}/api/v1/quotas/team-c"), None).await);
    for (id, subject, role) in [
        ("org", "system:serviceaccount:quota:operator", "admin"),
        ("team-a", "system:serviceaccount:a:bridge", "reporter"),
        ("squad-1", "alice", "reader"),
    ] {
        ok(call(
            &c,
            M::POST,
            format!("{b}/api/v1/quotas/{id}/permissions/grant"),
            Some(json!({"subject": subject, "role": role})),
        )
        .await);
    }
    let ids = ["org", "team-a", "team-b", "team-c", "squad-1", "squad-2"];
    let before = observe(&c, &b, &ids).await;
    // Sanity: the state is what the calls made it.
    let org = before["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "org")
        .cloned()
        .unwrap();
    assert_eq!(
        org["resources"]["messages"]["used"], 83,
        "50 own + 33 charged by the deleted team-c"
    );
    assert_eq!(
        org["resources"]["storage"]["used"], 4,
        "team-c's claim moved to org"
    );
    assert_eq!(
        org["resources"]["messages"]["subtree_used"],
        83 + 70 + 90 + 5 + 10
    );

    let (ok_exit, log) = svc.terminate().await;
    assert!(ok_exit, "{log}");
    let svc = ServiceProcess::start(&data, &env).await;
    let after = observe(&c, &svc.base, &ids).await;
    assert_eq!(after, before, "the tree changed across a restart");
    // And it still enforces: team-b is suspended, squad-1 has 10 left.
    let (s, _) = call(
        &c,
        M::POST,
        format!("{}/api/v1/quotas/team-b/consume", svc.base),
        Some(json!({"usage": {"messages": 1}})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(
        &c,
        M::POST,
        format!("{}/api/v1/quotas/squad-1/consume", svc.base),
        Some(json!({"usage": {"messages": 11}})),
    )
    .await;
    assert_eq!(s, 429);
    svc.terminate().await;
}
