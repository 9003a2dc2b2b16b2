//! Allocations bind in creation order (DESIGN.md, "Allocation"): applied
//! together, the oldest binds first; a younger one that would fit still
//! waits for an older one that does not; freed capacity goes to the oldest
//! waiter, which the deletion wakes at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, allocations_in_order, tenant_quota};

const WAIT: Duration = Duration::from_secs(20);
/// Shorter than a waiting allocation's own retry (15 s): binding within it
/// shows that the change woke the waiter.
const WOKEN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_apply_binds_in_creation_order() {
    let env = Env::start().await;
    let ns = env.namespace(&[("tenant", "order")]);
    // One apply: the tenant and three allocations, created in this order
    // (the same second or later ones; names break ties the same way).
    env.apply(&format!(
        "{}---\n{}",
        tenant_quota("order", 100),
        allocations_in_order(&ns, "order")
    ));
    let qa = |name: &'static str| ["qa", name, "-n", ns.as_str()];
    env.wait_bound_in_order(&ns, WAIT).await;
    let why = env.jsonpath(
        &qa("c-third"),
        "{.status.conditions[?(@.type==\"Bound\")].message}",
    );
    assert_eq!(
        why,
        format!("waiting for older allocations of the same parent: {ns}/b-second"),
        "c-third would fit (30 of 40 free) but b-second is older"
    );
    let (_, c) = env.get(&format!("/api/v1/quotas/qa:{ns}:c-third")).await;
    assert_eq!(c["resources"]["messages"]["max"], 0, "zero until it binds");

    // a-first goes: b-second (the oldest waiter) and then c-third bind,
    // woken by the deletion and by b-second's binding.
    env.kubectl(&["delete", "qa", "a-first", "-n", &ns]);
    env.wait_condition(&qa("b-second"), "Bound", "True/Allocated", WOKEN)
        .await;
    env.wait_condition(&qa("c-third"), "Bound", "True/Allocated", WOKEN)
        .await;
    for (name, max) in [("b-second", 60), ("c-third", 30)] {
        let (_, node) = env.get(&format!("/api/v1/quotas/qa:{ns}:{name}")).await;
        assert_eq!(node["resources"]["messages"]["max"], max, "{name}: {node}");
    }
    let (_, tenant) = env.get("/api/v1/quotas/order").await;
    assert_eq!(tenant["resources"]["messages"]["allocated"], 90);
    let events = env.events(Some(&ns), "c-third");
    assert_eq!(
        events.iter().filter(|e| *e == "AllocationBound").count(),
        1,
        "{events:?}"
    );
}
