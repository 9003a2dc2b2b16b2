//! The `quota-operator` binary: configuration, logging, leader election,
//! then [`quota_operator::run`] until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use quota_operator::Config;
use quota_operator::Elector;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// How long a graceful stop may take before the process exits anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How long a leader's Lease lasts without renewal.
const LEASE_DURATION: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quota-operator: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quota-operator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("quota-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach Kubernetes: {e}"))?;
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        signal_stop.cancel();
    });
    let role = quota_operator::health::Role::default();
    if let Some(addr) = config.health_addr {
        quota_operator::health::serve(addr, role.clone(), stop.clone()).await?;
    }
    let lost = CancellationToken::new();
    if config.leader_election {
        let elector = Elector::new(
            client.clone(),
            &config.lease_namespace,
            &config.lease_name,
            &config.identity,
            LEASE_DURATION,
        );
        if !elector.acquire(&stop).await {
            return Ok(());
        }
        elector.keep(stop.clone(), lost.clone());
        let (lost, stop) = (lost.clone(), stop.clone());
        tokio::spawn(async move {
            lost.cancelled().await;
            stop.cancel();
        });
    }
    role.set_leader(true);
    // Reconciles in flight may finish; past this deadline the process exits anyway.
    let deadline = {
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_DEADLINE).await;
        }
    };
    tokio::select! {
        r = quota_operator::run(&config, client, stop) => r.map_err(|e| e.to_string())?,
        () = deadline => return Err(format!("did not stop within {SHUTDOWN_DEADLINE:?} of the signal")),
    }
    if lost.is_cancelled() {
        // Exit non-zero so the pod restarts and competes for the Lease again.
        return Err("lost the leader Lease; stopped reconciling".into());
    }
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
