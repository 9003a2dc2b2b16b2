//! 64 concurrent HTTP clients x 500 increments over a handful of tenants,
//! with the flusher running during the load: totals are exact in memory and,
//! after the final flush, in the database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestApp;
use quota_service::app;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CLIENTS: u64 = 64;
const PER_CLIENT: u64 = 500;
const TENANTS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_are_exact_in_memory_and_in_the_database() {
    let app_state = TestApp::new().await;
    let quotas = app_state.quotas.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app(quotas.clone())).into_future());

    // Flush every second while the load runs, to race flushes with increments.
    let stop = CancellationToken::new();
    let flusher = quotas.spawn_flusher(Duration::from_secs(1), stop.clone());

    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/quota/increment");
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let tenant = format!("tenant-{}", c % TENANTS);
            for _ in 0..PER_CLIENT {
                let resp = client
                    .post(&url)
                    .json(&json!({"tenant_id": tenant, "message_count": 1, "bytes_sent": c + 1}))
                    .send()
                    .await
                    .expect("request");
                assert!(resp.status().is_success(), "{}", resp.status());
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    stop.cancel();
    flusher.await.unwrap();

    let mut expected = vec![(0u64, 0u64); TENANTS as usize];
    for c in 0..CLIENTS {
        let e = &mut expected[(c % TENANTS) as usize];
        e.0 += PER_CLIENT;
        e.1 += PER_CLIENT * (c + 1);
    }
    for (t, (messages, bytes)) in expected.iter().enumerate() {
        let v = quotas.get(&format!("tenant-{t}")).unwrap();
        assert_eq!(
            (v.messages.used, v.bandwidth.used),
            (*messages, *bytes),
            "memory, tenant-{t}"
        );
    }
    assert_eq!(
        expected.iter().map(|e| e.0).sum::<u64>(),
        CLIENTS * PER_CLIENT
    );

    quotas.flush().await.unwrap();
    let db = quotas.database();
    for (t, (messages, bytes)) in expected.iter().enumerate() {
        let id = format!("tenant-{t}");
        assert_eq!(
            db.stored_usage(&id, "messages", "2026-11-22")
                .await
                .unwrap(),
            Some(*messages)
        );
        assert_eq!(
            db.stored_usage(&id, "bandwidth", "2026-11").await.unwrap(),
            Some(*bytes)
        );
    }
    server.abort();
}
