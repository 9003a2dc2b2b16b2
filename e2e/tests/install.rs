//! `helm install` with the defaults on a real node, used the way the README
//! tells users to: the pod runs both containers from the project's image,
//! the operator leads with the chart's ServiceAccount, the walk-through
//! (acme, team-a, team-b) works through `kubectl apply`, a workload reaches
//! the service by its DNS name with its own token, and the SQLite file on
//! the PVC keeps every acknowledged message across a pod deletion, an
//! upgrade and an uninstall.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::{Release, edge_node, jsonpath, kubectl, run_client_pod, wait_until};
use serde_json::{Value, json};

const NS: &str = "edge-quota";
const TEAM_A: &str = "qa:team-a:team-a";

/// `GET /api/v1/quotas/{id}` from the test, as the chart's ServiceAccount.
async fn node_view(release: &Release<'_>, token: &str, id: &str) -> Value {
    let url = format!("{}/api/v1/quotas/{id}", release.url());
    let resp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.unwrap()
}

async fn used(release: &Release<'_>, token: &str, id: &str) -> u64 {
    node_view(release, token, id).await["resources"]["messages"]["used"]
        .as_u64()
        .unwrap()
}

/// One consume of `n` messages from the test; whether it was allowed.
async fn consume(release: &Release<'_>, token: &str, id: &str, n: u64) -> bool {
    let url = format!("{}/api/v1/quotas/{id}/consume", release.url());
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&json!({"usage": {"messages": n}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    match status {
        200 => true,
        429 => false,
        other => panic!("consume: {other} {body}"),
    }
}

/// A client pod's consume by the service's DNS name, with its own token.
fn consume_from_pod(ns: &str, pod: &str, release: &Release<'_>, id: &str, n: u64) -> String {
    let url = format!(
        "http://{}.{}.svc:8183/api/v1/quotas/{id}/consume",
        release.fullname(),
        release.namespace
    );
    let script = format!(
        "curl -sS -X POST {url} -H \"authorization: Bearer $(cat /var/run/secrets/edge-quota/token)\" \
         -H 'content-type: application/json' -d '{{\"usage\":{{\"messages\":{n}}}}}' -w ' %{{http_code}}'"
    );
    run_client_pod(edge_node(), ns, pod, &script)
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_with_the_defaults_serves_and_keeps_usage() {
    let node = edge_node();
    let release = Release::install(node, "edge-quota", NS, &[]);

    // Both containers of the one pod ready; the claim bound by the node's
    // default StorageClass.
    let pods = release.wait_ready(1, Duration::from_secs(180));
    let statuses = jsonpath(
        node,
        NS,
        &format!("pod/{}", pods[0]),
        "{.status.containerStatuses[*].ready}",
    )
    .unwrap();
    assert_eq!(statuses, "true true", "{}", release.describe());
    let pvc = format!("pvc/{}-data", release.fullname());
    assert_eq!(
        jsonpath(node, NS, &pvc, "{.status.phase}").unwrap(),
        "Bound"
    );
    assert_eq!(
        jsonpath(node, NS, &pvc, "{.spec.storageClassName}").unwrap(),
        "local-path"
    );

    // The operator holds its Lease as this pod, with the chart's ServiceAccount.
    wait_until("the operator's Lease", Duration::from_secs(60), || {
        let holder = release.lease_holder()?;
        if holder == pods[0] {
            Ok(())
        } else {
            Err(holder)
        }
    });
    assert_eq!(
        jsonpath(
            node,
            NS,
            &format!("pod/{}", pods[0]),
            "{.spec.serviceAccountName}"
        )
        .unwrap(),
        release.fullname()
    );

    // The README's walk-through, through kubectl apply.
    for ns in ["team-a", "team-b"] {
        kubectl(node, &["create", "namespace", ns]).unwrap();
        kubectl(node, &["label", "namespace", ns, "tenant=acme"]).unwrap();
    }
    let example = testenv::repo_root().join("examples/acme.yaml");
    kubectl(node, &["apply", "-f", &example.display().to_string()]).unwrap();
    wait_until(
        "team-a bound, team-b refused",
        Duration::from_secs(60),
        || {
            let a = jsonpath(
                node,
                "team-a",
                "qa/team-a",
                r#"{.status.conditions[?(@.type=="Bound")].status}"#,
            )?;
            let b = jsonpath(
                node,
                "team-b",
                "qa/team-b",
                r#"{.status.conditions[?(@.type=="Bound")].reason}"#,
            )?;
            if a == "True" && b == "ParentExhausted" {
                Ok(())
            } else {
                Err(format!("{a} {b}"))
            }
        },
    );

    // A workload of team-a reaches the service by its DNS name with its own
    // projected token; one of team-b is refused on team-a's allocation.
    let out = consume_from_pod("team-a", "bridge-1", &release, TEAM_A, 25);
    assert!(out.ends_with(" 200"), "{out}");
    assert!(out.contains(r#""allowed":true"#), "{out}");
    let out = consume_from_pod("team-b", "intruder", &release, TEAM_A, 1);
    assert!(out.ends_with(" 403"), "{out}");
    wait_until("team-a's usage in status", Duration::from_secs(30), || {
        let u = jsonpath(
            node,
            "team-a",
            "qa/team-a",
            "{.status.resources.messages.used}",
        )?;
        if u == "25" { Ok(()) } else { Err(u) }
    });

    // Acknowledged just before the pod is deleted, long before the next
    // periodic flush (60 s by default): the SIGTERM flush keeps them.
    let token = release.admin_token();
    for _ in 0..10 {
        assert!(consume(&release, &token, TEAM_A, 1).await);
    }
    assert_eq!(used(&release, &token, TEAM_A).await, 35);
    kubectl(node, &["-n", NS, "delete", "pod", &pods[0], "--wait=false"]).unwrap();
    let after = wait_until("a new pod", Duration::from_secs(180), || {
        let ready = release.ready_pods();
        match ready.as_slice() {
            [p] if *p != pods[0] => Ok(p.clone()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_ne!(after, pods[0]);
    assert_eq!(
        used(&release, &token, TEAM_A).await,
        35,
        "{}",
        release.describe()
    );

    // helm upgrade with a changed value rolls the pod and keeps the usage.
    release.upgrade(&["--set", "operator.syncIntervalSecs=3"]);
    let upgraded = wait_until(
        "the upgraded pod",
        Duration::from_secs(180),
        || match release.ready_pods().as_slice() {
            [p] if *p != after => Ok(p.clone()),
            other => Err(format!("{other:?}")),
        },
    );
    let env = jsonpath(
        node,
        NS,
        &format!("pod/{upgraded}"),
        r#"{.spec.containers[?(@.name=="operator")].env[?(@.name=="SYNC_INTERVAL_SECS")].value}"#,
    )
    .unwrap();
    assert_eq!(env, "3");
    assert_eq!(used(&release, &token, TEAM_A).await, 35);
    // 40 is team-a's limit: 5 more fit, the 6th does not.
    for _ in 0..5 {
        assert!(consume(&release, &token, TEAM_A, 1).await);
    }
    assert!(!consume(&release, &token, TEAM_A, 1).await);

    // helm uninstall keeps the claim, as the chart promises.
    release.uninstall();
    wait_until("the pods gone", Duration::from_secs(120), || {
        let left = kubectl(node, &["-n", NS, "get", "pods", "-o", "name"])?;
        if left.is_empty() { Ok(()) } else { Err(left) }
    });
    assert_eq!(
        jsonpath(node, NS, &pvc, "{.status.phase}").unwrap(),
        "Bound"
    );

    // And installed again on that claim, the usage is still there.
    let again = Release::install(node, "edge-quota", NS, &[]);
    again.wait_ready(1, Duration::from_secs(180));
    let token = again.admin_token();
    assert_eq!(used(&again, &token, TEAM_A).await, 40);
}
