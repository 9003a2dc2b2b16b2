//! Node ids in the quota service for the custom resources.
//!
//! A TenantQuota is the node `spec.tenantId` (default: its name), so the
//! flat API and reporters use the tenant's own id. A QuotaAllocation is the
//! node `qa:<namespace>:<name>`; ids longer than the service's 253
//! characters are shortened with a stable hash suffix. Two TenantQuotas
//! naming one id: the oldest owns the node ([`other_owner`]).

use std::sync::Arc;

use kube::ResourceExt;

use crate::crd::TenantQuota;

const MAX_ID: usize = 253;

pub fn tenant_node_id(tq: &TenantQuota) -> String {
    tq.spec
        .tenant_id
        .clone()
        .or_else(|| tq.metadata.name.clone())
        .unwrap_or_default()
}

pub fn allocation_node_id(namespace: &str, name: &str) -> String {
    let id = format!("qa:{namespace}:{name}");
    if id.len() <= MAX_ID {
        return id;
    }
    let hash = fnv1a(&id);
    format!("{}-{hash:016x}", &id[..MAX_ID - 17])
}

/// FNV-1a, 64 bits: stable across builds and platforms.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The name of the TenantQuota that owns `tq`'s node when it is not `tq`:
/// of those naming the same node, the oldest (creation time, then name).
/// Ids never collide with allocations' (`qa:` is refused for `tenantId`).
pub fn other_owner(tq: &TenantQuota, all: &[Arc<TenantQuota>]) -> Option<String> {
    let id = tenant_node_id(tq);
    let key = |t: &TenantQuota| (t.metadata.creation_timestamp.clone(), t.name_any());
    all.iter()
        .filter(|t| tenant_node_id(t) == id && t.metadata.uid != tq.metadata.uid)
        .filter(|t| key(t) < key(tq))
        .min_by_key(|t| key(t))
        .map(|t| t.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_ids_fit_and_are_stable() {
        assert_eq!(allocation_node_id("team-a", "web"), "qa:team-a:web");
        let long = "x".repeat(253);
        let id = allocation_node_id("ns", &long);
        assert_eq!(id.len(), 253);
        assert_eq!(id, allocation_node_id("ns", &long), "stable");
        assert_ne!(id, allocation_node_id("ns", &"y".repeat(253)));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        );
    }

    fn tq(name: &str, tenant_id: Option<&str>, created: &str) -> Arc<TenantQuota> {
        let mut t: TenantQuota = serde_json::from_value(serde_json::json!({
            "apiVersion": "quota.edgepolicy.io/v1alpha1",
            "kind": "TenantQuota",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": created},
            "spec": {"limits": {}},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        t.spec.tenant_id = tenant_id.map(str::to_owned);
        Arc::new(t)
    }

    #[test]
    fn the_oldest_claimant_of_a_tenant_id_owns_it() {
        let first = tq("acme", None, "2026-12-01T00:00:00Z");
        let second = tq("acme-copy", Some("acme"), "2026-12-02T00:00:00Z");
        let same_time = tq("aaa", Some("acme"), "2026-12-02T00:00:00Z");
        let other = tq("globex", None, "2026-11-01T00:00:00Z");
        let all = vec![first.clone(), second.clone(), other.clone()];
        assert_eq!(other_owner(&first, &all), None, "the first keeps it");
        assert_eq!(other_owner(&second, &all).as_deref(), Some("acme"));
        assert_eq!(other_owner(&other, &all), None, "another id");
        // Created in the same second: the name decides, the same way for all.
        let all = vec![second.clone(), same_time.clone()];
        assert_eq!(other_owner(&same_time, &all), None);
        assert_eq!(other_owner(&second, &all).as_deref(), Some("aaa"));
        // The owner gone, the next one takes it.
        assert_eq!(other_owner(&second, std::slice::from_ref(&second)), None);
    }
}
