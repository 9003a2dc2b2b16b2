//! A service restored from an empty store keeps the bindings the objects'
//! status records: an older allocation that lost its binding (its
//! namespace unlabelled, then labelled again) and waits does not take the
//! capacity back from the younger one that is bound, whatever order the
//! specs are pushed in. Restored three times. Its own binary: each test's
//! operator watches the whole API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, start_service, tenant_allocation, tenant_quota};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_keeps_the_bindings_status_records() {
    let mut env = Env::start().await;
    let ns_a = env.namespace(&[("tenant", "keep")]);
    let ns_b = env.namespace(&[("tenant", "keep")]);
    env.apply(&tenant_quota("keep", 100));
    env.apply(&tenant_allocation(&ns_a, "older", "keep", 60));
    let older = ["qa", "older", "-n", ns_a.as_str()];
    let younger = ["qa", "younger", "-n", ns_b.as_str()];
    env.wait_condition(&older, "Bound", "True/Allocated", WAIT)
        .await;
    // The older one loses its binding; the younger one binds in its place.
    env.kubectl(&["label", "namespace", &ns_a, "tenant-", "--overwrite"]);
    env.wait_condition(&older, "Bound", "False/NamespaceNotAllowed", WAIT)
        .await;
    env.apply(&tenant_allocation(&ns_b, "younger", "keep", 60));
    env.wait_condition(&younger, "Bound", "True/Allocated", WAIT)
        .await;
    env.kubectl(&["label", "namespace", &ns_a, "tenant=keep", "--overwrite"]);
    env.wait_condition(&older, "Bound", "False/ParentExhausted", WAIT)
        .await;

    let young_node = format!("/api/v1/quotas/qa:{ns_b}:younger");
    for round in 0..3 {
        let _ = env.service.kill();
        let _ = env.service.wait();
        env.wait_condition(&["tq", "keep"], "Synced", "False/ServiceUnavailable", WAIT)
            .await;
        let empty = tempfile::tempdir().unwrap();
        env.service = start_service(env.service_port, &empty.path().join("data"));
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (s, node) = env.get(&young_node).await;
            if s == 200 && node["resources"]["messages"]["max"] == 60 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the bound allocation not restored: {node}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        env.wait_condition(&["tq", "keep"], "Synced", "True/Synced", WAIT)
            .await;
        // Give the waiting one its tries; it stays waiting.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (_, node) = env.get(&young_node).await;
        assert_eq!(
            node["resources"]["messages"]["max"], 60,
            "round {round}: {node}"
        );
        assert_eq!(
            env.condition(&younger, "Bound"),
            "True/Allocated",
            "round {round}"
        );
        assert_eq!(
            env.condition(&older, "Bound"),
            "False/ParentExhausted",
            "round {round}"
        );
        let (_, tenant) = env.get("/api/v1/quotas/keep").await;
        assert_eq!(
            tenant["resources"]["messages"]["allocated"], 60,
            "round {round}: {tenant}"
        );
    }
}
