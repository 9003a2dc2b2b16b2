//! Raising a tenant binds the allocation waiting for it at once, every
//! time: the tenant's own watch event woke the waiting allocation before
//! the tenant's new limit had reached the service, so it was refused and
//! waited for its retry (15 s) in 9 of 42 tries. Now the allocations
//! waiting under a parent are woken again once the service holds the
//! change. Raced here many times, with a wait well below the retry. Its
//! own binary: each test's operator watches the whole API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, tenant_allocation, tenant_quota};

/// Well below the waiting retry (15 s): only a wake binds within it.
const BIND_WITHIN: Duration = Duration::from_secs(6);
const WAIT: Duration = Duration::from_secs(20);
const ROUNDS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_tenant_binds_a_waiting_allocation_at_once_every_time() {
    let env = Env::start().await;
    let ns = env.namespace(&[("tenant", "raise")]);
    env.apply(&tenant_quota("raise", 100));
    env.apply(&tenant_allocation(&ns, "a", "raise", 30));
    let a = ["qa", "a", "-n", ns.as_str()];
    let b = ["qa", "b", "-n", ns.as_str()];
    env.wait_condition(&a, "Bound", "True/Allocated", WAIT)
        .await;
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        env.apply(&tenant_allocation(&ns, "b", "raise", 80));
        env.wait_condition(&b, "Bound", "False/ParentExhausted", WAIT)
            .await;
        let raised = Instant::now();
        env.apply(&tenant_quota("raise", 200));
        env.wait_condition(&b, "Bound", "True/Allocated", BIND_WITHIN)
            .await;
        slowest = slowest.max(raised.elapsed());
        // Back to the start: b gone, the tenant at 100 again.
        env.kubectl(&["delete", "qa", "b", "-n", &ns, "--wait=true"]);
        env.apply(&tenant_quota("raise", 100));
        let (_, tenant) = env.get("/api/v1/quotas/raise").await;
        assert_eq!(
            tenant["resources"]["messages"]["allocated"], 30,
            "round {round}: {tenant}"
        );
    }
    eprintln!("slowest bind after a raise: {slowest:?} ({ROUNDS} rounds)");
}
