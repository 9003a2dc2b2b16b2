//! Node ids in the quota service for the custom resources.
//!
//! A TenantQuota is the node `spec.tenantId` (default: its name), so the
//! flat API and reporters use the tenant's own id. A QuotaAllocation is the
//! node `qa:<namespace>:<name>`; ids longer than the service's 253
//! characters are shortened with a stable hash suffix.

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
}
