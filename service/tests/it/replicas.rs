//! Several replicas of the real binary on one real PostgreSQL database, and
//! what happens when that database fails: outages, a flush killed between
//! its statements, a commit the database rejects.
//!
//! These tests always use PostgreSQL (sharing a database is what they are
//! about), whatever `EDGE_QUOTA_TEST_STORE` says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::process::ServiceProcess;
use quota_service::domain::window::Window;
use serde_json::{Value, json};
use sqlx::PgPool;

fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Window::Day.period_at(now).key()
}

/// Stored messages of `tenant` today (0 when no row).
async fn stored(pg: &PgPool, tenant: &str) -> u64 {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT used FROM quota_usage WHERE tenant_id = $1 AND quota_type = 'message_count' AND period = $2",
    )
    .bind(tenant)
    .bind(today())
    .fetch_optional(pg)
    .await
    .unwrap();
    row.map_or(0, |(u,)| u as u64)
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = client.post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits (up to `secs`) until `f` is true; panics with `what` otherwise.
async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` replicas of the binary on `url`, flushing every second.
async fn replicas(
    n: usize,
    url: &str,
    tmp: &tempfile::TempDir,
    extra: &[(&str, &str)],
) -> Vec<ServiceProcess> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut env = vec![
            ("DATABASE_URL", url),
            ("PERSISTENCE_INTERVAL_SECS", "1"),
            ("DEFAULT_MESSAGE_LIMIT", "1000000"),
        ];
        env.extend_from_slice(extra);
        out.push(ServiceProcess::start(&tmp.path().join(format!("r{i}")), &env).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_count_exactly_and_agree() {
    let url = testenv::postgres_database();
    let tmp = tempfile::tempdir().unwrap();
    let reps = replicas(3, &url, &tmp, &[]).await;
    let bases: Arc<Vec<String>> = Arc::new(reps.iter().map(|r| r.base.clone()).collect());
    let client = reqwest::Client::new();

    // A v1 node created through replica 0 reaches the others (they read it
    // back from the database with their next flush).
    let (s, _) = {
        let resp = client
            .put(format!("{}/api/v1/quotas/org", bases[0]))
            .json(&json!({"limits": {"messages": {"max": 1_000_000, "window": "day"}}}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), ())
    };
    assert_eq!(s, 201);
    for base in &bases[1..] {
        wait_until(10, "the node reaches every replica", || {
            let (c, u) = (client.clone(), format!("{base}/api/v1/quotas/org"));
            async move { get(&c, u).await.0 == 200 }
        })
        .await;
    }

    // 64 clients spread over the replicas: flat increments on 4 tenants and
    // consumes on the v1 node, amounts 1-3.
    const CLIENTS: u64 = 64;
    const CALLS: u64 = 50;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let bases = bases.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut sums = [0u64; 5];
            for i in 0..CALLS {
                let base = &bases[((c + i) % 3) as usize];
                let amount = 1 + (c * 7 + i) % 3;
                let t = ((c + 3 * i) % 5) as usize;
                let (status, _) = if t == 4 {
                    post(
                        &client,
                        format!("{base}/api/v1/quotas/org/consume"),
                        json!({"usage": {"messages": amount}}),
                    )
                    .await
                } else {
                    post(
                        &client,
                        format!("{base}/api/quota/increment"),
                        json!({"tenant_id": format!("t{t}"), "message_count": amount}),
                    )
                    .await
                };
                assert_eq!(status, 200);
                sums[t] += amount;
            }
            sums
        }));
    }
    let mut expected = [0u64; 5];
    for t in tasks {
        let sums = t.await.unwrap();
        for (e, s) in expected.iter_mut().zip(sums) {
            *e += s;
        }
    }
    assert_eq!(expected.iter().sum::<u64>(), {
        // Every call counted its amount: 64 x 50 calls of 1-3.
        let mut total = 0;
        for c in 0..CLIENTS {
            for i in 0..CALLS {
                total += 1 + (c * 7 + i) % 3;
            }
        }
        total
    });

    // After the flushes the database holds the exact totals...
    let pg = PgPool::connect(&url).await.unwrap();
    let names = ["t0", "t1", "t2", "t3", "org"];
    wait_until(15, "the database holds every count", || {
        let pg = pg.clone();
        async move {
            let mut ok = true;
            for (name, want) in names.iter().zip(expected) {
                ok &= stored(&pg, name).await == want;
            }
            ok
        }
    })
    .await;
    // ...and, a flush later, every replica reports them.
    for base in bases.iter() {
        wait_until(10, "every replica reports the totals", || {
            let (c, base) = (client.clone(), base.clone());
            async move {
                let mut ok = true;
                for (name, want) in names[..4].iter().zip(expected) {
                    let (_, v) = get(&c, format!("{base}/api/quota/{name}")).await;
                    ok &= v["message_count"] == json!(want);
                }
                let (_, v) = get(&c, format!("{base}/api/v1/quotas/org")).await;
                ok && v["resources"]["messages"]["used"] == json!(expected[4])
            }
        })
        .await;
    }
    // Stays exact: nothing is added twice by later flushes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (name, want) in names.iter().zip(expected) {
        assert_eq!(stored(&pg, name).await, want, "{name}");
    }
    for r in reps {
        assert!(r.terminate().await.0);
    }
    for (name, want) in names.iter().zip(expected) {
        assert_eq!(stored(&pg, name).await, want, "{name} after shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_strict_node_is_exact_across_replicas() {
    let url = testenv::postgres_database();
    let tmp = tempfile::tempdir().unwrap();
    let reps = replicas(3, &url, &tmp, &[]).await;
    let bases: Arc<Vec<String>> = Arc::new(reps.iter().map(|r| r.base.clone()).collect());
    let client = reqwest::Client::new();
    let resp = client
        .put(format!("{}/api/v1/quotas/exact", bases[0]))
        .json(&json!({"strict": true, "limits": {"messages": {"max": 500, "window": "day"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let node: Value = resp.json().await.unwrap();
    assert_eq!(node["strict"], true);
    for base in &bases[1..] {
        wait_until(10, "the strict node reaches every replica", || {
            let (c, u) = (client.clone(), format!("{base}/api/v1/quotas/exact"));
            async move { get(&c, u).await.1["strict"] == true }
        })
        .await;
    }

    // 64 clients x 20 consumes of 1 over three replicas: 1,280 attempts on a
    // limit of 500. Exactly 500 are allowed, whatever the interleaving.
    let allowed = consume_from_everywhere(&bases, "exact").await;
    let pg = PgPool::connect(&url).await.unwrap();
    assert_eq!(allowed, 500);
    assert_eq!(stored(&pg, "exact").await, 500);
    for base in bases.iter() {
        wait_until(10, "every replica reports 500", || {
            let (c, u) = (client.clone(), format!("{base}/api/v1/quotas/exact"));
            async move { get(&c, u).await.1["resources"]["messages"]["used"] == 500 }
        })
        .await;
    }
}

/// A node in use switched to strict on one replica is exact once every
/// replica has flushed twice after learning the flag (README, "Strict
/// nodes"): before, another replica may still admit from memory (1031,
/// 523, 1280, 1187 admitted against 500 in four runs right after the
/// switch). After that window, 64 clients over 3 replicas admit exactly
/// what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_switched_to_strict_is_exact_after_every_replica_flushed() {
    let url = testenv::postgres_database();
    let tmp = tempfile::tempdir().unwrap();
    let reps = replicas(3, &url, &tmp, &[]).await;
    let bases: Arc<Vec<String>> = Arc::new(reps.iter().map(|r| r.base.clone()).collect());
    let client = reqwest::Client::new();
    let put = |strict: bool| {
        let (c, u) = (client.clone(), format!("{}/api/v1/quotas/switch", bases[0]));
        async move {
            let r = c
                .put(u)
                .json(&json!({"strict": strict, "limits": {"messages": {"max": 500}}}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    };
    put(false).await;
    for base in bases.iter() {
        wait_until(10, "the node reaches every replica", || {
            let (c, u) = (client.clone(), format!("{base}/api/v1/quotas/switch"));
            async move { get(&c, u).await.0 == 200 }
        })
        .await;
    }
    // In use on every replica, from memory.
    for base in bases.iter() {
        let (s, v) = post(
            &client,
            format!("{base}/api/v1/quotas/switch/consume"),
            json!({"usage": {"messages": 30}}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    put(true).await;
    for base in bases.iter() {
        wait_until(10, "every replica learns the flag", || {
            let (c, u) = (client.clone(), format!("{base}/api/v1/quotas/switch"));
            async move { get(&c, u).await.1["strict"] == true }
        })
        .await;
    }
    // Two more flushes everywhere (PERSISTENCE_INTERVAL_SECS is 1 here).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let pg = PgPool::connect(&url).await.unwrap();
    assert_eq!(
        stored(&pg, "switch").await,
        90,
        "every replica's memory counts flushed"
    );

    let allowed = consume_from_everywhere(&bases, "switch").await;
    assert_eq!(allowed, 410, "exactly what was left of 500");
    assert_eq!(stored(&pg, "switch").await, 500);
}

/// 64 clients x 20 consumes of 1 message on node `id`, spread over every
/// replica; how many were allowed. Every refusal must be `quota_exhausted`.
async fn consume_from_everywhere(bases: &Arc<Vec<String>>, id: &'static str) -> u64 {
    let client = reqwest::Client::new();
    let allowed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..64u64 {
        let (bases, client, allowed) = (bases.clone(), client.clone(), allowed.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let base = &bases[((c + i) % bases.len() as u64) as usize];
                let (s, v) = post(
                    &client,
                    format!("{base}/api/v1/quotas/{id}/consume"),
                    json!({"usage": {"messages": 1}}),
                )
                .await;
                match s {
                    200 => {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => assert_eq!(v["error"]["code"], "quota_exhausted", "{v}"),
                    other => panic!("consume answered {other}: {v}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    allowed.load(Ordering::Relaxed)
}

/// Increments `tenant` by 1 from `clients` tasks until `stop`; returns the
/// number of acknowledged increments. Every call must answer 200.
fn load(
    base: String,
    tenant: &'static str,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let acked = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, base, stop, acked) =
                (client.clone(), base.clone(), stop.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (s, v) = post(
                        &client,
                        format!("{base}/api/quota/increment"),
                        json!({"tenant_id": tenant, "message_count": 1}),
                    )
                    .await;
                    assert_eq!(s, 200, "increment during the test answered {s}: {v}");
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        acked.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_under_load_loses_nothing_and_counts_nothing_twice() {
    let server = testenv::PostgresServer::start("outage");
    let tmp = tempfile::tempdir().unwrap();
    let mut reps = replicas(1, &server.url, &tmp, &[]).await;
    let svc = reps.remove(0);
    let client = reqwest::Client::new();
    let ready = |c: &reqwest::Client| {
        let (c, u) = (c.clone(), format!("{}/ready", svc.base));
        async move { get(&c, u).await.0 }
    };
    assert_eq!(ready(&client).await, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let running = load(svc.base.clone(), "acme", 16, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    server.stop();
    let mut went_unready = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if ready(&client).await == 503 {
            went_unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(went_unready, "readiness never reported the outage");
    let (_, health) = get(&client, format!("{}/health", svc.base)).await;
    assert_eq!(health["status"], "ok", "liveness stays ok: {health}");
    // Keep incrementing through the outage (the load asserts every 200).
    tokio::time::sleep(Duration::from_secs(3)).await;

    server.restart();
    wait_until(30, "ready again after the database returned", || {
        let r = ready(&client);
        async move { r.await == 200 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = running.await.unwrap();
    assert!(acked > 100, "the load ran ({acked} increments)");

    // Everything acknowledged is stored exactly once.
    let pg = PgPool::connect(&server.url).await.unwrap();
    wait_until(15, "the database catches up", || {
        let pg = pg.clone();
        async move { stored(&pg, "acme").await == acked }
    })
    .await;
    let (_, m) = get(&client, format!("{}/api/quota/acme", svc.base)).await;
    assert_eq!(m["message_count"], json!(acked));
    let (ok, log) = svc.terminate().await;
    assert!(ok, "{log}");
    assert_eq!(stored(&pg, "acme").await, acked, "after the final flush");
    assert!(
        log.contains("flush failed"),
        "the outage was logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_killed_between_its_statements_counts_nothing_twice() {
    let url = testenv::postgres_database();
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("PERSISTENCE_INTERVAL_SECS", "1"),
    ];
    let data = tmp.path().join("data");
    let svc = ServiceProcess::start(&data, &env).await;
    let client = reqwest::Client::new();
    let pg = PgPool::connect(&url).await.unwrap();
    let inc = |n: u64| {
        let (c, base) = (client.clone(), svc.base.clone());
        async move {
            for _ in 0..n {
                let (s, _) = post(
                    &c,
                    format!("{base}/api/quota/increment"),
                    json!({"tenant_id": "acme", "message_count": 1}),
                )
                .await;
                assert_eq!(s, 200);
            }
        }
    };
    inc(100).await;
    wait_until(10, "the first 100 are flushed", || {
        let pg = pg.clone();
        async move { stored(&pg, "acme").await == 100 }
    })
    .await;

    // Hold the flush log: the next flush writes its usage rows, then waits
    // on its flush log insert, inside its transaction.
    let mut blocker = pg.begin().await.unwrap();
    sqlx::query("LOCK TABLE quota_flush_log IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    inc(50).await;
    wait_until(10, "a flush waits between its statements", || {
        let pg = pg.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO quota_flush_log%'",
            )
            .fetch_one(&pg)
            .await
            .unwrap();
            n == 1
        }
    })
    .await;
    svc.kill9().await;
    blocker.rollback().await.unwrap();

    // The killed flush's transaction died with its connection.
    wait_until(10, "the killed flush's transaction is gone", || {
        let pg = pg.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO quota_flush_log%'",
            )
            .fetch_one(&pg)
            .await
            .unwrap();
            n == 0
        }
    })
    .await;
    assert_eq!(
        stored(&pg, "acme").await,
        100,
        "the killed flush wrote nothing"
    );

    // A crash loses what was not flushed (the 50), and nothing is doubled.
    let svc = ServiceProcess::start(&data, &env).await;
    let (_, m) = get(&client, format!("{}/api/quota/acme", svc.base)).await;
    assert_eq!(m["message_count"], 100);
    for _ in 0..10 {
        post(
            &client,
            format!("{}/api/quota/increment", svc.base),
            json!({"tenant_id": "acme", "message_count": 1}),
        )
        .await;
    }
    assert!(svc.terminate().await.0);
    assert_eq!(stored(&pg, "acme").await, 110);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_commit_is_written_once_when_the_database_accepts_again() {
    let url = testenv::postgres_database();
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("PERSISTENCE_INTERVAL_SECS", "1"),
    ];
    let svc = ServiceProcess::start(&tmp.path().join("data"), &env).await;
    let client = reqwest::Client::new();
    let pg = PgPool::connect(&url).await.unwrap();

    // A deferred constraint trigger: every statement of the flush succeeds,
    // the COMMIT fails.
    for stmt in [
        "CREATE FUNCTION reject_commit() RETURNS trigger AS $$
         BEGIN RAISE EXCEPTION 'commit rejected by the test'; END; $$ LANGUAGE plpgsql",
        "CREATE CONSTRAINT TRIGGER reject_commit AFTER INSERT ON quota_flush_log
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION reject_commit()",
    ] {
        sqlx::query(stmt).execute(&pg).await.unwrap();
    }
    for _ in 0..40 {
        let (s, _) = post(
            &client,
            format!("{}/api/quota/increment", svc.base),
            json!({"tenant_id": "acme", "message_count": 1}),
        )
        .await;
        assert_eq!(s, 200);
    }
    wait_until(10, "the rejected commit shows in readiness", || {
        let (c, u) = (client.clone(), format!("{}/ready", svc.base));
        async move {
            let (s, v) = get(&c, u).await;
            s == 503
                && v["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("commit")
        }
    })
    .await;
    // Let a few more flushes fail with more counted meanwhile.
    for _ in 0..10 {
        post(
            &client,
            format!("{}/api/quota/increment", svc.base),
            json!({"tenant_id": "acme", "message_count": 1}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stored(&pg, "acme").await, 0);

    sqlx::query("DROP TRIGGER reject_commit ON quota_flush_log")
        .execute(&pg)
        .await
        .unwrap();
    wait_until(15, "the database catches up", || {
        let pg = pg.clone();
        async move { stored(&pg, "acme").await == 50 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stored(&pg, "acme").await, 50, "written exactly once");
    let (s, _) = get(&client, format!("{}/ready", svc.base)).await;
    assert_eq!(s, 200);
    assert!(svc.terminate().await.0);
    assert_eq!(stored(&pg, "acme").await, 50);
}

/// A child deleted on one replica while another has counted usage on it
/// that it has not flushed yet: that usage still ends up charged to the
/// parent (it sat on the deleted child's row, and the parent admitted 107
/// against 100). Both orders: the usage flushed before the delete, and
/// after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_deleted_on_one_replica_keeps_the_others_usage_charged() {
    let url = testenv::postgres_database();
    let tmp = tempfile::tempdir().unwrap();
    // Flushes every 2 s: B's usage is still in its memory when A deletes.
    let reps = replicas(2, &url, &tmp, &[("PERSISTENCE_INTERVAL_SECS", "2")]).await;
    let (a, b) = (&reps[0].base, &reps[1].base);
    let client = reqwest::Client::new();
    let pg = PgPool::connect(&url).await.unwrap();
    for (round, child) in ["k1", "k2"].into_iter().enumerate() {
        let parent = format!("p{round}");
        let (s, v) = {
            let resp = client
                .put(format!("{a}/api/v1/quotas/{parent}"))
                .json(&json!({"limits": {"messages": {"max": 100}}}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        };
        assert!(s == 201, "{v}");
        let (s, v) = post(
            &client,
            format!("{a}/api/v1/quotas/{parent}/allocate"),
            json!({"id": child, "limits": {"messages": {"max": 50}}}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        // B learns of the child, then counts 7 on it.
        wait_until(10, "B sees the child", || async {
            get(&client, format!("{b}/api/v1/quotas/{child}")).await.0 == 200
        })
        .await;
        let (s, v) = post(
            &client,
            format!("{b}/api/v1/quotas/{child}/consume"),
            json!({"usage": {"messages": 7}}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        if round == 1 {
            // The other order: B's 7 reach the child's row before the delete.
            wait_until(10, "B's usage flushed", || async {
                stored(&pg, child).await == 7
            })
            .await;
        }
        let resp = client
            .delete(format!("{a}/api/v1/quotas/{child}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        // After both flushed and refreshed: the parent carries the 7, on
        // both replicas and in the database; the child's row holds nothing.
        for base in [a, b] {
            wait_until(
                15,
                "the parent carries the deleted child's usage",
                || async {
                    let (_, v) = get(&client, format!("{base}/api/v1/quotas/{parent}")).await;
                    v["resources"]["messages"]["used"] == 7
                },
            )
            .await;
        }
        assert_eq!(stored(&pg, &parent).await, 7, "round {round}");
        assert_eq!(stored(&pg, child).await, 0, "round {round}");
        // So the parent admits 93 more, not 100.
        let (s, _) = post(
            &client,
            format!("{a}/api/v1/quotas/{parent}/consume"),
            json!({"usage": {"messages": 94}}),
        )
        .await;
        assert_eq!(s, 429, "round {round}");
        let (s, _) = post(
            &client,
            format!("{a}/api/v1/quotas/{parent}/consume"),
            json!({"usage": {"messages": 93}}),
        )
        .await;
        assert_eq!(s, 200, "round {round}");
    }
}

/// A node created through one replica is served by the others at once, not
/// only after their next flush: a call naming an id a replica does not know
/// first reads the shared database. Found by the chart's three replicas on a
/// real node, where kube-proxy sends a workload's first call (right after
/// the operator reports the TenantQuota ready) to any replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_created_through_one_replica_is_served_at_once_by_the_others() {
    let url = testenv::postgres_database();
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "- token: root-token-0123456789\n  subject: root\n\
         - token: web-token-01234567890\n  subject: web\n",
    )
    .unwrap();
    let tokens = tokens.display().to_string();
    // A flush a minute apart: only the catch-up can bring the node in time.
    let mut reps = Vec::new();
    for i in 0..2 {
        let env = [
            ("DATABASE_URL", url.as_str()),
            ("PERSISTENCE_INTERVAL_SECS", "60"),
            ("AUTH_MODE", "static"),
            ("AUTH_TOKENS_FILE", tokens.as_str()),
            ("AUTH_ADMINS", "root"),
        ];
        reps.push(ServiceProcess::start(&tmp.path().join(format!("r{i}")), &env).await);
    }
    let (a, b) = (reps[0].base.clone(), reps[1].base.clone());
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, url: String, token: &'static str, body: Option<Value>| {
        let client = client.clone();
        async move {
            let mut req = client.request(method, url).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let root = "root-token-0123456789";
    let web = "web-token-01234567890";
    use reqwest::Method;

    // A root and web's grant, through replica a; web's first flat increment
    // through replica b.
    let limits = json!({"limits": {"messages": {"max": 100, "window": "day"}}});
    let grant = json!({"subject": "web", "role": "reporter"});
    for id in ["flat-org", "org"] {
        let (s, body) = call(
            Method::PUT,
            format!("{a}/api/v1/quotas/{id}"),
            root,
            Some(limits.clone()),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        let grant_url = format!("{a}/api/v1/quotas/{id}/permissions/grant");
        let (s, body) = call(Method::POST, grant_url, root, Some(grant.clone())).await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, body) = call(
        Method::POST,
        format!("{b}/api/quota/increment"),
        web,
        Some(json!({"tenant_id": "flat-org", "message_count": 2})),
    )
    .await;
    assert_eq!(s, 200, "flat increment through the other replica: {body}");

    // A v1 node and its grant made after b caught up: b catches up again.
    let (s, body) = call(
        Method::PUT,
        format!("{a}/api/v1/quotas/late"),
        root,
        Some(limits.clone()),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = call(
        Method::POST,
        format!("{a}/api/v1/quotas/late/permissions/grant"),
        root,
        Some(grant.clone()),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let consume = json!({"usage": {"messages": 3}});
    let (s, body) = call(
        Method::POST,
        format!("{b}/api/v1/quotas/late/consume"),
        web,
        Some(consume),
    )
    .await;
    assert_eq!(s, 200, "consume through the other replica: {body}");
    assert_eq!(body["usage"]["messages"], 3, "{body}");

    // An admin's PUT through b of a node made through a is an update.
    let (s, body) = call(
        Method::PUT,
        format!("{a}/api/v1/quotas/fresh"),
        root,
        Some(limits.clone()),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = call(
        Method::PUT,
        format!("{b}/api/v1/quotas/fresh"),
        root,
        Some(limits),
    )
    .await;
    assert_eq!(s, 200, "a PUT through the other replica updates: {body}");

    // Ids that exist nowhere are still 403 for web and 404 for an admin.
    let (s, _) = call(Method::GET, format!("{b}/api/v1/quotas/nowhere"), web, None).await;
    assert_eq!(s, 403);
    let (s, _) = call(
        Method::GET,
        format!("{b}/api/v1/quotas/nowhere"),
        root,
        None,
    )
    .await;
    assert_eq!(s, 404);
}
