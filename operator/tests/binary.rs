//! The `quota-operator` binary: it takes the leader Lease, stops cleanly on
//! SIGTERM, and refuses a bad setting with an error naming it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn takes_the_lease_and_stops_on_sigterm() {
    let c = testenv::cluster();
    common::install_crds(c);
    let ns = testenv::unique_name("op");
    c.kubectl_ok(&["create", "namespace", &ns]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_quota-operator"))
        .env("KUBECONFIG", &c.kubeconfig)
        .env("POD_NAME", "op-test-0")
        .env("LEASE_NAMESPACE", &ns)
        .env("QUOTA_SERVICE_URL", "http://127.0.0.1:9") // nothing listens: fine for this test
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let holder = c
            .kubectl()
            .args([
                "get",
                "lease",
                "edge-quota-operator",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&holder.stdout) == "op-test-0" {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "no Lease taken; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let out = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "did not stop on SIGTERM; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{log}",
        out.status
    );
    assert!(
        log.contains("shutdown requested") && log.contains("operator stopped"),
        "{log}"
    );
}

#[test]
fn a_bad_setting_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_quota-operator"))
        .env("SYNC_INTERVAL_SECS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SYNC_INTERVAL_SECS") && err.contains("soon"),
        "{err}"
    );
}
