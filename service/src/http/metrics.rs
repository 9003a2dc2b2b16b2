//! `GET /metrics`: Prometheus text format (version 0.0.4), for the chart's
//! optional ServiceMonitor.
//!
//! Everything here is read from state the service keeps anyway (the counter
//! store's size, the flusher's totals and health), so the request path pays
//! nothing for it.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::auth::{AuthStats, Authenticator};
use crate::quotas::Quotas;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics
///
/// The text format (version 0.0.4), for the chart's ServiceMonitor.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "service",
    security(()),
    responses((status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
pub async fn metrics(
    State(quotas): State<Arc<Quotas>>,
    State(auth): State<Arc<Authenticator>>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&quotas, auth.stats()),
    )
}

/// One sample of a metric without labels.
struct Sample {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: f64,
}

fn render(quotas: &Quotas, auth: AuthStats) -> String {
    let health = quotas.flush_health();
    let stats = quotas.flush_stats();
    let samples = [
        Sample {
            name: "edge_quota_tenants",
            kind: "gauge",
            help: "Tenants and hierarchy nodes held in memory.",
            value: quotas.tenant_count() as f64,
        },
        Sample {
            name: "edge_quota_store_degraded",
            kind: "gauge",
            help: "1 while the last write to the database failed (the service serves from memory).",
            value: if health.degraded { 1.0 } else { 0.0 },
        },
        Sample {
            name: "edge_quota_pending_rows",
            kind: "gauge",
            help: "Usage rows of ended periods or failed flushes waiting for the next flush.",
            value: quotas.pending_rows() as f64,
        },
        Sample {
            name: "edge_quota_flushes_total",
            kind: "counter",
            help: "Flushes that committed.",
            value: stats.flushes as f64,
        },
        Sample {
            name: "edge_quota_store_failures_total",
            kind: "counter",
            help: "Flushes and write-throughs that failed.",
            value: stats.failures as f64,
        },
        Sample {
            name: "edge_quota_flushed_rows_total",
            kind: "counter",
            help: "Usage rows written by committed flushes.",
            value: stats.usage_rows as f64,
        },
        Sample {
            name: "edge_quota_last_flush_duration_seconds",
            kind: "gauge",
            help: "Duration of the last committed flush.",
            value: stats.last_flush_micros as f64 / 1e6,
        },
        Sample {
            name: "edge_quota_flush_seconds_total",
            kind: "counter",
            help: "Time spent in flushes and the SQLite checkpoints after them.",
            value: stats.busy_micros as f64 / 1e6,
        },
        Sample {
            name: "edge_quota_last_flush_timestamp_seconds",
            kind: "gauge",
            help: "Unix time of the last successful write to the database (0: none yet).",
            value: health.last_flush_at.unwrap_or(0) as f64,
        },
        Sample {
            name: "edge_quota_auth_refused_total",
            kind: "counter",
            help: "Calls refused by authentication (401 unauthenticated, 503 auth_unavailable).",
            value: auth.refused as f64,
        },
        Sample {
            name: "edge_quota_auth_token_reviews_total",
            kind: "counter",
            help: "TokenReviews sent to the Kubernetes API (AUTH_MODE=kubernetes).",
            value: auth.token_reviews as f64,
        },
        Sample {
            name: "edge_quota_auth_cached_identities",
            kind: "gauge",
            help: "Token review results held in the cache (AUTH_MODE=kubernetes).",
            value: auth.cached as f64,
        },
        Sample {
            name: "edge_quota_auth_static_tokens",
            kind: "gauge",
            help: "Tokens known from AUTH_TOKENS_FILE (AUTH_MODE=static).",
            value: auth.static_tokens as f64,
        },
    ];
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP edge_quota_build_info The running version.\n# TYPE edge_quota_build_info gauge\nedge_quota_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for s in samples {
        let _ = writeln!(
            out,
            "# HELP {n} {h}\n# TYPE {n} {k}\n{n} {v}",
            n = s.name,
            h = s.help,
            k = s.kind,
            v = s.value
        );
    }
    out
}
