//! Allocations applied before their tenant bind in creation order too
//! (DESIGN.md, "Allocation"). Its own binary: each test's operator watches
//! the whole API server, so two in one process would both act on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, tenant_allocation, tenant_quota};

const WAIT: Duration = Duration::from_secs(20);

/// Allocations applied before their tenant are refused (`ParentNotFound`)
/// until it exists; then they all wake at once, and the order still holds:
/// a refusal for the parent they share does not let a younger one pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_applied_before_their_tenant_bind_in_creation_order() {
    let env = Env::start().await;
    let ns = env.namespace(&[("tenant", "late")]);
    let alloc = |name: &str, max: u64| tenant_allocation(&ns, name, "late", max);
    env.apply(&format!(
        "{}---\n{}---\n{}",
        alloc("a-first", 60),
        alloc("b-second", 60),
        alloc("c-third", 30)
    ));
    let qa = |name: &'static str| ["qa", name, "-n", ns.as_str()];
    for name in ["a-first", "b-second", "c-third"] {
        env.wait_condition(&qa(name), "Bound", "False/ParentNotFound", WAIT)
            .await;
    }
    env.apply(&tenant_quota("late", 100));
    env.wait_condition(&qa("a-first"), "Bound", "True/Allocated", WAIT)
        .await;
    env.wait_condition(&qa("b-second"), "Bound", "False/ParentExhausted", WAIT)
        .await;
    env.wait_condition(&qa("c-third"), "Bound", "False/ParentExhausted", WAIT)
        .await;
    let (_, tenant) = env.get("/api/v1/quotas/late").await;
    assert_eq!(tenant["resources"]["messages"]["allocated"], 60, "{tenant}");
}
