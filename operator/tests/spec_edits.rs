//! Editing specs reaches the service; a parent lowered below what it has
//! allocated shows `Overcommitted`; a namespace the tenant's selector does
//! not select cannot allocate from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, tenant_allocation};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_edits_overcommit_and_namespace_selector() {
    let env = Env::start().await;
    let allowed = env.namespace(&[("tenant", "globex")]);
    let other = env.namespace(&[("tenant", "initech")]);
    env.apply(
        r#"
apiVersion: quota.edgepolicy.io/v1alpha1
kind: TenantQuota
metadata: {name: globex}
spec:
  tenantId: globex-prod
  limits:
    messages: {max: 1000}
    gpu-seconds: {max: "3600", window: hour}
  allocationNamespaceSelector:
    matchExpressions: [{key: tenant, operator: In, values: [globex]}]
  access: [{subject: "system:serviceaccount:ops:bridge", role: reporter}]
"#,
    );
    env.wait_condition(&["tq", "globex"], "Ready", "True/Ready", WAIT)
        .await;
    let (s, node) = env.get("/api/v1/quotas/globex-prod").await;
    assert_eq!(s, 200, "tenantId names the node");
    assert_eq!(node["resources"]["gpu-seconds"]["window"], "hour");
    let (_, grants) = env.get("/api/v1/quotas/globex-prod/permissions").await;
    assert_eq!(
        grants["items"][0]["subject"],
        "system:serviceaccount:ops:bridge"
    );

    let qa = |ns: &str, name: &str, max: u64| tenant_allocation(ns, name, "globex", max);
    // The selector decides who may allocate.
    env.apply(&qa(&other, "sneaky", 10));
    let sneaky = ["qa", "sneaky", "-n", other.as_str()];
    env.wait_condition(&sneaky, "Bound", "False/NamespaceNotAllowed", WAIT)
        .await;
    let msg = env.jsonpath(
        &sneaky,
        "{.status.conditions[?(@.type==\"Bound\")].message}",
    );
    assert!(msg.contains(&other), "{msg}");
    assert_eq!(
        env.get(&format!("/api/v1/quotas/qa:{other}:sneaky"))
            .await
            .0,
        404,
        "nothing in the service"
    );
    let events = env.events(Some(&other), "sneaky");
    assert!(
        events.iter().any(|e| e == "AllocationRejected"),
        "{events:?}"
    );

    // Relabelling the namespace lets it bind: the namespace watch wakes the
    // allocation at once (a rejected allocation's own retry is 30 s away,
    // longer than WAIT).
    env.kubectl(&["label", "namespace", &other, "tenant=globex", "--overwrite"]);
    env.wait_condition(&sneaky, "Bound", "True/Allocated", WAIT)
        .await;
    env.kubectl(&["delete", "qa", "sneaky", "-n", &other]);

    // Two allocations naming each other as parent: a cycle, refused.
    let cycle = |name: &str, parent: &str| {
        format!(
            "apiVersion: quota.edgepolicy.io/v1alpha1\nkind: QuotaAllocation\nmetadata: {{name: {name}, namespace: {allowed}}}\nspec:\n  parentRef: {{kind: QuotaAllocation, name: {parent}}}\n  limits: {{messages: {{max: 1}}}}\n"
        )
    };
    env.apply(&format!(
        "{}---\n{}",
        cycle("ping", "pong"),
        cycle("pong", "ping")
    ));
    for name in ["ping", "pong"] {
        env.wait_condition(
            &["qa", name, "-n", &allowed],
            "Bound",
            "False/CycleDetected",
            WAIT,
        )
        .await;
    }
    env.kubectl(&[
        "delete",
        "qa",
        "ping",
        "pong",
        "-n",
        &allowed,
        "--wait=false",
    ]);

    env.apply(&qa(&allowed, "web", 600));
    let web = ["qa", "web", "-n", allowed.as_str()];
    env.wait_condition(&web, "Bound", "True/Allocated", WAIT)
        .await;

    // Raising and lowering limits reaches the service.
    env.kubectl(&[
        "patch",
        "qa",
        "web",
        "-n",
        &allowed,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"limits":{"messages":{"max":700}}}}"#,
    ]);
    env.wait_for(&web, "{.status.resources.messages.max}", "700", WAIT)
        .await;
    assert_eq!(
        env.get(&format!("/api/v1/quotas/qa:{allowed}:web")).await.1["resources"]["messages"]["max"],
        700
    );
    env.kubectl(&[
        "patch",
        "tq",
        "globex",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"limits":{"messages":{"max":2000}}}}"#,
    ]);
    env.wait_for(
        &["tq", "globex"],
        "{.status.resources.messages.max}",
        "2000",
        WAIT,
    )
    .await;
    assert_eq!(
        env.get("/api/v1/quotas/globex-prod").await.1["resources"]["messages"]["max"],
        2000
    );

    // `strict` reaches the service (and goes away with the field).
    let node = format!("/api/v1/quotas/qa:{allowed}:web");
    for (patch, want) in [
        (r#"{"spec":{"strict":true}}"#, true),
        (r#"{"spec":{"strict":null}}"#, false),
    ] {
        env.kubectl(&[
            "patch", "qa", "web", "-n", &allowed, "--type", "merge", "-p", patch,
        ]);
        let deadline = std::time::Instant::now() + WAIT;
        while env.get(&node).await.1["strict"] != want {
            assert!(
                std::time::Instant::now() < deadline,
                "strict={want} did not reach the service"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    // Lowering the parent below what it allocated: Overcommitted.
    env.kubectl(&[
        "patch",
        "tq",
        "globex",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"limits":{"messages":{"max":500}}}}"#,
    ]);
    env.wait_condition(
        &["tq", "globex"],
        "Overcommitted",
        "True/LimitBelowUse",
        WAIT,
    )
    .await;
    assert_eq!(
        env.get("/api/v1/quotas/globex-prod").await.1["overcommitted"],
        true
    );
    assert_eq!(
        env.condition(&web, "Bound"),
        "True/Allocated",
        "the child keeps its share"
    );
    // Raising it again clears it.
    env.kubectl(&[
        "patch",
        "tq",
        "globex",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"limits":{"messages":{"max":1000}}}}"#,
    ]);
    env.wait_condition(
        &["tq", "globex"],
        "Overcommitted",
        "False/WithinLimits",
        WAIT,
    )
    .await;

    // Access edits reach the service: the grant goes away.
    env.kubectl(&[
        "patch",
        "tq",
        "globex",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/access"}]"#,
    ]);
    let deadline = std::time::Instant::now() + WAIT;
    while env.get("/api/v1/quotas/globex-prod/permissions").await.1["items"]
        != serde_json::json!([])
    {
        assert!(std::time::Instant::now() < deadline, "grant not revoked");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
