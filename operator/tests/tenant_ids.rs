//! Ids never collide: a second TenantQuota naming a `tenantId` another one
//! already has is refused (`Synced=False TenantIdConflict`) and changes
//! nothing of the first one's node, its deletion leaves that node, and an
//! allocation under it does not bind; `qa:` ids are left to allocations.
//! Its own binary: each test's operator watches the whole API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, tenant_allocation, tenant_quota};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_claimant_of_a_tenant_id_changes_nothing() {
    let env = Env::start().await;
    env.apply(&tenant_quota("acme", 100));
    env.wait_condition(&["tq", "acme"], "Ready", "True/Ready", WAIT)
        .await;
    let (s, v) = env
        .post(
            "/api/v1/quotas/acme/consume",
            json!({"usage": {"messages": 7}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    env.apply(
        "apiVersion: quota.edgepolicy.io/v1alpha1\nkind: TenantQuota\nmetadata: {name: impostor}\nspec:\n  tenantId: acme\n  limits: {messages: {max: 5}}\n  allocationNamespaceSelector: {matchLabels: {tenant: impostor}}\n",
    );
    let impostor = ["tq", "impostor"];
    env.wait_condition(&impostor, "Synced", "False/TenantIdConflict", WAIT)
        .await;
    assert_eq!(env.condition(&impostor, "Ready"), "False/NotSynced");
    let msg = env.jsonpath(
        &impostor,
        "{.status.conditions[?(@.type==\"Synced\")].message}",
    );
    assert!(msg.contains("TenantQuota acme"), "{msg}");
    assert!(
        env.events(None, "impostor")
            .iter()
            .any(|e| e == "TenantIdConflict")
    );
    let node = || async {
        let (_, v) = env.get("/api/v1/quotas/acme").await;
        (
            v["resources"]["messages"]["max"].clone(),
            v["resources"]["messages"]["used"].clone(),
            v["state"].clone(),
        )
    };
    assert_eq!(node().await, (json!(100), json!(7), json!("active")));

    // An allocation under the impostor does not bind to acme's node.
    let ns = env.namespace(&[("tenant", "impostor")]);
    env.apply(&tenant_allocation(&ns, "team", "impostor", 1));
    env.wait_condition(
        &["qa", "team", "-n", ns.as_str()],
        "Bound",
        "False/ParentNotFound",
        WAIT,
    )
    .await;
    env.kubectl(&["delete", "qa", "team", "-n", &ns, "--wait=true"]);

    // Deleting the impostor leaves acme's node as it is.
    env.kubectl(&["delete", "tq", "impostor", "--wait=true"]);
    assert_eq!(node().await, (json!(100), json!(7), json!("active")));
    assert_eq!(env.condition(&["tq", "acme"], "Ready"), "True/Ready");

    // An allocation's id space is not a tenant's.
    let (ok, out) = env.cluster.kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        "apiVersion: quota.edgepolicy.io/v1alpha1\nkind: TenantQuota\nmetadata: {name: sneaky}\nspec:\n  tenantId: \"qa:team-a:team-a\"\n  limits: {}\n",
    );
    assert!(!ok && out.contains("must not start with qa:"), "{out}");
}
