//! 64 concurrent HTTP clients x 500 increments over a handful of tenants,
//! with the flusher running during the load: totals are exact in memory and,
//! after the final flush, in the database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

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
    let server = tokio::spawn(
        axum::serve(
            listener,
            app(quotas.clone(), quota_service::Authenticator::none()),
        )
        .into_future(),
    );

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

/// 64 clients consume from one node with demand far above `max`: exactly
/// `max` is counted, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_consumers_never_pass_max() {
    const MAX: u64 = 5_000;
    let app_state = TestApp::new().await;
    let quotas = app_state.quotas.clone();
    let (s, _) = app_state
        .call(
            axum::http::Method::PUT,
            "/api/v1/quotas/org",
            Some(r#"{"limits": {"requests": {"max": 100000, "window": "day"}}}"#),
        )
        .await;
    assert!(s.is_success());
    let (s, _) = app_state
        .post(
            "/api/v1/quotas/org/allocate",
            json!({"id": "team", "limits": {"requests": {"max": MAX}}}),
        )
        .await;
    assert!(s.is_success());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app(quotas.clone(), quota_service::Authenticator::none()),
        )
        .into_future(),
    );
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/v1/quotas/team/consume");
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            // 64 x 100 requests of 1-3 units: about 12,800 units asked for.
            for i in 0..100u64 {
                let amount = 1 + (c + i) % 3;
                let resp = client
                    .post(&url)
                    .json(&json!({"usage": {"requests": amount}}))
                    .send()
                    .await
                    .expect("request");
                match resp.status().as_u16() {
                    200 => ok += amount,
                    429 => refused += 1,
                    other => panic!("unexpected status {other}"),
                }
            }
            (ok, refused)
        }));
    }
    let mut granted = 0;
    let mut refused = 0;
    for t in tasks {
        let (ok, r) = t.await.unwrap();
        granted += ok;
        refused += r;
    }
    let team = quotas.node("team").unwrap();
    let used = team.resource("requests").unwrap().used;
    assert_eq!(used, granted, "every 200 was counted, no 429 was");
    assert!(used <= MAX, "used {used} > max {MAX}");
    assert!(
        used >= MAX - 2,
        "demand exceeded max, so it is used up to the last unit that fits: {used}"
    );
    assert!(refused > 0);
    server.abort();
}

/// Two allocations that together exceed the parent, at the same time:
/// exactly one succeeds, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_allocations_that_do_not_both_fit_exactly_one_succeeds() {
    for round in 0..20 {
        let app_state = TestApp::new().await;
        let quotas = app_state.quotas.clone();
        let (s, _) = app_state
            .call(
                axum::http::Method::PUT,
                "/api/v1/quotas/org",
                Some(r#"{"limits": {"messages": {"max": 100}}}"#),
            )
            .await;
        assert!(s.is_success());
        let spawn = |id: &'static str, max: u64| {
            let q = quotas.clone();
            tokio::spawn(async move {
                common::call(
                    &q,
                    axum::http::Method::POST,
                    "/api/v1/quotas/org/allocate",
                    Some(&json!({"id": id, "limits": {"messages": {"max": max}}}).to_string()),
                )
                .await
                .0
            })
        };
        let (a, b) = (spawn("team-a", 60), spawn("team-b", 50));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let created = [a, b].iter().filter(|s| s.as_u16() == 201).count();
        let refused = [a, b].iter().filter(|s| s.as_u16() == 409).count();
        assert_eq!((created, refused), (1, 1), "round {round}: {a} {b}");
        let org = quotas.node("org").unwrap();
        let allocated = org.resource("messages").unwrap().allocated;
        assert!(
            allocated == 60 || allocated == 50,
            "round {round}: allocated {allocated}"
        );
        assert_eq!(org.children.len(), 1);
    }
}

/// 64 consumers across a tree while editors resize, suspend, delete and
/// re-create nodes, with the flusher running: every admitted unit is
/// counted once, in the root's subtree, in memory, in the database and
/// after a restart; every parent's rolled-up usage equals the walk of its
/// subtree; no node that was never overcommitted passes its max.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_racing_consumes_keep_every_total_exact() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use quota_service::domain::node::NodeState;
    use quota_service::{LimitSpec, NodeSpec};

    const CONSUMERS: u64 = 64;
    const PER_CONSUMER: u64 = 400;
    let spec = |parent: Option<&str>, max: u64| NodeSpec {
        parent: parent.map(str::to_owned),
        limits: [("messages".to_owned(), LimitSpec { max, window: None })].into(),
        ..NodeSpec::default()
    };
    let app = TestApp::new().await;
    let q = app.quotas.clone();
    for (id, parent, max) in [
        ("r", None, 1_000_000),
        ("a", Some("r"), 20_000),
        ("a1", Some("a"), 5_000),
        ("a2", Some("a"), 5_000),
        ("b", Some("r"), 5_000),
        ("c", Some("r"), 2_000),
    ] {
        q.put("test", id, spec(parent, max)).await.unwrap();
    }
    let stop = CancellationToken::new();
    let flusher = q.spawn_flusher(Duration::from_millis(200), stop.clone());
    let admitted = Arc::new(AtomicU64::new(0));

    let mut tasks = Vec::new();
    for i in 0..CONSUMERS {
        let (q, admitted) = (q.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..PER_CONSUMER {
                let node = ["r", "a", "a1", "a2", "b", "c"][((i + k) % 6) as usize];
                let amount = 1 + (i * 7 + k) % 5;
                if q.consume(node, &[("messages", amount)]).await.is_ok() {
                    admitted.fetch_add(amount, Ordering::SeqCst);
                }
                if k.is_multiple_of(50) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let editors_done = CancellationToken::new();
    let editor = {
        let (q, done) = (q.clone(), editors_done.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !done.is_cancelled() {
                n += 1;
                // Resize a1 down below (and back above) what it used.
                let _ = q
                    .put("test", "a1", spec(Some("a"), 50 + (n * 37) % 4_000))
                    .await;
                // Suspend and activate b.
                let state = if n.is_multiple_of(2) {
                    NodeState::Suspended
                } else {
                    NodeState::Active
                };
                let _ = q.set_state("test", "b", state).await;
                // Delete c and create it again.
                let _ = q.delete("test", "c").await;
                let _ = q.put("test", "c", spec(Some("r"), 2_000)).await;
                // Shrink a below what its children hold, then back.
                let _ = q.put("test", "a", spec(Some("r"), 5_000)).await;
                let _ = q.put("test", "a", spec(Some("r"), 20_000)).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    editors_done.cancel();
    editor.await.unwrap();
    stop.cancel();
    flusher.await.unwrap();
    q.flush().await.unwrap();

    let total = admitted.load(Ordering::SeqCst);
    assert!(total > 0);
    let check = |q: &quota_service::Quotas, when: &str| {
        let root = q.node("r").unwrap();
        let m = root.resource("messages").unwrap();
        assert_eq!(
            m.subtree_used, total,
            "{when}: every admitted unit once in r's subtree"
        );
        // Rolled-up usage equals the walk of each subtree.
        fn walk(q: &quota_service::Quotas, id: &str) -> u64 {
            let v = q.node(id).unwrap();
            let own = v.resource("messages").map_or(0, |r| r.used);
            own + v.children.iter().map(|c| walk(q, c)).sum::<u64>()
        }
        for id in ["r", "a", "a1", "a2", "b", "c"] {
            let v = q.node(id).unwrap();
            if v.state == NodeState::Deleted {
                continue;
            }
            let r = v.resource("messages").unwrap();
            assert_eq!(r.subtree_used, walk(q, id), "{when}: {id}'s rollup");
            let held: u64 = v
                .children
                .iter()
                .map(|c| {
                    let c = q.node(c).unwrap();
                    let cr = c.resource("messages").unwrap();
                    cr.max.max(cr.subtree_used)
                })
                .sum();
            assert_eq!(r.allocated, held, "{when}: what {id}'s children hold");
        }
        // b and a2 were never lowered: they never passed their max.
        for id in ["b", "a2"] {
            let r = q.node(id).unwrap().resource("messages").cloned().unwrap();
            assert!(r.subtree_used <= r.max, "{when}: {id} {r:?}");
        }
    };
    check(&q, "in memory");
    // In the database: today's rows of every id sum to the same total.
    let db = q.database();
    let mut stored = 0;
    for id in ["r", "a", "a1", "a2", "b", "c"] {
        stored += db
            .stored_usage(id, "messages", "2026-11-22")
            .await
            .unwrap()
            .unwrap_or(0);
    }
    assert_eq!(stored, total, "in the database");
    let reopened = app.reopen().await;
    check(&reopened, "after a restart");
}
