//! A real Kubernetes control plane for tests: etcd + kube-apiserver built
//! from pinned Go modules (`make test-env`) and started by `hack/cluster.sh`.
//!
//! ```text
//!  test binary ──(first use)──▶ hack/cluster.sh up --name test-<pid> --owner-pid <pid>
//!       │                          └─ etcd + kube-apiserver on free loopback ports
//!       └── kube::Client / kubectl / helm ──▶ https://127.0.0.1:<port>
//!  test binary exits ──▶ the cluster's reaper stops it
//! ```
//!
//! One cluster per test binary, shared by its tests (each test uses its own
//! namespace). When `KUBECONFIG` points at a cluster started with
//! `make cluster-up` (context `edge-quota-test-env`), that one is reused.
//! Missing binaries are a loud failure naming the command to run, never a skip.
//!
//! No controller-manager or kubelet runs: pods never start, namespaces never
//! finish deleting, ServiceAccounts get no token Secrets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use kube::config::{KubeConfigOptions, Kubeconfig};

mod edge;

pub use edge::{EdgeNode, Image, edge_node};

/// The kubeconfig context `hack/cluster.sh` writes.
pub const CONTEXT: &str = "edge-quota-test-env";

/// A running test cluster.
#[derive(Debug)]
pub struct TestCluster {
    /// The admin kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    /// Where kubectl, helm, etcd and kube-apiserver live.
    pub bin_dir: PathBuf,
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The cluster of this test binary, started on first use.
///
/// # Panics
/// When the binaries are missing (run `make test-env`) or the cluster does
/// not start: a test that needs a cluster must fail, not skip.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| match start() {
        Ok(c) => c,
        Err(e) => panic!("test cluster unavailable: {e}"),
    })
}

fn start() -> Result<TestCluster, String> {
    let hack = repo_root().join("hack");
    let bin_dir = built_dir("test-env.sh", "make test-env")?;

    if let Some(kubeconfig) = reusable_kubeconfig(&bin_dir) {
        return Ok(TestCluster {
            kubeconfig,
            bin_dir,
        });
    }

    let pid = std::process::id();
    let up = run(Command::new(hack.join("cluster.sh"))
        .args([
            "up",
            "--name",
            &format!("test-{pid}"),
            "--owner-pid",
            &pid.to_string(),
        ])
        .env("EDGE_QUOTA_TEST_ENV_DIR", &bin_dir))?;
    if !up.status.success() {
        return Err(format!(
            "hack/cluster.sh up failed:\n{}",
            String::from_utf8_lossy(&up.stderr)
        ));
    }
    let line = last_line(&up.stdout);
    let kubeconfig = line
        .strip_prefix("export KUBECONFIG=")
        .ok_or_else(|| format!("unexpected output of cluster.sh up: {line:?}"))?;
    Ok(TestCluster {
        kubeconfig: PathBuf::from(kubeconfig),
        bin_dir,
    })
}

/// Where `make test-env` put kubectl and helm.
///
/// # Panics
/// When they are missing, naming the command that builds them.
pub fn test_env_bin_dir() -> PathBuf {
    match built_dir("test-env.sh", "make test-env") {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// The directory `hack/<script> --check` prints when everything it builds
/// is there; otherwise an error with what is missing and `make_target`,
/// the command that builds it.
fn built_dir(script: &str, make_target: &str) -> Result<PathBuf, String> {
    let check = run(Command::new(repo_root().join("hack").join(script)).arg("--check"))?;
    if !check.status.success() {
        return Err(format!(
            "binaries are missing: {}\nBuild them once with:  {make_target}",
            String::from_utf8_lossy(&check.stderr).trim()
        ));
    }
    Ok(PathBuf::from(last_line(&check.stdout)))
}

/// `KUBECONFIG`, if it names a cluster from `make cluster-up` that answers.
/// Any other cluster (a real one!) is never touched by the tests.
fn reusable_kubeconfig(bin_dir: &Path) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("KUBECONFIG")?);
    let kc = Kubeconfig::read_from(&path).ok()?;
    if kc.current_context.as_deref() != Some(CONTEXT) {
        return None;
    }
    let kubectl = bin_dir.join("kubectl");
    let ok = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "--raw", "/readyz"])
        .output()
        .ok()?
        .status
        .success();
    ok.then_some(path)
}

/// Where the hack/ scripts keep their builds and state (`EDGE_QUOTA_CACHE`).
fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDGE_QUOTA_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("edge-quota")
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

// === impl TestCluster ===

impl TestCluster {
    /// An admin client.
    pub async fn client(&self) -> kube::Client {
        let kc = match Kubeconfig::read_from(&self.kubeconfig) {
            Ok(kc) => kc,
            Err(e) => panic!("read {}: {e}", self.kubeconfig.display()),
        };
        let config =
            match kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await {
                Ok(c) => c,
                Err(e) => panic!("kubeconfig {}: {e}", self.kubeconfig.display()),
            };
        match kube::Client::try_from(config) {
            Ok(c) => c,
            Err(e) => panic!("client: {e}"),
        }
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(self.bin_dir.join("kubectl"));
        c.env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// `helm` with the admin kubeconfig.
    pub fn helm(&self) -> Command {
        let mut c = Command::new(self.bin_dir.join("helm"));
        c.env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// Waits until each named CRD (`plural.group`) is `Established`.
    ///
    /// Polls the condition rather than using `kubectl wait`: right after a
    /// create, `status.conditions` can still be null, and `kubectl wait`
    /// then fails at once ("accessor error: <nil>") instead of waiting.
    pub fn wait_established(&self, crds: &[&str]) {
        let jsonpath = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
        for crd in crds {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let name = format!("crd/{crd}");
                let out = self.kubectl().args(["get", &name, "-o", jsonpath]).output();
                let status = match &out {
                    Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if status.trim() == "True" {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    panic!("crd/{crd} not Established within 60 s; last answer: {status}");
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }

    /// Runs helm and returns its output; panics with its output on failure.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        let out = match self.helm().args(args).output() {
            Ok(o) => o,
            Err(e) => panic!("helm {args:?}: {e}"),
        };
        if !out.status.success() {
            panic!(
                "helm {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The prometheus-operator ServiceMonitor CRD fetched by `make test-env`
    /// (the chart's optional ServiceMonitor needs it on the API server).
    pub fn servicemonitor_crd(&self) -> PathBuf {
        let found = std::fs::read_dir(&self.bin_dir).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("servicemonitor-crd-") && n.ends_with(".yaml"))
            })
        });
        match found {
            Some(p) => p,
            None => panic!(
                "no servicemonitor-crd-*.yaml in {}; run: make test-env",
                self.bin_dir.display()
            ),
        }
    }

    /// Runs kubectl and returns its output; panics with stderr on failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = match self.kubectl().args(args).output() {
            Ok(o) => o,
            Err(e) => panic!("kubectl {args:?}: {e}"),
        };
        if !out.status.success() {
            panic!(
                "kubectl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `stdin` fed to it: whether it succeeded, and its
    /// stdout followed by its stderr.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> (bool, String) {
        use std::io::Write as _;
        let mut child = match self
            .kubectl()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("kubectl {args:?}: {e}"),
        };
        if let Some(mut input) = child.stdin.take()
            && let Err(e) = input.write_all(stdin.as_bytes())
        {
            panic!("kubectl {args:?} stdin: {e}");
        }
        let out = match child.wait_with_output() {
            Ok(o) => o,
            Err(e) => panic!("kubectl {args:?}: {e}"),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Applies YAML with server-side apply (idempotent, safe when tests race).
    pub fn apply_yaml(&self, yaml: &str) -> String {
        let args = [
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=edge-quota-tests",
            "-f",
            "-",
        ];
        let (ok, out) = self.kubectl_stdin(&args, yaml);
        if !ok {
            panic!("kubectl apply failed: {out}\n---\n{yaml}");
        }
        out
    }
}

/// A namespace name unique within this test binary and across binaries.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a fresh namespace and returns its name.
pub async fn namespace(client: &kube::Client, prefix: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, ObjectMeta, PostParams};
    let name = unique_name(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    if let Err(e) = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        panic!("create namespace {name}: {e}");
    }
    name
}

/// Serialises a Kubernetes object to YAML (for kubectl).
pub fn to_yaml<T: serde::Serialize>(obj: &T) -> String {
    match serde_yaml::to_string(obj) {
        Ok(s) => s,
        Err(e) => panic!("yaml: {e}"),
    }
}

/// A real PostgreSQL server for this test binary (started on first use by
/// `hack/postgres.sh`, stopped when the binary exits); its `DATABASE_URL`.
///
/// # Panics
/// When PostgreSQL cannot be installed or started: a test that needs it
/// fails, it never skips.
pub fn postgres() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| postgres_up(&format!("test-{}", std::process::id()), false))
}

/// A PostgreSQL server of its own, for a test that stops and starts it (an
/// outage) without disturbing the other tests' server. Durable (fsync and
/// synchronous commits on): its stop is a crash, and a commit it
/// acknowledged must survive it. Stopped and removed when dropped (and by
/// its reaper if the test binary dies first).
#[derive(Debug)]
pub struct PostgresServer {
    pub name: String,
    /// `DATABASE_URL` of its `quota` database.
    pub url: String,
}

impl PostgresServer {
    /// # Panics
    /// When PostgreSQL cannot be installed or started.
    pub fn start(prefix: &str) -> Self {
        let name = unique_name(prefix);
        let url = postgres_up(&name, true);
        PostgresServer { name, url }
    }

    /// Stops the server at once (an outage; open connections break), keeping
    /// its data.
    pub fn stop(&self) {
        self.script("stop");
    }

    /// Starts it again after [`PostgresServer::stop`]: same port, same data.
    pub fn restart(&self) {
        self.script("start");
    }

    fn script(&self, cmd: &str) {
        let out =
            run(Command::new(repo_root().join("hack/postgres.sh"))
                .args([cmd, "--name", &self.name]));
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "hack/postgres.sh {cmd} --name {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ =
            run(Command::new(repo_root().join("hack/postgres.sh"))
                .args(["down", "--name", &self.name]));
    }
}

/// Starts (or finds running) the server `name`, reaped when this process
/// exits; its `DATABASE_URL`.
fn postgres_up(name: &str, durable: bool) -> String {
    {
        let pid = std::process::id().to_string();
        let mut args = vec!["up", "--name", name, "--owner-pid", &pid];
        if durable {
            args.push("--durable");
        }
        let out = run(Command::new(repo_root().join("hack/postgres.sh")).args(&args));
        match out {
            Ok(o) if o.status.success() => last_line(&o.stdout)
                .strip_prefix("DATABASE_URL=")
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    panic!(
                        "unexpected output of hack/postgres.sh: {:?}",
                        last_line(&o.stdout)
                    )
                }),
            Ok(o) => panic!(
                "PostgreSQL did not start (hack/postgres.sh up):\n{}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

/// A new, empty database on this binary's PostgreSQL server (one per test,
/// so tests can run in parallel); its URL.
pub fn postgres_database() -> String {
    let base = postgres();
    let name = unique_name("db").replace('-', "_");
    let out = Command::new("psql")
        .args([base, "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .unwrap_or_else(|e| panic!("psql: {e}"));
    if !out.status.success() {
        panic!(
            "CREATE DATABASE {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let prefix = base.strip_suffix("/quota").unwrap_or(base);
    format!("{prefix}/{name}")
}
