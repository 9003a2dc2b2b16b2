//! Capacity claims.

use super::*;

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
    assert_error(&(s, v), StatusCode::CONFLICT, "not_a_capacity");
}
