//! The isolation matrix in static mode: every identity against every kind
//! of call, over both APIs. A refused call (401, 403) leaves the whole
//! state as it was; an allowed one runs on a fresh service so that the
//! rows do not depend on each other.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

const FORGED: &str = "forged-token-0123456789";

/// (name, method, uri, body) of each kind of call.
fn calls() -> Vec<(&'static str, Method, &'static str, Option<Value>)> {
    vec![
        (
            "consume team-a",
            Method::POST,
            "/api/v1/quotas/team-a/consume",
            Some(json!({"usage": {"messages": 1}})),
        ),
        (
            "consume team-b",
            Method::POST,
            "/api/v1/quotas/team-b/consume",
            Some(json!({"usage": {"messages": 1}})),
        ),
        ("read team-b", Method::GET, "/api/v1/quotas/team-b", None),
        (
            "raise team-b",
            Method::PUT,
            "/api/v1/quotas/team-b",
            Some(json!({"parent": "org", "limits": {"messages": {"max": 301}}})),
        ),
        (
            "grant on team-b",
            Method::POST,
            "/api/v1/quotas/team-b/permissions/grant",
            Some(json!({"subject": "system:serviceaccount:team-a:web", "role": "admin"})),
        ),
        ("read team-a", Method::GET, "/api/v1/quotas/team-a", None),
        (
            "increment flat-a",
            Method::POST,
            "/api/quota/increment",
            Some(json!({"tenant_id": "flat-a"})),
        ),
        (
            "increment a new tenant",
            Method::POST,
            "/api/quota/increment",
            Some(json!({"tenant_id": "flat-new"})),
        ),
        (
            "limits of flat-a",
            Method::POST,
            "/api/quota/limits",
            Some(json!({"tenant_id": "flat-a", "message_limit": 5})),
        ),
        (
            "reset flat-a",
            Method::POST,
            "/api/quota/flat-a/reset",
            None,
        ),
        ("read flat-a", Method::GET, "/api/quota/flat-a", None),
        (
            "allocate under team-a",
            Method::POST,
            "/api/v1/quotas/team-a/allocate",
            Some(json!({"id": "squad", "limits": {"messages": {"max": 10}}})),
        ),
        (
            "audit of team-a",
            Method::GET,
            "/api/v1/quotas/team-a/audit",
            None,
        ),
        (
            "change org",
            Method::PUT,
            "/api/v1/quotas/org",
            Some(
                json!({"limits": {"messages": {"max": 1000, "window": "day"}}, "description": "changed"}),
            ),
        ),
        (
            "suspend team-a",
            Method::POST,
            "/api/v1/quotas/team-a/state",
            Some(json!({"state": "suspended"})),
        ),
        (
            "check flat-a",
            Method::POST,
            "/api/quota/check",
            Some(json!({"tenant_id": "flat-a"})),
        ),
        (
            "grants of team-a",
            Method::GET,
            "/api/v1/quotas/team-a/permissions",
            None,
        ),
        (
            "claim on team-a",
            Method::POST,
            "/api/v1/quotas/team-a/usage/allocate",
            Some(json!({"resource": "messages", "resource_id": "r1", "amount": 1, "reason": "x"})),
        ),
        (
            "delete team-b",
            Method::DELETE,
            "/api/v1/quotas/team-b",
            None,
        ),
        (
            "new root",
            Method::PUT,
            "/api/v1/quotas/other-org",
            Some(json!({"limits": {"messages": {"max": 5}}})),
        ),
        (
            "read a missing node",
            Method::GET,
            "/api/v1/quotas/nowhere",
            None,
        ),
    ]
}

/// Expected statuses, one row per identity, in the order of [`calls`].
fn expected() -> Vec<(&'static str, &'static str, [u16; 21])> {
    vec![
        //                         c-a  c-b  r-b  up-b gr-b r-a  in-a in-n lim  rst  rd-f all  aud  org  susp chk  grs  clm  del  root miss
        ("no token", "", [401; 21]),
        ("forged token", FORGED, [401; 21]),
        (
            "team-a's web",
            WEB_A,
            [
                200, 403, 403, 403, 403, 200, 200, 403, 403, 403, 200, 403, 403, 403, 403, 200,
                200, 409, 403, 403, 403,
            ],
        ),
        (
            "team-b's web",
            WEB_B,
            [
                403, 200, 200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403,
                403, 403, 403, 403, 403,
            ],
        ),
        (
            "alice (admin of org)",
            ALICE,
            [
                200, 200, 200, 200, 201, 200, 403, 403, 403, 403, 403, 201, 200, 403, 200, 403,
                200, 409, 200, 403, 403,
            ],
        ),
        (
            "carol (owner of team-a)",
            CAROL,
            [
                200, 403, 403, 403, 403, 200, 403, 403, 403, 403, 403, 201, 200, 403, 200, 403,
                200, 409, 403, 403, 403,
            ],
        ),
        (
            "dave (owner of flat-a)",
            DAVE,
            [
                403, 403, 403, 403, 403, 403, 200, 403, 200, 200, 200, 403, 403, 403, 403, 200,
                403, 403, 403, 403, 403,
            ],
        ),
        ("mallory (no grant)", MALLORY, [403; 21]),
        (
            "root (AUTH_ADMINS)",
            ROOT,
            [
                200, 200, 200, 200, 201, 200, 200, 200, 200, 200, 200, 201, 200, 200, 200, 200,
                200, 409, 200, 201, 404,
            ],
        ),
    ]
}

#[tokio::test]
async fn every_identity_against_every_call() {
    let calls = calls();
    let shared = Secured::new().await;
    let before = shared.state().await;
    let mut failures = Vec::new();
    for (who, token, statuses) in expected() {
        for ((name, method, uri, body), want) in calls.iter().zip(statuses) {
            let refused = want == 401 || want == 403;
            let fresh;
            let s = if refused {
                &shared
            } else {
                fresh = Secured::new().await;
                &fresh
            };
            let (status, answer) = s.call(token, method.clone(), uri, body.clone()).await;
            if status.as_u16() != want {
                failures.push(format!("{who}: {name}: {status} (want {want}): {answer}"));
                continue;
            }
            if refused {
                let code = if want == 401 {
                    "unauthenticated"
                } else {
                    "forbidden"
                };
                if answer["error"]["code"] != code {
                    failures.push(format!("{who}: {name}: code {}", answer["error"]["code"]));
                }
                let after = shared.state().await;
                if after != before {
                    failures.push(format!("{who}: {name}: a refused call changed the state"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn unauthenticated_answers_say_how_to_authenticate() {
    let s = Secured::new().await;
    for auth in [
        None,
        Some("Basic cm9vdDpyb290"),
        Some("Bearer"),
        Some("Bearer forged-token-0123456789"),
    ] {
        let req = axum::http::Request::builder()
            .method(Method::GET)
            .uri("/api/v1/quotas/org");
        let req = match auth {
            Some(a) => req.header("authorization", a),
            None => req,
        };
        let resp = tower::ServiceExt::oneshot(
            quota_service::app(s.app.quotas.clone(), s.auth.clone()),
            req.body(axum::body::Body::empty()).expect("request"),
        )
        .await
        .expect("router is infallible");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok());
        assert!(
            challenge.is_some_and(|c| c.starts_with("Bearer")),
            "{auth:?}: {challenge:?}"
        );
    }
    // Probes and metrics stay open.
    for probe in ["/health", "/ready", "/metrics"] {
        let req = axum::http::Request::builder()
            .uri(probe)
            .body(axum::body::Body::empty())
            .expect("request");
        let app = quota_service::app(s.app.quotas.clone(), s.auth.clone());
        let resp = tower::ServiceExt::oneshot(app, req)
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK, "{probe}");
    }
}

#[tokio::test]
async fn an_unauthenticated_bad_body_is_401_before_it_is_read() {
    let s = Secured::new().await;
    let before = s.state().await;
    for (uri, body) in [
        ("/api/quota/increment", "{not json"),
        (
            "/api/quota/increment",
            r#"{"tenant_id": "flat-a", "message_count": -1}"#,
        ),
        (
            "/api/v1/quotas/team-a/consume",
            r#"{"usage": {"messages": 1}, "usage": {}}"#,
        ),
        ("/api/v1/usage/batch", "[]"),
    ] {
        let (status, answer) = s.call_raw(None, Method::POST, uri, Some(body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {body}: {answer}");
    }
    assert_eq!(s.state().await, before);
}

#[tokio::test]
async fn lists_and_the_snapshot_show_only_what_the_caller_may_see() {
    let s = Secured::new().await;
    let ids = |v: &Value, key: &str| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n[key].as_str().map(str::to_owned))
            .collect()
    };
    for (token, v1, snapshot) in [
        (WEB_A, vec!["flat-a", "team-a"], vec![]),
        (WEB_B, vec!["team-b"], vec![]),
        (
            ALICE,
            vec!["org", "team-a", "team-b"],
            vec!["org", "team-a", "team-b"],
        ),
        (CAROL, vec!["team-a"], vec!["team-a"]),
        (DAVE, vec!["flat-a"], vec!["flat-a"]),
        (MALLORY, vec![], vec![]),
        (
            ROOT,
            vec!["flat-a", "org", "team-a", "team-b"],
            vec!["flat-a", "org", "team-a", "team-b"],
        ),
    ] {
        // The flat list shows every node as a tenant, the v1 list as nodes.
        let flat = v1.clone();
        let (_, list) = s.call(token, Method::GET, "/api/v1/quotas", None).await;
        assert_eq!(ids(&list["items"], "id"), v1, "v1 list of {token}");
        let (_, list) = s.call(token, Method::GET, "/api/quota", None).await;
        assert_eq!(ids(&list, "tenant_id"), flat, "flat list of {token}");
        let (_, snap) = s.call(token, Method::GET, "/api/v1/snapshot", None).await;
        let mut got = ids(&snap["nodes"], "id");
        got.sort();
        assert_eq!(got, snapshot, "snapshot of {token}");
    }
    // Paging walks the visible nodes only: one per page, no empty pages.
    let (_, page) = s
        .call(ALICE, Method::GET, "/api/v1/quotas?limit=1", None)
        .await;
    assert_eq!(ids(&page["items"], "id"), ["org"]);
    let after = page["next_after"].as_str().unwrap_or_default().to_owned();
    let (_, page) = s
        .call(
            ALICE,
            Method::GET,
            &format!("/api/v1/quotas?limit=2&after={after}"),
            None,
        )
        .await;
    assert_eq!(ids(&page["items"], "id"), ["team-a", "team-b"]);
    assert!(page["next_after"].is_null(), "{page}");
}

#[tokio::test]
async fn a_batch_checks_each_item() {
    let s = Secured::new().await;
    let (status, answer) = s
        .call(
            WEB_A,
            Method::POST,
            "/api/v1/usage/batch",
            Some(json!({"mode": "consume", "items": [
                {"id": "team-a", "usage": {"messages": 2}},
                {"id": "team-b", "usage": {"messages": 2}},
                {"id": "org", "usage": {"messages": 2}},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["counted"], 1, "{answer}");
    let statuses: Vec<u64> = answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(statuses, [200, 403, 403]);
    assert_eq!(answer["results"][1]["error"]["code"], "forbidden");
    let (_, b) = s
        .call(ROOT, Method::GET, "/api/v1/quotas/team-b", None)
        .await;
    assert_eq!(b["resources"]["messages"]["used"], 0, "{b}");
}

#[tokio::test]
async fn the_audit_trail_names_the_authenticated_subject() {
    let s = Secured::new().await;
    let (status, _) = s
        .call(
            ALICE,
            Method::PUT,
            "/api/v1/quotas/team-b",
            Some(json!({"parent": "org", "limits": {"messages": {"max": 250}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .call(
            DAVE,
            Method::POST,
            "/api/quota/limits",
            Some(json!({"tenant_id": "flat-a", "message_limit": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for (node, actor) in [("team-b", "alice"), ("flat-a", "dave")] {
        let (_, audit) = s
            .call(
                ROOT,
                Method::GET,
                &format!("/api/v1/quotas/{node}/audit?limit=1"),
                None,
            )
            .await;
        assert_eq!(audit["items"][0]["actor"], actor, "{audit}");
    }
}

#[tokio::test]
async fn allocate_makes_admin_user_ids_admins_of_the_child() {
    let s = Secured::new().await;
    let (status, answer) = s
        .call(
            ALICE,
            Method::POST,
            "/api/v1/quotas/team-b/allocate",
            Some(json!({"id": "squad-b", "limits": {"messages": {"max": 10}}, "admin_user_ids": ["mallory"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    // mallory administers squad-b now, and nothing above it.
    let (status, _) = s
        .call(
            MALLORY,
            Method::POST,
            "/api/v1/quotas/squad-b/allocate",
            Some(json!({"id": "cell", "limits": {"messages": {"max": 1}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = s
        .call(MALLORY, Method::GET, "/api/v1/quotas/team-b", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, grants) = s
        .call(
            ROOT,
            Method::GET,
            "/api/v1/quotas/squad-b/permissions",
            None,
        )
        .await;
    assert_eq!(grants["items"][0]["subject"], "mallory", "{grants}");
    assert_eq!(grants["items"][0]["role"], "admin", "{grants}");
}

#[tokio::test]
async fn grants_survive_a_restart() {
    let s = Secured::new().await;
    let reopened = s.app.reopen().await;
    let again = Secured {
        app: crate::common::TestApp {
            dir: tempfile::tempdir().expect("dir"),
            clock: s.app.clock.clone(),
            quotas: reopened,
            extra: Vec::new(),
            caller: None,
        },
        auth: s.auth.clone(),
        tokens: s.tokens.clone(),
        tokens_path: s.tokens_path.clone(),
    };
    let (status, _) = again
        .call(
            WEB_A,
            Method::POST,
            "/api/v1/quotas/team-a/consume",
            Some(json!({"usage": {"messages": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = again
        .call(
            WEB_A,
            Method::POST,
            "/api/v1/quotas/team-b/consume",
            Some(json!({"usage": {"messages": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
