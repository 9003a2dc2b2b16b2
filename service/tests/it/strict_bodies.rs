//! Every request body is read strictly: an unknown field, an array where an
//! object belongs, a key given twice, or a `null` is refused with
//! `422 invalid_body` naming the field and the position, and changes
//! nothing. The examples walk the reported cases; the property test takes
//! a valid body of every route and breaks it at a random place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_error};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// org (messages 100, storage 10) with team (messages 10, storage 5), and
/// the flat tenant acme with one message counted.
async fn setup() -> TestApp {
    setup_on(TestApp::new().await).await
}

/// The tokens of the run with access control on: root owns every node,
/// mallory has no grant.
const TOKENS: &str = "
- token: root-token-0123456789
  subject: root
- token: mallory-token-0123456789
  subject: mallory
";

async fn setup_on(app: TestApp) -> TestApp {
    let body = r#"{"limits":{"messages":{"max":100},"storage":{"max":10,"window":"none"}}}"#;
    let (s, v) = app
        .call(Method::PUT, "/api/v1/quotas/org", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .post(
            "/api/v1/quotas/org/allocate",
            json!({"id": "team", "limits": {"messages": {"max": 10}, "storage": {"max": 5}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .post("/api/quota/increment", json!({"tenant_id": "acme"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app
}

/// Everything a body could have changed.
async fn state(app: &TestApp) -> Value {
    let (_, flat) = app.get("/api/quota").await;
    let (_, nodes) = app.get("/api/v1/quotas").await;
    let (_, grants) = app.get("/api/v1/quotas/team/permissions").await;
    let strip = |mut v: Value| {
        if let Some(items) = v["items"].as_array_mut() {
            for n in items {
                n["version"] = Value::Null;
            }
        }
        v
    };
    json!({"flat": flat, "nodes": strip(nodes), "grants": grants})
}

async fn send(app: &TestApp, method: &Method, uri: &str, body: &str) -> (StatusCode, Value) {
    app.call(method.clone(), uri, Some(body)).await
}

/// Asserts a refusal that names `field` and changed nothing.
async fn refused(app: &TestApp, method: Method, uri: &str, body: &str, field: &str) {
    let before = state(app).await;
    let resp = send(app, &method, uri, body).await;
    assert_error(&resp, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let message = resp.1["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(field), "{body}: {message}");
    assert!(message.contains("line 1 column"), "{body}: {message}");
    assert_eq!(state(app).await, before, "{body} changed something");
}

#[tokio::test]
async fn reported_loose_bodies_are_refused_and_change_nothing() {
    let app = setup().await;
    // A typo no longer removes every limit: `limits` is required.
    refused(
        &app,
        Method::PUT,
        "/api/v1/quotas/org",
        r#"{"limitz":{"messages":{"max":1}},"name":"changed"}"#,
        "limitz",
    )
    .await;
    refused(
        &app,
        Method::PUT,
        "/api/v1/quotas/org",
        r#"{"name":"changed"}"#,
        "limits",
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/api/quota/increment",
        r#"{"tenant_id":"acme","message_cnt":5}"#,
        "message_cnt",
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/api/quota/increment",
        r#"["acme",3,0]"#,
        "expected struct UsageRequest",
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/api/v1/quotas/team/consume",
        r#"{"usage":{"messages":1,"messages":2}}"#,
        "duplicate key \"messages\"",
    )
    .await;
    refused(
        &app,
        Method::PUT,
        "/api/v1/quotas/org",
        r#"{"limits":{"messages":{"max":100},"messages":{"max":1},"storage":{"max":10,"window":"none"}}}"#,
        "limits: duplicate key",
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/api/v1/usage/batch",
        r#"{"items":[{"id":"team","usage":{"messages":1,"messages":1}}]}"#,
        "items[0].usage",
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/api/quota/increment",
        r#"{"tenant_id":"acme","message_count":null}"#,
        "message_count",
    )
    .await;
    refused(
        &app,
        Method::PUT,
        "/api/v1/quotas/org",
        r#"{"limits":{"messages":[100,"day"]}}"#,
        "limits.messages",
    )
    .await;
    // `{}` says "no limits" on purpose, and is taken.
    let (s, v) = send(
        &app,
        &Method::PUT,
        "/api/v1/quotas/acme",
        r#"{"limits":{}}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["resources"], json!({}));
    // Ids `.` and `..` cannot be addressed by URL: refused as ids.
    for dots in [".", ".."] {
        let resp = app
            .post("/api/quota/increment", json!({"tenant_id": dots}))
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_tenant_id");
        let resp = app
            .post(
                "/api/v1/quotas/org/allocate",
                json!({"id": dots, "limits": {}}),
            )
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_id");
    }
}

// === Generated: every body, broken at a random place ===

/// A JSON value that can hold a key twice (serde_json's cannot).
#[derive(Debug, Clone)]
enum J {
    Scalar(Value),
    Array(Vec<J>),
    /// `true` for a struct (fixed fields), `false` for a map (any key).
    Object(bool, Vec<(String, J)>),
}

impl J {
    fn text(&self) -> String {
        match self {
            J::Scalar(v) => v.to_string(),
            J::Array(items) => {
                let inner: Vec<String> = items.iter().map(J::text).collect();
                format!("[{}]", inner.join(","))
            }
            J::Object(_, fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v.text()))
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
        }
    }

    /// Every value in the tree, depth first (the root is 0).
    fn count(&self) -> usize {
        1 + match self {
            J::Scalar(_) => 0,
            J::Array(items) => items.iter().map(J::count).sum(),
            J::Object(_, fields) => fields.iter().map(|(_, v)| v.count()).sum(),
        }
    }

    /// Applies `f` to the `n`th value (depth first); true when it changed it.
    fn at(&mut self, n: &mut usize, f: &mut dyn FnMut(&mut J) -> bool) -> bool {
        if *n == 0 {
            return f(self);
        }
        *n -= 1;
        match self {
            J::Scalar(_) => false,
            J::Array(items) => items.iter_mut().any(|v| v.at(n, f)),
            J::Object(_, fields) => fields.iter_mut().any(|(_, v)| v.at(n, f)),
        }
    }
}

/// Reads a body written as JSON, marking as maps the objects under the
/// keys that hold maps in the API (`limits`, `usage`).
fn j(v: &Value, is_map: bool) -> J {
    match v {
        Value::Array(items) => J::Array(items.iter().map(|v| j(v, false)).collect()),
        Value::Object(m) => J::Object(
            !is_map,
            m.iter()
                .map(|(k, v)| (k.clone(), j(v, k == "limits" || k == "usage")))
                .collect(),
        ),
        other => J::Scalar(other.clone()),
    }
}

#[derive(Debug, Clone, Copy)]
enum Break {
    /// A field no body has, in a struct.
    UnknownField,
    /// An object's values as an array, in order.
    ObjectAsArray,
    /// An object's first key once more.
    DuplicateKey,
    Null,
}

fn break_at(body: &J, place: usize, how: Break) -> Option<J> {
    let mut out = body.clone();
    let mut n = place % body.count();
    let changed = out.at(&mut n, &mut |v| match (how, &mut *v) {
        (Break::UnknownField, J::Object(true, fields)) => {
            fields.push(("unknown_field".into(), J::Scalar(json!(1))));
            true
        }
        (Break::ObjectAsArray, J::Object(_, fields)) => {
            *v = J::Array(fields.iter().map(|(_, v)| v.clone()).collect());
            true
        }
        (Break::DuplicateKey, J::Object(_, fields)) if !fields.is_empty() => {
            let first = fields[0].clone();
            fields.push(first);
            true
        }
        (Break::Null, _) => {
            *v = J::Scalar(Value::Null);
            true
        }
        _ => false,
    });
    changed.then_some(out)
}

/// A valid body of every route that takes one.
fn bodies() -> Vec<(Method, &'static str, Value)> {
    vec![
        (
            Method::POST,
            "/api/quota/increment",
            json!({"tenant_id": "acme", "message_count": 1, "bytes_sent": 5}),
        ),
        (
            Method::POST,
            "/api/quota/check",
            json!({"tenant_id": "acme", "message_count": 1}),
        ),
        (
            Method::POST,
            "/api/quota/limits",
            json!({"tenant_id": "acme", "message_limit": 50, "bandwidth_limit_bytes": 1000}),
        ),
        (
            Method::PUT,
            "/api/v1/quotas/org",
            json!({"limits": {"messages": {"max": 90, "window": "day"}, "storage": {"max": 10, "window": "none"}}, "state": "active", "strict": false, "name": "Org", "description": "d"}),
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/allocate",
            json!({"id": "fresh", "name": "n", "description": "d", "limits": {"messages": {"max": 5}}}),
        ),
        (
            Method::POST,
            "/api/v1/quotas/team/consume",
            json!({"usage": {"messages": 1}}),
        ),
        (
            Method::POST,
            "/api/v1/quotas/team/usage/allocate",
            json!({"resource": "storage", "resource_id": "r1", "amount": 1, "reason": "x"}),
        ),
        (
            Method::POST,
            "/api/v1/quotas/team/state",
            json!({"state": "suspended"}),
        ),
        (
            Method::POST,
            "/api/v1/quotas/team/permissions/grant",
            json!({"subject": "alice", "role": "reader"}),
        ),
        (
            Method::POST,
            "/api/v1/quotas/team/permissions/revoke",
            json!({"subject": "alice", "role": "reader"}),
        ),
        (
            Method::POST,
            "/api/v1/usage/batch",
            json!({"mode": "consume", "items": [{"id": "team", "usage": {"messages": 1}}]}),
        ),
    ]
}

#[test]
fn every_body_broken_anywhere_is_refused_and_changes_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(setup());
    // Each valid body is taken as it is (so a refusal below is the break's).
    for (method, uri, body) in bodies() {
        let (s, v) = rt.block_on(send(&app, &method, uri, &body.to_string()));
        assert!(s.is_success(), "{uri} {body}: {s} {v}");
    }
    broken_bodies_are_refused(&rt, &app, cases(256));
}

/// The same with access control on: as an owner of every node the answers
/// are the same; as a caller without a grant every valid body is refused
/// (403, a batch's items each) and every broken one is still the 422 of its
/// break, and nothing changes either way.
#[test]
fn with_access_control_on_bad_bodies_and_refusals_change_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut app = rt.block_on(async {
        let app =
            TestApp::new()
                .await
                .with_static_tokens(TOKENS, &["root"], "root-token-0123456789");
        setup_on(app).await
    });
    for (method, uri, body) in bodies() {
        let (s, v) = rt.block_on(send(&app, &method, uri, &body.to_string()));
        assert!(s.is_success(), "{uri} {body}: {s} {v}");
    }
    broken_bodies_are_refused(&rt, &app, cases(64));

    app.use_token("mallory-token-0123456789");
    let before = rt.block_on(state_as_root(&mut app));
    for (method, uri, body) in bodies() {
        let (s, v) = rt.block_on(send(&app, &method, uri, &body.to_string()));
        if uri == "/api/v1/usage/batch" {
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["counted"], 0, "{v}");
            assert_eq!(v["results"][0]["error"]["code"], "forbidden", "{v}");
        } else {
            assert_eq!(s, StatusCode::FORBIDDEN, "{uri} {body}: {v}");
            assert_eq!(v["error"]["code"], "forbidden");
        }
    }
    assert_eq!(rt.block_on(state_as_root(&mut app)), before);
    broken_bodies_are_refused(&rt, &app, cases(64));
    assert_eq!(rt.block_on(state_as_root(&mut app)), before);
}

/// The state as root sees it, leaving `call` with the token it had.
async fn state_as_root(app: &mut TestApp) -> Value {
    let token = app
        .caller
        .as_ref()
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    app.use_token("root-token-0123456789");
    let s = state(app).await;
    app.use_token(&token);
    s
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every route's valid body broken at a random place: 422 naming where,
/// and nothing changed (the state read with `app`'s own token).
fn broken_bodies_are_refused(rt: &tokio::runtime::Runtime, app: &TestApp, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let breaks = prop_oneof![
        Just(Break::UnknownField),
        Just(Break::ObjectAsArray),
        Just(Break::DuplicateKey),
        Just(Break::Null),
    ];
    let all = bodies();
    let result = runner.run(
        &(0..all.len(), any::<usize>(), breaks),
        |(route, place, how)| {
            let (method, uri, body) = &all[route];
            let Some(broken) = break_at(&j(body, false), place, how) else {
                return Ok(()); // nothing of that kind at that place
            };
            let text = broken.text();
            rt.block_on(async {
                let before = state(app).await;
                let (s, v) = send(app, method, uri, &text).await;
                prop_assert_eq!(
                    s,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{} {}: {}",
                    uri,
                    text,
                    v
                );
                prop_assert_eq!(&v["error"]["code"], "invalid_body");
                let message = v["error"]["message"].as_str().unwrap_or_default();
                prop_assert!(message.contains("line 1 column"), "{}", message);
                prop_assert_eq!(
                    state(app).await,
                    before,
                    "{} {} changed something",
                    uri,
                    text
                );
                Ok(())
            })
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
