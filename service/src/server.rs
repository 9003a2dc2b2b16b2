//! The service's lifecycle: open, load, listen, flush periodically, and stop
//! without losing anything.
//!
//! ```text
//!  authenticator ─▶ open db ─▶ load tenants ─▶ bind ─▶ serve ─┬─ every interval: flush
//!                                                             └─ SIGTERM/SIGINT: stop accepting,
//!                                                                drain in-flight requests,
//!                                                                final flush, close db, exit
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::clock::SharedClock;
use crate::config::{AuthMode, Config};
use crate::persistence::StoreError;
use crate::quotas::Quotas;

/// Attempts of the final flush before the service gives up and exits non-zero.
const FINAL_FLUSH_ATTEMPTS: u32 = 5;

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The access-control settings cannot be used (a bad tokens file).
    #[error("cannot set up authentication: {0}")]
    Auth(String),
    #[error("cannot open the store: {0}")]
    Store(#[source] StoreError),
    #[error("cannot listen on {addr} (QUOTA_HOST/QUOTA_PORT): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    #[error(
        "final flush failed after {FINAL_FLUSH_ATTEMPTS} attempts; usage since the last flush is lost: {0}"
    )]
    FinalFlush(#[source] StoreError),
}

/// Runs the service until `shutdown` completes, then stops gracefully.
pub async fn run(
    config: Config,
    clock: SharedClock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let started = Instant::now();
    let stop_background = CancellationToken::new();
    let auth = Authenticator::from_config(&config.auth, clock.clone(), stop_background.clone())
        .await
        .map_err(ServerError::Auth)?;
    if auth.mode() == AuthMode::None && !config.host.is_loopback() {
        tracing::warn!(
            host = %config.host,
            "AUTH_MODE=none on an address others can reach: every caller may change every quota; \
             set AUTH_MODE=kubernetes or static"
        );
    } else {
        tracing::info!(
            mode = auth.mode().as_str(),
            admins = config.auth.admins.len(),
            "authentication"
        );
    }
    let quotas = Arc::new(
        Quotas::open(&config, clock)
            .await
            .map_err(ServerError::Store)?,
    );
    tracing::info!(
        store = quotas.database().backend().as_str(),
        database = %quotas.database().location(),
        tenants = quotas.tenant_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state loaded"
    );

    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(addr = %local, "listening");
    // Answers go out at once: with Nagle's algorithm a client that sends
    // several requests before reading (HTTP/1.1 pipelining) waits a delayed
    // ACK (40 ms) for every answer after the first.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });

    let stop_flusher = CancellationToken::new();
    let flusher = quotas.spawn_flusher(config.persistence_interval, stop_flusher.clone());

    axum::serve(listener, crate::http::app(quotas.clone(), auth))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining requests");
        })
        .await
        .map_err(ServerError::Serve)?;

    stop_flusher.cancel();
    stop_background.cancel();
    if let Err(e) = flusher.await {
        tracing::warn!(error = %e, "flusher task ended abnormally");
    }
    final_flush(&quotas).await?;
    quotas.database().close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn final_flush(quotas: &Quotas) -> Result<(), ServerError> {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=FINAL_FLUSH_ATTEMPTS {
        match quotas.flush().await {
            Ok(r) => {
                tracing::info!(
                    usage_rows = r.usage_rows,
                    new_tenants = r.new_tenants,
                    elapsed_ms = r.elapsed.as_millis() as u64,
                    checkpoint_ms = r.checkpoint_elapsed.as_millis() as u64,
                    "final flush done"
                );
                return Ok(());
            }
            Err(e) if attempt == FINAL_FLUSH_ATTEMPTS => return Err(ServerError::FinalFlush(e)),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "final flush failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
