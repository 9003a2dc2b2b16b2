//! An allocation's limits edited on a real API server: one asked to grow
//! past what its tenant has free keeps its current limits (and stays bound)
//! until the growth fits; one shrunk below its usage shows `Overcommitted`
//! and `Exceeded`, and its tenant goes on holding what it used. Its own
//! binary: each test's operator watches the whole API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, tenant_allocation, tenant_quota};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocation_keeps_its_limits_until_a_growth_fits_and_shows_a_shrink_below_use() {
    let env = Env::start().await;
    let ns = env.namespace(&[("tenant", "grow")]);
    env.apply(&tenant_quota("grow", 100));
    env.apply(&tenant_allocation(&ns, "a", "grow", 50));
    let a = ["qa", "a", "-n", ns.as_str()];
    env.wait_condition(&a, "Bound", "True/Allocated", WAIT)
        .await;
    let node = format!("/api/v1/quotas/qa:{ns}:a");
    let (s, v) = env
        .post(
            &format!("{node}/consume"),
            json!({"usage": {"messages": 40}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Asked to grow to 150 of a tenant of 100: it stays bound with 50.
    env.apply(&tenant_allocation(&ns, "a", "grow", 150));
    env.wait_condition(&a, "Bound", "True/GrowthPending", WAIT)
        .await;
    let max = |v: &serde_json::Value| v["resources"]["messages"]["max"].clone();
    assert_eq!(max(&env.get(&node).await.1), json!(50));
    // Still so after its waiting retry (every 15 s), which once pushed
    // zero limits because it read its own Bound=False as "never bound".
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_eq!(max(&env.get(&node).await.1), json!(50), "kept its limits");
    assert_eq!(env.condition(&a, "Bound"), "True/GrowthPending");
    assert_eq!(env.condition(&a, "Exceeded"), "False/WithinLimits");
    let events = env.events(Some(&ns), "a");
    assert_eq!(
        events.iter().filter(|e| *e == "QuotaSynced").count(),
        0,
        "bound on its first sync (AllocationBound says it): {events:?}"
    );

    // The tenant raised: the growth binds.
    env.apply(&tenant_quota("grow", 200));
    env.wait_condition(&a, "Bound", "True/Allocated", WAIT)
        .await;
    assert_eq!(max(&env.get(&node).await.1), json!(150));

    // Shrunk below its usage: overcommitted and exceeded; the tenant still
    // holds the 40 it used.
    env.apply(&tenant_allocation(&ns, "a", "grow", 10));
    env.wait_condition(&a, "Overcommitted", "True/LimitBelowUse", WAIT)
        .await;
    env.wait_for(&a, "{.status.exceeded}", "true", WAIT).await;
    let (_, tenant) = env.get("/api/v1/quotas/grow").await;
    let m = &tenant["resources"]["messages"];
    assert_eq!(
        (m["allocated"].clone(), m["available"].clone()),
        (json!(40), json!(160)),
        "{tenant}"
    );
    let (s, _) = env
        .post(
            &format!("{node}/consume"),
            json!({"usage": {"messages": 1}}),
        )
        .await;
    assert_eq!(s, 429);
}
