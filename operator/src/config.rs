//! The operator's settings, from environment variables.

use std::net::SocketAddr;
use std::time::Duration;

/// Settings; see the README's operator configuration table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `QUOTA_SERVICE_URL`: the quota service (default: the sidecar).
    pub service_url: String,
    /// `QUOTA_SERVICE_TOKEN_FILE`: a bearer token for the service, read
    /// before every call (a projected ServiceAccount token with the
    /// service's audience); unset: no token (a service without auth).
    pub service_token_file: Option<std::path::PathBuf>,
    /// `SYNC_INTERVAL_SECS`: how often usage is pulled into status (default 5).
    pub sync_interval: Duration,
    /// `LOG_LEVEL` (default info; `RUST_LOG` overrides).
    pub log_level: String,
    /// `LEADER_ELECTION` (default true): only the Lease holder reconciles.
    pub leader_election: bool,
    /// `LEASE_NAMESPACE` (default `POD_NAMESPACE`, else `default`).
    pub lease_namespace: String,
    /// `LEASE_NAME` (default `edge-quota-operator`).
    pub lease_name: String,
    /// `POD_NAME` (default the hostname): this replica's identity in the Lease.
    pub identity: String,
    /// `HEALTH_ADDR` (default unset: no listener): where `/healthz` is
    /// served for the kubelet's liveness probe (the chart sets `0.0.0.0:8081`).
    pub health_addr: Option<SocketAddr>,
}

/// A bad setting, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let service_url =
            get("QUOTA_SERVICE_URL").unwrap_or_else(|| "http://127.0.0.1:8183".into());
        if !(service_url.starts_with("http://") || service_url.starts_with("https://")) {
            return Err(ConfigError {
                var: "QUOTA_SERVICE_URL",
                value: service_url,
                reason: "expected an http:// or https:// URL",
            });
        }
        let secs = get("SYNC_INTERVAL_SECS").unwrap_or_else(|| "5".into());
        let sync = secs
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s >= 1 && *s <= 3600)
            .ok_or(ConfigError {
                var: "SYNC_INTERVAL_SECS",
                value: secs.clone(),
                reason: "expected whole seconds, 1 to 3600",
            })?;
        let le = get("LEADER_ELECTION").unwrap_or_else(|| "true".into());
        let leader_election = match le.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                return Err(ConfigError {
                    var: "LEADER_ELECTION",
                    value: le,
                    reason: "expected true or false",
                });
            }
        };
        let health_addr = match get("HEALTH_ADDR") {
            None => None,
            Some(v) => Some(v.trim().parse::<SocketAddr>().map_err(|_| ConfigError {
                var: "HEALTH_ADDR",
                value: v.clone(),
                reason: "expected an address and port, such as 0.0.0.0:8081",
            })?),
        };
        let identity = get("POD_NAME")
            .or_else(|| get("HOSTNAME"))
            .unwrap_or_else(|| format!("quota-operator-{}", std::process::id()));
        Ok(Config {
            service_url,
            service_token_file: get("QUOTA_SERVICE_TOKEN_FILE").map(std::path::PathBuf::from),
            sync_interval: Duration::from_secs(sync),
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            leader_election,
            lease_namespace: get("LEASE_NAMESPACE")
                .or_else(|| get("POD_NAMESPACE"))
                .unwrap_or_else(|| "default".into()),
            lease_name: get("LEASE_NAME").unwrap_or_else(|| "edge-quota-operator".into()),
            identity,
            health_addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_and_errors() {
        let c = with(&[("POD_NAME", "op-0")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.service_url, "http://127.0.0.1:8183");
        assert_eq!(c.sync_interval, Duration::from_secs(5));
        assert!(c.leader_election);
        assert_eq!(c.health_addr, None);
        assert_eq!(
            (c.lease_namespace.as_str(), c.identity.as_str()),
            ("default", "op-0")
        );
        let h = with(&[("HEALTH_ADDR", "0.0.0.0:8081")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.health_addr.map(|a| a.port()), Some(8081));
        for (k, v) in [
            ("SYNC_INTERVAL_SECS", "0"),
            ("SYNC_INTERVAL_SECS", "x"),
            ("QUOTA_SERVICE_URL", "localhost:8183"),
            ("LEADER_ELECTION", "maybe"),
            ("HEALTH_ADDR", "8081"),
        ] {
            let e = with(&[(k, v)])
                .err()
                .unwrap_or_else(|| panic!("{k}={v} accepted"));
            assert!(e.to_string().contains(k), "{e}");
        }
    }
}
