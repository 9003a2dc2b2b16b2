//! Nodes: create and update idempotently, children reserved from the
//! parent, lists and snapshots.

use super::*;

#[tokio::test]
async fn put_is_idempotent_and_reports_the_node() {
    let app = TestApp::new().await;
    let body = json!({"limits": {"messages": {"max": 100}, "gpu-seconds": {"max": 3600, "window": "hour"}}, "name": "Acme"});
    let (s, v) = put(&app, "acme", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, snap) = app.get("/api/v1/snapshot").await;
    let version = snap["version"].as_u64().unwrap();
    let (s, again) = put(&app, "acme", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "the same PUT again only updates");
    assert_eq!(again, v, "and answers the same node");
    // ... without writing: no audit entry, no new version for the operator's
    // sync to pick up (controllers re-apply unchanged specs all the time).
    let (_, audit) = app.get("/api/v1/quotas/acme/audit").await;
    assert_eq!(audit_actions(&audit), vec![json!("put")]);
    let (_, snap) = app.get(&format!("/api/v1/snapshot?since={version}")).await;
    assert_eq!(snap["nodes"], json!([]), "an unchanged PUT is not a change");
    let n = node(&app, "acme").await;
    assert_eq!(n["state"], "active");
    assert_eq!(n["name"], "Acme");
    let m = &n["resources"]["messages"];
    assert_eq!(
        (m["max"].clone(), m["window"].clone()),
        (json!(100), json!("day"))
    );
    assert_eq!(
        (m["used"].clone(), m["available"].clone()),
        (json!(0), json!(100))
    );
    assert_eq!(m["period"], "2026-11-22");
    assert_eq!(m["reset_at"], "2026-11-23T00:00:00Z");
    assert_eq!(n["resources"]["gpu-seconds"]["period"], "2026-11-22T12");
    // The flat API sees the same node.
    let (s, flat) = app.get("/api/quota/acme").await;
    assert_eq!(
        (s, flat["message_limit"].clone()),
        (StatusCode::OK, json!(100))
    );
    // A real change is written (and audited) as before.
    let mut bigger = body;
    bigger["limits"]["messages"]["max"] = json!(101);
    let (s, v) = put(&app, "acme", bigger).await;
    assert_eq!(
        (s, v["resources"]["messages"]["max"].clone()),
        (StatusCode::OK, json!(101))
    );
    let (_, audit) = app.get("/api/v1/quotas/acme/audit").await;
    assert_eq!(audit_actions(&audit), vec![json!("put"), json!("put")]);
    let (_, snap) = app.get(&format!("/api/v1/snapshot?since={version}")).await;
    assert_eq!(snap["nodes"][0]["id"], "acme");
    assert_eq!(snap["nodes"][0]["resources"]["messages"]["max"], 101);
}

#[tokio::test]
async fn children_are_reserved_and_a_child_that_does_not_fit_is_refused() {
    let app = TestApp::new().await;
    tree(&app).await;
    let org = node(&app, "org").await;
    assert_eq!(org["children"], json!(["team-a", "team-b"]));
    let m = &org["resources"]["messages"];
    assert_eq!(
        (m["allocated"].clone(), m["available"].clone()),
        (json!(70), json!(30))
    );
    assert_eq!(
        node(&app, "team-a").await["resources"]["messages"]["window"],
        "day",
        "inherited"
    );

    // 40 more does not fit: 409 with what is missing, nothing created.
    let (s, v) = app
        .post(
            "/api/v1/quotas/org/allocate",
            json!({"id": "team-c", "limits": {"messages": {"max": 40}}}),
        )
        .await;
    assert_error(&(s, v.clone()), StatusCode::CONFLICT, "does_not_fit");
    assert_eq!(
        v["error"]["details"]["shortages"],
        json!([{"resource": "messages", "requested": 40, "available": 30, "missing": 10}])
    );
    assert_eq!(
        app.get("/api/v1/quotas/team-c").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        node(&app, "org").await["resources"]["messages"]["allocated"],
        70
    );

    // Growing a child past the parent is refused the same way; shrinking frees.
    let (s, _) = put(
        &app,
        "team-a",
        json!({"parent": "org", "limits": {"messages": {"max": 80}}}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = put(
        &app,
        "team-a",
        json!({"parent": "org", "limits": {"messages": {"max": 10}}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        node(&app, "org").await["resources"]["messages"]["available"],
        60
    );
    // The parent is immutable.
    let (s, v) = put(
        &app,
        "team-a",
        json!({"parent": "team-b", "limits": {"messages": {"max": 10}}}),
    )
    .await;
    assert_error(&(s, v), StatusCode::CONFLICT, "parent_immutable");
    // Unknown parent.
    let (s, v) = put(
        &app,
        "x",
        json!({"parent": "nobody", "limits": {"messages": {"max": 1}}}),
    )
    .await;
    assert_error(&(s, v), StatusCode::CONFLICT, "parent_not_found");
}

#[tokio::test]
async fn list_is_sorted_and_paged() {
    let app = TestApp::new().await;
    tree(&app).await;
    let (_, p1) = app.get("/api/v1/quotas?limit=2").await;
    let ids: Vec<_> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("org"), json!("team-a")]);
    assert_eq!(p1["next_after"], "team-a");
    let (_, p2) = app.get("/api/v1/quotas?limit=2&after=team-a").await;
    assert_eq!(p2["items"][0]["id"], "team-b");
    assert_eq!(p2["next_after"], json!(null));
}

#[tokio::test]
async fn snapshot_returns_what_changed_and_the_ancestors() {
    let app = TestApp::new().await;
    tree(&app).await;
    let (_, s0) = app.get("/api/v1/snapshot").await;
    assert_eq!(s0["nodes"].as_array().unwrap().len(), 3);
    let v0 = s0["version"].as_u64().unwrap();
    let (_, s1) = app.get(&format!("/api/v1/snapshot?since={v0}")).await;
    assert_eq!(s1["nodes"], json!([]), "nothing changed");
    consume(&app, "team-a", json!({"messages": 3})).await;
    let (_, s2) = app.get(&format!("/api/v1/snapshot?since={v0}")).await;
    let ids: Vec<_> = s2["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!("org"), json!("team-a")],
        "the parent's subtree usage changed too"
    );
    assert_eq!(s2["nodes"][0]["resources"]["messages"]["subtree_used"], 3);
    assert_eq!(s2["instance_id"], s0["instance_id"]);
    // A day later the usage resets: that is a change as well.
    let v2 = s2["version"].as_u64().unwrap();
    app.clock.advance(86_400);
    let (_, s3) = app.get(&format!("/api/v1/snapshot?since={v2}")).await;
    let team_a = s3["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "team-a")
        .cloned()
        .unwrap();
    assert_eq!(team_a["resources"]["messages"]["used"], 0);
    assert_eq!(team_a["resources"]["messages"]["period"], "2026-11-23");
}
