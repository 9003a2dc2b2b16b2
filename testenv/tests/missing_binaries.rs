//! Without the binaries the environment fails loudly, naming the command to
//! run; it never lets a test pass by skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn check_fails_and_names_make_test_env() {
    let dir = std::env::temp_dir().join(format!("no-test-env-{}", std::process::id()));
    let out = Command::new(testenv::repo_root().join("hack/test-env.sh"))
        .arg("--check")
        .env("EDGE_QUOTA_TEST_ENV_DIR", &dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("make test-env"), "{err}");
    assert!(
        err.contains("kube-apiserver") && err.contains("etcd"),
        "{err}"
    );
    assert!(!dir.exists(), "--check creates nothing");
}

#[test]
fn cluster_up_fails_when_binaries_are_missing() {
    let dir = std::env::temp_dir().join(format!("no-test-env-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(testenv::repo_root().join("hack/cluster.sh"))
        .args(["up", "--name", &format!("missing-{}", std::process::id())])
        .env("EDGE_QUOTA_TEST_ENV_DIR", &dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("make test-env"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
