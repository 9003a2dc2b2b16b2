//! The baseline of `make bench`: the least an HTTP JSON service can do for
//! `POST /api/quota/increment` on this machine with the same stack (tokio,
//! hyper, axum, serde_json, DashMap): parse the same body, bump one DashMap
//! entry, answer with a small JSON object. The quota service's figures are
//! reported as ratios to this one, measured in the same run.
//!
//! ```text
//!  wrk ──POST /api/quota/increment {"tenant_id":..,"message_count":..}──▶ parse ─▶ DashMap += n ─▶ {"tenant_id":..,"message_count":total}
//!  bench runner ──GET /api/quota/{tenant_id}──▶ {"message_count": total} (checked against wrk's count)
//! ```
//!
//! `BASELINE_ADDR` (default 127.0.0.1:8199); worker threads from
//! `TOKIO_WORKER_THREADS` (tokio's own variable), like the quota service.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

type Counts = Arc<DashMap<String, u64>>;

#[derive(Deserialize)]
struct Increment {
    tenant_id: String,
    message_count: Option<u64>,
    #[allow(dead_code)]
    bytes_sent: Option<u64>,
}

#[derive(Serialize)]
struct Counted {
    tenant_id: String,
    message_count: u64,
}

async fn increment(State(counts): State<Counts>, Json(req): Json<Increment>) -> Json<Counted> {
    let n = req.message_count.unwrap_or(1);
    let total = {
        let mut e = counts.entry(req.tenant_id.clone()).or_insert(0);
        *e = e.saturating_add(n);
        *e
    };
    Json(Counted {
        tenant_id: req.tenant_id,
        message_count: total,
    })
}

async fn count(State(counts): State<Counts>, Path(tenant_id): Path<String>) -> Json<Counted> {
    let message_count = counts.get(&tenant_id).map(|e| *e.value()).unwrap_or(0);
    Json(Counted {
        tenant_id,
        message_count,
    })
}

fn main() -> std::process::ExitCode {
    let addr = std::env::var("BASELINE_ADDR").unwrap_or_else(|_| "127.0.0.1:8199".into());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-baseline: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?
            // As the quota service does.
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        let app = Router::new()
            .route("/api/quota/increment", post(increment))
            .route("/api/quota/{tenant_id}", get(count))
            .with_state(Counts::default());
        eprintln!("bench-baseline: listening on {addr}");
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-baseline: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
