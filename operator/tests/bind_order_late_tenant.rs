//! Allocations applied before their tenant bind in creation order too
//! (DESIGN.md, "Allocation"). Its own binary: each test's operator watches
//! the whole API server, so two in one process would both act on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, IN_ORDER, allocations_in_order, tenant_quota};

const WAIT: Duration = Duration::from_secs(20);

/// Allocations applied before their tenant are refused (`ParentNotFound`)
/// until it exists; then they all wake at once, and the order still holds:
/// a refusal for the parent they share does not let a younger one pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_applied_before_their_tenant_bind_in_creation_order() {
    let env = Env::start().await;
    let ns = env.namespace(&[("tenant", "late")]);
    env.apply(&allocations_in_order(&ns, "late"));
    for (name, _) in IN_ORDER {
        env.wait_condition(
            &["qa", name, "-n", ns.as_str()],
            "Bound",
            "False/ParentNotFound",
            WAIT,
        )
        .await;
    }
    env.apply(&tenant_quota("late", 100));
    env.wait_bound_in_order(&ns, WAIT).await;
    let (_, tenant) = env.get("/api/v1/quotas/late").await;
    assert_eq!(tenant["resources"]["messages"]["allocated"], 60, "{tenant}");
}
