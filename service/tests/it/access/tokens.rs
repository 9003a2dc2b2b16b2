//! The tokens file of static mode: rotation in place, a broken file, and
//! the service refusing to start with a bad one.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;

async fn eventually(s: &Secured, token: &str, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = s
            .call(token, Method::GET, "/api/v1/quotas/team-a", None)
            .await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{token}: still {status}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_rotated_file_is_taken_and_a_broken_one_keeps_the_last_good() {
    let s = Secured::new().await;
    let stop = CancellationToken::new();
    s.tokens
        .clone()
        .watch(Duration::from_millis(50), stop.clone());

    // Rotate alice's token, as an updated Secret would: the new one works,
    // the old one stops working.
    let rotated = TOKENS_FILE.replace(ALICE, "alice-rotated-0123456789");
    std::fs::write(&s.tokens_path, rotated).expect("rewrite");
    eventually(&s, "alice-rotated-0123456789", StatusCode::OK).await;
    eventually(&s, ALICE, StatusCode::UNAUTHORIZED).await;

    // A broken file: the last good tokens stay.
    std::fs::write(&s.tokens_path, "- token: [unterminated\n").expect("break");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = s
        .call(
            "alice-rotated-0123456789",
            Method::GET,
            "/api/v1/quotas/team-a",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // So does a file that went away.
    std::fs::remove_file(&s.tokens_path).expect("remove");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = s
        .call(
            WEB_A,
            Method::POST,
            "/api/v1/quotas/team-a/consume",
            Some(json!({"usage": {"messages": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Fixed again: taken.
    std::fs::write(&s.tokens_path, TOKENS_FILE).expect("fix");
    eventually(&s, ALICE, StatusCode::OK).await;
    eventually(&s, "alice-rotated-0123456789", StatusCode::UNAUTHORIZED).await;
    stop.cancel();
}

/// Runs the binary until it exits (it must, within 20 s): exit code and
/// what it wrote to stderr.
async fn run_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().expect("dir");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_quota-service"));
    cmd.env_clear()
        .env("QUOTA_DATA_DIR", tmp.path())
        .env("QUOTA_PORT", "0")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("the service should have exited")
        .expect("run quota-service");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_public_address_without_auth_mode_does_not_start() {
    let (code, err) = run_to_exit(&[("QUOTA_HOST", "0.0.0.0")]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("AUTH_MODE"), "{err}");
}

#[tokio::test]
async fn a_bad_tokens_file_does_not_start() {
    let tmp = tempfile::tempdir().expect("dir");
    let path = tmp.path().join("tokens.yaml");
    std::fs::write(&path, "- token: short\n  subject: a\n").expect("write");
    for file in [
        path.display().to_string(),
        "/nonexistent/tokens.yaml".into(),
    ] {
        let (code, err) =
            run_to_exit(&[("AUTH_MODE", "static"), ("AUTH_TOKENS_FILE", &file)]).await;
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("AUTH_TOKENS_FILE"), "{err}");
    }
}

#[tokio::test]
async fn auth_mode_none_on_a_public_address_starts_with_a_loud_warning() {
    let tmp = tempfile::tempdir().expect("dir");
    let data = tmp.path().join("data");
    let svc = crate::common::process::ServiceProcess::start(
        &data,
        &[("QUOTA_HOST", "0.0.0.0"), ("AUTH_MODE", "none")],
    )
    .await;
    let log = svc.log_text();
    assert!(
        log.contains("AUTH_MODE=none on an address others can reach"),
        "{log}"
    );
    let (ok, log) = svc.terminate().await;
    assert!(ok, "{log}");
}
