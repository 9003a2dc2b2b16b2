//! The service restarts with an empty data dir: the operator notices (a new
//! `instance_id` in the snapshot) and pushes every spec again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, start_service};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_service_gets_every_node_back() {
    let mut env = Env::start().await;
    let ns = env.namespace(&[("tenant", "umbrella")]);
    env.apply(&format!(
        r#"
apiVersion: quota.edgepolicy.io/v1alpha1
kind: TenantQuota
metadata: {{name: umbrella}}
spec:
  limits:
    messages: {{max: 100}}
    storage: {{max: 10Gi, window: none}}
  allocationNamespaceSelector: {{matchLabels: {{tenant: umbrella}}}}
---
apiVersion: quota.edgepolicy.io/v1alpha1
kind: QuotaAllocation
metadata: {{name: lab, namespace: {ns}}}
spec:
  parentRef: {{kind: TenantQuota, name: umbrella}}
  limits: {{messages: {{max: 30}}, storage: {{max: 1Gi}}}}
---
apiVersion: quota.edgepolicy.io/v1alpha1
kind: QuotaAllocation
metadata: {{name: bench, namespace: {ns}}}
spec:
  parentRef: {{kind: QuotaAllocation, name: lab}}
  limits: {{messages: {{max: 10}}}}
"#
    ));
    let bench = ["qa", "bench", "-n", ns.as_str()];
    env.wait_condition(&bench, "Bound", "True/Allocated", WAIT)
        .await;
    let before = env.get("/api/v1/quotas").await.1;
    assert_eq!(before["items"].as_array().unwrap().len(), 3);

    // Kill the service; start a new one on an empty data dir, same port.
    let _ = env.service.kill();
    let _ = env.service.wait();
    env.wait_condition(
        &["tq", "umbrella"],
        "Synced",
        "False/ServiceUnavailable",
        WAIT,
    )
    .await;
    let empty = tempfile::tempdir().unwrap();
    env.service = start_service(env.service_port, &empty.path().join("data"));

    // The operator restores the tree, parents first.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, bench_node) = env.get(&format!("/api/v1/quotas/qa:{ns}:bench")).await;
        if bench_node["resources"]["messages"]["max"] == 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not restored: {bench_node}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = env.get("/api/v1/quotas").await.1;
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&after), ids(&before));
    let lab = env.get(&format!("/api/v1/quotas/qa:{ns}:lab")).await.1;
    assert_eq!(lab["resources"]["storage"]["max"], 1u64 << 30);
    assert_eq!(lab["resources"]["messages"]["allocated"], 10);
    env.wait_condition(&["tq", "umbrella"], "Synced", "True/Synced", WAIT)
        .await;
    env.wait_condition(&bench, "Ready", "True/Ready", WAIT)
        .await;
}
