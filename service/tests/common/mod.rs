//! Shared test helpers: the real router on a real SQLite file in a temp dir,
//! with a clock the test sets.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use quota_service::clock::ManualClock;
use quota_service::config::Config;
use quota_service::domain::calendar::{SECS_PER_DAY, days_from_civil};
use quota_service::{Quotas, app};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

pub mod process;

/// 2026-11-22T12:00:00Z
pub fn noon_nov22() -> i64 {
    at(2026, 11, 22, 12, 0, 0)
}

pub fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
    days_from_civil(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + s
}

pub fn config(dir: &TempDir, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert(
        "QUOTA_DATA_DIR".into(),
        dir.path().join("data").display().to_string(),
    );
    vars.insert("DEFAULT_MESSAGE_LIMIT".into(), "100".into());
    vars.insert("DEFAULT_BANDWIDTH_LIMIT_GB".into(), "1".into());
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    match Config::from_lookup(|k| vars.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

/// The service in-process: its router, state, clock and data directory.
pub struct TestApp {
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub quotas: Arc<Quotas>,
    pub extra: Vec<(String, String)>,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(noon_nov22());
        let quotas = Quotas::open(&config(&dir, extra), clock.clone())
            .await
            .expect("open quotas");
        TestApp {
            dir,
            clock,
            quotas: Arc::new(quotas),
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Opens the same data directory again, as a restarted process would.
    pub async fn reopen(&self) -> Arc<Quotas> {
        let extra: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let q = Quotas::open(&config(&self.dir, &extra), self.clock.clone())
            .await
            .expect("reopen quotas");
        Arc::new(q)
    }

    pub async fn call(&self, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        call(&self.quotas, method, uri, body).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, Some(&body.to_string())).await
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, None).await
    }
}

/// One request through the real router.
pub async fn call(
    quotas: &Arc<Quotas>,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .expect("request");
    send(quotas, req).await
}

pub async fn send(quotas: &Arc<Quotas>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app(quotas.clone())
        .oneshot(req)
        .await
        .expect("router is infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{status}: response is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// Asserts an error answer: status, code, and a non-empty message.
pub fn assert_error(resp: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(resp.0, status, "body: {}", resp.1);
    assert_eq!(resp.1["error"]["code"], code, "body: {}", resp.1);
    let msg = resp.1["error"]["message"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "error without a message: {}", resp.1);
}
