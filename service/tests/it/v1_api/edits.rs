//! Edits and deletes keep what was used charged.

use super::*;

#[tokio::test]
async fn delete_returns_the_share_and_keeps_the_usage_charged() {
    let app = TestApp::new().await;
    tree(&app).await;
    consume(&app, "team-a", json!({"messages": 25})).await;
    let (s, v) = app.call(Method::DELETE, "/api/v1/quotas/org", None).await;
    assert_error(&(s, v.clone()), StatusCode::CONFLICT, "has_children");
    assert!(v["error"]["message"].as_str().unwrap().contains("team-a"));

    let (s, v) = app
        .call(Method::DELETE, "/api/v1/quotas/team-a", None)
        .await;
    assert_eq!(
        (s, v["state"].clone()),
        (StatusCode::OK, json!("deleted")),
        "{v}"
    );
    let m = &node(&app, "org").await["resources"]["messages"];
    // 40 returned, 25 stay charged: available = 100 - 30 (team-b) - 25.
    assert_eq!(
        (
            m["allocated"].clone(),
            m["used"].clone(),
            m["available"].clone()
        ),
        (json!(30), json!(25), json!(45))
    );
    assert_eq!(node(&app, "org").await["children"], json!(["team-b"]));
    assert_eq!(
        consume(&app, "team-a", json!({"messages": 1})).await.0,
        StatusCode::GONE
    );
    // Re-creating it cannot get the consumed 25 back.
    let (s, v) = app
        .post(
            "/api/v1/quotas/org/allocate",
            json!({"id": "team-a", "limits": {"messages": {"max": 46}}}),
        )
        .await;
    assert_error(&(s, v), StatusCode::CONFLICT, "does_not_fit");
    let (s, v) = app
        .post(
            "/api/v1/quotas/org/allocate",
            json!({"id": "team-a", "limits": {"messages": {"max": 45}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["resources"]["messages"]["used"], 0);
    // Deleting again is idempotent; the charge is durable.
    app.call(Method::DELETE, "/api/v1/quotas/team-a", None)
        .await;
    assert_eq!(
        app.call(Method::DELETE, "/api/v1/quotas/team-a", None)
            .await
            .0,
        StatusCode::OK
    );
    let db = app.quotas.database();
    assert_eq!(
        db.stored_usage("org", "messages", "2026-11-22")
            .await
            .unwrap(),
        Some(25)
    );
}

#[tokio::test]
async fn shrinking_a_parent_below_its_use_marks_it_overcommitted() {
    let app = TestApp::new().await;
    tree(&app).await;
    consume(&app, "org", json!({"messages": 20})).await;
    let (s, v) = put(
        &app,
        "org",
        json!({"limits": {"messages": {"max": 80}, "storage": {"max": 10, "window": "none"}}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["overcommitted"], true);
    assert_eq!(v["resources"]["messages"]["overcommitted"], true);
    assert_eq!(v["resources"]["messages"]["available"], 0);
    assert_eq!(
        consume(&app, "org", json!({"messages": 1})).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Nothing more is admitted below it either: its children keep their
    // reservations but cannot use them while it is overcommitted.
    let refused = consume(&app, "team-a", json!({"messages": 1})).await;
    assert_error(&refused, StatusCode::TOO_MANY_REQUESTS, "overcommitted");
    assert_eq!(refused.1["resource"], "messages");
    assert!(refused.1["retry_after_secs"].as_u64().is_some());
    // Once it fits again, they can.
    let (s, v) = put(
        &app,
        "org",
        json!({"limits": {"messages": {"max": 90}, "storage": {"max": 10, "window": "none"}}}),
    )
    .await;
    assert_eq!(
        (s, v["overcommitted"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert_eq!(
        consume(&app, "team-a", json!({"messages": 40})).await.0,
        StatusCode::OK
    );
}

/// Edits never hand out what was already used: a child shrunk below its
/// usage keeps it charged to its parent; a limit removed and added back
/// carries on from its usage; a used child deleted and created again is
/// counted once, after a restart too.
#[tokio::test]
async fn edits_keep_what_was_used_charged() {
    let app = TestApp::new().await;
    put(&app, "r", json!({"limits": {"messages": {"max": 100}}})).await;
    let (s, _) = app
        .post(
            "/api/v1/quotas/r/allocate",
            json!({"id": "c", "limits": {"messages": {"max": 100}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        consume(&app, "c", json!({"messages": 100})).await.0,
        StatusCode::OK
    );
    let (s, v) = put(
        &app,
        "c",
        json!({"parent": "r", "limits": {"messages": {"max": 10}}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = &v["resources"]["messages"];
    assert_eq!(
        (m["used"].clone(), m["overcommitted"].clone()),
        (json!(100), json!(true))
    );
    let m = &node(&app, "r").await["resources"]["messages"];
    assert_eq!(
        (
            m["allocated"].clone(),
            m["available"].clone(),
            m["subtree_used"].clone()
        ),
        (json!(100), json!(0), json!(100)),
        "the root holds the 100 its child used"
    );
    assert_eq!(
        consume(&app, "r", json!({"messages": 1})).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Growing it back needs no new room: it holds the 100 already.
    let (s, v) = put(
        &app,
        "c",
        json!({"parent": "r", "limits": {"messages": {"max": 100}}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // x: max 10, used 10; the limit removed and added back.
    put(
        &app,
        "x",
        json!({"limits": {"messages": {"max": 10}, "requests": {"max": 5, "window": "hour"}}}),
    )
    .await;
    assert_eq!(
        consume(&app, "x", json!({"messages": 10})).await.0,
        StatusCode::OK
    );
    let (s, v) = put(
        &app,
        "x",
        json!({"limits": {"requests": {"max": 5, "window": "hour"}}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A graceful restart in between (the final flush, then a new process).
    app.quotas.flush().await.unwrap();
    let q = app.reopen().await;
    let (s, v) = common::call(
        &q,
        Method::PUT,
        "/api/v1/quotas/x",
        Some(
            &json!({"limits": {"messages": {"max": 10}, "requests": {"max": 5, "window": "hour"}}})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(
        (s, v["resources"]["messages"]["used"].clone()),
        (StatusCode::OK, json!(10)),
        "{v}"
    );
    let (s, v) = common::call(
        &q,
        Method::POST,
        "/api/v1/quotas/x/consume",
        Some(&json!({"usage": {"messages": 1}}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // A window cannot change under that usage (it belongs to the day).
    let (s, v) = common::call(
        &q,
        Method::PUT,
        "/api/v1/quotas/x",
        Some(&json!({"limits": {"requests": {"max": 5, "window": "day"}}}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "unused requests may change window: {v}");
}

#[tokio::test]
async fn a_used_child_deleted_and_created_again_is_counted_once_after_a_restart() {
    let app = TestApp::new().await;
    put(&app, "p", json!({"limits": {"messages": {"max": 100}}})).await;
    let allocate = || async {
        app.post(
            "/api/v1/quotas/p/allocate",
            json!({"id": "k", "limits": {"messages": {"max": 10}}}),
        )
        .await
    };
    assert_eq!(allocate().await.0, StatusCode::CREATED);
    assert_eq!(
        consume(&app, "k", json!({"messages": 10})).await.0,
        StatusCode::OK
    );
    app.quotas.flush().await.unwrap();
    assert_eq!(
        app.call(Method::DELETE, "/api/v1/quotas/k", None).await.0,
        StatusCode::OK
    );
    assert_eq!(allocate().await.0, StatusCode::CREATED);
    assert_eq!(
        consume(&app, "k", json!({"messages": 2})).await.0,
        StatusCode::OK
    );
    app.quotas.flush().await.unwrap();
    let db = app.quotas.database();
    assert_eq!(
        db.stored_usage("k", "messages", "2026-11-22")
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        db.stored_usage("p", "messages", "2026-11-22")
            .await
            .unwrap(),
        Some(10)
    );
    let q = app.reopen().await;
    let k = q.node("k").unwrap();
    let p = q.node("p").unwrap();
    assert_eq!(k.resource("messages").unwrap().used, 2);
    assert!(!k.overcommitted());
    let pm = p.resource("messages").unwrap();
    assert_eq!((pm.used, pm.subtree_used), (10, 12));
}
