//! The store's behaviour end to end: loads, rollups, flushes, syncs.

use super::reads::ResourceView;
use super::*;
use crate::clock::ManualClock;
use crate::domain::access::Role;
use crate::domain::counter::RowId;

const NOON: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z

/// The memory promise (1,000,000 tenants in under 400 MiB, BENCHMARKS.md)
/// rests on these sizes: a boxed entry behind a 24-byte map slot, a flat
/// tenant's two resources inline, built-in names shared.
#[test]
fn a_load_rolls_up_loaded_usage_once_whatever_the_order() {
    let mut squad = node(Some("team"), 100);
    squad.resources[0].counter.used = 90;
    let mut team = node(Some("org"), 300);
    team.resources[0].counter.used = 70;
    let mut org = node(None, 1000);
    org.resources[0].counter.used = 50;
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let nodes = [
            loaded("squad", squad.clone()),
            loaded("team", team.clone()),
            loaded("org", org.clone()),
        ];
        let s = store();
        s.load(order.map(|i| nodes[i].clone()));
        assert_eq!(messages(&s, "team").subtree_used, 160, "{order:?}");
        assert_eq!(messages(&s, "org").subtree_used, 210, "{order:?}");
    }
}

#[test]
fn usage_rolls_up_through_every_ancestor_once() {
    let s = store();
    s.load([
        loaded("org", node(None, 1000)),
        loaded("team", node(Some("org"), 300)),
        loaded("squad", node(Some("team"), 100)),
    ]);
    s.consume("squad", &[(MESSAGES, 90)], false).unwrap();
    s.consume("team", &[(MESSAGES, 70)], false).unwrap();
    s.consume("org", &[(MESSAGES, 50)], false).unwrap();
    assert_eq!(messages(&s, "squad").subtree_used, 90);
    assert_eq!(messages(&s, "team").subtree_used, 160);
    assert_eq!(messages(&s, "org").subtree_used, 210);
}

#[test]
fn a_flat_tenant_stays_small() {
    assert_eq!(std::mem::size_of::<(Box<str>, Box<Entry>)>(), 24);
    // 216 bytes: a 224-byte allocation each (glibc), was 304.
    assert!(
        std::mem::size_of::<Entry>() <= 216,
        "{}",
        std::mem::size_of::<Entry>()
    );
    let node = flat_node(LIMITS, NOON);
    assert!(!node.resources.spilled(), "two resources are held inline");
    let other = flat_node(LIMITS, NOON + 1);
    for (a, b) in node.resources.iter().zip(&other.resources) {
        assert!(
            std::sync::Arc::ptr_eq(&a.name, &b.name),
            "{} is shared",
            a.name
        );
    }
}

const LIMITS: Limits = Limits {
    message_limit: 100,
    bandwidth_limit_bytes: 1 << 30,
};

fn store() -> Arc<CounterStore> {
    Arc::new(CounterStore::new(ManualClock::new(NOON), LIMITS, true))
}

fn node(parent: Option<&str>, messages: u64) -> Node {
    Node::new(
        parent,
        &[(
            MESSAGES.to_owned(),
            Limit {
                max: messages,
                window: Window::Day,
            },
        )],
        NOON,
    )
}

fn loaded(id: &str, n: Node) -> LoadedNode {
    LoadedNode {
        id: id.into(),
        node: n,
        claims: BTreeMap::new(),
        grants: Vec::new(),
    }
}

fn messages(s: &CounterStore, id: &str) -> ResourceView {
    s.view(id)
        .and_then(|v| v.resource(MESSAGES).cloned())
        .expect("node with messages")
}

fn total(id: &str, used: u64) -> StoredTotal {
    StoredTotal {
        node_id: id.into(),
        resource: MESSAGES.into(),
        period: Window::Day.period_at(NOON).key(),
        used,
    }
}

fn dirty_ids(batch: &DirtyBatch) -> Vec<&str> {
    let mut ids: Vec<&str> = batch.usage.iter().map(|d| d.node_id).collect();
    ids.sort_unstable();
    ids
}

/// A flush visits the entries that changed when few did, every entry
/// when more than a quarter did; either way it takes each change once,
/// and an entry that changes again after being taken is taken again.
#[test]
fn a_flush_takes_what_changed_whether_few_or_most_entries_changed() {
    let s = store();
    let ids: Vec<String> = (0..5000).map(|i| format!("n{i:04}")).collect();
    s.load(ids.iter().map(|id| loaded(id, node(None, 1000))));
    assert!(s.take_dirty().is_empty(), "nothing changed yet");

    // One of 5,000: the ids noted.
    s.increment("n0003", &[(MESSAGES, 1)]).ok();
    s.increment("n0003", &[(MESSAGES, 2)]).ok();
    assert_eq!(lock(&s.changed).ids.len(), 1, "noted once");
    let batch = s.take_dirty();
    assert_eq!(dirty_ids(&batch), ["n0003"]);
    assert_eq!(batch.usage.iter().map(|d| d.delta).sum::<u64>(), 3);
    assert!(s.take_dirty().is_empty(), "taken once");

    // 4,000 of 5,000: past the limit, a pass over the map.
    for id in &ids[..4000] {
        s.increment(id, &[(MESSAGES, 1)]).ok();
    }
    assert!(lock(&s.changed).all);
    let batch = s.take_dirty();
    assert_eq!(
        dirty_ids(&batch),
        ids[..4000].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(s.take_dirty().is_empty(), "taken once");

    // Changed again after being taken; a tenant created on first use;
    // a node marked dirty without usage.
    s.increment("n0003", &[(MESSAGES, 4)]).ok();
    s.increment_flat(
        "fresh",
        Usage {
            messages: 1,
            bytes: 0,
        },
    )
    .ok();
    s.mark_dirty("n4999");
    assert!(!lock(&s.changed).all);
    let batch = s.take_dirty();
    assert_eq!(dirty_ids(&batch), ["fresh", "n0003"]);
    assert_eq!(
        batch
            .new_tenants
            .iter()
            .map(|t| t.tenant_id.as_str())
            .collect::<Vec<_>>(),
        ["fresh"]
    );
    assert!(s.take_dirty().is_empty());
}

/// Row ids a flush learned go to the counters still in that period; a
/// counter entering a new period forgets its row.
#[test]
fn learned_row_ids_are_remembered_for_their_period_only() {
    let clock = ManualClock::new(NOON);
    let s = Arc::new(CounterStore::new(clock.clone(), LIMITS, true));
    s.load([loaded("a", node(None, 1000)), loaded("b", node(None, 1000))]);
    let today = Window::Day.period_at(NOON);
    let yesterday = Window::Day.period_at(NOON - 86_400);
    let row = |n| RowId::new(n).expect("non-zero");
    let messages_name: ResourceName = MESSAGES.into();
    let mut learned = StoredRows::default();
    learned.start_group(&messages_name, today);
    learned.push("a", row(7));
    learned.push("gone", row(8));
    learned.start_group(&messages_name, yesterday);
    learned.push("b", row(9));
    s.remember_rows(&learned);

    s.increment("a", &[(MESSAGES, 1)]).ok();
    s.increment("b", &[(MESSAGES, 1)]).ok();
    let batch = s.take_dirty();
    let hints: Vec<(&str, Option<RowId>)> = batch
        .usage
        .iter()
        .map(|d| (d.node_id, d.stored_row))
        .collect();
    assert!(hints.contains(&("a", Some(row(7)))), "{hints:?}");
    assert!(
        hints.contains(&("b", None)),
        "yesterday's row is not b's now: {hints:?}"
    );

    clock.advance(86_400);
    s.increment("a", &[(MESSAGES, 1)]).ok();
    let batch = s.take_dirty();
    let hints: Vec<(Period, Option<RowId>)> = batch
        .usage
        .iter()
        .map(|d| (d.period, d.stored_row))
        .collect();
    assert_eq!(hints, [(Window::Day.period_at(NOON + 86_400), None)]);
}

#[test]
fn stored_totals_replace_the_stored_part_and_keep_unflushed_usage() {
    let s = store();
    s.load([loaded("a", node(None, 1000))]);
    s.increment("a", &[(MESSAGES, 5)]).ok();
    let batch = s.take_dirty();
    assert_eq!(batch.usage.len(), 1);
    assert_eq!(
        batch.usage.iter().map(|d| d.delta).collect::<Vec<_>>(),
        vec![5]
    );
    s.increment("a", &[(MESSAGES, 2)]).ok();
    // The database holds our 5 plus 40 from other replicas.
    s.apply_totals(&[total("a", 45)]);
    assert_eq!(messages(&s, "a").used, 47);
    // The next flush sends only the 2.
    let batch = s.take_dirty();
    assert_eq!(batch.usage.iter().map(|d| d.delta).sum::<u64>(), 2);
    // A row of another period is history.
    s.apply_totals(&[StoredTotal {
        period: "2026-11-21".into(),
        ..total("a", 999)
    }]);
    assert_eq!(messages(&s, "a").used, 47);
    // Unknown nodes are ignored.
    s.apply_totals(&[total("zzz", 1)]);
    assert!(!s.contains("zzz"));
}

/// Pages arrive in id order, so a child can be loaded before its
/// parent: the reservations wait for the last page.
#[test]
fn a_load_in_pages_reserves_for_children_loaded_before_their_parent() {
    let s = store();
    let mut loading = s.loading();
    loading.add([
        loaded("a-team", node(Some("z-org"), 300)),
        loaded("b-team", node(Some("z-org"), 200)),
    ]);
    let mut gone = node(Some("z-org"), 50);
    gone.state = NodeState::Deleted;
    loading.add([loaded("c-gone", gone)]);
    loading.add([loaded("z-org", node(None, 1000))]);
    assert_eq!(messages(&s, "z-org").allocated, 0, "not before the end");
    loading.finish();

    assert_eq!(s.len(), 4);
    assert_eq!(
        messages(&s, "z-org").allocated,
        500,
        "deleted children reserve nothing"
    );
    assert_eq!(
        s.view("z-org").map(|v| v.children),
        Some(vec!["a-team".into(), "b-team".into()])
    );
    // The same nodes in one call give the same store.
    let whole = store();
    whole.load([
        loaded("z-org", node(None, 1000)),
        loaded("a-team", node(Some("z-org"), 300)),
        loaded("b-team", node(Some("z-org"), 200)),
    ]);
    assert_eq!(messages(&whole, "z-org").allocated, 500);
}

#[test]
fn synced_nodes_carry_their_reservations_to_their_parents() {
    let s = store();
    s.load([loaded("org", node(None, 1000))]);
    // Another replica created team-a (300) under org.
    s.sync_nodes(vec![loaded("team-a", node(Some("org"), 300))]);
    assert_eq!(messages(&s, "org").allocated, 300);
    assert_eq!(
        s.view("org").map(|v| v.children),
        Some(vec!["team-a".into()])
    );
    // ...then raised it to 400: the parent's reservation follows once.
    s.sync_nodes(vec![loaded("team-a", node(Some("org"), 400))]);
    s.sync_nodes(vec![loaded("team-a", node(Some("org"), 400))]);
    assert_eq!(messages(&s, "org").allocated, 400);
    // Usage counted here meanwhile survives a sync of the node.
    s.consume("team-a", &[(MESSAGES, 7)], false).ok();
    let mut synced = node(Some("org"), 400);
    synced.resources[0].counter.used = 10; // what the database holds
    s.sync_nodes(vec![loaded("team-a", synced)]);
    assert_eq!(messages(&s, "team-a").used, 17, "10 stored + 7 unflushed");
    // ...then deleted it: capacity back, no longer a child.
    let mut deleted = node(Some("org"), 400);
    deleted.state = NodeState::Deleted;
    s.sync_nodes(vec![loaded("team-a", deleted)]);
    assert_eq!(messages(&s, "org").allocated, 0);
    assert_eq!(s.view("org").map(|v| v.children), Some(vec![]));
    // Its unflushed 7 still reach the database with the next flush.
    let batch = s.take_dirty();
    assert_eq!(
        batch
            .usage
            .iter()
            .filter(|d| d.node_id == "team-a")
            .map(|d| d.delta)
            .sum::<u64>(),
        7
    );
}

#[test]
fn a_synced_window_change_keeps_the_old_counters_unflushed_usage() {
    let s = store();
    s.load([loaded("a", node(None, 1000))]);
    s.increment("a", &[(MESSAGES, 3)]).ok();
    let hourly = Node::new(
        None,
        &[(
            MESSAGES.to_owned(),
            Limit {
                max: 10,
                window: Window::Hour,
            },
        )],
        NOON,
    );
    s.sync_nodes(vec![loaded("a", hourly)]);
    assert_eq!(messages(&s, "a").window, Window::Hour);
    assert_eq!(messages(&s, "a").used, 0);
    let batch = s.take_dirty();
    let day: Vec<_> = batch
        .usage
        .iter()
        .filter(|d| d.period.window() == Window::Day)
        .map(|d| d.delta)
        .collect();
    assert_eq!(day, vec![3]);
}

#[test]
fn strict_nodes_send_usage_calls_to_the_database() {
    let s = store();
    let mut n = node(None, 10);
    n.strict = true;
    s.load([loaded("a", n)]);
    assert_eq!(
        s.consume("a", &[(MESSAGES, 1)], false),
        Err(UsageError::Strict("a".into()))
    );
    assert_eq!(messages(&s, "a").used, 0, "nothing counted in memory");
    let plan = s.plan_strict("a", &[(MESSAGES, 4)], true).expect("plan");
    assert_eq!((plan[0].amount, plan[0].cap), (4, 10));
    s.set_totals("a", &[(MESSAGES, plan[0].period, 4)]);
    assert_eq!(messages(&s, "a").used, 4);
    assert!(s.take_dirty().usage.is_empty(), "nothing to flush");
}

#[test]
fn a_read_back_of_what_memory_holds_changes_no_version() {
    let s = store();
    s.load([loaded("org", node(None, 1000))]);
    // Grants added here in one order, read back from the database in another.
    assert!(s.add_grant("org", "zoe", Role::Reporter));
    assert!(s.add_grant("org", "carol", Role::Owner));
    let version = s.view("org").map(|v| v.version);
    let mut same = loaded("org", node(None, 1000));
    same.grants = vec![
        NodeGrant {
            subject: "carol".into(),
            role: Role::Owner,
        },
        NodeGrant {
            subject: "zoe".into(),
            role: Role::Reporter,
        },
    ];
    s.sync_nodes(vec![same]);
    assert_eq!(s.view("org").map(|v| v.version), version, "nothing changed");
    // A real change still moves the version.
    s.sync_nodes(vec![loaded("org", node(None, 2000))]);
    assert_ne!(s.view("org").map(|v| v.version), version);
}
