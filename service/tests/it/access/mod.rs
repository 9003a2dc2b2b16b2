//! Access control through the real router and a real database, in static
//! mode (tokens from a real file): who may call what on which node, over
//! both APIs; that a refused call changes nothing; the tokens file's
//! rotation. Kubernetes mode, with real ServiceAccount tokens and a real
//! API server, is `operator/tests/access.rs`.
//!
//! The tree every test starts from:
//!
//! ```text
//!   org      group:acme-admins admin            (alice is in acme-admins)
//!   ├── team-a   group:system:serviceaccounts:team-a reporter
//!   │            carol owner
//!   └── team-b   system:serviceaccount:team-b:web reporter
//!   flat-a   (flat tenant) system:serviceaccount:team-a:web reporter, dave owner
//! ```

mod generated;
mod kubernetes;
mod matrix;
mod tokens;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use quota_service::{Admins, Authenticator, StaticTokens};
use serde_json::{Value, json};

use crate::common::{TestApp, bearer, request, send_to};

/// The tokens of the test identities.
pub const ROOT: &str = "root-token-0123456789";
pub const ALICE: &str = "alice-token-0123456789";
pub const CAROL: &str = "carol-token-0123456789";
pub const DAVE: &str = "dave-token-01234567890";
pub const WEB_A: &str = "web-a-token-0123456789";
pub const WEB_B: &str = "web-b-token-0123456789";
pub const MALLORY: &str = "mallory-token-0123456789";

pub const TOKENS_FILE: &str = r#"
- token: root-token-0123456789
  subject: root
- token: alice-token-0123456789
  subject: alice
  groups: [acme-admins]
- token: carol-token-0123456789
  subject: carol
- token: dave-token-01234567890
  subject: dave
- token: web-a-token-0123456789
  subject: system:serviceaccount:team-a:web
  groups: [system:serviceaccounts:team-a, system:serviceaccounts, system:authenticated]
- token: web-b-token-0123456789
  subject: system:serviceaccount:team-b:web
  groups: [system:serviceaccounts:team-b, system:serviceaccounts, system:authenticated]
- token: mallory-token-0123456789
  subject: mallory
"#;

/// The service with static tokens, and the tree above.
pub struct Secured {
    pub app: TestApp,
    pub auth: Arc<Authenticator>,
    pub tokens: Arc<StaticTokens>,
    pub tokens_path: std::path::PathBuf,
}

impl Secured {
    pub async fn new() -> Self {
        let app = TestApp::new().await;
        let tokens_path = app.dir.path().join("tokens.yaml");
        std::fs::write(&tokens_path, TOKENS_FILE).expect("write the tokens file");
        let tokens = StaticTokens::load(tokens_path.clone(), Admins::new(vec!["root".into()]))
            .expect("load the tokens file");
        let auth = Authenticator::with_static(tokens.clone());
        let s = Secured {
            app,
            auth,
            tokens,
            tokens_path,
        };
        s.build_tree().await;
        s
    }

    async fn build_tree(&self) {
        let ok = |r: (StatusCode, Value)| assert!(r.0.is_success(), "{}", r.1);
        ok(self
            .call(
                ROOT,
                Method::PUT,
                "/api/v1/quotas/org",
                Some(json!({"limits": {"messages": {"max": 1000, "window": "day"}}})),
            )
            .await);
        for (child, max) in [("team-a", 300), ("team-b", 300)] {
            ok(self
                .call(
                    ROOT,
                    Method::POST,
                    "/api/v1/quotas/org/allocate",
                    Some(json!({"id": child, "limits": {"messages": {"max": max}}})),
                )
                .await);
        }
        ok(self
            .call(
                ROOT,
                Method::POST,
                "/api/quota/increment",
                Some(json!({"tenant_id": "flat-a", "message_count": 1})),
            )
            .await);
        for (node, subject, role) in [
            ("org", "group:acme-admins", "admin"),
            ("team-a", "group:system:serviceaccounts:team-a", "reporter"),
            ("team-a", "carol", "owner"),
            ("team-b", "system:serviceaccount:team-b:web", "reporter"),
            ("flat-a", "system:serviceaccount:team-a:web", "reporter"),
            ("flat-a", "dave", "owner"),
        ] {
            ok(self
                .call(
                    ROOT,
                    Method::POST,
                    &format!("/api/v1/quotas/{node}/permissions/grant"),
                    Some(json!({"subject": subject, "role": role})),
                )
                .await);
        }
    }

    /// One call with `token` (`""`: no Authorization header).
    pub async fn call(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_raw(
            bearer(token).as_deref(),
            method,
            uri,
            body.map(|b| b.to_string()).as_deref(),
        )
        .await
    }

    /// One call with this Authorization header (if any) and raw body.
    pub async fn call_raw(
        &self,
        authorization: Option<&str>,
        method: Method,
        uri: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let req = request(method, uri, authorization, body);
        send_to(&self.app.quotas, &self.auth, req).await
    }

    /// Everything a call could change, as root sees it: every node (v1),
    /// every flat tenant, and each node's grants and audit trail.
    pub async fn state(&self) -> Value {
        let nodes = self
            .call(ROOT, Method::GET, "/api/v1/quotas?limit=1000", None)
            .await;
        let flat = self.call(ROOT, Method::GET, "/api/quota", None).await;
        let mut per_node = serde_json::Map::new();
        for n in nodes.1["items"].as_array().cloned().unwrap_or_default() {
            let id = n["id"].as_str().unwrap_or_default().to_owned();
            let grants = self
                .call(
                    ROOT,
                    Method::GET,
                    &format!("/api/v1/quotas/{id}/permissions"),
                    None,
                )
                .await;
            let audit = self
                .call(
                    ROOT,
                    Method::GET,
                    &format!("/api/v1/quotas/{id}/audit?limit=1000"),
                    None,
                )
                .await;
            per_node.insert(id, json!({"grants": grants.1, "audit": audit.1}));
        }
        json!({"nodes": nodes.1, "flat": flat.1, "per_node": per_node})
    }
}
