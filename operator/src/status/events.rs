//! The Events for the transitions between two condition lists.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::*;

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
