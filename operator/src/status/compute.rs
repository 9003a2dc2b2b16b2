//! The new status from an observation: usage, conditions, summary.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use quota_api::v1::{NodeBody, ResourceBody};

use super::*;
use crate::crd::{QuotaStatus, ResourceStatus};
use crate::quantity;

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

fn resource_status(r: &ResourceBody) -> ResourceStatus {
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
