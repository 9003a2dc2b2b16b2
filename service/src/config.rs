//! Configuration from environment variables.
//!
//! The names and defaults are the flat tracker's, kept for compatibility;
//! `DATABASE_URL` and `LOG_FORMAT` are new. Every value is checked at startup
//! and a bad one stops the service with an error that names the variable.
//! An empty value counts as unset (charts and `.env` files often template
//! empty strings).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::counter::{MAX_COUNT, gib_to_bytes};

/// The service's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `QUOTA_HOST`: address to listen on.
    pub host: IpAddr,
    /// `QUOTA_PORT`: port to listen on (0 picks a free one).
    pub port: u16,
    /// `QUOTA_DATA_DIR`: directory of the default SQLite file `quotas.db`.
    pub data_dir: PathBuf,
    /// `PERSISTENCE_INTERVAL_SECS`: how often dirty counters are flushed.
    pub persistence_interval: Duration,
    /// `DEFAULT_MESSAGE_LIMIT`: messages per day for tenants without limits.
    pub default_message_limit: u64,
    /// `DEFAULT_BANDWIDTH_LIMIT_GB` (GiB, fractional allowed), in bytes.
    pub default_bandwidth_limit_bytes: u64,
    /// `ENABLE_AUTO_RESET`: start a new period from zero.
    pub enable_auto_reset: bool,
    /// `LOG_LEVEL`: a tracing filter (`RUST_LOG` overrides it).
    pub log_level: String,
    /// `LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `DATABASE_URL`: where state is persisted.
    pub database: DatabaseUrl,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A parsed `DATABASE_URL`.
pub use crate::persistence::Location as DatabaseUrl;

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
        let parse = |var: &'static str, default: &str, reason: &'static str| {
            let value = get(var).unwrap_or_else(|| default.to_owned());
            (value, move |v: &str| err(var, v, reason))
        };

        let (v, bad) = parse(
            "QUOTA_HOST",
            "127.0.0.1",
            "expected an IP address such as 127.0.0.1 or 0.0.0.0",
        );
        let host = match v.trim() {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            h => h.parse().map_err(|_| bad(&v))?,
        };

        let (v, bad) = parse("QUOTA_PORT", "8183", "expected a port number 0-65535");
        let port = v.trim().parse::<u16>().map_err(|_| bad(&v))?;

        let data_dir = PathBuf::from(get("QUOTA_DATA_DIR").unwrap_or_else(|| "data/quota".into()));

        let (v, bad) = parse(
            "PERSISTENCE_INTERVAL_SECS",
            "60",
            "expected whole seconds, 1 or more",
        );
        let secs = v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| bad(&v))?;
        let persistence_interval = Duration::from_secs(secs);

        let (v, bad) = parse(
            "DEFAULT_MESSAGE_LIMIT",
            "50000",
            "expected a whole number of messages, 0 to 9223372036854775807",
        );
        let default_message_limit = v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= MAX_COUNT)
            .ok_or_else(|| bad(&v))?;

        let (v, bad) = parse(
            "DEFAULT_BANDWIDTH_LIMIT_GB",
            "100.0",
            "expected a non-negative number of GiB, such as 100 or 0.5",
        );
        let default_bandwidth_limit_bytes = v
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(gib_to_bytes)
            .ok_or_else(|| bad(&v))?;

        let (v, bad) = parse("ENABLE_AUTO_RESET", "true", "expected true or false");
        let enable_auto_reset = match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad(&v)),
        };

        let log_level = get("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(err(
                "LOG_LEVEL",
                &log_level,
                &format!("not a log filter ({e}); try info, debug or quota_service=debug"),
            ));
        }

        let (v, bad) = parse("LOG_FORMAT", "text", "expected text or json");
        let log_format = match v.trim() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(bad(&v)),
        };

        let database = match get("DATABASE_URL") {
            None => DatabaseUrl::Sqlite(data_dir.join("quotas.db")),
            Some(url) => parse_database_url(&url)?,
        };

        Ok(Config {
            host,
            port,
            data_dir,
            persistence_interval,
            default_message_limit,
            default_bandwidth_limit_bytes,
            enable_auto_reset,
            log_level,
            log_format,
            database,
        })
    }
}

fn err(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        var,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Accepts `sqlite://PATH`, `sqlite:PATH` (PATH relative or absolute, query
/// options ignored) and `postgres://` / `postgresql://` URLs (passed to the
/// driver as they are). `sqlite::memory:` is refused: an in-memory database
/// would silently lose everything at exit.
fn parse_database_url(url: &str) -> Result<DatabaseUrl, ConfigError> {
    // The value is shown in errors: never with its password.
    let shown = crate::persistence::redact(url);
    let bad = |reason: &str| err("DATABASE_URL", &shown, reason);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let parsed = url::Url::parse(url).map_err(|e| bad(&format!("not a URL: {e}")))?;
        if parsed.host_str().is_none_or(str::is_empty) && !url.contains("host=") {
            return Err(bad(
                "expected a host, such as postgres://user:password@db:5432/quotas",
            ));
        }
        return Ok(DatabaseUrl::Postgres(url.to_owned()));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        let scheme = url.split(':').next().unwrap_or_default();
        return Err(bad(&format!(
            "unsupported scheme {scheme:?}: use sqlite://PATH (or leave it unset for QUOTA_DATA_DIR/quotas.db) or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        )));
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(bad(
            "expected a file path, such as sqlite://data/quota/quotas.db",
        ));
    }
    Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_flat_tracker() -> Result<(), ConfigError> {
        let c = with(&[])?;
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!(c.port, 8183);
        assert_eq!(c.data_dir, PathBuf::from("data/quota"));
        assert_eq!(c.persistence_interval, Duration::from_secs(60));
        assert_eq!(c.default_message_limit, 50_000);
        assert_eq!(c.default_bandwidth_limit_bytes, 100 * 1024 * 1024 * 1024);
        assert!(c.enable_auto_reset);
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite("data/quota/quotas.db".into())
        );
        Ok(())
    }

    #[test]
    fn reads_every_variable() -> Result<(), ConfigError> {
        let c = with(&[
            ("QUOTA_HOST", "0.0.0.0"),
            ("QUOTA_PORT", "9000"),
            ("QUOTA_DATA_DIR", "/var/lib/q"),
            ("PERSISTENCE_INTERVAL_SECS", "5"),
            ("DEFAULT_MESSAGE_LIMIT", "7"),
            ("DEFAULT_BANDWIDTH_LIMIT_GB", "0.5"),
            ("ENABLE_AUTO_RESET", "false"),
            ("LOG_LEVEL", "quota_service=debug"),
            ("LOG_FORMAT", "json"),
        ])?;
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.port, 9000);
        assert_eq!(c.persistence_interval, Duration::from_secs(5));
        assert_eq!(c.default_message_limit, 7);
        assert_eq!(c.default_bandwidth_limit_bytes, 512 * 1024 * 1024);
        assert!(!c.enable_auto_reset);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite("/var/lib/q/quotas.db".into())
        );
        Ok(())
    }

    #[test]
    fn empty_values_count_as_unset() -> Result<(), ConfigError> {
        assert_eq!(with(&[("QUOTA_PORT", "")])?.port, 8183);
        Ok(())
    }

    #[test]
    fn database_url_forms() -> Result<(), ConfigError> {
        for (url, path) in [
            ("sqlite://data/x.db", "data/x.db"),
            ("sqlite:///tmp/x.db", "/tmp/x.db"),
            ("sqlite:rel.db?mode=rwc", "rel.db"),
        ] {
            assert_eq!(
                with(&[("DATABASE_URL", url)])?.database,
                DatabaseUrl::Sqlite(path.into())
            );
        }
        for url in [
            "postgres://quota:secret@db:5432/quotas",
            "postgresql://localhost/quotas?sslmode=disable",
        ] {
            assert_eq!(
                with(&[("DATABASE_URL", url)])?.database,
                DatabaseUrl::Postgres(url.into())
            );
        }
        Ok(())
    }

    #[test]
    fn a_bad_postgres_url_is_refused_without_showing_its_password() {
        let Err(e) = with(&[("DATABASE_URL", "postgres://u:hunter2@/quotas")]) else {
            panic!("accepted a URL without a host");
        };
        let msg = e.to_string();
        assert!(
            msg.contains("DATABASE_URL") && !msg.contains("hunter2"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("QUOTA_HOST", "my host"),
            ("QUOTA_PORT", "80000"),
            ("QUOTA_PORT", "http"),
            ("PERSISTENCE_INTERVAL_SECS", "0"),
            ("PERSISTENCE_INTERVAL_SECS", "-5"),
            ("DEFAULT_MESSAGE_LIMIT", "-1"),
            ("DEFAULT_MESSAGE_LIMIT", "1e3"),
            ("DEFAULT_MESSAGE_LIMIT", "9223372036854775808"),
            ("DEFAULT_BANDWIDTH_LIMIT_GB", "NaN"),
            ("DEFAULT_BANDWIDTH_LIMIT_GB", "-1"),
            ("DEFAULT_BANDWIDTH_LIMIT_GB", "1e30"),
            ("ENABLE_AUTO_RESET", "maybe"),
            ("LOG_LEVEL", "info,,=[["),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_URL", "sqlite::memory:"),
            ("DATABASE_URL", "sqlite://"),
        ] {
            match with(&[(var, value)]) {
                Err(e) => {
                    assert_eq!(e.var, var);
                    let msg = e.to_string();
                    assert!(msg.contains(var) && msg.contains(value), "{msg}");
                }
                Ok(_) => panic!("{var}={value} was accepted"),
            }
        }
    }
}
