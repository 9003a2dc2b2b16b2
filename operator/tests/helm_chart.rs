//! The Helm chart (`charts/edge-quota`) against the real API server with the
//! real helm and kubectl: lint, render with several value sets and have the
//! API server accept every object (`--dry-run=server`), install / upgrade /
//! uninstall, RBAC as the chart's ServiceAccount, and the operator binary
//! reconciling with that ServiceAccount's token.
//!
//! No kubelet runs, so the Deployment's pods never start: the image itself is
//! not exercised here; the binaries are (see the last test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::QUOTA_CRDS;
use serde_json::Value;
use testenv::TestCluster;

fn chart() -> PathBuf {
    testenv::repo_root().join("charts/edge-quota")
}

/// The value sets the chart is tested with.
const DEFAULT: &str = "";
const POSTGRES_3: &str = "\
replicaCount: 3
database:
  existingSecret: edge-quota-db
quotaService:
  persistenceIntervalSecs: 2
  ratelimitFields: true
";
const MONITORED: &str = "\
serviceMonitor:
  enabled: true
  labels: {release: prometheus}
networkPolicy:
  enabled: true
  metricsFrom:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: monitoring}
";

const STATIC_AUTH: &str = "\
auth:
  mode: static
  tokensSecret: edge-quota-tokens
  admins: [group:quota-admins]
";

/// Writes `values` to a file helm can read with `-f`.
fn values_file(dir: &tempfile::TempDir, name: &str, values: &str) -> String {
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, values).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `helm template` output as one JSON value per object.
fn render(c: &TestCluster, release: &str, ns: &str, values: &str) -> (String, Vec<Value>) {
    let yaml = c.helm_ok(&[
        "template",
        release,
        chart().to_str().unwrap(),
        "--namespace",
        ns,
        "--include-crds",
        "-f",
        values,
    ]);
    let objects = serde_yaml::Deserializer::from_str(&yaml)
        .filter_map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            (!v.is_null()).then_some(v)
        })
        .collect();
    (yaml, objects)
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

/// The ServiceMonitor CRD, so the monitored value set can be applied.
fn install_servicemonitor_crd(c: &TestCluster) {
    c.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        c.servicemonitor_crd().to_str().unwrap(),
    ]);
    c.wait_established(&["servicemonitors.monitoring.coreos.com"]);
}

#[test]
fn the_chart_crds_are_the_repository_crds() {
    let names = |dir: PathBuf| {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let repo = testenv::repo_root().join("crds");
    let charted = chart().join("crds");
    assert_eq!(
        names(repo.clone()),
        names(charted.clone()),
        "charts/edge-quota/crds differs from crds/; run: make generate"
    );
    for name in names(repo.clone()) {
        assert_eq!(
            std::fs::read(repo.join(&name)).unwrap(),
            std::fs::read(charted.join(&name)).unwrap(),
            "charts/edge-quota/crds/{name} differs from crds/{name}; run: make generate"
        );
    }
}

#[test]
fn lints_renders_and_every_object_is_accepted_by_the_api_server() {
    let c = testenv::cluster();
    install_servicemonitor_crd(c);
    let dir = tempfile::tempdir().unwrap();
    let ns = testenv::unique_name("chart-render");
    c.kubectl_ok(&["create", "namespace", &ns]);

    for (name, values) in [
        ("default", DEFAULT),
        ("postgres-3", POSTGRES_3),
        ("monitored", MONITORED),
        ("static-auth", STATIC_AUTH),
    ] {
        let file = values_file(&dir, name, values);
        let lint = c.helm_ok(&["lint", "--strict", chart().to_str().unwrap(), "-f", &file]);
        assert!(lint.contains("0 chart(s) failed"), "{name}: {lint}");

        let (yaml, objects) = render(c, "eq", &ns, &file);
        let (ok, out) =
            c.kubectl_stdin(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], &yaml);
        assert!(ok, "{name}: the API server refused an object:\n{out}");
        // Every rendered object was reported back by the API server.
        for o in &objects {
            let kind = o["kind"].as_str().unwrap().to_lowercase();
            let obj = o["metadata"]["name"].as_str().unwrap();
            assert!(
                out.lines().any(|l| {
                    l.contains(&format!("/{obj} "))
                        && (l.starts_with(&format!("{kind}/"))
                            || l.starts_with(&format!("{kind}.")))
                }),
                "{name}: {kind}/{obj} not in the dry-run output:\n{out}"
            );
        }

        let deploy = find(&objects, "Deployment");
        let pod = &deploy["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2, "{name}: operator + sidecar");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        for ctr in containers {
            let sc = &ctr["securityContext"];
            assert_eq!(
                sc["readOnlyRootFilesystem"], true,
                "{name}: {}",
                ctr["name"]
            );
            assert_eq!(sc["allowPrivilegeEscalation"], false);
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
            assert!(ctr["resources"]["requests"]["memory"].is_string());
            assert!(ctr["resources"]["limits"]["memory"].is_string());
            assert!(ctr["livenessProbe"]["httpGet"]["path"].is_string());
        }
        let operator = &containers[0];
        let service = &containers[1];
        assert_eq!(
            env_of(operator, "QUOTA_SERVICE_URL").unwrap()["value"],
            "http://127.0.0.1:8183",
            "the operator reaches its sidecar on loopback"
        );
        assert_eq!(service["readinessProbe"]["httpGet"]["path"], "/health");

        let k = kinds(&objects);
        let volumes = pod["volumes"].as_array().unwrap();
        let volume = |n: &str| volumes.iter().find(|v| v["name"] == n);
        let chart_sa = format!("system:serviceaccount:{ns}:eq-edge-quota");
        match name {
            "static-auth" => {
                assert_eq!(env_of(service, "AUTH_MODE").unwrap()["value"], "static");
                assert_eq!(
                    env_of(service, "AUTH_TOKENS_FILE").unwrap()["value"],
                    "/etc/edge-quota/tokens/tokens.yaml"
                );
                assert_eq!(
                    volume("auth-tokens").unwrap()["secret"]["secretName"],
                    "edge-quota-tokens"
                );
                assert_eq!(
                    env_of(service, "AUTH_ADMINS").unwrap()["value"],
                    format!("{chart_sa},group:quota-admins").as_str()
                );
            }
            _ => {
                // Every other set runs the chart's default: kubernetes mode,
                // the chart's ServiceAccount an admin, the operator calling
                // with a projected token of the service's audience.
                assert_eq!(env_of(service, "AUTH_MODE").unwrap()["value"], "kubernetes");
                assert_eq!(
                    env_of(service, "AUTH_AUDIENCE").unwrap()["value"],
                    "edge-quota"
                );
                assert_eq!(
                    env_of(service, "AUTH_ADMINS").unwrap()["value"],
                    chart_sa.as_str()
                );
                assert_eq!(
                    env_of(operator, "QUOTA_SERVICE_TOKEN_FILE").unwrap()["value"],
                    "/var/run/secrets/edge-quota/token"
                );
                let projected = &volume("service-token").unwrap()["projected"]["sources"][0]["serviceAccountToken"];
                assert_eq!(projected["audience"], "edge-quota");
                assert_eq!(projected["expirationSeconds"], 3600);
            }
        }
        match name {
            "static-auth" => {}
            "default" => {
                assert_eq!(deploy["spec"]["replicas"], 1);
                assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
                assert!(k.contains(&"PersistentVolumeClaim".to_owned()), "{k:?}");
                assert!(env_of(service, "DATABASE_URL").is_none());
                assert_eq!(
                    env_of(service, "RATELIMIT_FIELDS").unwrap()["value"],
                    "false"
                );
                assert!(!k.contains(&"ServiceMonitor".to_owned()));
                assert!(!k.contains(&"NetworkPolicy".to_owned()));
                assert_eq!(
                    k.iter()
                        .filter(|k| *k == "CustomResourceDefinition")
                        .count(),
                    2
                );
            }
            "postgres-3" => {
                assert_eq!(deploy["spec"]["replicas"], 3);
                assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
                assert!(!k.contains(&"PersistentVolumeClaim".to_owned()), "{k:?}");
                let url = env_of(service, "DATABASE_URL").unwrap();
                assert_eq!(
                    url["valueFrom"]["secretKeyRef"],
                    serde_json::json!({"name": "edge-quota-db", "key": "DATABASE_URL"})
                );
                assert_eq!(
                    env_of(operator, "LEADER_ELECTION").unwrap()["value"],
                    "true"
                );
                assert_eq!(
                    env_of(service, "PERSISTENCE_INTERVAL_SECS").unwrap()["value"],
                    "2"
                );
                assert_eq!(
                    env_of(service, "RATELIMIT_FIELDS").unwrap()["value"],
                    "true"
                );
            }
            "monitored" => {
                let sm = find(&objects, "ServiceMonitor");
                assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
                assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
                let np = find(&objects, "NetworkPolicy");
                let from = np["spec"]["ingress"][0]["from"].as_array().unwrap();
                assert_eq!(from.len(), 2, "the release namespace's pods + monitoring");
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn refuses_values_it_cannot_run_with() {
    let c = testenv::cluster();
    let dir = tempfile::tempdir().unwrap();
    for (values, why) in [
        ("replicaCount: 3\n", "replicaCount > 1 needs PostgreSQL"),
        ("quotaService:\n  logFormat: xml\n", "logFormat"),
        ("replicaCount: 0\n", "replicaCount"),
        ("auth:\n  mode: oauth\n", "/auth/mode"),
        ("auth:\n  mode: static\n", "auth.tokensSecret"),
        (
            "auth:\n  tokenExpirationSeconds: 60\n",
            "tokenExpirationSeconds",
        ),
    ] {
        let file = values_file(&dir, "bad", values);
        let out = c
            .helm()
            .args(["template", "eq", chart().to_str().unwrap(), "-f", &file])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{values:?} rendered");
        assert!(err.contains(why), "{values:?}: {err}");
    }
}

/// Kind/name of what a release should own, in its namespace (or cluster-wide).
fn objects_of(release: &str) -> Vec<(String, bool)> {
    let full = format!("{release}-edge-quota");
    vec![
        (format!("deployment/{full}"), true),
        (format!("service/{full}"), true),
        (format!("serviceaccount/{full}"), true),
        (format!("persistentvolumeclaim/{full}-data"), true),
        (format!("role/{full}-leader-election"), true),
        (format!("rolebinding/{full}-leader-election"), true),
        (format!("clusterrole/{full}"), false),
        (format!("clusterrolebinding/{full}"), false),
    ]
}

fn exists(c: &TestCluster, ns: &str, what: &str, namespaced: bool) -> bool {
    let mut cmd = c.kubectl();
    cmd.args(["get", what, "-o", "name"]);
    if namespaced {
        cmd.args(["-n", ns]);
    }
    cmd.output().unwrap().status.success()
}

fn jsonpath(c: &TestCluster, ns: &str, what: &str, path: &str) -> String {
    c.kubectl_ok(&["get", what, "-n", ns, "-o", &format!("jsonpath={path}")])
}

#[test]
fn install_upgrade_and_uninstall() {
    let c = testenv::cluster();
    let ns = testenv::unique_name("chart-life");
    let release = testenv::unique_name("life");
    let full = format!("{release}-edge-quota");
    c.kubectl_ok(&["create", "namespace", &ns]);

    c.helm_ok(&["install", &release, chart().to_str().unwrap(), "-n", &ns]);
    for (what, namespaced) in objects_of(&release) {
        assert!(exists(c, &ns, &what, namespaced), "{what} not created");
    }
    for crd in QUOTA_CRDS {
        assert!(exists(c, &ns, &format!("crd/{crd}"), false));
    }
    let notes = c.helm_ok(&["get", "notes", &release, "-n", &ns]);
    assert!(
        notes.contains(&format!("http://{full}.{ns}.svc:8183")),
        "{notes}"
    );
    let deploy = format!("deployment/{full}");
    assert_eq!(jsonpath(c, &ns, &deploy, "{.spec.replicas}"), "1");

    // Upgrade to PostgreSQL with three replicas.
    c.helm_ok(&[
        "upgrade",
        &release,
        chart().to_str().unwrap(),
        "-n",
        &ns,
        "--set",
        "replicaCount=3,database.existingSecret=edge-quota-db,quotaService.persistenceIntervalSecs=2",
    ]);
    assert_eq!(jsonpath(c, &ns, &deploy, "{.spec.replicas}"), "3");
    assert_eq!(
        jsonpath(c, &ns, &deploy, "{.spec.strategy.type}"),
        "RollingUpdate"
    );
    assert_eq!(
        jsonpath(
            c,
            &ns,
            &deploy,
            "{.spec.template.spec.containers[1].env[?(@.name==\"DATABASE_URL\")].valueFrom.secretKeyRef.name}"
        ),
        "edge-quota-db"
    );
    let history = c.helm_ok(&["history", &release, "-n", &ns, "-o", "json"]);
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
    // The claim is kept (helm.sh/resource-policy: keep): the SQLite data is
    // not thrown away by an upgrade that stops using it.
    assert!(exists(c, &ns, &format!("pvc/{full}-data"), true));

    c.helm_ok(&["uninstall", &release, "-n", &ns]);
    for (what, namespaced) in objects_of(&release) {
        let kept = what.starts_with("persistentvolumeclaim/");
        assert_eq!(
            exists(c, &ns, &what, namespaced),
            kept,
            "{what} after uninstall"
        );
    }
    let list = c.helm_ok(&["list", "-n", &ns, "-q"]);
    assert!(!list.contains(&release), "{list}");
}

/// `kubectl auth can-i`; `resource` is `kind.group[/name][:subresource]`.
fn can_i(c: &TestCluster, sa: &str, ns: Option<&str>, verb: &str, resource: &str) -> bool {
    let mut cmd = c.kubectl();
    let (resource, sub) = resource.split_once(':').unwrap_or((resource, ""));
    cmd.args(["auth", "can-i", verb, resource, "--as", sa]);
    if !sub.is_empty() {
        cmd.arg(format!("--subresource={sub}"));
    }
    match ns {
        Some(ns) => cmd.args(["-n", ns]),
        None => cmd.arg("--all-namespaces"),
    };
    let out = cmd.output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i {verb} {resource}: {answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer == "yes"
}

#[test]
fn rbac_allows_what_the_operator_needs_and_denies_the_rest() {
    let c = testenv::cluster();
    let ns = testenv::unique_name("chart-rbac");
    let release = testenv::unique_name("rbac");
    let full = format!("{release}-edge-quota");
    c.kubectl_ok(&["create", "namespace", &ns]);
    c.helm_ok(&["install", &release, chart().to_str().unwrap(), "-n", &ns]);
    let sa = format!("system:serviceaccount:{ns}:{full}");
    let lease = format!("leases.coordination.k8s.io/{full}");

    let allowed: &[(Option<&str>, &str, &str)] = &[
        (None, "list", "tenantquotas.quota.edgepolicy.io"),
        (None, "watch", "tenantquotas.quota.edgepolicy.io"),
        (None, "patch", "tenantquotas.quota.edgepolicy.io"),
        (None, "list", "quotaallocations.quota.edgepolicy.io"),
        (
            Some("team-a"),
            "patch",
            "quotaallocations.quota.edgepolicy.io",
        ),
        (None, "patch", "tenantquotas.quota.edgepolicy.io:status"),
        (
            Some("team-a"),
            "patch",
            "quotaallocations.quota.edgepolicy.io:status",
        ),
        (
            None,
            "update",
            "tenantquotas.quota.edgepolicy.io:finalizers",
        ),
        (
            None,
            "update",
            "quotaallocations.quota.edgepolicy.io:finalizers",
        ),
        (Some("default"), "create", "events.events.k8s.io"),
        (Some("team-a"), "patch", "events.events.k8s.io"),
        (None, "get", "namespaces"),
        (None, "list", "namespaces"),
        (None, "watch", "namespaces"),
        (None, "create", "tokenreviews.authentication.k8s.io"),
        (Some(&ns), "create", "leases.coordination.k8s.io"),
        (Some(&ns), "get", &lease),
        (Some(&ns), "update", &lease),
    ];
    for (where_, verb, resource) in allowed {
        assert!(
            can_i(c, &sa, *where_, verb, resource),
            "{sa} may not {verb} {resource} in {where_:?}"
        );
    }
    let denied: &[(Option<&str>, &str, &str)] = &[
        (Some(&ns), "get", "secrets"),
        (None, "list", "secrets"),
        (Some(&ns), "list", "pods"),
        (Some(&ns), "create", "pods"),
        (
            None,
            "list",
            "customresourcedefinitions.apiextensions.k8s.io",
        ),
        (None, "list", "servicemonitors.monitoring.coreos.com"),
        (None, "create", "tenantquotas.quota.edgepolicy.io"),
        (None, "delete", "tenantquotas.quota.edgepolicy.io"),
        (None, "update", "tenantquotas.quota.edgepolicy.io"),
        (None, "delete", "namespaces"),
        (None, "update", "namespaces"),
        (
            Some(&ns),
            "update",
            "leases.coordination.k8s.io/someone-else",
        ),
        (Some("default"), "create", "leases.coordination.k8s.io"),
        (Some(&ns), "create", "configmaps"),
        (
            None,
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
        ),
        (Some(&ns), "create", "serviceaccounts:token"),
        (None, "patch", "tenantquotas.quota.edgepolicy.io:scale"),
        (None, "delete", "tenantquotas.quota.edgepolicy.io:status"),
    ];
    for (where_, verb, resource) in denied {
        assert!(
            !can_i(c, &sa, *where_, verb, resource),
            "{sa} may {verb} {resource} in {where_:?}"
        );
    }
    c.helm_ok(&["uninstall", &release, "-n", &ns]);
}

/// A kubeconfig for the admin kubeconfig's server that authenticates with
/// `token` only.
fn token_kubeconfig(c: &TestCluster, token: &str, dir: &tempfile::TempDir) -> PathBuf {
    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&c.kubeconfig).unwrap()).unwrap();
    let mut kc = admin.clone();
    kc["users"] =
        serde_yaml::from_str(&format!("[{{name: chart-sa, user: {{token: {token:?}}}}}]")).unwrap();
    for ctx in kc["contexts"].as_sequence_mut().unwrap() {
        ctx["context"]["user"] = "chart-sa".into();
    }
    let path = dir.path().join("sa.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reconciles_with_the_charts_service_account() {
    let c = testenv::cluster();
    let ns = testenv::unique_name("chart-op");
    let release = testenv::unique_name("op");
    let full = format!("{release}-edge-quota");
    c.kubectl_ok(&["create", "namespace", &ns]);
    c.helm_ok(&["install", &release, chart().to_str().unwrap(), "-n", &ns]);
    c.wait_established(&QUOTA_CRDS);

    // A token for the chart's ServiceAccount, from the TokenRequest API.
    let token = c.kubectl_ok(&["create", "token", &full, "-n", &ns, "--duration=1h"]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(c, token.trim(), &dir);
    let whoami = Command::new(c.bin_dir.join("kubectl"))
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        format!("system:serviceaccount:{ns}:{full}"),
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );

    // The sidecar and the operator, configured as the chart configures them:
    // the service checks tokens with TokenReview as the chart's
    // ServiceAccount, which is in AUTH_ADMINS; the operator calls it with a
    // token of the service's audience, read from a file.
    let subject = format!("system:serviceaccount:{ns}:{full}");
    let token_file = dir.path().join("service-token");
    let service_token = |file: &std::path::Path| {
        let t = c.kubectl_ok(&[
            "create",
            "token",
            &full,
            "-n",
            &ns,
            "--duration=1h",
            "--audience=edge-quota",
        ]);
        std::fs::write(file, t.trim()).unwrap();
    };
    service_token(&token_file);
    let service_port = common::free_port();
    let _service = Killed(common::start_service_with(
        service_port,
        &dir.path().join("data"),
        &[
            ("AUTH_MODE", "kubernetes"),
            ("AUTH_AUDIENCE", "edge-quota"),
            ("AUTH_ADMINS", &subject),
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ],
    ));
    let health_port = common::free_port();
    let log_path = dir.path().join("operator.log");
    let _operator = Killed(
        Command::new(env!("CARGO_BIN_EXE_quota-operator"))
            .env("KUBECONFIG", &kubeconfig)
            .env(
                "QUOTA_SERVICE_URL",
                format!("http://127.0.0.1:{service_port}"),
            )
            .env("SYNC_INTERVAL_SECS", "1")
            .env("LEADER_ELECTION", "true")
            .env("LEASE_NAME", &full)
            .env("POD_NAMESPACE", &ns)
            .env("POD_NAME", "chart-op-0")
            .env("HEALTH_ADDR", format!("127.0.0.1:{health_port}"))
            .env("LOG_LEVEL", "info")
            .env("QUOTA_SERVICE_TOKEN_FILE", &token_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // It takes the Lease (Role: create + get/update of that one Lease) and
    // reports itself leader on /healthz.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(format!("http://127.0.0.1:{health_port}/healthz"))
            .send()
            .await;
        if let Ok(r) = r {
            let body: Value = r.json().await.unwrap();
            if body["role"] == "leader" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never became leader:\n{}", log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "lease",
            &full,
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.holderIdentity}"
        ]),
        "chart-op-0"
    );

    // A tenant and an allocation in a namespace its selector admits.
    let tenant = testenv::unique_name("chart-tq");
    let team_ns = testenv::unique_name("chart-team");
    c.kubectl_ok(&["create", "namespace", &team_ns]);
    c.kubectl_ok(&["label", "namespace", &team_ns, &format!("tenant={tenant}")]);
    c.apply_yaml(&format!(
        "apiVersion: quota.edgepolicy.io/v1alpha1
kind: TenantQuota
metadata:
  name: {tenant}
spec:
  limits:
    messages: {{max: 100}}
  allocationNamespaceSelector:
    matchLabels: {{tenant: {tenant}}}
---
apiVersion: quota.edgepolicy.io/v1alpha1
kind: QuotaAllocation
metadata:
  name: team
  namespace: {team_ns}
spec:
  parentRef: {{kind: TenantQuota, name: {tenant}}}
  limits:
    messages: {{max: 40}}
"
    ));
    let condition = |what: &[&str], t: &str| {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let path = format!("jsonpath={{.status.conditions[?(@.type==\"{t}\")].status}}");
        args.extend_from_slice(&["-o", &path]);
        c.kubectl_ok(&args)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let synced = condition(&["tq", &tenant], "Synced");
        let bound = condition(&["qa", "team", "-n", &team_ns], "Bound");
        if synced == "True" && bound == "True" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tq Synced={synced:?}, qa Bound={bound:?}; operator log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The service got the node, with the allocation under it; without a
    // token nothing is shown.
    let base = format!("http://127.0.0.1:{service_port}");
    let op_token = std::fs::read_to_string(&token_file).unwrap();
    let anonymous = http
        .get(format!("{base}/api/v1/quotas/{tenant}"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let node: Value = http
        .get(format!("{base}/api/v1/quotas/{tenant}"))
        .bearer_auth(&op_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(node["children"].as_array().map(Vec::len), Some(1), "{node}");

    // A workload of the allocation's namespace reports usage with its own
    // token (the allocation's default grant); one of another namespace may not.
    let allocation_node = format!("qa:{team_ns}:team");
    let workload_token = |namespace: &str| {
        c.kubectl_ok(&["create", "serviceaccount", "web", "-n", namespace]);
        c.kubectl_ok(&[
            "create",
            "token",
            "web",
            "-n",
            namespace,
            "--duration=1h",
            "--audience=edge-quota",
        ])
        .trim()
        .to_owned()
    };
    let consume = |token: String| {
        http.post(format!("{base}/api/v1/quotas/{allocation_node}/consume"))
            .bearer_auth(token)
            .json(&serde_json::json!({"usage": {"messages": 3}}))
            .send()
    };
    let own = consume(workload_token(&team_ns)).await.unwrap();
    assert_eq!(own.status(), 200, "{:?}", own.text().await);
    let other = consume(workload_token(&ns)).await.unwrap();
    assert_eq!(other.status(), 403);
    // The usage reaches the allocation's status.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let used = c.kubectl_ok(&[
            "get",
            "qa",
            "team",
            "-n",
            &team_ns,
            "-o",
            "jsonpath={.status.resources.messages.used}",
        ]);
        if used == "3" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status shows {used:?}; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A rotated token file is read at the next call: the service reviews
    // the new token (its review count grows) and the operator keeps working.
    let reviews = || async {
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("edge_quota_auth_token_reviews_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let before = reviews().await;
    service_token(&token_file);
    c.kubectl_ok(&["annotate", "tq", &tenant, "touched=1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reviews().await <= before {
        assert!(
            Instant::now() < deadline,
            "the rotated token was never sent:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Events were written (events.k8s.io create).
    let events = c.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        &team_ns,
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("AllocationBound"), "{events}");

    // Deletion goes through the finalizers (patch) with the same rights.
    c.kubectl_ok(&["delete", "qa", "team", "-n", &team_ns, "--timeout=60s"]);
    c.kubectl_ok(&["delete", "tq", &tenant, "--timeout=60s"]);
    assert!(
        !log().contains("forbidden"),
        "a call was forbidden:\n{}",
        log()
    );
}
