//! Generated access checks against a small model of the rules: random
//! grants on a small tree, random identities and random calls; every call
//! the model refuses is `403 forbidden` and changes nothing, every call it
//! allows is not refused for access. The model is written out here on its
//! own (roles along the path), not taken from `domain::access`.
//!
//! ```text
//!   r ── a ── a1        f (a flat tenant, a root)
//!    └── b
//! ```

use axum::http::{Method, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use quota_service::{Admins, Authenticator, StaticTokens};
use serde_json::{Value, json};

use crate::common::{TestApp, bearer, request, send_to};

const NODES: [&str; 5] = ["r", "a", "a1", "b", "f"];
const ROLES: [&str; 4] = ["reader", "reporter", "admin", "owner"];
/// Subjects u0..u2 and groups g0, g1 (u0 is in g0, u1 in g0 and g1).
const GRANTEES: [&str; 5] = ["u0", "u1", "u2", "group:g0", "group:g1"];
const USERS: [(&str, &str, &[&str]); 3] = [
    ("u0", "u0-token-0123456789ab", &["g0"]),
    ("u1", "u1-token-0123456789ab", &["g0", "g1"]),
    ("u2", "u2-token-0123456789ab", &[]),
];

fn parent(node: usize) -> Option<usize> {
    match NODES[node] {
        "a" | "b" => Some(0),
        "a1" => Some(1),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Report,
    Audit,
    CreateChild,
    Change,
}

/// The model: the highest role `user` holds on each node of the path.
fn role_on(grants: &[(usize, usize, usize)], user: usize, node: usize) -> Option<usize> {
    let (name, _, groups) = USERS[user];
    grants
        .iter()
        .filter(|(n, g, _)| {
            *n == node
                && match GRANTEES[*g].strip_prefix("group:") {
                    Some(group) => groups.contains(&group),
                    None => GRANTEES[*g] == name,
                }
        })
        .map(|(_, _, r)| *r)
        .max()
}

fn model_allows(grants: &[(usize, usize, usize)], user: usize, kind: Kind, node: usize) -> bool {
    let mut above = Vec::new();
    let mut cur = parent(node);
    while let Some(p) = cur {
        above.push(role_on(grants, user, p));
        cur = parent(p);
    }
    let own = role_on(grants, user, node);
    let best = above.iter().copied().chain([own]).max().flatten();
    match kind {
        Kind::Read => best >= Some(0),
        Kind::Report => best >= Some(1),
        Kind::Audit | Kind::CreateChild => best >= Some(2),
        Kind::Change => above.iter().copied().max().flatten() >= Some(2) || own >= Some(3),
    }
}

/// A call of `kind` on `node`, over whichever API the node belongs to.
fn call_of(kind: Kind, node: usize, step: usize) -> (Method, String, Option<Value>) {
    let id = NODES[node];
    let flat = id == "f";
    match (kind, flat) {
        (Kind::Read, true) => (Method::GET, format!("/api/quota/{id}"), None),
        (Kind::Read, false) => (Method::GET, format!("/api/v1/quotas/{id}"), None),
        (Kind::Report, true) => (
            Method::POST,
            "/api/quota/increment".into(),
            Some(json!({"tenant_id": id})),
        ),
        (Kind::Report, false) => (
            Method::POST,
            format!("/api/v1/quotas/{id}/consume"),
            Some(json!({"usage": {"messages": 1}})),
        ),
        (Kind::Audit, _) => (Method::GET, format!("/api/v1/quotas/{id}/audit"), None),
        (Kind::CreateChild, _) => (
            Method::POST,
            format!("/api/v1/quotas/{id}/allocate"),
            Some(json!({"id": format!("new-{step}"), "limits": {"messages": {"max": 1}}})),
        ),
        (Kind::Change, true) => (
            Method::POST,
            "/api/quota/limits".into(),
            Some(json!({"tenant_id": id, "message_limit": 50 + step})),
        ),
        (Kind::Change, false) => (
            Method::POST,
            format!("/api/v1/quotas/{id}/state"),
            Some(json!({"state": "active"})),
        ),
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Read),
        Just(Kind::Report),
        Just(Kind::Audit),
        Just(Kind::CreateChild),
        Just(Kind::Change),
    ]
}

type Grants = Vec<(usize, usize, usize)>;
type Calls = Vec<(usize, Kind, usize)>;

async fn run(grants: Grants, calls: Calls) -> Result<(), TestCaseError> {
    let app = TestApp::new().await;
    let path = app.dir.path().join("tokens.yaml");
    let mut file = String::from("- token: root-token-0123456789ab\n  subject: root\n");
    for (name, token, groups) in USERS {
        file.push_str(&format!(
            "- token: {token}\n  subject: {name}\n  groups: {groups:?}\n"
        ));
    }
    std::fs::write(&path, file).expect("tokens file");
    let tokens = StaticTokens::load(path, Admins::new(vec!["root".into()])).expect("tokens");
    let auth = Authenticator::with_static(tokens);
    let call = |token: &str, method: Method, uri: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        let req = request(method, uri, bearer(token).as_deref(), body.as_deref());
        send_to(&app.quotas, &auth, req)
    };
    let root = "root-token-0123456789ab";
    for (id, parent, max) in [
        ("r", None, 1000),
        ("a", Some("r"), 400),
        ("a1", Some("a"), 100),
        ("b", Some("r"), 400),
    ] {
        let mut body = json!({"limits": {"messages": {"max": max, "window": "day"}}});
        if let Some(p) = parent {
            body["parent"] = json!(p);
        }
        let (s, v) = call(
            root,
            Method::PUT,
            &format!("/api/v1/quotas/{id}"),
            Some(body),
        )
        .await;
        prop_assert!(s.is_success(), "{}", v);
    }
    let (s, v) = call(
        root,
        Method::POST,
        "/api/quota/increment",
        Some(json!({"tenant_id": "f"})),
    )
    .await;
    prop_assert!(s.is_success(), "{}", v);
    for (node, grantee, role) in &grants {
        let body = json!({"subject": GRANTEES[*grantee], "role": ROLES[*role]});
        let uri = format!("/api/v1/quotas/{}/permissions/grant", NODES[*node]);
        let (s, v) = call(root, Method::POST, &uri, Some(body)).await;
        prop_assert!(s.is_success(), "{}", v);
    }
    let state = || async {
        let (_, nodes) = call(root, Method::GET, "/api/v1/quotas?limit=1000", None).await;
        let (_, audit) = call(root, Method::GET, "/api/v1/quotas/r/audit?limit=1000", None).await;
        let (_, flat) = call(root, Method::GET, "/api/quota/f", None).await;
        json!([nodes, audit, flat])
    };
    for (step, (user, kind, node)) in calls.into_iter().enumerate() {
        let allowed = model_allows(&grants, user, kind, node);
        let (method, uri, body) = call_of(kind, node, step);
        let before = if allowed { Value::Null } else { state().await };
        let (status, answer) = call(USERS[user].1, method, &uri, body).await;
        if allowed {
            prop_assert!(
                status != StatusCode::FORBIDDEN || answer["error"]["code"] != "forbidden",
                "{} {:?} {}: refused, the model allows it: {}",
                USERS[user].0,
                kind,
                NODES[node],
                answer
            );
        } else {
            prop_assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{} {:?} {}: {}",
                USERS[user].0,
                kind,
                NODES[node],
                answer
            );
            prop_assert_eq!(&answer["error"]["code"], "forbidden");
            prop_assert_eq!(state().await, before, "a refused call changed the state");
        }
    }
    Ok(())
}

#[test]
fn the_service_decides_as_the_model_for_random_grants() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let grants =
        proptest::collection::vec((0..NODES.len(), 0..GRANTEES.len(), 0..ROLES.len()), 0..7);
    let calls = proptest::collection::vec((0..USERS.len(), kind(), 0..NODES.len()), 1..25);
    let result = runner.run(&(grants, calls), |(grants, calls)| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(grants, calls))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
