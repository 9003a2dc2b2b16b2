//! `GET /healthz` for the kubelet's liveness probe, on `HEALTH_ADDR`.
//!
//! ```text
//!  kubelet ──GET /healthz──▶ 200 {"status":"ok","role":"leader"|"standby"}
//! ```
//!
//! It answers while the process's runtime serves requests: a wedged runtime
//! fails the probe and the pod restarts. Losing the Lease or a controller
//! error already ends the process (see `main.rs`), so there is nothing else
//! to report. There is deliberately no readiness endpoint here: the pod's
//! readiness is the quota service's (the sidecar), because that is what the
//! Service routes traffic to, and a standby operator must not take a healthy
//! quota endpoint out of rotation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// Whether this replica holds the Lease (or runs without election).
#[derive(Debug, Default, Clone)]
pub struct Role(Arc<AtomicBool>);

// === impl Role ===

impl Role {
    pub fn set_leader(&self, leader: bool) {
        self.0.store(leader, Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The health router.
pub fn app(role: Role) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(role)
}

async fn healthz(State(role): State<Role>) -> axum::Json<serde_json::Value> {
    let role = if role.is_leader() {
        "leader"
    } else {
        "standby"
    };
    axum::Json(serde_json::json!({"status": "ok", "role": role}))
}

/// Binds `addr` (an error names it) and serves until `stop`.
pub async fn serve(
    addr: SocketAddr,
    role: Role,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on HEALTH_ADDR={addr}: {e}"))?;
    tracing::info!(%addr, "health endpoint listening");
    Ok(tokio::spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        if let Err(e) = axum::serve(listener, app(role))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("health endpoint stopped: {e}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get_healthz(role: &Role) -> (StatusCode, serde_json::Value) {
        let req = Request::get("/healthz")
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = app(role.clone())
            .oneshot(req)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1024)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}"));
        (status, json)
    }

    #[tokio::test]
    async fn healthz_reports_the_role() {
        let role = Role::default();
        let (status, body) = get_healthz(&role).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["role"], "standby");
        role.set_leader(true);
        assert_eq!(get_healthz(&role).await.1["role"], "leader");
    }
}
