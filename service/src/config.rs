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
    /// `RATELIMIT_FIELDS`: answer a counted consume with the IETF
    /// `RateLimit-Policy` and `RateLimit` fields (refusals always carry
    /// `RateLimit`). Off by default: they cost about a tenth of a consume.
    pub ratelimit_fields: bool,
    /// `LOG_LEVEL`: a tracing filter (`RUST_LOG` overrides it).
    pub log_level: String,
    /// `LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `DATABASE_URL`: where state is persisted.
    pub database: DatabaseUrl,
    /// `AUTH_*`: how callers authenticate, and who is an admin of every node.
    pub auth: AuthConfig,
}

/// The access-control settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `AUTH_MODE`: `none`, `static` or `kubernetes`.
    pub mode: AuthMode,
    /// `AUTH_TOKENS_FILE`: the static tokens (required by `static`).
    pub tokens_file: Option<PathBuf>,
    /// `AUTH_AUDIENCE`: the audience a ServiceAccount token must be minted
    /// for (`kubernetes`).
    pub audience: String,
    /// `AUTH_ADMINS`: subjects and `group:NAME` entries that own every node
    /// (comma-separated).
    pub admins: Vec<String>,
}

/// How bearer tokens are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No checks: every caller is an admin (local development only).
    None,
    /// Tokens listed in `AUTH_TOKENS_FILE`.
    Static,
    /// ServiceAccount tokens, checked with the TokenReview API.
    Kubernetes,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Static => "static",
            AuthMode::Kubernetes => "kubernetes",
        }
    }
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
        let parse_bool = |var: &'static str, default: bool| {
            let (v, bad) = parse(
                var,
                if default { "true" } else { "false" },
                "expected true or false",
            );
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(bad(&v)),
            }
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

        let enable_auto_reset = parse_bool("ENABLE_AUTO_RESET", true)?;
        let ratelimit_fields = parse_bool("RATELIMIT_FIELDS", false)?;

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

        let auth = parse_auth(host, &get)?;

        Ok(Config {
            host,
            port,
            data_dir,
            persistence_interval,
            default_message_limit,
            default_bandwidth_limit_bytes,
            enable_auto_reset,
            ratelimit_fields,
            log_level,
            log_format,
            database,
            auth,
        })
    }
}

/// `AUTH_MODE` defaults to `none` only on a loopback address: a service
/// that others can reach never starts open by omission.
fn parse_auth(
    host: IpAddr,
    get: &impl Fn(&'static str) -> Option<String>,
) -> Result<AuthConfig, ConfigError> {
    let mode = match get("AUTH_MODE").as_deref().map(str::trim) {
        None if host.is_loopback() => AuthMode::None,
        None => {
            return Err(err(
                "AUTH_MODE",
                "",
                &format!(
                    "required when QUOTA_HOST ({host}) is not a loopback address: \
                     set AUTH_MODE=kubernetes (ServiceAccount tokens) or static \
                     (AUTH_TOKENS_FILE), or none to let every caller in"
                ),
            ));
        }
        Some("none") => AuthMode::None,
        Some("static") => AuthMode::Static,
        Some("kubernetes") => AuthMode::Kubernetes,
        Some(other) => {
            return Err(err(
                "AUTH_MODE",
                other,
                "expected none, static or kubernetes",
            ));
        }
    };
    let tokens_file = get("AUTH_TOKENS_FILE").map(PathBuf::from);
    if mode == AuthMode::Static && tokens_file.is_none() {
        return Err(err(
            "AUTH_TOKENS_FILE",
            "",
            "required with AUTH_MODE=static: a YAML list of {token, subject, groups}",
        ));
    }
    let audience = get("AUTH_AUDIENCE").unwrap_or_else(|| "edge-quota".into());
    let audience = audience.trim().to_owned();
    if audience
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(err(
            "AUTH_AUDIENCE",
            &audience,
            "expected one audience name without spaces",
        ));
    }
    let raw_admins = get("AUTH_ADMINS").unwrap_or_default();
    let mut admins = Vec::new();
    for entry in raw_admins
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if entry == "group:" || entry.chars().any(char::is_control) {
            return Err(err(
                "AUTH_ADMINS",
                &raw_admins,
                "expected comma-separated subjects or group:NAME entries",
            ));
        }
        admins.push(entry.to_owned());
    }
    Ok(AuthConfig {
        mode,
        tokens_file,
        audience,
        admins,
    })
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
        assert!(!c.ratelimit_fields);
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite("data/quota/quotas.db".into())
        );
        assert_eq!(c.auth.mode, AuthMode::None);
        assert_eq!(c.auth.audience, "edge-quota");
        assert!(c.auth.admins.is_empty());
        Ok(())
    }

    #[test]
    fn a_public_address_needs_an_auth_mode() -> Result<(), ConfigError> {
        let Err(e) = with(&[("QUOTA_HOST", "0.0.0.0")]) else {
            panic!("started open on 0.0.0.0 without AUTH_MODE");
        };
        assert_eq!(e.var, "AUTH_MODE");
        assert!(e.to_string().contains("AUTH_MODE"), "{e}");
        // Said explicitly, none is accepted (the binary warns).
        let c = with(&[("QUOTA_HOST", "0.0.0.0"), ("AUTH_MODE", "none")])?;
        assert_eq!(c.auth.mode, AuthMode::None);
        // Loopback in either family defaults to none.
        assert_eq!(with(&[("QUOTA_HOST", "::1")])?.auth.mode, AuthMode::None);
        Ok(())
    }

    #[test]
    fn auth_settings() -> Result<(), ConfigError> {
        let c = with(&[
            ("QUOTA_HOST", "10.0.0.5"),
            ("AUTH_MODE", "kubernetes"),
            ("AUTH_AUDIENCE", "quota.example"),
            (
                "AUTH_ADMINS",
                "system:serviceaccount:edge-quota:operator, group:quota-admins,",
            ),
        ])?;
        assert_eq!(c.auth.mode, AuthMode::Kubernetes);
        assert_eq!(c.auth.audience, "quota.example");
        assert_eq!(
            c.auth.admins,
            [
                "system:serviceaccount:edge-quota:operator",
                "group:quota-admins"
            ]
        );
        let c = with(&[
            ("AUTH_MODE", "static"),
            ("AUTH_TOKENS_FILE", "/etc/q/tokens.yaml"),
        ])?;
        assert_eq!(
            c.auth.tokens_file,
            Some(PathBuf::from("/etc/q/tokens.yaml"))
        );
        Ok(())
    }

    #[test]
    fn reads_every_variable() -> Result<(), ConfigError> {
        let c = with(&[
            ("QUOTA_HOST", "0.0.0.0"),
            ("AUTH_MODE", "none"),
            ("QUOTA_PORT", "9000"),
            ("QUOTA_DATA_DIR", "/var/lib/q"),
            ("PERSISTENCE_INTERVAL_SECS", "5"),
            ("DEFAULT_MESSAGE_LIMIT", "7"),
            ("DEFAULT_BANDWIDTH_LIMIT_GB", "0.5"),
            ("ENABLE_AUTO_RESET", "false"),
            ("RATELIMIT_FIELDS", "on"),
            ("LOG_LEVEL", "quota_service=debug"),
            ("LOG_FORMAT", "json"),
        ])?;
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.port, 9000);
        assert_eq!(c.persistence_interval, Duration::from_secs(5));
        assert_eq!(c.default_message_limit, 7);
        assert_eq!(c.default_bandwidth_limit_bytes, 512 * 1024 * 1024);
        assert!(!c.enable_auto_reset);
        assert!(c.ratelimit_fields);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite("/var/lib/q/quotas.db".into())
        );
        Ok(())
    }

    #[test]
    fn static_mode_needs_its_tokens_file() {
        let Err(e) = with(&[("AUTH_MODE", "static")]) else {
            panic!("static mode without a tokens file");
        };
        assert_eq!(e.var, "AUTH_TOKENS_FILE");
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
            ("RATELIMIT_FIELDS", "sometimes"),
            ("LOG_LEVEL", "info,,=[["),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_URL", "sqlite::memory:"),
            ("DATABASE_URL", "sqlite://"),
            ("AUTH_MODE", "oauth"),
            ("AUTH_AUDIENCE", "a b"),
            ("AUTH_ADMINS", "root,group:"),
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
