//! Grants and the audit trail.

use super::*;

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
            json!({"subject": "x", "role": "superuser"}),
        )
        .await;
    assert_error(&(s, v), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    // The older model's names: `owner` as it is, `read` stored as `reporter`
    // (on team-b: team-a's audit trail is read below).
    for (asked, stored) in [("owner", "owner"), ("read", "reporter")] {
        let (s, v) = app
            .post(
                "/api/v1/quotas/team-b/permissions/grant",
                json!({"subject": "legacy", "role": asked}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["role"], stored, "{v}");
        let (_, list) = app.get("/api/v1/quotas/team-b/permissions").await;
        assert!(
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["subject"] == "legacy" && g["role"] == stored),
            "{list}"
        );
        let (s, v) = app
            .post(
                "/api/v1/quotas/team-b/permissions/revoke",
                json!({"subject": "legacy", "role": asked}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

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
