//! `compute` and `events` end to end: observations in, status and Events out.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use quota_api::v1::ResourceBody;

use super::*;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_795_348_800 + secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn res(max: u64, used: u64, subtree: u64, allocated: u64, exceeded: bool) -> ResourceBody {
    ResourceBody {
        max,
        window: "day".into(),
        used,
        subtree_used: subtree,
        allocated,
        available: max.saturating_sub(allocated).saturating_sub(used),
        period: "2026-11-22".into(),
        reset_at: Some("2026-11-23T00:00:00Z".into()),
        exceeded,
        overcommitted: used + allocated > max,
    }
}

fn node(resources: &[(&str, ResourceBody)]) -> NodeBody {
    NodeBody {
        id: "acme".into(),
        parent: None,
        state: "active".into(),
        strict: false,
        name: None,
        description: None,
        resources: resources
            .iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect::<BTreeMap<_, _>>(),
        children: vec![],
        claims: 0,
        exceeded: resources.iter().any(|(_, r)| r.exceeded),
        overcommitted: resources.iter().any(|(_, r)| r.overcommitted),
        version: 1,
        created_at: "2026-11-22T12:00:00Z".into(),
        last_updated: None,
    }
}

fn run<'a>(
    kind: Kind,
    prev: Option<&'a QuotaStatus>,
    obs: Observation<'a>,
    binary: &'a BTreeSet<String>,
    t: i64,
) -> (QuotaStatus, Vec<EventSpec>) {
    compute(Input {
        kind,
        generation: Some(3),
        previous: prev,
        observation: obs,
        near_limit_percent: 80,
        binary,
        deleting: false,
        now: at(t),
    })
}

fn cond<'a>(s: &'a QuotaStatus, t: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition in {:?}", s.conditions))
}

fn reasons(events: &[EventSpec]) -> Vec<&'static str> {
    events.iter().map(|e| e.reason).collect()
}

#[test]
fn a_synced_tenant_is_ready_with_usage_and_a_summary() {
    let binary = BTreeSet::from(["storage".to_string()]);
    let n = node(&[
        ("messages", res(100, 10, 40, 40, false)),
        ("storage", res(10 << 30, 5 << 30, 5 << 30, 0, false)),
    ]);
    let (s, events) = run(
        Kind::TenantQuota,
        None,
        Observation::Synced {
            node: &n,
            binding: None,
        },
        &binary,
        0,
    );
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.node_id.as_deref(), Some("acme"));
    assert_eq!(
        s.summary.as_deref(),
        Some("messages 40/100, storage 5Gi/10Gi")
    );
    assert_eq!(s.resources["messages"].subtree_used, 40);
    assert_eq!(s.resources["messages"].available, 50);
    assert_eq!(s.last_sync_time, Some(at(0)));
    for (t, v) in [
        (READY, "True"),
        (SYNCED, "True"),
        (EXCEEDED, "False"),
        (NEAR_LIMIT, "False"),
        (OVERCOMMITTED, "False"),
    ] {
        assert_eq!(cond(&s, t).status, v, "{t}");
        assert_eq!(cond(&s, t).observed_generation, Some(3));
    }
    assert!(
        s.conditions.iter().all(|c| c.type_ != BOUND),
        "Bound is for allocations"
    );
    assert_eq!(s.conditions[0].type_, READY, "Ready first");
    assert_eq!(reasons(&events), vec!["QuotaSynced"]);
}

#[test]
fn exceeding_and_near_limit_are_transitions_with_events_once() {
    let b = BTreeSet::new();
    let n1 = node(&[("messages", res(100, 50, 50, 0, false))]);
    let (s1, _) = run(
        Kind::TenantQuota,
        None,
        Observation::Synced {
            node: &n1,
            binding: None,
        },
        &b,
        0,
    );
    let n2 = node(&[("messages", res(100, 85, 85, 0, false))]);
    let (s2, e2) = run(
        Kind::TenantQuota,
        Some(&s1),
        Observation::Synced {
            node: &n2,
            binding: None,
        },
        &b,
        10,
    );
    assert_eq!(cond(&s2, NEAR_LIMIT).status, "True");
    assert!(cond(&s2, NEAR_LIMIT).message.contains("messages 85%"));
    assert_eq!(reasons(&e2), vec!["NearLimit"]);
    let n3 = node(&[("messages", res(100, 100, 100, 0, true))]);
    let (s3, e3) = run(
        Kind::TenantQuota,
        Some(&s2),
        Observation::Synced {
            node: &n3,
            binding: None,
        },
        &b,
        20,
    );
    assert!(s3.exceeded);
    assert_eq!(cond(&s3, EXCEEDED).status, "True");
    assert_eq!(cond(&s3, EXCEEDED).message, "limit reached for messages");
    assert_eq!(reasons(&e3), vec!["QuotaExceeded"]);
    // Unchanged on the next sync: no new events, transition times kept.
    let (s4, e4) = run(
        Kind::TenantQuota,
        Some(&s3),
        Observation::Synced {
            node: &n3,
            binding: None,
        },
        &b,
        30,
    );
    assert!(e4.is_empty(), "{e4:?}");
    assert_eq!(cond(&s4, EXCEEDED).last_transition_time, at(20));
    assert_eq!(cond(&s4, NEAR_LIMIT).last_transition_time, at(10));
    assert_eq!(cond(&s4, SYNCED).last_transition_time, at(0));
    assert_eq!(s4.last_sync_time, Some(at(30)));
}

#[test]
fn overcommitted_when_the_limit_is_below_use() {
    let b = BTreeSet::new();
    let n = node(&[("messages", res(80, 20, 60, 70, false))]);
    let (s, _) = run(
        Kind::TenantQuota,
        None,
        Observation::Synced {
            node: &n,
            binding: None,
        },
        &b,
        0,
    );
    assert_eq!(cond(&s, OVERCOMMITTED).status, "True");
    assert_eq!(cond(&s, OVERCOMMITTED).reason, "LimitBelowUse");
}

#[test]
fn an_unreachable_service_keeps_the_last_usage_and_warns_once() {
    let b = BTreeSet::new();
    let n = node(&[("messages", res(100, 10, 10, 0, false))]);
    let (s1, _) = run(
        Kind::TenantQuota,
        None,
        Observation::Synced {
            node: &n,
            binding: None,
        },
        &b,
        0,
    );
    let down = || Observation::ServiceError {
        message: "connection refused".into(),
    };
    let (s2, e2) = run(Kind::TenantQuota, Some(&s1), down(), &b, 10);
    assert_eq!(s2.resources, s1.resources, "last known usage kept");
    assert_eq!(s2.last_sync_time, Some(at(0)));
    assert_eq!(
        (
            cond(&s2, SYNCED).status.as_str(),
            cond(&s2, SYNCED).reason.as_str()
        ),
        ("False", "ServiceUnavailable")
    );
    assert_eq!(
        (
            cond(&s2, READY).status.as_str(),
            cond(&s2, READY).reason.as_str()
        ),
        ("False", "NotSynced")
    );
    assert_eq!(reasons(&e2), vec!["QuotaServiceUnavailable"]);
    let (s3, e3) = run(Kind::TenantQuota, Some(&s2), down(), &b, 20);
    assert!(e3.is_empty(), "one warning per outage");
    let (s4, e4) = run(
        Kind::TenantQuota,
        Some(&s3),
        Observation::Synced {
            node: &n,
            binding: None,
        },
        &b,
        30,
    );
    assert_eq!(cond(&s4, READY).status, "True");
    assert_eq!(reasons(&e4), vec!["QuotaSynced"]);
}

#[test]
fn allocation_binding_rejection_and_binding_later() {
    let b = BTreeSet::new();
    let zero = node(&[("messages", res(0, 0, 0, 0, true))]);
    let rejected = Binding::Rejected {
        reason: BindReason::ParentExhausted,
        message: "messages requested 70, available 60 (missing 10)".into(),
    };
    let (s1, e1) = run(
        Kind::QuotaAllocation,
        None,
        Observation::Synced {
            node: &zero,
            binding: Some(rejected.clone()),
        },
        &b,
        0,
    );
    assert_eq!(
        (
            cond(&s1, BOUND).status.as_str(),
            cond(&s1, BOUND).reason.as_str()
        ),
        ("False", "ParentExhausted")
    );
    assert!(cond(&s1, BOUND).message.contains("missing 10"));
    assert_eq!(cond(&s1, READY).reason, "NotBound");
    assert!(!s1.exceeded, "zero limits while pending are not exceeding");
    assert_eq!(
        (
            cond(&s1, EXCEEDED).status.as_str(),
            cond(&s1, EXCEEDED).reason.as_str()
        ),
        ("False", "NotBound")
    );
    assert_eq!(
        reasons(&e1),
        vec!["AllocationRejected"],
        "held with zero limits: not \"the quota service holds this quota\""
    );
    // Rejected again for the same reason: no second event.
    let (s2, e2) = run(
        Kind::QuotaAllocation,
        Some(&s1),
        Observation::Synced {
            node: &zero,
            binding: Some(rejected),
        },
        &b,
        10,
    );
    assert!(!reasons(&e2).contains(&"AllocationRejected"));
    // Capacity freed: bound.
    let n = node(&[("messages", res(70, 0, 0, 0, false))]);
    let (s3, e3) = run(
        Kind::QuotaAllocation,
        Some(&s2),
        Observation::Synced {
            node: &n,
            binding: Some(Binding::Bound),
        },
        &b,
        20,
    );
    assert_eq!(
        (
            cond(&s3, BOUND).status.as_str(),
            cond(&s3, BOUND).reason.as_str()
        ),
        ("True", "Allocated")
    );
    assert_eq!(cond(&s3, READY).status, "True");
    assert_eq!(reasons(&e3), vec!["AllocationBound"]);
}

#[test]
fn an_allocation_bound_on_its_first_sync_records_one_event() {
    let b = BTreeSet::new();
    let n = node(&[("messages", res(70, 0, 0, 0, false))]);
    let (s, e) = run(
        Kind::QuotaAllocation,
        None,
        Observation::Synced {
            node: &n,
            binding: Some(Binding::Bound),
        },
        &b,
        0,
    );
    assert_eq!(cond(&s, SYNCED).status, "True");
    assert_eq!(cond(&s, BOUND).status, "True");
    assert_eq!(reasons(&e), vec!["AllocationBound"]);
    assert!(
        e[0].note.starts_with("the quota service holds it"),
        "{}",
        e[0].note
    );
}

#[test]
fn an_allocation_that_cannot_be_pushed() {
    let b = BTreeSet::new();
    for reason in [
        BindReason::ParentNotFound,
        BindReason::NamespaceNotAllowed,
        BindReason::CycleDetected,
    ] {
        let obs = Observation::NotPushed {
            binding: Binding::Rejected {
                reason,
                message: "why".into(),
            },
        };
        let (s, e) = run(Kind::QuotaAllocation, None, obs, &b, 0);
        assert_eq!(cond(&s, BOUND).reason, reason.as_str());
        assert_eq!(cond(&s, SYNCED).status, "False");
        assert_eq!(cond(&s, READY).status, "False");
        assert!(s.resources.is_empty() && s.summary.is_none());
        assert_eq!(reasons(&e), vec!["AllocationRejected"]);
    }
}

#[test]
fn blocked_deletion_says_which_children() {
    let b = BTreeSet::new();
    let n = node(&[("messages", res(100, 0, 0, 40, false))]);
    let (s1, _) = run(
        Kind::TenantQuota,
        None,
        Observation::Synced {
            node: &n,
            binding: None,
        },
        &b,
        0,
    );
    let obs = Observation::DeletionBlocked {
        children: vec!["a/team-a".into(), "b/team-b".into()],
    };
    let (s2, e2) = run(Kind::TenantQuota, Some(&s1), obs, &b, 5);
    assert_eq!(
        (
            cond(&s2, READY).status.as_str(),
            cond(&s2, READY).reason.as_str()
        ),
        ("False", "DeletionBlocked")
    );
    assert!(cond(&s2, READY).message.contains("a/team-a, b/team-b"));
    assert_eq!(reasons(&e2), vec!["DeletionBlocked"]);
    // A usage sync while it waits does not make it Ready again.
    let (s3, e3) = compute(Input {
        kind: Kind::TenantQuota,
        generation: Some(3),
        previous: Some(&s2),
        observation: Observation::Synced {
            node: &n,
            binding: None,
        },
        near_limit_percent: 80,
        binary: &b,
        deleting: true,
        now: at(9),
    });
    assert_eq!(cond(&s3, READY).reason, "DeletionBlocked");
    assert!(e3.is_empty(), "{e3:?}");
}
