//! The flush protocol on the suite's real store: deltas add up, and a flush
//! sent again after an unknown outcome is written at most once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use quota_service::dirty::{DirtyBatch, UsageDelta, UsageDeltas};
use quota_service::domain::window::Window;
use quota_service::persistence::SentBatch;

const NOW: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z

fn batch(seq: u64, delta: u64) -> SentBatch {
    SentBatch {
        seq,
        batch: DirtyBatch {
            new_tenants: Vec::new(),
            usage: UsageDeltas::from_iter([UsageDelta {
                node_id: "acme",
                resource: &"messages".into(),
                period: Window::Day.period_at(NOW),
                delta,
                last_updated: NOW,
            }]),
        },
    }
}

#[tokio::test]
async fn an_unconfirmed_flush_is_written_at_most_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    let stored = || async {
        store
            .stored_usage("acme", "messages", "2026-11-22")
            .await
            .unwrap()
    };

    // Flush 1 commits, but (say) its answer was lost: the flusher keeps it
    // as unconfirmed and sends it along with flush 2.
    let first = batch(1, 5);
    store
        .write_flush("replica-a", &[], &first, NOW)
        .await
        .unwrap();
    assert_eq!(stored().await, Some(5));
    let out = store
        .write_flush("replica-a", std::slice::from_ref(&first), &batch(2, 3), NOW)
        .await
        .unwrap();
    assert_eq!(out.already_applied, vec![1], "the log knew flush 1");
    assert_eq!(stored().await, Some(8), "5 + 3, not 5 + 5 + 3");

    // Flush 3 really failed (never committed): sent again with flush 4, it
    // is written then.
    let out = store
        .write_flush("replica-a", &[batch(3, 2)], &batch(4, 1), NOW)
        .await
        .unwrap();
    assert!(out.already_applied.is_empty());
    assert_eq!(stored().await, Some(11));

    // Sequence numbers are per replica: another replica's seq 1 is its own.
    store
        .write_flush("replica-b", &[], &batch(1, 100), NOW)
        .await
        .unwrap();
    assert_eq!(stored().await, Some(111));
    let out = store
        .write_flush("replica-b", &[batch(1, 100)], &batch(2, 0), NOW)
        .await
        .unwrap();
    assert_eq!(out.already_applied, vec![1]);
    assert_eq!(stored().await, Some(111));
}

/// A flush in chunks of 3 rows: nodes whose rows straddle chunk boundaries,
/// two resources and two periods per node, an unconfirmed earlier batch
/// adding to the same rows, a node id JSON must escape. Every stored row
/// ends exactly at what was added to it, once.
#[tokio::test]
async fn a_flush_in_chunks_adds_every_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = common::open_store(dir.path()).await;
    store.set_flush_chunk(3);
    let messages = "messages".into();
    let bandwidth = "bandwidth".into();
    let today = Window::Day.period_at(NOW);
    let yesterday = Window::Day.period_at(NOW - 86_400);
    let month = Window::Month.period_at(NOW);
    let nodes: Vec<String> = (0..7)
        .map(|i| format!("node-{i}"))
        .chain(["quo\"te".to_owned()])
        .collect();
    // (node, resource, period key, delta) in an order the flush must sort.
    let mut rows = Vec::new();
    for (i, node) in nodes.iter().enumerate().rev() {
        let i = i as u64;
        rows.push((node.as_str(), &messages, today, 10 + i));
        rows.push((node.as_str(), &bandwidth, month, 1000 + i));
        if i.is_multiple_of(2) {
            rows.push((node.as_str(), &messages, yesterday, 100 + i));
        }
    }
    let sent = |seq: u64, rows: &[(&str, &_, _, u64)], times: u64| SentBatch {
        seq,
        batch: DirtyBatch {
            new_tenants: Vec::new(),
            usage: rows
                .iter()
                .map(|&(node_id, resource, period, delta)| UsageDelta {
                    node_id,
                    resource,
                    period,
                    delta: delta * times,
                    last_updated: NOW,
                })
                .collect(),
        },
    };
    // Batch 1 never committed; it goes again with batch 2 (twice the
    // deltas): each row ends at 3x its delta.
    let out = store
        .write_flush("replica-a", &[sent(1, &rows, 1)], &sent(2, &rows, 2), NOW)
        .await
        .unwrap();
    assert!(out.already_applied.is_empty());
    assert_eq!(
        out.usage_rows,
        rows.len(),
        "one stored row per (node, resource, period)"
    );
    for &(node, resource, period, delta) in &rows {
        let stored = store
            .stored_usage(node, resource, &period.key())
            .await
            .unwrap();
        assert_eq!(
            stored,
            Some(3 * delta),
            "{node} {resource} {}",
            period.key()
        );
    }
}
