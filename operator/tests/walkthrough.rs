//! The README walk-through as an end-to-end test: real API server, real
//! service binary, real SQLite, the operator reconciling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, tenant_allocation};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
/// The sync interval (1 s here) plus one second.
const SYNC_PLUS_ONE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_acme_team_a_team_b() {
    let env = Env::start().await;
    let ns_a = env.namespace(&[("tenant", "acme")]);
    let ns_b = env.namespace(&[("tenant", "acme")]);
    env.apply(
        r#"
apiVersion: quota.edgepolicy.io/v1alpha1
kind: TenantQuota
metadata: {name: acme}
spec:
  limits:
    messages: {max: 100}
    storage: {max: 10Gi, window: none}
  allocationNamespaceSelector: {matchLabels: {tenant: acme}}
"#,
    );
    env.wait_condition(&["tq", "acme"], "Ready", "True/Ready", WAIT)
        .await;
    let alloc = |ns: &str, name: &str, max: u64| tenant_allocation(ns, name, "acme", max);
    let team_a = ["qa", "team-a", "-n", ns_a.as_str()];
    let team_b = ["qa", "team-b", "-n", ns_b.as_str()];
    env.apply(&alloc(&ns_a, "team-a", 40));
    env.wait_condition(&team_a, "Bound", "True/Allocated", WAIT)
        .await;
    env.apply(&alloc(&ns_b, "team-b", 70));
    env.wait_condition(&team_b, "Bound", "False/ParentExhausted", WAIT)
        .await;
    let why = env.jsonpath(
        &team_b,
        "{.status.conditions[?(@.type==\"Bound\")].message}",
    );
    assert!(
        why.contains("requested 70, available 60 (missing 10)"),
        "{why}"
    );
    assert_eq!(
        env.jsonpath(&team_b, "{.status.exceeded}"),
        "false",
        "pending is not exceeded"
    );
    env.wait_for(
        &["tq", "acme"],
        "{.status.summary}",
        "messages 0/100, storage 0/10Gi",
        WAIT,
    )
    .await;
    eprintln!(
        "--- after applying acme, team-a, team-b:\n{}",
        env.kubectl(&["get", "tq,qa", "-A"])
    );

    // Report usage: team-a consumes its 40; the 41st is refused.
    let a_node = format!("qa:{ns_a}:team-a");
    let (s, _) = env
        .post(
            &format!("/api/v1/quotas/{a_node}/consume"),
            json!({"usage": {"messages": 40}}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .post(
            &format!("/api/v1/quotas/{a_node}/consume"),
            json!({"usage": {"messages": 1}}),
        )
        .await;
    assert_eq!((s, v["reason"].as_str()), (429, Some("quota_exhausted")));
    // Exceeded shows in status within the sync interval plus one second.
    env.wait_condition(&team_a, "Exceeded", "True/LimitReached", SYNC_PLUS_ONE)
        .await;
    assert_eq!(env.jsonpath(&team_a, "{.status.summary}"), "messages 40/40");
    assert_eq!(
        env.jsonpath(&team_a, "{.status.resources.messages.used}"),
        "40"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = env.events(Some(&ns_a), "team-a");
    assert!(events.iter().any(|e| e == "QuotaExceeded"), "{events:?}");
    assert!(events.iter().any(|e| e == "AllocationBound"), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| *e == "NearLimit").count(),
        1,
        "one event per transition: {events:?}"
    );
    env.wait_for(
        &["tq", "acme"],
        "{.status.resources.messages.subtreeUsed}",
        "40",
        WAIT,
    )
    .await;
    eprintln!(
        "--- after team-a used its 40:\n{}",
        env.kubectl(&["get", "tq,qa", "-A"])
    );

    // Deleting team-a returns its share, but the 40 it used today stay
    // charged to acme (delete-and-recreate cannot bypass the limit): 60 free.
    env.kubectl(&["delete", "qa", "team-a", "-n", &ns_a]);
    env.wait_for(
        &["tq", "acme"],
        "{.status.resources.messages.allocated}",
        "0",
        WAIT,
    )
    .await;
    env.wait_for(
        &["tq", "acme"],
        "{.status.resources.messages.used}",
        "40",
        WAIT,
    )
    .await;
    let why = env.jsonpath(
        &team_b,
        "{.status.conditions[?(@.type==\"Bound\")].message}",
    );
    assert!(why.contains("available 60 (missing 10)"), "{why}");
    // As soon as capacity frees up (here: acme grows by 10), team-b binds.
    env.kubectl(&[
        "patch",
        "tq",
        "acme",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"limits":{"messages":{"max":110}}}}"#,
    ]);
    env.wait_condition(&team_b, "Bound", "True/Allocated", WAIT)
        .await;
    env.wait_for(
        &["tq", "acme"],
        "{.status.resources.messages.allocated}",
        "70",
        WAIT,
    )
    .await;
    let events = env.events(Some(&ns_b), "team-b");
    assert!(
        events.iter().any(|e| e == "AllocationRejected")
            && events.iter().any(|e| e == "AllocationBound"),
        "{events:?}"
    );
    eprintln!(
        "--- after deleting team-a and growing acme:\n{}",
        env.kubectl(&["get", "tq,qa", "-A"])
    );

    // Suspending acme refuses usage in the whole tree.
    let b_node = format!("qa:{ns_b}:team-b");
    assert_eq!(
        env.post(
            &format!("/api/v1/quotas/{b_node}/consume"),
            json!({"usage": {"messages": 1}})
        )
        .await
        .0,
        200
    );
    env.kubectl(&[
        "patch",
        "tq",
        "acme",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"state":"Suspended"}}"#,
    ]);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (s, v) = env
            .post(
                &format!("/api/v1/quotas/{b_node}/consume"),
                json!({"usage": {"messages": 1}}),
            )
            .await;
        if s == 403 {
            assert_eq!(v["reason"], "node_suspended");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "team-b still consumes while acme is suspended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, _) = env
        .post("/api/quota/increment", json!({"tenant_id": "acme"}))
        .await;
    assert_eq!(s, 403, "the flat API refuses too");

    // Deleting acme waits for its allocations, and says which.
    env.kubectl(&["delete", "tq", "acme", "--wait=false"]);
    env.wait_condition(&["tq", "acme"], "Ready", "False/DeletionBlocked", WAIT)
        .await;
    let msg = env.jsonpath(
        &["tq", "acme"],
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(msg.contains(&format!("{ns_b}/team-b")), "{msg}");
    assert_eq!(
        env.get("/api/v1/quotas/acme").await.1["state"],
        "suspended",
        "still in the service"
    );
    eprintln!(
        "--- while acme waits for its allocations:\n{}",
        env.kubectl(&["get", "tq,qa", "-A"])
    );
    // Still bound a few syncs later: team-b works until it is deleted itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.condition(&team_b, "Bound"), "True/Allocated");
    env.kubectl(&["delete", "qa", "team-b", "-n", &ns_b]);
    env.wait_for(&["tq"], "{.items[*].metadata.name}", "", WAIT)
        .await;
    // Deleted in the service: gone for reads (410 node_deleted).
    let (status, body) = env.get("/api/v1/quotas/acme").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (410, serde_json::json!("node_deleted")),
        "{body}"
    );
}
