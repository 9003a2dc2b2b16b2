//! The flush protocol on the suite's real store: deltas add up, and a flush
//! sent again after an unknown outcome is written at most once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use quota_service::counters::{DirtyBatch, UsageDelta};
use quota_service::domain::window::Window;
use quota_service::persistence::SentBatch;

const NOW: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z

fn batch(seq: u64, delta: u64) -> SentBatch {
    SentBatch {
        seq,
        batch: DirtyBatch {
            new_tenants: Vec::new(),
            usage: vec![UsageDelta {
                node_id: "acme".into(),
                resource: "messages".into(),
                period: Window::Day.period_at(NOW),
                delta,
                last_updated: NOW,
            }],
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
