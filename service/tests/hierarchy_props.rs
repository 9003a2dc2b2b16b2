//! Property tests of the hierarchy: random sequences of put (create, grow,
//! shrink), allocate, consume, claim, release, suspend, delete and time
//! passing, run against the real store (in-process, real SQLite file).
//! After every step:
//! - `allocated` of every node equals the sum of its live children's `max`;
//! - `subtree_used` equals the node's own usage plus its children's
//!   `subtree_used` (the rolled-up sums equal the sums of the leaves);
//! - `available = max - allocated - used`;
//! - no step but shrinking a node's own limit makes it overcommitted
//!   (`used + allocated <= max` is kept by consume, claim and allocate);
//! - consume succeeds exactly when the node and its ancestors are active and
//!   the amount fits in what was available;
//!
//! and at the end, the state survives a flush and a reopen unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::TestApp;
use proptest::prelude::*;
use quota_service::counters::NodeView;
use quota_service::domain::node::NodeState;
use quota_service::quotas::{ClaimSpec, LimitSpec, NodeSpec, QuotaError};

const NODES: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    Put {
        node: usize,
        parent: usize,
        messages: u64,
        storage: u64,
    },
    Allocate {
        node: usize,
        parent: usize,
        messages: u64,
    },
    Consume {
        node: usize,
        amount: u64,
    },
    Claim {
        node: usize,
        rid: u8,
        amount: u64,
    },
    Release {
        node: usize,
        rid: u8,
    },
    Suspend {
        node: usize,
        suspended: bool,
    },
    Delete {
        node: usize,
    },
    Advance {
        secs: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..NODES, 0..NODES, 0u64..120, 0u64..20).prop_map(|(node, parent, messages, storage)| Op::Put { node, parent, messages, storage }),
        2 => (1..NODES, 0..NODES, 0u64..120).prop_map(|(node, parent, messages)| Op::Allocate { node, parent, messages }),
        6 => (0..NODES, 0u64..60).prop_map(|(node, amount)| Op::Consume { node, amount }),
        3 => (0..NODES, 0u8..4, 0u64..15).prop_map(|(node, rid, amount)| Op::Claim { node, rid, amount }),
        2 => (0..NODES, 0u8..4).prop_map(|(node, rid)| Op::Release { node, rid }),
        1 => (0..NODES, any::<bool>()).prop_map(|(node, suspended)| Op::Suspend { node, suspended }),
        1 => (1..NODES).prop_map(|node| Op::Delete { node }),
        1 => (0i64..100_000).prop_map(|secs| Op::Advance { secs }),
    ]
}

fn id(n: usize) -> String {
    format!("n{n}")
}

fn spec(parent: Option<usize>, messages: u64, storage: u64) -> NodeSpec {
    let window = |w| if parent.is_none() { Some(w) } else { None };
    NodeSpec {
        parent: parent.map(id),
        limits: [
            (
                "messages".to_string(),
                LimitSpec {
                    max: messages,
                    window: window(quota_service::domain::window::Window::Day),
                },
            ),
            (
                "storage".to_string(),
                LimitSpec {
                    max: storage,
                    window: window(quota_service::domain::window::Window::None),
                },
            ),
        ]
        .into(),
        ..NodeSpec::default()
    }
}

fn views(app: &TestApp) -> HashMap<String, NodeView> {
    app.quotas
        .snapshot(0)
        .1
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect()
}

/// Whether the node and all its ancestors are active.
fn usable(all: &HashMap<String, NodeView>, node: &str) -> bool {
    let mut cur = Some(node.to_owned());
    while let Some(c) = cur {
        match all.get(&c) {
            Some(v) if v.state == NodeState::Active => cur = v.parent.clone(),
            _ => return false,
        }
    }
    true
}

fn check_invariants(all: &HashMap<String, NodeView>) -> Result<(), TestCaseError> {
    for v in all.values().filter(|v| v.state != NodeState::Deleted) {
        for r in &v.resources {
            let children: Vec<&NodeView> = v
                .children
                .iter()
                .filter_map(|c| all.get(c))
                .filter(|c| c.state != NodeState::Deleted)
                .collect();
            let reserved: u64 = children
                .iter()
                .filter_map(|c| c.resource(&r.name))
                .map(|cr| cr.max)
                .sum();
            prop_assert_eq!(r.allocated, reserved, "allocated of {}.{}", v.id, r.name);
            let rolled: u64 = r.used
                + children
                    .iter()
                    .filter_map(|c| c.resource(&r.name))
                    .map(|cr| cr.subtree_used)
                    .sum::<u64>();
            prop_assert_eq!(
                r.subtree_used,
                rolled,
                "subtree_used of {}.{}",
                v.id,
                r.name
            );
            prop_assert_eq!(
                r.available,
                r.max.saturating_sub(r.allocated).saturating_sub(r.used),
                "available of {}.{}",
                v.id,
                r.name
            );
            prop_assert_eq!(r.overcommitted, r.used + r.allocated > r.max);
        }
        if let Some(p) = &v.parent {
            let parent = all.get(p);
            prop_assert!(
                parent.is_some_and(|p| p.children.contains(&v.id)),
                "{} missing from its parent's children",
                v.id
            );
        }
    }
    for v in all.values().filter(|v| v.state == NodeState::Deleted) {
        if let Some(p) = all.get(v.parent.as_deref().unwrap_or_default()) {
            prop_assert!(
                !p.children.contains(&v.id),
                "deleted {} still a child",
                v.id
            );
        }
    }
    Ok(())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let app = TestApp::new().await;
    let q = app.quotas.clone();
    q.put("test", &id(0), spec(None, 1000, 50))
        .await
        .expect("root");
    for op in ops {
        let before = views(&app);
        let mut shrunk: Option<String> = None;
        match &op {
            Op::Put {
                node,
                parent,
                messages,
                storage,
            } => {
                // Children only under lower-numbered nodes: a tree, never a cycle.
                let parent = (*parent).min(node - 1);
                shrunk = Some(id(*node));
                let _ = q
                    .put("test", &id(*node), spec(Some(parent), *messages, *storage))
                    .await;
            }
            Op::Allocate {
                node,
                parent,
                messages,
            } => {
                let parent = id((*parent).min(node - 1));
                let exists = before
                    .get(&id(*node))
                    .is_some_and(|v| v.state != NodeState::Deleted);
                let mut s = spec(Some(0), *messages, 0);
                s.parent = None;
                let result = q.allocate("test", &parent, &id(*node), s).await;
                if exists {
                    prop_assert!(result.is_err(), "allocate over an existing node succeeded");
                }
                if result.is_ok() {
                    let avail = before
                        .get(&parent)
                        .and_then(|v| v.resource("messages"))
                        .map(|r| r.available);
                    prop_assert!(
                        avail.is_some_and(|a| *messages <= a),
                        "allocated {messages} from {parent} with {avail:?} available"
                    );
                }
            }
            Op::Consume { node, amount } => {
                let n = id(*node);
                let result = q.consume(&n, &[("messages", *amount)]).await;
                let expect_ok = usable(&before, &n)
                    && before
                        .get(&n)
                        .and_then(|v| v.resource("messages"))
                        .is_some_and(|r| *amount <= r.available);
                prop_assert_eq!(
                    result.is_ok(),
                    expect_ok,
                    "consume {} on {}: {:?}",
                    amount,
                    n,
                    result
                );
                if let Err(e) = &result {
                    prop_assert!(
                        matches!(e, QuotaError::Refused(_) | QuotaError::NotFound(_)),
                        "{e:?}"
                    );
                }
            }
            Op::Claim { node, rid, amount } => {
                let n = id(*node);
                let claim = ClaimSpec {
                    resource: "storage".into(),
                    resource_id: format!("r{rid}"),
                    amount: *amount,
                    reason: "prop".into(),
                };
                let result = q.claim("test", &n, claim).await;
                if let Ok((_, true)) = result {
                    let avail = before
                        .get(&n)
                        .and_then(|v| v.resource("storage"))
                        .map(|r| r.available);
                    prop_assert!(
                        avail.is_some_and(|a| *amount <= a),
                        "claimed {amount} on {n} with {avail:?} available"
                    );
                }
            }
            Op::Release { node, rid } => {
                let _ = q.release("test", &id(*node), &format!("r{rid}")).await;
            }
            Op::Suspend { node, suspended } => {
                let state = if *suspended {
                    NodeState::Suspended
                } else {
                    NodeState::Active
                };
                let _ = q.set_state("test", &id(*node), state).await;
            }
            Op::Delete { node } => {
                let had_children = before
                    .get(&id(*node))
                    .is_some_and(|v| !v.children.is_empty() && v.state != NodeState::Deleted);
                let result = q.delete("test", &id(*node)).await;
                if had_children {
                    prop_assert!(result.is_err(), "deleted {} with children", node);
                }
            }
            Op::Advance { secs } => app.clock.advance(*secs),
        }
        let after = views(&app);
        check_invariants(&after)?;
        for (n, v) in &after {
            if Some(n) == shrunk.as_ref() {
                continue;
            }
            let was = before.get(n).is_some_and(|b| b.overcommitted());
            prop_assert!(
                was || !v.overcommitted(),
                "{op:?} made {n} overcommitted: {v:?}"
            );
        }
    }
    // Everything survives a flush and a restart.
    q.flush().await.expect("flush");
    let reopened = app.reopen().await;
    let strip = |vs: Vec<NodeView>| {
        vs.into_iter()
            .map(|mut v| {
                v.version = 0;
                v
            })
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(strip(reopened.snapshot(0).1), strip(q.snapshot(0).1));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(ops))?;
    }
}
