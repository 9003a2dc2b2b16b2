//! The status of both kinds: computed from what the operator observed
//! (pure functions), and written back with the Events its transitions call
//! for.
//!
//! ```text
//!  (previous status, observation, generation, now) ──compute──▶ (new status, events)
//!                                                                     │
//!                                              StatusWriter::write ◀──┘ server-side apply, Events
//! ```
//!
//! The reconcilers and the usage sync observe (push a spec, read a node,
//! fail to reach the service) and hand the observation to the writer;
//! [`compute`] decides the conditions, following the Kubernetes
//! conventions: a condition's `lastTransitionTime` changes only when its
//! status does, reasons are CamelCase, every condition carries
//! `observedGeneration`. An Event is emitted for each transition worth a
//! person's attention ([`events`]).
//!
//! - `compute.rs`: the new status from an observation.
//! - `events.rs`: the Events between two condition lists.
//! - `writer.rs`: the one place that writes status and records Events.

mod compute;
mod events;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use quota_api::v1::NodeBody;

use crate::crd::QuotaStatus;
use crate::quota_object::Kind;

pub use compute::compute;
pub use events::events;
pub use writer::{StatusWriter, now};

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

// === reading a status ===

/// The Bound condition's status and reason, if there is one.
pub fn bound_condition(status: Option<&QuotaStatus>) -> Option<(&str, &str)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == BOUND)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// Whether an allocation waits for capacity of its parent: refused for it
/// (`ParentExhausted`), or bound and waiting to grow (`GrowthPending`).
pub fn waits_for_capacity(status: Option<&QuotaStatus>) -> bool {
    matches!(
        bound_condition(status),
        Some(("False", "ParentExhausted") | ("True", GROWTH_PENDING))
    )
}

/// Whether a status says Bound=True.
pub fn is_bound(status: Option<&QuotaStatus>) -> bool {
    bound_condition(status).is_some_and(|(s, _)| s == "True")
}

#[cfg(test)]
mod reading_tests {
    use super::*;

    #[test]
    fn allocations_waiting_for_capacity_are_refused_or_growing() {
        use crate::crd::QuotaStatus;
        let with = |status: &str, reason: &str| QuotaStatus {
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Bound".into(),
                status: status.into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Default::default(),
                ),
            }],
            ..Default::default()
        };
        assert!(waits_for_capacity(Some(&with("False", "ParentExhausted"))));
        assert!(waits_for_capacity(Some(&with("True", "GrowthPending"))));
        assert!(!waits_for_capacity(Some(&with("True", "Allocated"))));
        assert!(!waits_for_capacity(Some(&with("False", "ParentNotFound"))));
        assert!(!waits_for_capacity(Some(&with(
            "False",
            "NamespaceNotAllowed"
        ))));
        assert!(!waits_for_capacity(None));
    }
}
