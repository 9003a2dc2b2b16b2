//! Usage: consume within the share, suspension, batches, the flat API on a
//! node, strict nodes.

use super::*;

#[tokio::test]
async fn consume_stops_at_the_share_and_rolls_up() {
    let app = TestApp::new().await;
    tree(&app).await;
    let (s, v) = consume(&app, "team-a", json!({"messages": 40})).await;
    assert_eq!(
        (s, v["allowed"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    let (s, v) = consume(&app, "team-a", json!({"messages": 1})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["resource"], "messages");
    assert_eq!(v["reason"], "quota_exhausted");
    assert_eq!(v["retry_after_secs"], 12 * 3600, "until midnight UTC");
    assert_eq!(v["error"]["code"], "quota_exhausted");
    // The parent's own share is max - allocated.
    assert_eq!(
        consume(&app, "org", json!({"messages": 31})).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        consume(&app, "org", json!({"messages": 30})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        consume(&app, "team-b", json!({"messages": 5})).await.0,
        StatusCode::OK
    );
    let org = node(&app, "org").await;
    let m = &org["resources"]["messages"];
    assert_eq!(
        (m["used"].clone(), m["subtree_used"].clone()),
        (json!(30), json!(75))
    );
    assert_eq!(m["available"], 0);
    assert_eq!(node(&app, "team-a").await["exceeded"], true);
    // All or nothing over several resources.
    let (s, _) = consume(&app, "org", json!({"messages": 0, "storage": 1})).await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "capacities are claimed, not consumed"
    );
    let (s, _) = consume(&app, "team-b", json!({"messages": 1, "gpu": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        node(&app, "team-b").await["resources"]["messages"]["used"],
        5,
        "nothing counted"
    );
}

#[tokio::test]
async fn a_suspended_node_refuses_usage_for_its_whole_subtree() {
    let app = TestApp::new().await;
    tree(&app).await;
    let (s, v) = app
        .post("/api/v1/quotas/org/state", json!({"state": "suspended"}))
        .await;
    assert_eq!(
        (s, v["state"].clone()),
        (StatusCode::OK, json!("suspended"))
    );
    for id in ["org", "team-a"] {
        let (s, v) = consume(&app, id, json!({"messages": 1})).await;
        assert_eq!(
            (s, v["reason"].clone()),
            (StatusCode::FORBIDDEN, json!("node_suspended")),
            "{id}"
        );
    }
    let (s, v) = app
        .post("/api/quota/increment", json!({"tenant_id": "team-b"}))
        .await;
    assert_error(&(s, v), StatusCode::FORBIDDEN, "node_suspended");
    app.post("/api/v1/quotas/org/state", json!({"state": "active"}))
        .await;
    assert_eq!(
        consume(&app, "team-a", json!({"messages": 1})).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn batch_answers_each_item_in_order() {
    let app = TestApp::new().await;
    tree(&app).await;
    let body = json!({"items": [
        {"id": "team-a", "usage": {"messages": 50}},
        {"id": "nobody", "usage": {"messages": 1}},
        {"id": "team-b", "usage": {"gpu": 1}},
        {"id": "bad id", "usage": {"messages": 1}},
        {"id": "team-b", "usage": {"messages": 2}},
    ]});
    let (s, v) = app.post("/api/v1/usage/batch", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let statuses: Vec<_> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        vec![json!(200), json!(404), json!(409), json!(400), json!(200)]
    );
    assert_eq!(v["counted"], 2);
    assert_eq!(
        node(&app, "team-a").await["resources"]["messages"]["used"],
        50,
        "increment mode tracks past the limit"
    );

    let (_, v) = app
        .post("/api/v1/usage/batch", json!({"mode": "consume", "items": [{"id": "team-b", "usage": {"messages": 28}}, {"id": "team-b", "usage": {"messages": 1}}]}))
        .await;
    assert_eq!(v["results"][0]["status"], 200);
    assert_eq!(v["results"][1]["status"], 429);
    assert_eq!(v["results"][1]["error"]["retry_after_secs"], 12 * 3600);
    let (s, v) = app.post("/api/v1/usage/batch", json!({"items": []})).await;
    assert_error(&(s, v), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    // A batch may be larger than the 64 KiB of other calls.
    let items: Vec<Value> = (0..2000)
        .map(|_| json!({"id": "team-b", "usage": {"messages": 0}}))
        .collect();
    let (s, v) = app
        .post("/api/v1/usage/batch", json!({"items": items}))
        .await;
    assert_eq!((s, v["counted"].clone()), (StatusCode::OK, json!(2000)));
    // Past 1 MiB: 413, naming the batch limit, and nothing counted.
    let before = node(&app, "team-b").await["resources"]["messages"]["used"].clone();
    let items: Vec<Value> = (0..30_000)
        .map(|_| json!({"id": "team-b", "usage": {"messages": 1}}))
        .collect();
    let (s, v) = app
        .post("/api/v1/usage/batch", json!({"items": items}))
        .await;
    assert_error(
        &(s, v.clone()),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1048576"),
        "{v}"
    );
    assert_eq!(
        node(&app, "team-b").await["resources"]["messages"]["used"],
        before
    );
    // A wrong type deep inside: 422 naming where it is.
    let (s, v) = app
        .post(
            "/api/v1/usage/batch",
            json!({"items": [{"id": "team-b", "usage": {"messages": 1}}, {"id": "team-b", "usage": {"messages": "1"}}]}),
        )
        .await;
    assert_error(
        &(s, v.clone()),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("items[1].usage.messages"),
        "{v}"
    );
}

/// The flat API on a v1 node: it counts the resources the node has.
#[tokio::test]
async fn flat_increment_on_a_node_without_bandwidth_counts_messages() {
    let app = TestApp::new().await;
    tree(&app).await;
    let (s, m) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "org", "message_count": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["message_count"], 5);
    assert_eq!(m["bandwidth_limit_bytes"], 0);
    assert_eq!(
        (m["bandwidth_quota_exceeded"].clone(), m["exceeded"].clone()),
        (json!(false), json!(false))
    );
    let (s, v) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "org", "message_count": 0, "bytes_sent": 10}),
        )
        .await;
    assert_error(&(s, v), StatusCode::CONFLICT, "unknown_resource");
    assert_eq!(
        node(&app, "org").await["resources"]["messages"]["used"],
        5,
        "nothing counted by the refused call"
    );
}

#[tokio::test]
async fn a_strict_node_counts_in_the_database_on_every_call() {
    let app = TestApp::new().await;
    tree(&app).await;
    // team-b becomes strict; the flag shows and survives a restart.
    let (s, v) = put(
        &app,
        "team-b",
        json!({"parent": "org", "strict": true, "limits": {"messages": {"max": 30}}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["strict"], true);
    assert_eq!(node(&app, "team-a").await["strict"], false);

    // Every allowed consume is in the database before it answers.
    let db = app.quotas.database();
    let day = "2026-11-22";
    assert_eq!(
        consume(&app, "team-b", json!({"messages": 25})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        db.stored_usage("team-b", "messages", day).await.unwrap(),
        Some(25)
    );
    // The limit is checked by the database: 25 + 6 > 30 is refused whole.
    let (s, v) = consume(&app, "team-b", json!({"messages": 6})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(
        (v["requested"].clone(), v["available"].clone()),
        (json!(6), json!(5))
    );
    assert!(v["retry_after_secs"].as_u64().is_some(), "{v}");
    assert_eq!(
        db.stored_usage("team-b", "messages", day).await.unwrap(),
        Some(25)
    );
    // Tracking increments (batch, flat API) count in the database too.
    let (s, v) = app
        .post(
            "/api/v1/usage/batch",
            json!({"mode": "increment", "items": [{"id": "team-b", "usage": {"messages": 10}}]}),
        )
        .await;
    assert_eq!((s, v["counted"].clone()), (StatusCode::OK, json!(1)), "{v}");
    let (s, v) = app
        .post(
            "/api/quota/increment",
            json!({"tenant_id": "team-b", "message_count": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message_count"], 37);
    assert_eq!(
        db.stored_usage("team-b", "messages", day).await.unwrap(),
        Some(37)
    );
    // The view agrees, a flush adds nothing, and so does a restart.
    let v = node(&app, "team-b").await;
    assert_eq!(v["resources"]["messages"]["used"], 37);
    app.quotas.flush().await.unwrap();
    assert_eq!(
        db.stored_usage("team-b", "messages", day).await.unwrap(),
        Some(37)
    );
    let q = app.reopen().await;
    let v = q.node("team-b").unwrap();
    assert!(v.strict);
    assert_eq!(v.resource("messages").unwrap().used, 37);
    // The rolled-up view of the parent includes it.
    assert_eq!(
        node(&app, "org").await["resources"]["messages"]["subtree_used"],
        37
    );
    // Unknown resources are refused before the database is asked.
    let (s, v) = consume(&app, "team-b", json!({"nope": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}
