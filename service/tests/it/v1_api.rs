//! The hierarchical `/api/v1` API on the real router and a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_error, break_audit_inserts, repair_audit_inserts};
use serde_json::{Value, json};

async fn put(app: &TestApp, id: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/api/v1/quotas/{id}"),
        Some(&body.to_string()),
    )
    .await
}

async fn node(app: &TestApp, id: &str) -> Value {
    let (status, v) = app.get(&format!("/api/v1/quotas/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn consume(app: &TestApp, id: &str, usage: Value) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/quotas/{id}/consume"),
        json!({ "usage": usage }),
    )
    .await
}

/// org: messages 100/day, storage 10 (capacity); team-a 40, team-b 30.
async fn tree(app: &TestApp) {
    let (s, v) = put(
        app,
        "org",
        json!({"limits": {"messages": {"max": 100}, "storage": {"max": 10, "window": "none"}}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for (id, max) in [("team-a", 40), ("team-b", 30)] {
        let (s, v) = app
            .post(
                "/api/v1/quotas/org/allocate",
                json!({"id": id, "name": id, "limits": {"messages": {"max": max}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
}

/// The actions of an audit page, newest first.
fn audit_actions(page: &Value) -> Vec<Value> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].clone())
        .collect()
}

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
        StatusCode::UNPROCESSABLE_ENTITY,
        "capacities are claimed, not consumed"
    );
    let (s, _) = consume(&app, "team-b", json!({"messages": 1, "gpu": 1})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        node(&app, "team-b").await["resources"]["messages"]["used"],
        5,
        "nothing counted"
    );
}

#[tokio::test]
async fn claims_are_idempotent_per_resource_id_and_bounded() {
    let app = TestApp::new().await;
    tree(&app).await;
    let claim = |rid: &str, amount: u64| json!({"resource": "storage", "resource_id": rid, "amount": amount, "reason": "volume"});
    let (s, v) = app
        .post("/api/v1/quotas/org/usage/allocate", claim("pvc-1", 7))
        .await;
    assert_eq!(
        (s, v["created"].clone()),
        (StatusCode::CREATED, json!(true)),
        "{v}"
    );
    let (s, v) = app
        .post("/api/v1/quotas/org/usage/allocate", claim("pvc-1", 7))
        .await;
    assert_eq!(
        (s, v["created"].clone()),
        (StatusCode::OK, json!(false)),
        "same claim again"
    );
    let (s, v) = app
        .post("/api/v1/quotas/org/usage/allocate", claim("pvc-1", 8))
        .await;
    assert_error(&(s, v), StatusCode::CONFLICT, "claim_conflict");
    let (s, v) = app
        .post("/api/v1/quotas/org/usage/allocate", claim("pvc-2", 4))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(
        (v["available"].clone(), v["retry_after_secs"].clone()),
        (json!(3), json!(null))
    );
    let storage = &node(&app, "org").await["resources"]["storage"];
    assert_eq!(
        (storage["used"].clone(), storage["available"].clone()),
        (json!(7), json!(3))
    );

    let (s, v) = app
        .call(Method::DELETE, "/api/v1/quotas/org/usage/pvc-1", None)
        .await;
    assert_eq!((s, v["amount"].clone()), (StatusCode::OK, json!(7)));
    let (s, v) = app
        .call(Method::DELETE, "/api/v1/quotas/org/usage/pvc-1", None)
        .await;
    assert_error(&(s, v), StatusCode::CONFLICT, "claim_not_found");
    assert_eq!(
        app.post("/api/v1/quotas/org/usage/allocate", claim("pvc-2", 10))
            .await
            .0,
        StatusCode::CREATED
    );
    let (s, v) = app
        .post(
            "/api/v1/quotas/org/usage/allocate",
            json!({"resource": "messages", "resource_id": "x", "amount": 1, "reason": "r"}),
        )
        .await;
    assert_error(&(s, v), StatusCode::UNPROCESSABLE_ENTITY, "not_a_capacity");
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

#[tokio::test]
async fn grants_and_the_audit_trail() {
    let app = TestApp::new().await;
    tree(&app).await;
    let g = json!({"subject": "system:serviceaccount:team-a:bridge", "role": "reporter"});
    let (s, v) = app
        .post("/api/v1/quotas/team-a/permissions/grant", g.clone())
        .await;
    assert_eq!(
        (s, v["created"].clone()),
        (StatusCode::CREATED, json!(true))
    );
    assert_eq!(
        app.post("/api/v1/quotas/team-a/permissions/grant", g.clone())
            .await
            .0,
        StatusCode::OK
    );
    let (_, list) = app.get("/api/v1/quotas/team-a/permissions").await;
    assert_eq!(list["items"][0]["role"], "reporter");
    let (s, _) = app
        .post("/api/v1/quotas/team-a/permissions/revoke", g.clone())
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app
        .post("/api/v1/quotas/team-a/permissions/revoke", g)
        .await;
    assert_error(&(s, v), StatusCode::CONFLICT, "grant_not_found");
    let (s, v) = app
        .post(
            "/api/v1/quotas/team-a/permissions/grant",
            json!({"subject": "x", "role": "owner"}),
        )
        .await;
    assert_error(&(s, v), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    // Newest first: revoke, grant, allocate; paged.
    let (s, page) = app.get("/api/v1/quotas/team-a/audit?limit=2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(audit_actions(&page), vec![json!("revoke"), json!("grant")]);
    let after = page["next_after"].as_i64().unwrap();
    let (_, page2) = app
        .get(&format!(
            "/api/v1/quotas/team-a/audit?limit=2&after={after}"
        ))
        .await;
    assert_eq!(audit_actions(&page2), vec![json!("allocate")]);
    assert_eq!(page2["next_after"], json!(null));
    let first = &page2["items"][0];
    assert_eq!(first["actor"], "anonymous");
    assert_eq!(first["after"]["limits"]["messages"]["max"], 40);
    assert_eq!(first["before"], json!(null));

    // Audit rows cannot be updated or deleted, even with raw SQL.
    let pool = app.quotas.database().pool();
    let upd = sqlx::query("UPDATE quota_audit_logs SET actor = 'mallory'")
        .execute(pool)
        .await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = sqlx::query("DELETE FROM quota_audit_logs")
        .execute(pool)
        .await;
    assert!(del.unwrap_err().to_string().contains("append-only"));
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
        vec![json!(200), json!(404), json!(422), json!(400), json!(200)]
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

/// Every error answers a clear 4xx and changes nothing: not the nodes, not
/// the audit trail.
#[tokio::test]
async fn v1_errors_change_nothing() {
    let app = TestApp::new().await;
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
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
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
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
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
            StatusCode::UNPROCESSABLE_ENTITY,
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
    assert_error(
        &(s, v),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_resource",
    );
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
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}
