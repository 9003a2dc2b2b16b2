//! Kubernetes mode on a real API server, with real ServiceAccount tokens
//! from the TokenRequest API: the isolation matrix, tokens of other
//! audiences, a deleted ServiceAccount, an API server that stops answering,
//! TokenReviews bounded by tokens (not calls), and the audit actor.
//!
//! ```text
//!   test ──HTTP──▶ router (in process) ──TokenReview──▶ proxy ──▶ kube-apiserver
//!                                                       (the test cuts it)
//! ```
//!
//! The service reviews as its own ServiceAccount, bound to
//! `system:auth-delegator` as the chart binds it.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use quota_service::{Admins, Authenticator, CacheLimits, TokenReviewer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::common::{TestApp, bearer, request, send_to};

const AUDIENCE: &str = "edge-quota";

/// A TCP proxy to the API server that the test can cut: it stops
/// accepting and drops every open connection.
struct Proxy {
    port: u16,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(target: String, port: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = cancelled.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let target = target.clone();
                        conns.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                }
            }
            conns.abort_all();
        });
        Proxy { port, stop }
    }

    fn cut(&self) {
        self.stop.cancel();
    }
}

/// A client of `server` that authenticates with `token`.
async fn client_with_token(
    admin_kubeconfig: &std::path::Path,
    server: &str,
    token: &str,
) -> kube::Client {
    let admin = Kubeconfig::read_from(admin_kubeconfig).expect("admin kubeconfig");
    let ca = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .expect("the test cluster's CA");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
    );
    let kc = Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

async fn service_account(admin: &kube::Client, ns: &str, name: &str) {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create the ServiceAccount");
}

/// A token of `ns/name` for `audiences` (none: the API server's own).
async fn token(admin: &kube::Client, ns: &str, name: &str, audiences: &[&str]) -> String {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("a token")
        .token
}

struct Env {
    app: TestApp,
    auth: Arc<Authenticator>,
    proxy: Proxy,
    admin: kube::Client,
    ns_a: String,
    ns_b: String,
    ns_sys: String,
    operator: String,
}

impl Env {
    async fn call(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string());
        let req = request(method, uri, bearer(token).as_deref(), body.as_deref());
        send_to(&self.app.quotas, &self.auth, req).await
    }

    /// A consume of `n` messages on `node` with `token`.
    async fn consume_as(&self, token: &str, node: &str, n: u64) -> (StatusCode, Value) {
        let uri = format!("/api/v1/quotas/{node}/consume");
        self.call(token, Method::POST, &uri, consume(n)).await
    }
}

async fn env() -> Env {
    let cluster = testenv::cluster();
    let admin = cluster.client().await;
    let ns_a = testenv::namespace(&admin, "team-a").await;
    let ns_b = testenv::namespace(&admin, "team-b").await;
    let ns_sys = testenv::namespace(&admin, "quota-system").await;
    for (ns, name) in [
        (&ns_a, "web"),
        (&ns_b, "web"),
        (&ns_sys, "operator"),
        (&ns_sys, "quota"),
    ] {
        service_account(&admin, ns, name).await;
    }
    // What the chart binds: the service may create TokenReviews.
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("{ns_sys}-auth-delegator")),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "system:auth-delegator".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "quota".into(),
            namespace: Some(ns_sys.clone()),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind system:auth-delegator");

    let admin_kc = Kubeconfig::read_from(&cluster.kubeconfig).expect("kubeconfig");
    let server = admin_kc
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .expect("server");
    let target = server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Proxy::start(target, 0).await;
    let service_token = token(&admin, &ns_sys, "quota", &[]).await;
    let reviewer_client = client_with_token(
        &cluster.kubeconfig,
        &format!("https://127.0.0.1:{}", proxy.port),
        &service_token,
    )
    .await;

    let app = TestApp::new().await;
    let operator = format!("system:serviceaccount:{ns_sys}:operator");
    let auth = Authenticator::with_reviewer(
        Arc::new(TokenReviewer::new(reviewer_client, AUDIENCE.into())),
        Admins::new(vec![operator.clone()]),
        app.clock.clone(),
        CacheLimits::default(),
    );
    let env = Env {
        app,
        auth,
        proxy,
        admin,
        ns_a,
        ns_b,
        ns_sys: ns_sys.clone(),
        operator,
    };
    // The tree, built by the operator's identity, with the default grant of
    // a QuotaAllocation: its namespace's ServiceAccounts report to it.
    let op = token(&env.admin, &ns_sys, "operator", &[AUDIENCE]).await;
    let ok = |r: (StatusCode, Value)| assert!(r.0.is_success(), "{}", r.1);
    ok(env
        .call(
            &op,
            Method::PUT,
            "/api/v1/quotas/org",
            Some(json!({"limits": {"messages": {"max": 1000, "window": "day"}}})),
        )
        .await);
    for (child, ns) in [("team-a", &env.ns_a), ("team-b", &env.ns_b)] {
        ok(env
            .call(
                &op,
                Method::POST,
                "/api/v1/quotas/org/allocate",
                Some(json!({"id": child, "limits": {"messages": {"max": 100}}})),
            )
            .await);
        ok(env
            .call(
                &op,
                Method::POST,
                &format!("/api/v1/quotas/{child}/permissions/grant"),
                Some(json!({"subject": format!("group:system:serviceaccounts:{ns}"), "role": "reporter"})),
            )
            .await);
    }
    env
}

fn consume(n: u64) -> Option<Value> {
    Some(json!({"usage": {"messages": n}}))
}

#[tokio::test]
async fn real_serviceaccount_tokens_are_isolated_by_namespace() {
    let e = env().await;
    let web_a = token(&e.admin, &e.ns_a, "web", &[AUDIENCE]).await;
    let web_b = token(&e.admin, &e.ns_b, "web", &[AUDIENCE]).await;
    let api_server_audience = token(&e.admin, &e.ns_a, "web", &[]).await;
    let other_audience = token(&e.admin, &e.ns_a, "web", &["some-other-service"]).await;
    let forged = {
        // A JWT of the right shape, signed by nobody.
        let mut parts: Vec<String> = web_a.split('.').map(str::to_owned).collect();
        if let Some(sig) = parts.last_mut() {
            *sig = "c2lnbmVkLWJ5LW5vYm9keQ".into();
        }
        parts.join(".")
    };
    let op = token(&e.admin, &e.ns_sys, "operator", &[AUDIENCE]).await;

    let before = e
        .call(&op, Method::GET, "/api/v1/quotas?limit=100", None)
        .await;
    for (who, t) in [
        ("no token", ""),
        ("the API server's audience", api_server_audience.as_str()),
        ("another audience", other_audience.as_str()),
        ("a forged token", forged.as_str()),
    ] {
        for (method, uri, body) in [
            (Method::POST, "/api/v1/quotas/team-a/consume", consume(1)),
            (Method::GET, "/api/v1/quotas/team-a", None),
            (
                Method::POST,
                "/api/quota/increment",
                Some(json!({"tenant_id": "team-a"})),
            ),
        ] {
            let (status, answer) = e.call(t, method, uri, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}: {uri}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthenticated");
        }
    }

    // team-b's workload against team-a: nothing, and nothing changes.
    for (what, method, uri, body) in [
        (
            "consume",
            Method::POST,
            "/api/v1/quotas/team-a/consume",
            consume(1),
        ),
        ("read", Method::GET, "/api/v1/quotas/team-a", None),
        (
            "raise limits",
            Method::PUT,
            "/api/v1/quotas/team-a",
            Some(json!({"parent": "org", "limits": {"messages": {"max": 500}}})),
        ),
        (
            "grant itself",
            Method::POST,
            "/api/v1/quotas/team-a/permissions/grant",
            Some(
                json!({"subject": format!("system:serviceaccount:{}:web", e.ns_b), "role": "owner"}),
            ),
        ),
        (
            "flat increment",
            Method::POST,
            "/api/quota/increment",
            Some(json!({"tenant_id": "team-a"})),
        ),
        (
            "a new tenant",
            Method::POST,
            "/api/quota/increment",
            Some(json!({"tenant_id": "brand-new"})),
        ),
    ] {
        let (status, answer) = e.call(&web_b, method, uri, body).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "team-b's web: {what}: {answer}"
        );
        assert_eq!(answer["error"]["code"], "forbidden");
    }
    let after = e
        .call(&op, Method::GET, "/api/v1/quotas?limit=100", None)
        .await;
    assert_eq!(before, after, "refused calls changed nothing");

    // Its own allocation: allowed; a read of it too (reporter includes reader).
    let (status, answer) = e.consume_as(&web_b, "team-b", 3).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = e.consume_as(&web_a, "team-a", 2).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, b) = e
        .call(&web_b, Method::GET, "/api/v1/quotas/team-b", None)
        .await;
    assert_eq!(b["resources"]["messages"]["used"], 3, "{b}");
    // But not its limits: a reporter does not change its own node.
    let (status, _) = e
        .call(
            &web_b,
            Method::PUT,
            "/api/v1/quotas/team-b",
            Some(json!({"parent": "org", "limits": {"messages": {"max": 200}}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The operator's identity administers everything, and the audit trail
    // names it.
    let (status, answer) = e
        .call(
            &op,
            Method::PUT,
            "/api/v1/quotas/team-b",
            Some(json!({"parent": "org", "limits": {"messages": {"max": 120}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, audit) = e
        .call(
            &op,
            Method::GET,
            "/api/v1/quotas/team-b/audit?limit=1",
            None,
        )
        .await;
    assert_eq!(audit["items"][0]["actor"], e.operator.as_str(), "{audit}");
    let (_, snapshot) = e.call(&op, Method::GET, "/api/v1/snapshot", None).await;
    assert_eq!(
        snapshot["nodes"].as_array().map(Vec::len),
        Some(3),
        "{snapshot}"
    );
}

#[tokio::test]
async fn reviews_are_bounded_by_tokens_not_calls() {
    let e = env().await;
    let web_a = token(&e.admin, &e.ns_a, "web", &[AUDIENCE]).await;
    let reviews = |a: &Arc<Authenticator>| a.stats().token_reviews;
    let start = reviews(&e.auth);
    for _ in 0..50 {
        let (status, _) = e.consume_as(&web_a, "team-a", 1).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        reviews(&e.auth) - start,
        1,
        "one review for 50 calls with one token"
    );
    // Concurrent first calls of a new token share one review.
    let fresh = token(&e.admin, &e.ns_a, "web", &[AUDIENCE]).await;
    let calls: Vec<_> = (0..10)
        .map(|_| e.call(&fresh, Method::GET, "/api/v1/quotas/team-a", None))
        .collect();
    for (status, _) in futures::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(reviews(&e.auth) - start, 2);
}

#[tokio::test]
async fn a_deleted_serviceaccount_is_refused_once_its_cache_entry_expires() {
    let e = env().await;
    let web_b = token(&e.admin, &e.ns_b, "web", &[AUDIENCE]).await;
    let (status, _) = e.consume_as(&web_b, "team-b", 1).await;
    assert_eq!(status, StatusCode::OK);
    Api::<ServiceAccount>::namespaced(e.admin.clone(), &e.ns_b)
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete the ServiceAccount");
    // Cached: still the identity it was (at most 60 s).
    let (status, _) = e.consume_as(&web_b, "team-b", 1).await;
    assert_eq!(status, StatusCode::OK);
    // Once our entry expires, the next review refuses it. The API server
    // keeps its own answers for 10 s (kube-apiserver's token cache), so a
    // review may still say yes for that long: each try moves our clock
    // past our entry again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        e.app.clock.advance(61);
        let (status, answer) = e.consume_as(&web_b, "team-b", 1).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted 30 s after the deletion"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn an_api_server_that_stops_answering_lets_nothing_through() {
    let e = env().await;
    let known = token(&e.admin, &e.ns_a, "web", &[AUDIENCE]).await;
    let unseen = token(&e.admin, &e.ns_a, "web", &[AUDIENCE]).await;
    let (status, _) = e.consume_as(&known, "team-a", 1).await;
    assert_eq!(status, StatusCode::OK);

    e.proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A cached identity keeps working...
    let (status, answer) = e.consume_as(&known, "team-a", 1).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // ...a new token is 503, every time, and counts nothing.
    for _ in 0..2 {
        let (status, answer) = e.consume_as(&unseen, "team-a", 5).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        assert_eq!(answer["error"]["code"], "auth_unavailable");
    }
    // Once the cached entry expires, the known token is 503 too.
    e.app.clock.advance(61);
    let (status, _) = e.consume_as(&known, "team-a", 1).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let used = e.app.quotas.node("team-a").map(|v| v.resources[0].used);
    assert_eq!(used, Some(2), "only the two allowed consumes counted");
}

#[tokio::test]
async fn without_the_right_to_review_tokens_every_call_is_503() {
    let cluster = testenv::cluster();
    let admin = cluster.client().await;
    let ns = testenv::namespace(&admin, "no-delegator").await;
    service_account(&admin, &ns, "quota").await;
    service_account(&admin, &ns, "web").await;
    let server = Kubeconfig::read_from(&cluster.kubeconfig)
        .ok()
        .and_then(|k| {
            k.clusters
                .first()
                .and_then(|c| c.cluster.as_ref())
                .and_then(|c| c.server.clone())
        })
        .expect("server");
    let service_token = token(&admin, &ns, "quota", &[]).await;
    let client = client_with_token(&cluster.kubeconfig, &server, &service_token).await;
    let app = TestApp::new().await;
    let auth = Authenticator::with_reviewer(
        Arc::new(TokenReviewer::new(client, AUDIENCE.into())),
        Admins::default(),
        app.clock.clone(),
        CacheLimits::default(),
    );
    let web = token(&admin, &ns, "web", &[AUDIENCE]).await;
    let req = axum::http::Request::builder()
        .uri("/api/quota")
        .header("authorization", format!("Bearer {web}"))
        .body(axum::body::Body::empty())
        .expect("request");
    let (status, answer) = send_to(&app.quotas, &auth, req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("system:auth-delegator"), "{message}");
}
