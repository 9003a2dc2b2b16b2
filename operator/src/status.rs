//! Status, conditions and Events as pure functions of what the operator
//! observed.
//!
//! ```text
//!  (previous status, observation, generation, now) ──compute──▶ (new status, events)
//! ```
//!
//! The reconcilers and the usage sync observe (push a spec, read a node,
//! fail to reach the service) and hand the observation here; this module
//! decides the conditions, following the Kubernetes conventions: a
//! condition's `lastTransitionTime` changes only when its status does,
//! reasons are CamelCase, every condition carries `observedGeneration`.
//! An Event is emitted for each transition worth a person's attention.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use quota_service::http::v1::NodeBody;

use crate::crd::{QuotaStatus, ResourceStatus};
use crate::quantity;

/// Which kind the status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TenantQuota,
    QuotaAllocation,
}

/// Why an allocation is not bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindReason {
    /// The parent cannot spare the limits (it holds zero limits until it can).
    ParentExhausted,
    ParentNotFound,
    /// The parent's `allocationNamespaceSelector` does not select the namespace.
    NamespaceNotAllowed,
    /// `parentRef` leads back to the allocation itself.
    CycleDetected,
}

impl BindReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BindReason::ParentExhausted => "ParentExhausted",
            BindReason::ParentNotFound => "ParentNotFound",
            BindReason::NamespaceNotAllowed => "NamespaceNotAllowed",
            BindReason::CycleDetected => "CycleDetected",
        }
    }
}

/// Whether an allocation got its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Bound,
    /// Bound with the limits it has; the larger ones its spec asks for do
    /// not fit yet (it keeps what it has until they do).
    GrowthPending {
        message: String,
    },
    Rejected {
        reason: BindReason,
        message: String,
    },
}

/// What the operator saw this time.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation<'a> {
    /// The service holds the node as intended (for an allocation: with its
    /// limits if bound, with zero limits if the parent is exhausted).
    Synced {
        node: &'a NodeBody,
        binding: Option<Binding>,
    },
    /// An allocation that was not pushed (no parent, a cycle, a namespace
    /// that may not allocate).
    NotPushed { binding: Binding },
    /// The service could not be reached, or refused.
    ServiceError { message: String },
    /// A TenantQuota whose `tenantId` an older one claims: not pushed, so
    /// the other's node (limits, grants, usage) stays as it is.
    TenantIdConflict { message: String },
    /// Deletion waits until these children are gone.
    DeletionBlocked { children: Vec<String> },
}

/// Everything [`compute`] needs.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub kind: Kind,
    pub generation: Option<i64>,
    pub previous: Option<&'a QuotaStatus>,
    pub observation: Observation<'a>,
    /// `NearLimit` turns true at this percent of a limit.
    pub near_limit_percent: u32,
    /// Resources to show in binary units (`10Gi`) in the summary.
    pub binary: &'a BTreeSet<String>,
    /// The object has a deletion timestamp (a blocked deletion keeps saying so).
    pub deleting: bool,
    pub now: Time,
}

/// An Event to record on the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const EXCEEDED: &str = "Exceeded";
pub const NEAR_LIMIT: &str = "NearLimit";
pub const OVERCOMMITTED: &str = "Overcommitted";
pub const BOUND: &str = "Bound";
/// `Bound=True` reason of an allocation whose spec grew past what its
/// parent has free: it keeps its current limits until the growth fits.
pub const GROWTH_PENDING: &str = "GrowthPending";
/// What a `GrowthPending` condition's message says before the service's
/// reason (the sync takes the reason back from it).
pub const GROWTH_PENDING_PREFIX: &str =
    "bound with its current limits; the larger limits of its spec wait until they fit: ";
/// `Synced=False` reason of a TenantQuota whose `tenantId` an older one
/// claims.
pub const TENANT_ID_CONFLICT: &str = "TenantIdConflict";

/// The new status and the Events its transitions call for.
pub fn compute(input: Input<'_>) -> (QuotaStatus, Vec<EventSpec>) {
    let previous = input.previous.cloned().unwrap_or_default();
    let mut status = QuotaStatus {
        observed_generation: input.generation,
        ..previous.clone()
    };
    let mut set = Conditions {
        list: previous.conditions.clone(),
        generation: input.generation,
        now: input.now.clone(),
    };

    match &input.observation {
        Observation::Synced { node, binding } => {
            let pending = matches!(binding, Some(Binding::Rejected { .. }));
            status.node_id = Some(node.id.clone());
            status.resources = node
                .resources
                .iter()
                .map(|(name, r)| (name.clone(), resource_status(r)))
                .collect();
            // A pending allocation holds zero limits: that is not exceeding.
            status.exceeded = node.exceeded && !pending;
            status.summary = Some(summary(node, input.binary));
            status.last_sync_time = Some(input.now.clone());
            set.put(
                SYNCED,
                true,
                "Synced",
                "the quota service holds this quota".into(),
            );
            let exceeded: Vec<&String> = node
                .resources
                .iter()
                .filter(|(_, r)| r.exceeded)
                .map(|(n, _)| n)
                .collect();
            if pending {
                set.put(
                    EXCEEDED,
                    false,
                    "NotBound",
                    "the allocation waits for its share".into(),
                );
            } else if exceeded.is_empty() {
                set.put(
                    EXCEEDED,
                    false,
                    "WithinLimits",
                    "no limit is reached".into(),
                );
            } else {
                set.put(
                    EXCEEDED,
                    true,
                    "LimitReached",
                    format!("limit reached for {}", join(&exceeded)),
                );
            }
            let near: Vec<String> = node
                .resources
                .iter()
                .filter(|(_, r)| {
                    r.max > 0
                        && u128::from(r.subtree_used) * 100
                            >= u128::from(r.max) * u128::from(input.near_limit_percent)
                })
                .map(|(n, r)| {
                    format!(
                        "{n} {}%",
                        u128::from(r.subtree_used) * 100 / u128::from(r.max)
                    )
                })
                .collect();
            if pending {
                set.put(
                    NEAR_LIMIT,
                    false,
                    "NotBound",
                    "the allocation waits for its share".into(),
                );
            } else if near.is_empty() {
                set.put(
                    NEAR_LIMIT,
                    false,
                    "BelowThreshold",
                    format!(
                        "every resource is below {}% of its limit",
                        input.near_limit_percent
                    ),
                );
            } else {
                set.put(
                    NEAR_LIMIT,
                    true,
                    "AboveThreshold",
                    format!(
                        "at or above {}%: {}",
                        input.near_limit_percent,
                        near.join(", ")
                    ),
                );
            }
            let over: Vec<&String> = node
                .resources
                .iter()
                .filter(|(_, r)| r.overcommitted)
                .map(|(n, _)| n)
                .collect();
            if over.is_empty() {
                set.put(
                    OVERCOMMITTED,
                    false,
                    "WithinLimits",
                    "used + allocated fits every limit".into(),
                );
            } else {
                set.put(
                    OVERCOMMITTED,
                    true,
                    "LimitBelowUse",
                    format!("the limit is below used + allocated for {}", join(&over)),
                );
            }
            if input.kind == Kind::QuotaAllocation {
                match binding {
                    Some(Binding::Rejected { reason, message }) => {
                        set.put(BOUND, false, reason.as_str(), message.clone())
                    }
                    Some(Binding::GrowthPending { message }) => set.put(
                        BOUND,
                        true,
                        GROWTH_PENDING,
                        format!("{GROWTH_PENDING_PREFIX}{message}"),
                    ),
                    _ => set.put(
                        BOUND,
                        true,
                        "Allocated",
                        "the parent reserved this allocation's limits".into(),
                    ),
                }
            }
        }
        Observation::NotPushed { binding } => {
            not_held(&mut status, &mut set);
            let (reason, message) = match binding {
                Binding::Rejected { reason, message } => (reason.as_str(), message.clone()),
                Binding::GrowthPending { message } => (GROWTH_PENDING, message.clone()),
                Binding::Bound => ("Allocated", String::new()),
            };
            set.put(
                SYNCED,
                false,
                reason,
                "not in the quota service: the allocation is not bound".into(),
            );
            set.put(BOUND, false, reason, message);
        }
        Observation::ServiceError { message } => {
            set.put(SYNCED, false, "ServiceUnavailable", message.clone());
        }
        Observation::TenantIdConflict { message } => {
            not_held(&mut status, &mut set);
            set.put(SYNCED, false, TENANT_ID_CONFLICT, message.clone());
        }
        Observation::DeletionBlocked { children } => {
            set.put(
                READY,
                false,
                "DeletionBlocked",
                format!(
                    "deletion waits until these allocations are deleted: {}",
                    children.join(", ")
                ),
            );
        }
    }

    let still_blocked = input.deleting
        && set
            .get(READY)
            .is_some_and(|c| c.reason == "DeletionBlocked");
    if !matches!(input.observation, Observation::DeletionBlocked { .. }) && !still_blocked {
        let synced = set.is_true(SYNCED);
        let bound = input.kind == Kind::TenantQuota || set.is_true(BOUND);
        match (synced, bound) {
            (true, true) => set.put(READY, true, "Ready", "synced with the quota service".into()),
            (false, _) => {
                let why = set
                    .get(SYNCED)
                    .map(|c| c.reason.clone())
                    .unwrap_or_default();
                set.put(READY, false, "NotSynced", format!("not synced: {why}"));
            }
            (true, false) => {
                let why = set.get(BOUND).map(|c| c.reason.clone()).unwrap_or_default();
                set.put(READY, false, "NotBound", format!("not bound: {why}"));
            }
        }
    }
    set.list.sort_by(|a, b| {
        order(&a.type_)
            .cmp(&order(&b.type_))
            .then(a.type_.cmp(&b.type_))
    });
    status.conditions = set.list;
    let events = events(input.kind, &previous.conditions, &status.conditions);
    (status, events)
}

/// The service holds nothing of this object: no usage, and no conditions
/// computed from usage.
fn not_held(status: &mut QuotaStatus, set: &mut Conditions) {
    status.resources = BTreeMap::new();
    status.exceeded = false;
    status.summary = None;
    set.remove(EXCEEDED);
    set.remove(NEAR_LIMIT);
    set.remove(OVERCOMMITTED);
}

fn order(t: &str) -> usize {
    [READY, SYNCED, BOUND, EXCEEDED, NEAR_LIMIT, OVERCOMMITTED]
        .iter()
        .position(|x| *x == t)
        .unwrap_or(usize::MAX)
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn resource_status(r: &quota_service::http::v1::ResourceBody) -> ResourceStatus {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    ResourceStatus {
        max: i(r.max),
        used: i(r.used),
        subtree_used: i(r.subtree_used),
        allocated: i(r.allocated),
        available: i(r.available),
        period: r.period.clone(),
        reset_at: r.reset_at.clone(),
    }
}

/// `messages 40/100, storage 5Gi/10Gi`: subtree usage over the limit.
pub fn summary(node: &NodeBody, binary: &BTreeSet<String>) -> String {
    node.resources
        .iter()
        .map(|(name, r)| {
            let b = binary.contains(name) || name == "bandwidth";
            format!(
                "{name} {}/{}",
                quantity::format(r.subtree_used, b),
                quantity::format(r.max, b)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Events for the transitions between two condition lists.
pub fn events(kind: Kind, before: &[Condition], after: &[Condition]) -> Vec<EventSpec> {
    let status = |list: &[Condition], t: &str| {
        list.iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let became = |t: &str, s: &str| {
        status(after, t).is_some_and(|(a, _)| a == s)
            && status(before, t).is_none_or(|(b, _)| b != s)
    };
    let message = |t: &str| {
        after
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    // An allocation that binds on its first sync says so once: AllocationBound
    // implies the service holds it (one Event, not two, per allocation of a
    // bulk apply; Events were a third of the operator's API traffic).
    let bound_now = kind == Kind::QuotaAllocation && became(BOUND, "True");
    // An allocation that is not bound is held with zero limits: "the quota
    // service holds this quota" would mislead.
    let unbound =
        kind == Kind::QuotaAllocation && status(after, BOUND).is_none_or(|(s, _)| s != "True");
    if became(SYNCED, "True") && !bound_now && !unbound {
        out.push(EventSpec {
            warning: false,
            reason: "QuotaSynced",
            note: "the quota service holds this quota".into(),
        });
    }
    // Synced turned False for this reason (not again while it stays so).
    let unsynced_by = |reason: &str| {
        let is = |(s, r): (String, String)| s == "False" && r == reason;
        status(after, SYNCED).is_some_and(is) && !status(before, SYNCED).is_some_and(is)
    };
    if unsynced_by("ServiceUnavailable") {
        out.push(EventSpec {
            warning: true,
            reason: "QuotaServiceUnavailable",
            note: message(SYNCED),
        });
    }
    if unsynced_by(TENANT_ID_CONFLICT) {
        out.push(EventSpec {
            warning: true,
            reason: TENANT_ID_CONFLICT,
            note: message(SYNCED),
        });
    }
    if became(EXCEEDED, "True") {
        out.push(EventSpec {
            warning: true,
            reason: "QuotaExceeded",
            note: message(EXCEEDED),
        });
    }
    if became(NEAR_LIMIT, "True") {
        out.push(EventSpec {
            warning: true,
            reason: "NearLimit",
            note: message(NEAR_LIMIT),
        });
    }
    if kind == Kind::QuotaAllocation {
        if bound_now {
            let note = if became(SYNCED, "True") {
                format!("the quota service holds it: {}", message(BOUND))
            } else {
                message(BOUND)
            };
            out.push(EventSpec {
                warning: false,
                reason: "AllocationBound",
                note,
            });
        }
        let rejected_now = status(after, BOUND).filter(|(s, _)| s == "False");
        if let Some((_, reason)) = rejected_now
            && status(before, BOUND) != Some(("False".to_owned(), reason.clone()))
        {
            out.push(EventSpec {
                warning: true,
                reason: "AllocationRejected",
                note: format!("{reason}: {}", message(BOUND)),
            });
        }
    }
    if became(READY, "False")
        && let Some(c) = after
            .iter()
            .find(|c| c.type_ == READY && c.reason == "DeletionBlocked")
    {
        out.push(EventSpec {
            warning: true,
            reason: "DeletionBlocked",
            note: c.message.clone(),
        });
    }
    out
}

/// A condition list being edited.
struct Conditions {
    list: Vec<Condition>,
    generation: Option<i64>,
    now: Time,
}

impl Conditions {
    fn get(&self, t: &str) -> Option<&Condition> {
        self.list.iter().find(|c| c.type_ == t)
    }

    fn is_true(&self, t: &str) -> bool {
        self.get(t).is_some_and(|c| c.status == "True")
    }

    /// Sets a condition; `lastTransitionTime` moves only when the status flips.
    fn put(&mut self, t: &str, value: bool, reason: &str, message: String) {
        let status = if value { "True" } else { "False" }.to_owned();
        let transition = match self.get(t) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => self.now.clone(),
        };
        self.remove(t);
        self.list.push(Condition {
            type_: t.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            last_transition_time: transition,
            observed_generation: self.generation,
        });
    }

    fn remove(&mut self, t: &str) {
        self.list.retain(|c| c.type_ != t);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::jiff::Timestamp;
    use quota_service::http::v1::ResourceBody;

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
}
