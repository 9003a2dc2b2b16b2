//! The `quota-service` binary: configuration from the environment, logging,
//! then [`quota_service::run`] until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use quota_service::SystemClock;
use quota_service::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quota-service: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quota-service: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(quota_service::run(
        config,
        Arc::new(SystemClock),
        quota_service::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "quota-service stopped with an error");
            eprintln!("quota-service: {e}");
            match e {
                // A setting that cannot be used, like a bad variable.
                quota_service::ServerError::Auth(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// `RUST_LOG` overrides `LOG_LEVEL`.
fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
