//! The chart's PostgreSQL mode on a real node: PostgreSQL in a pod (its image
//! built offline like the project's), the connection URL in a Secret the
//! chart references, three replicas serving behind one Service with one
//! operator leading, and usage counted through any replica seen by all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::{Release, edge_node, jsonpath, kubectl, wait_until};
use serde_json::{Value, json};

const NS: &str = "quota";

fn postgres_manifest() -> String {
    let labels = json!({"app": "postgres"});
    let items = json!([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}},
        {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "postgres", "namespace": "db"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
                        "containers": [{
                            "name": "postgres",
                            "image": "localhost/edge-node/postgres:15",
                            "imagePullPolicy": "Never",
                            "env": [
                                {"name": "POSTGRES_USER", "value": "quota"},
                                {"name": "POSTGRES_PASSWORD", "value": "edge-quota-e2e"},
                                {"name": "POSTGRES_DB", "value": "quota"}
                            ],
                            "ports": [{"containerPort": 5432}],
                            "readinessProbe": {"tcpSocket": {"port": 5432}, "periodSeconds": 1},
                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql"}]
                        }],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        },
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "postgres", "namespace": "db"},
            "spec": {"selector": labels, "ports": [{"port": 5432}]}
        }
    ]);
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

async fn call(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_postgres_in_pods_with_one_operator_leading() {
    let node = edge_node();
    let (ok, out) = node
        .cluster
        .kubectl_stdin(&["apply", "-f", "-"], &postgres_manifest());
    assert!(ok, "{out}");
    wait_until("PostgreSQL ready", Duration::from_secs(120), || {
        let ready = jsonpath(node, "db", "deployment/postgres", "{.status.readyReplicas}")?;
        if ready == "1" { Ok(()) } else { Err(ready) }
    });

    kubectl(node, &["create", "namespace", NS]).unwrap();
    kubectl(
        node,
        &[
            "-n",
            NS,
            "create",
            "secret",
            "generic",
            "edge-quota-db",
            "--from-literal=DATABASE_URL=postgres://quota:edge-quota-e2e@postgres.db.svc:5432/quota",
        ],
    )
    .unwrap();
    let release = Release::install(
        node,
        "eq",
        NS,
        &[
            "--set",
            "replicaCount=3",
            "--set",
            "database.existingSecret=edge-quota-db",
            "--set",
            "quotaService.persistenceIntervalSecs=1",
        ],
    );
    let pods = release.wait_ready(3, Duration::from_secs(240));
    // No claim in this mode.
    assert_eq!(
        kubectl(node, &["-n", NS, "get", "pvc", "-o", "name"]).unwrap(),
        ""
    );

    // One operator leads: the Lease names one of the three pods.
    let leader = wait_until("a leader", Duration::from_secs(60), || {
        let holder = release.lease_holder()?;
        if pods.contains(&holder) {
            Ok(holder)
        } else {
            Err(holder)
        }
    });

    // A tenant made by the operator; usage through the Service (spread by
    // kube-proxy over the replicas) is seen by every replica.
    let tenant = r#"{"apiVersion": "quota.edgepolicy.io/v1alpha1", "kind": "TenantQuota",
        "metadata": {"name": "shared"}, "spec": {"limits": {"messages": {"max": 1000}}}}"#;
    node.cluster.apply_yaml(tenant);
    let token = release.admin_token();
    let id = "shared";
    let node_url = format!("{}/api/v1/quotas/{id}", release.url());
    let mut status = 0;
    for _ in 0..120 {
        status = call(reqwest::Method::GET, &node_url, &token, None).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        status,
        200,
        "the tenant in the service\n{}",
        release.describe()
    );
    for _ in 0..30 {
        let (status, body) = call(
            reqwest::Method::POST,
            &format!("{}/api/v1/quotas/{id}/consume", release.url()),
            &token,
            Some(json!({"usage": {"messages": 1}})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for pod in &pods {
        let ip = jsonpath(node, NS, &format!("pod/{pod}"), "{.status.podIP}").unwrap();
        let url = format!("http://{ip}:8183/api/v1/quotas/{id}");
        let mut last = Value::Null;
        for _ in 0..40 {
            let (status, body) = call(reqwest::Method::GET, &url, &token, None).await;
            assert_eq!(status, 200, "{pod}: {body}");
            last = body;
            if last["resources"]["messages"]["used"] == 30 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(last["resources"]["messages"]["used"], 30, "{pod}: {last}");
    }

    // The leader's pod goes; another replica takes the Lease.
    kubectl(node, &["-n", NS, "delete", "pod", &leader, "--wait=false"]).unwrap();
    wait_until("a new leader", Duration::from_secs(120), || {
        let holder = release.lease_holder()?;
        if !holder.is_empty() && holder != leader {
            Ok(())
        } else {
            Err(holder)
        }
    });
    release.wait_ready(3, Duration::from_secs(180));
}
