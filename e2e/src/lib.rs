//! Helpers for the end-to-end tests: the chart installed on a real edge node
//! (`testenv::edge_node`), pods that call the service by its DNS name, and
//! calls from the test itself through the Service's ClusterIP (the host has
//! a route to the node's Service range).
//!
//! ```text
//!  test ──kubectl/helm──▶ API server ──▶ kubelet ──▶ pod: operator + quota-service
//!    │                                    └──▶ client pod ──DNS name──▶ Service
//!    └──reqwest + ServiceAccount token──▶ ClusterIP:8183 ──kube-proxy──▶ pod
//! ```

use std::time::{Duration, Instant};

use testenv::EdgeNode;

pub use testenv::edge_node;

/// The chart in the repository.
pub fn chart() -> String {
    testenv::repo_root()
        .join("charts/edge-quota")
        .display()
        .to_string()
}

/// Polls `probe` every half second until it returns `Some`, or panics after
/// `within` naming `what` and the last thing `probe` said.
pub fn wait_until<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {within:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// kubectl on the node: its output, or its error output as the error.
pub fn kubectl(node: &EdgeNode, args: &[&str]) -> Result<String, String> {
    let out = node
        .cluster
        .kubectl()
        .args(args)
        .output()
        .map_err(|e| format!("kubectl {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A jsonpath of one object, or an error while it is missing.
pub fn jsonpath(node: &EdgeNode, ns: &str, what: &str, path: &str) -> Result<String, String> {
    kubectl(
        node,
        &["-n", ns, "get", what, "-o", &format!("jsonpath={path}")],
    )
}

/// One release of the chart in its own namespace.
#[derive(Debug)]
pub struct Release<'a> {
    pub node: &'a EdgeNode,
    pub name: String,
    pub namespace: String,
}

impl<'a> Release<'a> {
    /// The values every install on the node sets: the loaded image, never
    /// pulled.
    fn image_args(&self) -> Vec<String> {
        let image = &self.node.image;
        vec![
            "--set".into(),
            format!("image.repository={}", image.repository),
            "--set".into(),
            format!("image.tag={}", image.tag),
            "--set".into(),
            "image.pullPolicy=Never".into(),
        ]
    }

    /// `helm install` with the chart's defaults (plus the image) and `extra`
    /// values; waits for the Deployment to be available.
    pub fn install(node: &'a EdgeNode, name: &str, namespace: &str, extra: &[&str]) -> Self {
        let release = Release {
            node,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        };
        release.helm("install", extra);
        release
    }

    /// `helm upgrade` with `extra` values (the image is kept).
    pub fn upgrade(&self, extra: &[&str]) {
        self.helm("upgrade", extra);
    }

    fn helm(&self, verb: &str, extra: &[&str]) {
        let mut args: Vec<String> = vec![
            verb.into(),
            self.name.clone(),
            chart(),
            "-n".into(),
            self.namespace.clone(),
            "--create-namespace".into(),
            "--wait".into(),
            "--timeout".into(),
            "4m".into(),
        ];
        if verb == "upgrade" {
            args.retain(|a| a != "--create-namespace");
        }
        args.extend(self.image_args());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.node.cluster.helm().args(&refs).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "helm {verb} failed: {}{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                self.describe()
            ),
            Err(e) => panic!("helm {verb}: {e}"),
        }
    }

    /// `helm uninstall`.
    pub fn uninstall(&self) {
        self.node
            .cluster
            .helm_ok(&["uninstall", &self.name, "-n", &self.namespace, "--wait"]);
    }

    /// The chart's full name (the Deployment, Service, ServiceAccount, Lease).
    pub fn fullname(&self) -> String {
        if self.name.contains("edge-quota") {
            self.name.clone()
        } else {
            format!("{}-edge-quota", self.name)
        }
    }

    /// The release's pods that are Ready, by name.
    pub fn ready_pods(&self) -> Vec<String> {
        let selector = format!("app.kubernetes.io/instance={}", self.name);
        let path = r#"{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#;
        let out = kubectl(
            self.node,
            &[
                "-n",
                &self.namespace,
                "get",
                "pods",
                "-l",
                &selector,
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
        .unwrap_or_default();
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // name, Ready=True, and no deletion timestamp (two fields).
                (f.len() == 2 && f[1] == "True").then(|| f[0].to_owned())
            })
            .collect()
    }

    /// Waits until exactly `n` pods are Ready (and none is terminating).
    pub fn wait_ready(&self, n: usize, within: Duration) -> Vec<String> {
        wait_until(&format!("{n} ready pods of {}", self.name), within, || {
            let pods = self.ready_pods();
            if pods.len() == n {
                Ok(pods)
            } else {
                Err(format!("{pods:?}\n{}", self.describe()))
            }
        })
    }

    /// Who holds the operator's Lease (a pod name), or an error while no
    /// Lease exists.
    pub fn lease_holder(&self) -> Result<String, String> {
        jsonpath(
            self.node,
            &self.namespace,
            &format!("lease/{}", self.fullname()),
            "{.spec.holderIdentity}",
        )
    }

    /// The Service's ClusterIP (reachable from the test through the node).
    pub fn cluster_ip(&self) -> String {
        match jsonpath(
            self.node,
            &self.namespace,
            &format!("service/{}", self.fullname()),
            "{.spec.clusterIP}",
        ) {
            Ok(ip) if !ip.is_empty() => ip,
            other => panic!("no ClusterIP for {}: {other:?}", self.fullname()),
        }
    }

    /// A token of the chart's ServiceAccount for the service's audience: an
    /// admin of every node (`AUTH_ADMINS`).
    pub fn admin_token(&self) -> String {
        match kubectl(
            self.node,
            &[
                "-n",
                &self.namespace,
                "create",
                "token",
                &self.fullname(),
                "--audience",
                "edge-quota",
            ],
        ) {
            Ok(t) => t,
            Err(e) => panic!("token: {e}"),
        }
    }

    /// The service's base URL through the ClusterIP.
    pub fn url(&self) -> String {
        format!("http://{}:8183", self.cluster_ip())
    }

    /// Pods, events and the last log lines, for failure messages.
    pub fn describe(&self) -> String {
        let pods = kubectl(
            self.node,
            &["-n", &self.namespace, "get", "pods,pvc", "-o", "wide"],
        )
        .unwrap_or_else(|e| e);
        let events = kubectl(
            self.node,
            &[
                "-n",
                &self.namespace,
                "get",
                "events",
                "--sort-by=.lastTimestamp",
            ],
        )
        .unwrap_or_else(|e| e);
        let selector = format!("app.kubernetes.io/instance={}", self.name);
        let logs = kubectl(
            self.node,
            &[
                "-n",
                &self.namespace,
                "logs",
                "-l",
                &selector,
                "--all-containers",
                "--tail=20",
            ],
        )
        .unwrap_or_else(|e| e);
        format!("--- pods\n{pods}\n--- events\n{events}\n--- logs\n{logs}")
    }
}

/// Runs a pod of the node's toolbox image (busybox and curl) in `ns` as its
/// `default` ServiceAccount with a projected token for the service's
/// audience at /var/run/secrets/edge-quota/token, runs `script` with `sh`,
/// and returns its output once it has finished (and the pod is deleted).
pub fn run_client_pod(node: &EdgeNode, ns: &str, name: &str, script: &str) -> String {
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "default",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
            "containers": [{
                "name": "client",
                "image": "localhost/edge-node/toolbox:1",
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "volumeMounts": [{
                    "name": "edge-quota-token",
                    "mountPath": "/var/run/secrets/edge-quota",
                    "readOnly": true
                }]
            }],
            "volumes": [{
                "name": "edge-quota-token",
                "projected": {"sources": [{"serviceAccountToken": {
                    "path": "token", "audience": "edge-quota", "expirationSeconds": 3600
                }}]}
            }]
        }
    });
    let (ok, out) = node
        .cluster
        .kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    assert!(ok, "client pod {ns}/{name}: {out}");
    let phase = wait_until(
        &format!("client pod {ns}/{name} to finish"),
        Duration::from_secs(120),
        || match jsonpath(node, ns, &format!("pod/{name}"), "{.status.phase}") {
            Ok(p) if p == "Succeeded" || p == "Failed" => Ok(p),
            Ok(p) => Err(p),
            Err(e) => Err(e),
        },
    );
    let logs = kubectl(node, &["-n", ns, "logs", name]).unwrap_or_else(|e| e);
    let _ = kubectl(node, &["-n", ns, "delete", "pod", name, "--wait=false"]);
    assert_eq!(phase, "Succeeded", "client pod {ns}/{name} failed: {logs}");
    logs
}
