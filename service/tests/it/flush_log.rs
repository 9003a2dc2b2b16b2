//! The flush protocol on the suite's real store: deltas add up, and a flush
//! sent again after an unknown outcome is written at most once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use quota_service::domain::counter::RowId;
use quota_service::domain::resource::ResourceName;
use quota_service::domain::window::{Period, Window};
use quota_service::storage::SentBatch;
use quota_service::storage::{DirtyBatch, UsageDelta, UsageDeltas};

const NOW: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z

fn batch(seq: u64, delta: u64) -> SentBatch {
    SentBatch {
        seq,
        batch: DirtyBatch {
            children: Vec::new(),
            new_tenants: Vec::new(),
            usage: UsageDeltas::from_iter([UsageDelta {
                node_id: "acme",
                resource: &"messages".into(),
                period: Window::Day.period_at(NOW),
                delta,
                last_updated: NOW,
                stored_row: None,
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
    let sent =
        |seq: u64, rows: &[(&str, &_, _, u64)], times: u64, learned: &Learned<'_>| SentBatch {
            seq,
            batch: DirtyBatch {
                children: Vec::new(),
                new_tenants: Vec::new(),
                usage: rows
                    .iter()
                    .map(|&(node_id, resource, period, delta)| UsageDelta {
                        node_id,
                        resource,
                        period,
                        delta: delta * times,
                        last_updated: NOW,
                        stored_row: learned.get(&(node_id, period)).copied(),
                    })
                    .collect(),
            },
        };
    // Batch 1 never committed; it goes again with batch 2 (twice the
    // deltas): each row ends at 3x its delta.
    let none = Learned::new();
    let out = store
        .write_flush(
            "replica-a",
            &[sent(1, &rows, 1, &none)],
            &sent(2, &rows, 2, &none),
            NOW,
        )
        .await
        .unwrap();
    assert!(out.already_applied.is_empty());
    assert_eq!(
        out.usage_rows,
        rows.len(),
        "one stored row per (node, resource, period)"
    );
    let check = |times: u64| {
        let store = &store;
        let rows = &rows;
        async move {
            for &(node, resource, period, delta) in rows {
                let stored = store
                    .stored_usage(node, resource, &period.key())
                    .await
                    .unwrap();
                assert_eq!(
                    stored,
                    Some(times * delta),
                    "{node} {resource} {}",
                    period.key()
                );
            }
        }
    };
    check(3).await;

    // SQLite returns the ids of the rows written by key; the next flush
    // addresses them by id, in the same chunks.
    let learned: Learned<'_> = out
        .learned
        .iter()
        .map(|(node, _, period, row)| ((node, period), row))
        .collect();
    if common::store_kind() == common::StoreKind::Sqlite {
        assert_eq!(learned.len(), rows.len(), "every row's id");
    } else {
        assert!(learned.is_empty(), "PostgreSQL always goes by key");
    }
    store
        .write_flush("replica-a", &[], &sent(3, &rows, 1, &learned), NOW)
        .await
        .unwrap();
    check(4).await;
}

/// Writes `deltas` as flush `seq` of replica-a, nothing unconfirmed.
async fn flush_deltas(
    store: &quota_service::storage::Store,
    seq: u64,
    deltas: Vec<UsageDelta<'_>>,
) -> quota_service::storage::FlushOutcome {
    let sent = SentBatch {
        seq,
        batch: DirtyBatch {
            children: Vec::new(),
            new_tenants: Vec::new(),
            usage: deltas.into_iter().collect(),
        },
    };
    store
        .write_flush("replica-a", &[], &sent, NOW)
        .await
        .unwrap()
}

/// A delta of 1 to each node's row of `resource` in `period`, no row ids.
fn ones<'a>(ids: &'a [String], resource: &'a ResourceName, period: Period) -> Vec<UsageDelta<'a>> {
    ids.iter()
        .map(|node_id| UsageDelta {
            node_id,
            resource,
            period,
            delta: 1,
            last_updated: NOW,
            stored_row: None,
        })
        .collect()
}

/// Row ids learned by a flush, by node and period.
type Learned<'a> = std::collections::HashMap<(&'a str, Period), RowId>;

/// A row id the counters remember that is not the row of its key (never,
/// unless the table changed behind the service's back) is caught: its
/// statement changes nothing, the rows go by key instead, and every total
/// is still right. (PostgreSQL always goes by key.)
#[tokio::test]
async fn a_wrong_row_id_is_caught_and_the_rows_written_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    let messages = "messages".into();
    let today = Window::Day.period_at(NOW);
    let yesterday = Window::Day.period_at(NOW - 86_400);
    let delta = |node_id, period, delta, stored_row| UsageDelta {
        node_id,
        resource: &messages,
        period,
        delta,
        last_updated: NOW,
        stored_row,
    };
    let flush = |seq, deltas| flush_deltas(&store, seq, deltas);
    let totals = || async {
        let mut out = Vec::new();
        for (node, period) in [("a", today), ("b", today), ("a", yesterday), ("c", today)] {
            let used = store
                .stored_usage(node, "messages", &period.key())
                .await
                .unwrap();
            out.push(used);
        }
        out
    };
    let sqlite = common::store_kind() == common::StoreKind::Sqlite;

    let out = flush(
        1,
        vec![
            delta("a", today, 1, None),
            delta("b", today, 10, None),
            delta("a", yesterday, 100, None),
        ],
    )
    .await;
    let ids: std::collections::HashMap<(String, Period), RowId> = out
        .learned
        .iter()
        .map(|(node, _, period, row)| ((node.to_owned(), period), row))
        .collect();
    let id = |node: &str, period| ids.get(&(node.to_owned(), period)).copied();
    assert_eq!(ids.len(), if sqlite { 3 } else { 0 });
    let relearned = |out: &quota_service::storage::FlushOutcome, node: &str| {
        out.learned
            .iter()
            .find(|(n, _, p, _)| *n == node && *p == today)
            .map(|(_, _, _, row)| row)
    };

    // Another key's row.
    let out = flush(
        2,
        vec![
            delta("a", today, 2, id("b", today)),
            delta("b", today, 20, id("b", today)),
        ],
    )
    .await;
    assert_eq!(totals().await, [Some(3), Some(30), Some(100), None]);
    if sqlite {
        assert_eq!(relearned(&out, "a"), id("a", today), "a's own row id");
    }

    // The same node's row of another period.
    flush(3, vec![delta("a", today, 4, id("a", yesterday))]).await;
    assert_eq!(totals().await, [Some(7), Some(30), Some(100), None]);

    // An id no row has, while the key's row exists (the insert it turns
    // into breaks the unique key).
    flush(4, vec![delta("b", today, 5, RowId::new(999_999))]).await;
    assert_eq!(totals().await, [Some(7), Some(35), Some(100), None]);

    // An id no row has, for a key not stored yet: inserted, with that id.
    let out = flush(5, vec![delta("c", today, 6, RowId::new(888_888))]).await;
    assert_eq!(totals().await, [Some(7), Some(35), Some(100), Some(6)]);
    if !sqlite {
        assert!(out.learned.is_empty());
    }
}

/// The ids a SQLite flush hands back are the rows' ids, whether every row
/// of a statement was new (ids follow from their places) or some existed
/// (read by key), in chunks that split statements.
#[tokio::test]
async fn learned_row_ids_are_the_stored_rows_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = common::open_store(dir.path()).await;
    store.set_flush_chunk(4);
    let messages = "messages".into();
    let today = Window::Day.period_at(NOW);
    let nodes: Vec<String> = (0..10).map(|i| format!("node-{i}")).collect();
    let deltas = |ids| ones(ids, &messages, today);
    let check = |out: quota_service::storage::FlushOutcome, expected: usize| {
        let store = &store;
        async move {
            if common::store_kind() != common::StoreKind::Sqlite {
                assert!(out.learned.is_empty());
                return;
            }
            let stored: std::collections::HashMap<String, i64> =
                sqlx::query_as("SELECT tenant_id, id FROM quota_usage WHERE period = '2026-11-22'")
                    .fetch_all(store.pool())
                    .await
                    .unwrap()
                    .into_iter()
                    .collect();
            assert_eq!(out.learned.len(), expected);
            for (node, resource, period, row) in out.learned.iter() {
                assert_eq!((&**resource, period), ("messages", today));
                assert_eq!(stored.get(node), Some(&row.get()), "{node}");
            }
        }
    };
    // Every other node first: all new.
    let evens: Vec<String> = nodes.iter().step_by(2).cloned().collect();
    check(flush_deltas(&store, 1, deltas(&evens)).await, 5).await;
    // All ten without ids: the odd ones new, the even ones there already.
    check(flush_deltas(&store, 2, deltas(&nodes)).await, 10).await;
}
