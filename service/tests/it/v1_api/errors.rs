//! Bad requests and a failing database change nothing.

use super::*;

/// Every error answers a clear 4xx and changes nothing: not the nodes, not
/// the audit trail.
#[tokio::test]
async fn v1_errors_change_nothing() {
    v1_errors_on(TestApp::new().await).await;
}

/// The same answers with access control on, for an owner of every node.
#[tokio::test]
async fn with_access_control_v1_errors_are_the_same() {
    v1_errors_on(TestApp::as_admin().await).await;
}

async fn v1_errors_on(app: TestApp) {
    tree(&app).await;
    consume(&app, "team-a", json!({"messages": 40})).await;
    let state = |app: &TestApp| {
        let q = app.quotas.clone();
        async move {
            let (_, nodes) = q.snapshot(0);
            let audit = q
                .database()
                .audit_page("org", 1000, None)
                .await
                .unwrap()
                .len()
                + q.database()
                    .audit_page("team-a", 1000, None)
                    .await
                    .unwrap()
                    .len();
            (format!("{nodes:?}"), audit)
        }
    };
    let before = state(&app).await;
    let long = "x".repeat(254);
    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::PUT,
            "/api/v1/quotas/a%20b".into(),
            Some(json!({"limits": {}})),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::PUT,
            format!("/api/v1/quotas/{long}"),
            Some(json!({"limits": {}})),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"limits": {"messages": {"max": -1}}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"limits": {"messages": {"max": 1, "window": "hour"}}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"limits": {"gpu": {"max": 1}}})),
            StatusCode::CONFLICT,
            "no_window_to_inherit",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"limits": {"gpu": {"max": 1, "window": "weekly"}}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"limits": {"GPU": {"max": 1, "window": "day"}}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            // How the database stores `messages`: it would share their rows.
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"limits": {"message_count": {"max": 1, "window": "day"}}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"limits": {"gpu": {"max": 9223372036854775808u64, "window": "day"}}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"state": "deleted"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"parent": "n"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"parent": "team-a", "limits": {"storage": {"max": 1}}})),
            StatusCode::CONFLICT,
            "no_window_to_inherit",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"parent": "org", "limits": {"messages": {"max": 31}}})),
            StatusCode::CONFLICT,
            "does_not_fit",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/n".into(),
            Some(json!({"parent": "org", "limits": {"messages": {"max": 1, "window": "hour"}}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/quotas/org".into(),
            Some(json!({"limits": {"storage": {"max": 10, "window": "none"}}})),
            StatusCode::CONFLICT,
            "resource_in_use",
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/allocate".into(),
            Some(json!({"id": "team-a", "limits": {}})),
            StatusCode::CONFLICT,
            "already_exists",
        ),
        (
            Method::POST,
            "/api/v1/quotas/nobody/allocate".into(),
            Some(json!({"id": "x", "limits": {"messages": {"max": 1}}})),
            StatusCode::CONFLICT,
            "parent_not_found",
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/allocate".into(),
            Some(json!({"limits": {}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/quotas/team-a/consume".into(),
            Some(json!({"usage": {}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/quotas/team-a/consume".into(),
            Some(json!({"usage": {"messages": -1}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/quotas/team-a/consume".into(),
            Some(json!({"usage": {"messages": 1}})),
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exhausted",
        ),
        (
            Method::POST,
            "/api/v1/quotas/nobody/consume".into(),
            Some(json!({"usage": {"messages": 1}})),
            StatusCode::NOT_FOUND,
            "node_not_found",
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/usage/allocate".into(),
            Some(json!({"resource": "storage", "resource_id": "a b", "amount": 1, "reason": "r"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/usage/allocate".into(),
            Some(json!({"resource": "storage", "resource_id": "a", "amount": 1, "reason": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/usage/allocate".into(),
            Some(json!({"resource": "storage", "resource_id": "a", "amount": 11, "reason": "r"})),
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exhausted",
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/usage/allocate".into(),
            Some(json!({"resource": "disk", "resource_id": "a", "amount": 1, "reason": "r"})),
            StatusCode::CONFLICT,
            "unknown_resource",
        ),
        (
            Method::DELETE,
            "/api/v1/quotas/org/usage/none".into(),
            None,
            StatusCode::CONFLICT,
            "claim_not_found",
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/state".into(),
            Some(json!({"state": "deleted"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/quotas/nobody/state".into(),
            Some(json!({"state": "active"})),
            StatusCode::NOT_FOUND,
            "node_not_found",
        ),
        (
            Method::DELETE,
            "/api/v1/quotas/org".into(),
            None,
            StatusCode::CONFLICT,
            "has_children",
        ),
        (
            Method::DELETE,
            "/api/v1/quotas/nobody".into(),
            None,
            StatusCode::NOT_FOUND,
            "node_not_found",
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/permissions/grant".into(),
            Some(json!({"subject": "", "role": "admin"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/quotas/nobody/permissions/grant".into(),
            Some(json!({"subject": "s", "role": "admin"})),
            StatusCode::NOT_FOUND,
            "node_not_found",
        ),
        (
            Method::GET,
            "/api/v1/quotas/org/audit?limit=0".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/v1/quotas/org/audit?after=x".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/v1/quotas?limit=5000".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/v1/snapshot?since=-1".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/v1/quotas/nobody".into(),
            None,
            StatusCode::NOT_FOUND,
            "node_not_found",
        ),
        (
            Method::PATCH,
            "/api/v1/quotas/org".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let body = body.map(|b| b.to_string());
        let resp = app.call(method.clone(), &uri, body.as_deref()).await;
        assert_eq!(resp.0, status, "{method} {uri} {body:?}: {}", resp.1);
        assert_eq!(
            resp.1["error"]["code"], code,
            "{method} {uri} {body:?}: {}",
            resp.1
        );
        assert_eq!(
            state(&app).await,
            before,
            "{method} {uri} {body:?} changed something"
        );
    }
}

/// When the database refuses a write, every write-through call answers 503
/// and leaves memory exactly as it was (reservations and charges undone);
/// usage calls keep working from memory.
#[tokio::test]
async fn a_failing_database_changes_nothing_and_answers_503() {
    let app = TestApp::new().await;
    tree(&app).await;
    consume(&app, "team-a", json!({"messages": 10})).await;
    app.post(
        "/api/v1/quotas/org/usage/allocate",
        json!({"resource": "storage", "resource_id": "keep", "amount": 2, "reason": "r"}),
    )
    .await;
    break_audit_inserts(app.quotas.database(), "disk on fire").await;
    let memory = |app: &TestApp| {
        let (_, nodes) = app.quotas.snapshot(0);
        nodes
            .into_iter()
            .map(|mut n| {
                n.version = 0;
                n
            })
            .collect::<Vec<_>>()
    };
    let before = memory(&app);
    let calls: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::PUT,
            "/api/v1/quotas/new-root",
            Some(json!({"limits": {"messages": {"max": 5}}})),
        ),
        (
            Method::PUT,
            "/api/v1/quotas/team-a",
            Some(json!({"parent": "org", "limits": {"messages": {"max": 60}}})),
        ),
        (
            Method::PUT,
            "/api/v1/quotas/team-a",
            Some(json!({"parent": "org", "limits": {"messages": {"max": 20}}})),
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/allocate",
            Some(json!({"id": "team-c", "limits": {"messages": {"max": 10}}})),
        ),
        (
            Method::POST,
            "/api/v1/quotas/org/state",
            Some(json!({"state": "suspended"})),
        ),
        (Method::DELETE, "/api/v1/quotas/team-a", None),
        (
            Method::POST,
            "/api/v1/quotas/org/usage/allocate",
            Some(json!({"resource": "storage", "resource_id": "x", "amount": 1, "reason": "r"})),
        ),
        (Method::DELETE, "/api/v1/quotas/org/usage/keep", None),
        (
            Method::POST,
            "/api/v1/quotas/org/permissions/grant",
            Some(json!({"subject": "s", "role": "admin"})),
        ),
        (
            Method::POST,
            "/api/quota/limits",
            Some(json!({"tenant_id": "org", "message_limit": 500})),
        ),
        (Method::POST, "/api/quota/team-a/reset", None),
    ];
    for (method, uri, body) in calls {
        let body = body.map(|b| b.to_string());
        let resp = app.call(method.clone(), uri, body.as_deref()).await;
        assert_error(&resp, StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
        assert_eq!(memory(&app), before, "{method} {uri} changed memory");
    }
    let (_, health) = app.get("/health").await;
    assert_eq!(health["store"]["status"], "degraded");
    let (s, ready) = app.get("/ready").await;
    assert_error(
        &(s, ready.clone()),
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    );
    assert!(
        ready["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk on fire"),
        "{ready}"
    );
    // Usage keeps working from memory meanwhile.
    assert_eq!(
        consume(&app, "team-a", json!({"messages": 1})).await.0,
        StatusCode::OK
    );

    repair_audit_inserts(app.quotas.database()).await;
    let (s, _) = app
        .post(
            "/api/v1/quotas/org/allocate",
            json!({"id": "team-c", "limits": {"messages": {"max": 30}}}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the full 30 is available again: nothing stayed reserved"
    );
    let (_, health) = app.get("/health").await;
    assert_eq!(health["store"]["status"], "ok");
    let (s, ready) = app.get("/ready").await;
    assert_eq!(
        (s, ready["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
}
