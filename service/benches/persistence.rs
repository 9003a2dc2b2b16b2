//! Persistence cost on real databases: how long one flush of N dirty
//! counters takes, and what strict mode costs per usage call, on a SQLite
//! file and on PostgreSQL (started by `testenv`, like the tests).
//!
//! ```text
//! cargo bench -p quota-service --bench persistence            # N = 100,000
//! BENCH_COUNTERS=1000000 cargo bench -p quota-service --bench persistence
//! BENCH_STORES=sqlite cargo bench -p quota-service --bench persistence
//! ```
//!
//! Prints a markdown table (for BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quota_service::Config;
use quota_service::Quotas;
use quota_service::SystemClock;
use quota_service::domain::tenant::Usage;
use quota_service::{LimitSpec, NodeSpec};

const STRICT_CALLS: u32 = 2_000;

async fn open(url: &str, dir: &std::path::Path) -> Quotas {
    let vars: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", url.to_owned()),
        ("QUOTA_DATA_DIR", dir.display().to_string()),
        ("DEFAULT_MESSAGE_LIMIT", "1000000".to_owned()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    Quotas::open(&config, Arc::new(SystemClock)).await.unwrap()
}

fn usage(n: u64) -> Usage {
    Usage {
        messages: n,
        bytes: 0,
    }
}

struct Row {
    store: &'static str,
    first_flush: Duration,
    flush: Duration,
    rows: usize,
    memory_consume: Duration,
    strict_consume: Duration,
}

async fn measure(store: &'static str, url: &str, counters: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let q = open(url, dir.path()).await;
    let ids: Vec<String> = (0..counters).map(|i| format!("tenant-{i:07}")).collect();

    // First flush: every tenant is new (node + limits + usage rows).
    for id in &ids {
        q.increment(id, usage(1)).await.unwrap();
    }
    let t = Instant::now();
    let first = q.flush().await.unwrap();
    let first_flush = t.elapsed();
    eprintln!("{store}: first flush {first:?}");

    // Steady state: every counter dirty again, only usage deltas to write.
    for id in &ids {
        q.increment(id, usage(2)).await.unwrap();
    }
    let t = Instant::now();
    let report = q.flush().await.unwrap();
    let flush = t.elapsed();
    eprintln!("{store}: flush {report:?}");

    // Strict mode: one database statement per call, against the in-memory
    // check-and-increment on an identical node.
    let spec = |strict| NodeSpec {
        strict: Some(strict),
        limits: [(
            "messages".to_owned(),
            LimitSpec {
                max: 1_000_000_000,
                window: Some(quota_service::domain::window::Window::Day),
            },
        )]
        .into(),
        ..NodeSpec::default()
    };
    q.put("bench", "memory", spec(false)).await.unwrap();
    q.put("bench", "strict", spec(true)).await.unwrap();
    let per_call = |elapsed: Duration| elapsed / STRICT_CALLS;
    let t = Instant::now();
    for _ in 0..STRICT_CALLS {
        q.consume("memory", &[("messages", 1)]).await.unwrap();
    }
    let memory_consume = per_call(t.elapsed());
    let t = Instant::now();
    for _ in 0..STRICT_CALLS {
        q.consume("strict", &[("messages", 1)]).await.unwrap();
    }
    let strict_consume = per_call(t.elapsed());
    Row {
        store,
        first_flush,
        flush,
        rows: report.usage_rows,
        memory_consume,
        strict_consume,
    }
}

fn main() {
    let counters: usize = std::env::var("BENCH_COUNTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // BENCH_STORES=sqlite or =postgres measures one store only.
    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", sqlite_dir.path().join("quotas.db").display());
    eprintln!("persistence bench: {counters} counters, stores {stores}");
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        if stores.contains("sqlite") {
            rows.push(measure("SQLite (WAL file)", &sqlite_url, counters).await);
        }
        if stores.contains("postgres") {
            let pg_url = testenv::postgres_database();
            rows.push(measure("PostgreSQL (loopback)", &pg_url, counters).await);
        }
        rows
    });
    println!(
        "| store | first flush: {counters} new tenants | flush of {counters} dirty counters | rows written | consume in memory | strict consume | strict / memory |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} s | {:.2} s | {} | {:.2} us | {:.1} us | {:.0}x |",
            r.store,
            r.first_flush.as_secs_f64(),
            r.flush.as_secs_f64(),
            r.rows,
            r.memory_consume.as_secs_f64() * 1e6,
            r.strict_consume.as_secs_f64() * 1e6,
            r.strict_consume.as_secs_f64() / r.memory_consume.as_secs_f64().max(1e-9),
        );
    }
}
