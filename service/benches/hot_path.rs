//! Criterion benchmarks of the pure functions on the request path: the
//! window computation, the counter update, and a usage call on a node three
//! levels deep (the hierarchy check: ancestors' states, then the node's own
//! check-and-add). No I/O: what the HTTP figures of `make bench` spend
//! outside the network stack starts here.
//!
//! ```text
//! cargo bench -p quota-service --bench hot_path
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use quota_service::ManualClock;
use quota_service::domain::counter::Counter;
use quota_service::domain::node::{Limit, Node};
use quota_service::domain::tenant::{Limits, Usage};
use quota_service::domain::window::Window;
use quota_service::storage::{CounterStore, flat_node};

const NOON: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z
const BIG: u64 = 1 << 60;
const LIMITS: Limits = Limits {
    message_limit: BIG,
    bandwidth_limit_bytes: BIG,
};

fn windows(c: &mut Criterion) {
    let mut g = c.benchmark_group("window");
    for w in [Window::Minute, Window::Hour, Window::Day, Window::Month] {
        g.bench_function(format!("period_at/{w:?}"), |b| {
            b.iter(|| black_box(w).period_at(black_box(NOON)))
        });
    }
    let day = Window::Day.period_at(NOON);
    g.bench_function("key_stamp/day", |b| b.iter(|| black_box(day).key_stamp()));
    g.finish();
}

fn counters(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter");
    let mut counter = Counter::new(Window::Day.period_at(NOON));
    g.bench_function("add", |b| b.iter(|| counter.add(black_box(1))));
    let mut node = flat_node(LIMITS, NOON);
    g.bench_function("node_increment/flat tenant", |b| {
        b.iter(|| node.increment(black_box(&[("messages", 1)]), NOON, true))
    });
    let mut node = flat_node(LIMITS, NOON);
    g.bench_function("node_consume/flat tenant", |b| {
        b.iter(|| node.consume(black_box(&[("messages", 1)]), NOON, true))
    });
    g.finish();
}

fn store(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    let clock = ManualClock::new(NOON);
    let store = CounterStore::new(clock, LIMITS, true);
    let usage = Usage {
        messages: 1,
        bytes: 0,
    };
    store.increment_flat("tenant-1", usage).unwrap();
    g.bench_function("increment_flat (the flat API's increment)", |b| {
        b.iter(|| store.increment_flat(black_box("tenant-1"), usage))
    });

    // root -> mid -> leaf, as bench/run.py's consume scenario.
    let limit = |max| {
        vec![(
            "messages".to_owned(),
            Limit {
                max,
                window: Window::Day,
            },
        )]
    };
    store
        .insert_node("root", Node::new(None, &limit(BIG), NOON))
        .unwrap();
    store
        .insert_node("mid", Node::new(Some("root"), &limit(BIG / 2), NOON))
        .unwrap();
    store
        .insert_node("leaf", Node::new(Some("mid"), &limit(BIG / 4), NOON))
        .unwrap();
    g.bench_function("consume (3 levels deep)", |b| {
        b.iter(|| store.consume(black_box("leaf"), &[("messages", 1)], false))
    });
    g.bench_function("consume with headroom (RATELIMIT_FIELDS)", |b| {
        b.iter(|| store.consume(black_box("leaf"), &[("messages", 1)], true))
    });
    g.bench_function("check_usable (3 levels deep)", |b| {
        b.iter(|| store.check_usable(black_box("leaf"), &["messages"]))
    });
    g.finish();
}

/// Reading request bodies: serde_json as it is against the strict reading
/// every body goes through (objects for structs, no null; the bodies'
/// `deny_unknown_fields` and `UniqueMap` are in both).
fn bodies(c: &mut Criterion) {
    use quota_api::v1::BatchBody;
    use quota_service::bodies::UsageRequest;
    use quota_service::bodies::strict_json;
    let mut g = c.benchmark_group("body");
    let increment = br#"{"tenant_id":"acme-000042","message_count":1,"bytes_sent":2048}"#;
    g.bench_function("increment/serde_json", |b| {
        b.iter(|| serde_json::from_slice::<UsageRequest>(black_box(increment)).unwrap())
    });
    g.bench_function("increment/strict", |b| {
        b.iter(|| strict_json::from_slice::<UsageRequest>(black_box(increment)).unwrap())
    });
    let items: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"id":"tenant-{i:04}","usage":{{"messages":1,"bandwidth":512}}}}"#))
        .collect();
    let batch = format!(r#"{{"mode":"increment","items":[{}]}}"#, items.join(","));
    g.bench_function("batch of 100/serde_json", |b| {
        b.iter(|| serde_json::from_slice::<BatchBody>(black_box(batch.as_bytes())).unwrap())
    });
    g.bench_function("batch of 100/strict", |b| {
        b.iter(|| strict_json::from_slice::<BatchBody>(black_box(batch.as_bytes())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, windows, counters, store, bodies);
criterion_main!(benches);
