//! End-to-end harness: a real API server (testenv), the real `quota-service`
//! binary on a real SQLite file, and the operator running in-process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quota_operator::Config;
use tokio_util::sync::CancellationToken;

/// The operator's two CRDs, by their `plural.group` names.
pub const QUOTA_CRDS: [&str; 2] = [
    "tenantquotas.quota.edgepolicy.io",
    "quotaallocations.quota.edgepolicy.io",
];

/// Applies `crds/` (server-side, so concurrent tests agree) and waits
/// until both CRDs are established.
pub fn install_crds(c: &testenv::TestCluster) {
    c.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        testenv::repo_root().join("crds").to_str().unwrap(),
    ]);
    c.wait_established(&QUOTA_CRDS);
}

pub struct Env {
    pub cluster: &'static testenv::TestCluster,
    pub service: Child,
    pub service_port: u16,
    pub data_dir: tempfile::TempDir,
    pub stop: CancellationToken,
    pub operator: tokio::task::JoinHandle<()>,
    pub http: reqwest::Client,
}

/// The `quota-service` binary, built if needed (next to this test binary).
pub fn service_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "quota-service",
            "--bin",
            "quota-service",
        ])
        .current_dir(testenv::repo_root())
        .status()
        .expect("cargo build quota-service");
    assert!(ok.success(), "building quota-service failed");
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    dir.join("quota-service")
}

/// A TenantQuota `name` of `max` messages a day, from which namespaces
/// labelled `tenant: {name}` may allocate, as YAML for [`Env::apply`].
pub fn tenant_quota(name: &str, max: u64) -> String {
    format!(
        "apiVersion: quota.edgepolicy.io/v1alpha1\nkind: TenantQuota\nmetadata: {{name: {name}}}\nspec:\n  limits: {{messages: {{max: {max}}}}}\n  allocationNamespaceSelector: {{matchLabels: {{tenant: {name}}}}}\n"
    )
}

/// A QuotaAllocation `name` in `ns` that allocates `max` messages from
/// TenantQuota `tenant`, as YAML for [`Env::apply`].
pub fn tenant_allocation(ns: &str, name: &str, tenant: &str, max: u64) -> String {
    format!(
        "apiVersion: quota.edgepolicy.io/v1alpha1\nkind: QuotaAllocation\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRef: {{kind: TenantQuota, name: {tenant}}}\n  limits: {{messages: {{max: {max}}}}}\n"
    )
}

/// The allocations of the creation-order tests, from TenantQuota `tenant`
/// (100 messages) in `ns`, oldest first: `a-first` (60) fits; `b-second`
/// (60) does not; `c-third` (30) would, but must wait for the older one.
pub const IN_ORDER: [(&str, u64); 3] = [("a-first", 60), ("b-second", 60), ("c-third", 30)];

/// [`IN_ORDER`] as YAML for one [`Env::apply`], which creates them in order.
pub fn allocations_in_order(ns: &str, tenant: &str) -> String {
    IN_ORDER
        .map(|(name, max)| tenant_allocation(ns, name, tenant, max))
        .join("---\n")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_service(port: u16, data: &Path) -> Child {
    start_service_with(port, data, &[])
}

/// [`start_service`] with more environment (access control, say).
pub fn start_service_with(port: u16, data: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(data.with_extension(format!("{port}.log"))).unwrap();
    let mut child = Command::new(service_binary())
        .env("QUOTA_PORT", port.to_string())
        .env("QUOTA_DATA_DIR", data)
        .env("PERSISTENCE_INTERVAL_SECS", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start quota-service");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("quota-service did not listen on {port}");
}

impl Env {
    pub async fn start() -> Env {
        // The in-process operator's log, when asked for (RUST_LOG=quota_operator=debug).
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let cluster = testenv::cluster();
        install_crds(cluster);
        let data_dir = tempfile::tempdir().unwrap();
        let service_port = free_port();
        let service = start_service(service_port, &data_dir.path().join("data"));
        let config = Config::from_lookup(|k| match k {
            "QUOTA_SERVICE_URL" => Some(format!("http://127.0.0.1:{service_port}")),
            "SYNC_INTERVAL_SECS" => Some("1".into()),
            "LEADER_ELECTION" => Some("false".into()),
            "POD_NAME" => Some("e2e".into()),
            _ => None,
        })
        .unwrap();
        let client = cluster.client().await;
        let stop = CancellationToken::new();
        let op_stop = stop.clone();
        let operator = tokio::spawn(async move {
            if let Err(e) = quota_operator::run(&config, client, op_stop).await {
                panic!("operator failed: {e}");
            }
        });
        Env {
            cluster,
            service,
            service_port,
            data_dir,
            stop,
            operator,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.service_port)
    }

    pub fn apply(&self, yaml: &str) {
        let (ok, out) = self.cluster.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(ok, "kubectl apply: {out}\n{yaml}");
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        self.cluster.kubectl_ok(args)
    }

    /// `kubectl get <what> -o jsonpath=<path>`, or "" when it fails.
    pub fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let mut args: Vec<&str> = vec!["get"];
        args.extend(what);
        let jp = format!("jsonpath={path}");
        args.extend(["-o", &jp]);
        let out = self.cluster.kubectl().args(&args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `jsonpath` of `what` equals `want`, or fails with what it saw.
    pub async fn wait_for(&self, what: &[&str], path: &str, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut seen = String::new();
        while Instant::now() < deadline {
            seen = self.jsonpath(what, path);
            if seen == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let all = self.jsonpath(what, "{.status}");
        panic!("{what:?} {path}: wanted {want:?}, saw {seen:?} after {within:?}; status: {all}");
    }

    /// The condition `type`'s status and reason, e.g. ("True", "Allocated").
    pub fn condition(&self, what: &[&str], t: &str) -> String {
        self.jsonpath(what, &format!("{{.status.conditions[?(@.type==\"{t}\")].status}}/{{.status.conditions[?(@.type==\"{t}\")].reason}}"))
    }

    /// Waits until [`IN_ORDER`] in `ns` bound in creation order: the oldest
    /// allocated, both younger ones waiting on the exhausted parent.
    pub async fn wait_bound_in_order(&self, ns: &str, within: Duration) {
        for ((name, _), want) in IN_ORDER.iter().zip([
            "True/Allocated",
            "False/ParentExhausted",
            "False/ParentExhausted",
        ]) {
            self.wait_condition(&["qa", name, "-n", ns], "Bound", want, within)
                .await;
        }
    }

    pub async fn wait_condition(&self, what: &[&str], t: &str, want: &str, within: Duration) {
        let path = format!(
            "{{.status.conditions[?(@.type==\"{t}\")].status}}/{{.status.conditions[?(@.type==\"{t}\")].reason}}"
        );
        self.wait_for(what, &path, want, within).await;
    }

    /// POST JSON to the service.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// Event reasons recorded for an object.
    pub fn events(&self, ns: Option<&str>, name: &str) -> Vec<String> {
        let mut args = vec![
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
        ];
        let selector = format!("involvedObject.name={name}");
        args.extend(["--field-selector", &selector]);
        match ns {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("-A"),
        }
        let out = self.cluster.kubectl().args(&args).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn namespace(&self, labels: &[(&str, &str)]) -> String {
        let name = testenv::unique_name("e2e");
        self.kubectl(&["create", "namespace", &name]);
        for (k, v) in labels {
            self.kubectl(&["label", "namespace", &name, &format!("{k}={v}")]);
        }
        name
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}
