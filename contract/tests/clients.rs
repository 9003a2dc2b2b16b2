//! Clients generated from the committed OpenAPI document, each driving one
//! call sequence against the release binary: create a tenant and a team
//! under it, consume until 429 (reading `RateLimit` on the way), read the refusal's `retry_after_secs` and
//! `Retry-After`, read the roll-up, and take a typed 404 and 401. The
//! sequences are `contract/clients/python/sequence.py` and
//! `contract/clients/typescript/sequence.ts`; the generators are pinned by
//! `hack/python/requirements.txt` and `contract/clients/typescript/package-lock.json`.
//! Generated code is written to a temp dir, never committed.

// Test helpers: a failure here is the test's failure, named by the message.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use contract::{ADMIN_TOKEN, Service, node_tools, python_tools, run};

/// Checks of the sequences: each prints one `ok:` line per check.
const PYTHON_CHECKS: usize = 11;
const TYPESCRIPT_CHECKS: usize = 10;

fn document() -> std::path::PathBuf {
    testenv::repo_root().join("openapi/edge-quota.json")
}

fn clients_dir() -> std::path::PathBuf {
    testenv::repo_root().join("contract/clients")
}

#[test]
fn a_generated_python_client_runs_the_sequence() {
    let tools = python_tools();
    let service = Service::start();
    let work = tempfile::tempdir().expect("temp dir");
    let package = work.path().join("edge_quota_client");
    // The venv first on PATH: the generator formats its output with the
    // venv's ruff, and warns (a missing piece) when it cannot.
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let generated = Command::new(tools.join("openapi-python-client"))
        .env("PATH", &path)
        .args(["generate", "--meta", "none", "--path"])
        .arg(document())
        .arg("--output-path")
        .arg(&package)
        .output()
        .expect("run openapi-python-client");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );
    assert!(
        generated.status.success() && !said.contains("Warning"),
        "openapi-python-client did not generate cleanly:\n{said}"
    );
    let out = run(
        "the Python sequence",
        Command::new(tools.join("python"))
            .env("PYTHONPATH", work.path())
            .arg(clients_dir().join("python/sequence.py"))
            .args([&service.url, ADMIN_TOKEN]),
    );
    println!("{out}");
    assert_eq!(oks(&out), PYTHON_CHECKS, "{out}");
}

#[test]
fn a_generated_typescript_client_runs_the_sequence() {
    let modules = node_tools();
    let service = Service::start();
    let work = tempfile::tempdir().expect("temp dir");
    let project = clients_dir().join("typescript");
    for file in ["package.json", "tsconfig.json", "sequence.ts"] {
        std::fs::copy(project.join(file), work.path().join(file))
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    symlink(&modules, &work.path().join("node_modules"));
    let bin = modules.join(".bin");
    run(
        "openapi-typescript",
        Command::new(bin.join("openapi-typescript"))
            .current_dir(work.path())
            .arg(document())
            .args(["--output", "edge-quota.ts"]),
    );
    // tsc --strict checks the sequence's paths, bodies and answers
    // against the generated types before anything runs.
    run(
        "tsc",
        Command::new(bin.join("tsc"))
            .current_dir(work.path())
            .args(["-p", "."]),
    );
    let out = run(
        "the TypeScript sequence",
        Command::new("node")
            .current_dir(work.path())
            .arg("out/sequence.js")
            .args([&service.url, ADMIN_TOKEN]),
    );
    println!("{out}");
    assert_eq!(oks(&out), TYPESCRIPT_CHECKS, "{out}");
}

/// How many checks a sequence passed.
fn oks(out: &str) -> usize {
    out.lines().filter(|line| line.starts_with("ok: ")).count()
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
}
