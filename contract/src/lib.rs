//! Helpers for the API-contract tests: the release `quota-service` binary
//! on a fresh SQLite file with static tokens, and the pinned Python and
//! Node tools (`hack/python-tools.sh`, `hack/node-tools.sh`) that test it
//! from its OpenAPI document.
//!
//! ```text
//!  test ──spawns──▶ target/release/quota-service (SQLite, AUTH_MODE=static)
//!    └──runs──▶ schemathesis / a generated client ──HTTP──▶ 127.0.0.1:<port>
//! ```
//!
//! The clients' call sequences live in `contract/clients/` (Python and
//! TypeScript); the clients themselves are generated at test time and never
//! committed.

// Test helpers: a failure here is the test's failure, named by the message.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin's token: its subject owns every node.
pub const ADMIN_TOKEN: &str = "contract-admin-token-0123456789";

/// The release binary `make test` builds before the tests run.
///
/// # Panics
/// When it is missing: the tests never fall back to another build.
pub fn release_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| testenv::repo_root().join("target"));
    let bin = target.join("release").join("quota-service");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release --bin quota-service` (make test does)",
        bin.display()
    );
    bin
}

/// The pinned Python tools' bin directory, built on first use.
///
/// # Panics
/// When they cannot be built (no network to PyPI, no python3).
pub fn python_tools() -> PathBuf {
    installed_by("hack/python-tools.sh")
}

/// The pinned Node tools' `node_modules` (openapi-typescript, openapi-fetch,
/// TypeScript), installed on first use.
///
/// # Panics
/// When they cannot be installed (no network to npm, no node).
pub fn node_tools() -> PathBuf {
    installed_by("hack/node-tools.sh")
}

/// The directory `script` installs into (the last line it prints).
fn installed_by(script: &str) -> PathBuf {
    let out = Command::new(testenv::repo_root().join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(text.lines().last().unwrap_or_default().trim())
}

/// Runs `command`, returning its stdout; panics with both outputs when it
/// fails.
pub fn run(what: &str, command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The committed OpenAPI document (`make generate` keeps it current).
pub fn document() -> serde_json::Value {
    let path = testenv::repo_root().join("openapi/edge-quota.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The document's operations as `METHOD /path` labels, sorted (the form
/// schemathesis names its test cases in).
pub fn documented_operations() -> Vec<String> {
    let mut labels: Vec<String> = document()["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    labels.sort();
    labels
}

/// The service as a child process, stopped when dropped.
#[derive(Debug)]
pub struct Service {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Service {
    /// Starts the release binary on a new SQLite file, with access control
    /// on (`ADMIN_TOKEN`'s subject in AUTH_ADMINS), and waits for `/ready`.
    pub fn start() -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(
            &tokens,
            format!("- token: {ADMIN_TOKEN}\n  subject: contract-admin\n"),
        )
        .expect("write the tokens file");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("service.log")).expect("log file");
        let child = Command::new(release_binary())
            .env_clear()
            .env("QUOTA_HOST", "127.0.0.1")
            .env("QUOTA_PORT", port.to_string())
            .env("QUOTA_DATA_DIR", dir.path().join("data"))
            .env("AUTH_MODE", "static")
            .env("AUTH_TOKENS_FILE", &tokens)
            .env("AUTH_ADMINS", "contract-admin")
            // The consume answers carry the RateLimit fields the clients read.
            .env("RATELIMIT_FIELDS", "true")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the release quota-service");
        let mut service = Service {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !service.answers_ready(port) {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("quota-service exited ({status}):\n{}", service.log());
            }
            assert!(
                Instant::now() < deadline,
                "quota-service not ready within 30 s:\n{}",
                service.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        service
    }

    fn answers_ready(&self, port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let request = "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        let mut answer = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }

    /// What the service logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
