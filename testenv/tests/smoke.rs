//! Smoke test of the test environment itself, against the real API server:
//! a CRD installed with kubectl; create, get, status patch and delete through
//! kube-rs; `kubectl auth can-i` against RBAC rules; a ServiceAccount token
//! from the TokenRequest API accepted by the TokenReview API (the service's
//! access control relies on that).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A throwaway kind for the smoke test.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "smoke.edgepolicy.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    size: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct WidgetStatus {
    observed: u32,
}

fn install_crd(c: &testenv::TestCluster) {
    c.apply_yaml(&testenv::to_yaml(&Widget::crd()));
    c.wait_established(&["widgets.smoke.edgepolicy.io"]);
}

#[tokio::test]
async fn crd_object_lifecycle_through_kube_rs() {
    let c = testenv::cluster();
    install_crd(c);
    let client = c.client().await;
    let ns = testenv::namespace(&client, "smoke").await;
    let widgets: Api<Widget> = Api::namespaced(client, &ns);

    let w = Widget::new("w1", WidgetSpec { size: 3 });
    widgets.create(&PostParams::default(), &w).await.unwrap();
    let got = widgets.get("w1").await.unwrap();
    assert_eq!(got.spec.size, 3);
    assert!(got.status.is_none());

    // The status subresource: a status patch changes status, not spec.
    let patch = json!({"status": {"observed": 3}, "spec": {"size": 99}});
    widgets
        .patch_status("w1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let got = widgets.get("w1").await.unwrap();
    assert_eq!(got.status.map(|s| s.observed), Some(3));
    assert_eq!(got.spec.size, 3, "status patches cannot change spec");

    // kubectl sees the same object.
    let out = c.kubectl_ok(&[
        "get",
        "widgets",
        "w1",
        "-n",
        &ns,
        "-o",
        "jsonpath={.status.observed}",
    ]);
    assert_eq!(out, "3");

    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    let err = widgets.get("w1").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err:?}"
    );
}

#[tokio::test]
async fn rbac_is_enforced_and_kubectl_auth_can_i_reports_it() {
    let c = testenv::cluster();
    install_crd(c);
    let client = c.client().await;
    let ns = testenv::namespace(&client, "rbac").await;
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("reader"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let role = Role {
        metadata: meta("widget-reader"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["smoke.edgepolicy.io".into()]),
            resources: Some(vec!["widgets".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: meta("widget-reader"),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "widget-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let sa = format!("system:serviceaccount:{ns}:reader");
    let can_i = |verb: &str, resource: &str, namespace: &str| {
        let out = c
            .kubectl()
            .args([
                "auth", "can-i", verb, resource, "-n", namespace, "--as", &sa,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(can_i("get", "widgets.smoke.edgepolicy.io", &ns), "yes");
    assert_eq!(can_i("list", "widgets.smoke.edgepolicy.io", &ns), "yes");
    assert_eq!(can_i("delete", "widgets.smoke.edgepolicy.io", &ns), "no");
    assert_eq!(can_i("get", "secrets", &ns), "no");
    assert_eq!(
        can_i("get", "widgets.smoke.edgepolicy.io", "default"),
        "no",
        "the Role is namespaced"
    );
}

#[tokio::test]
async fn token_request_tokens_pass_token_review() {
    let c = testenv::cluster();
    let client = c.client().await;
    let ns = testenv::namespace(&client, "tokens").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: ObjectMeta {
                name: Some("reporter".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let audience = "edge-quota";
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let issued = sas
        .create_token_request("reporter", &PostParams::default(), &req)
        .await
        .unwrap();
    let token = issued.status.expect("token status").token;
    assert!(!token.is_empty());

    let reviews: Api<TokenReview> = Api::all(client);
    let review = |token: String, audiences: Vec<String>| TokenReview {
        spec: TokenReviewSpec {
            token: Some(token),
            audiences: Some(audiences),
        },
        ..Default::default()
    };
    let ok = reviews
        .create(
            &PostParams::default(),
            &review(token.clone(), vec![audience.into()]),
        )
        .await
        .unwrap()
        .status
        .expect("review status");
    assert_eq!(ok.authenticated, Some(true), "{ok:?}");
    let user = ok.user.expect("user");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:reporter").as_str())
    );
    assert!(
        user.groups
            .unwrap_or_default()
            .iter()
            .any(|g| g == "system:serviceaccounts")
    );

    // A token for another audience, or a forged one, is refused.
    let wrong_audience = reviews
        .create(
            &PostParams::default(),
            &review(token, vec!["someone-else".into()]),
        )
        .await
        .unwrap()
        .status
        .expect("review status");
    assert_ne!(wrong_audience.authenticated, Some(true));
    let forged = reviews
        .create(
            &PostParams::default(),
            &review(
                "eyJhbGciOiJSUzI1NiJ9.e30.bm90LWEtc2lnbmF0dXJl".into(),
                vec![],
            ),
        )
        .await
        .unwrap()
        .status
        .expect("review status");
    assert_ne!(forged.authenticated, Some(true));
}
