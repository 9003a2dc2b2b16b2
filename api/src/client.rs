//! A typed client of the v1 API: what the operator uses to reach the service
//! (the sidecar on 127.0.0.1:8183 by default).
//!
//! Errors tell the caller what to do: [`ClientError::Unavailable`] (connect
//! failure, timeout, 5xx: retry later, report `QuotaServiceUnavailable`) or
//! [`ClientError::Api`] (a 4xx with the service's error code, e.g.
//! `does_not_fit` with the shortages in `details`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::v1::{GrantBody, NodeBody, PutBody, SnapshotBody};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("quota service unavailable: {0}")]
    Unavailable(String),
    #[error("quota service refused ({status} {code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        details: Option<serde_json::Value>,
    },
    #[error("unexpected answer from the quota service: {0}")]
    Decode(String),
}

impl ClientError {
    /// The service's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client of one quota service.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
}

/// How the client names itself to the service.
#[derive(Debug, Clone, Default)]
enum Credentials {
    /// No `Authorization` header (a service with `AUTH_MODE=none`).
    #[default]
    None,
    /// A fixed bearer token (static mode).
    Token(Arc<str>),
    /// A bearer token read from this file before every call: a projected
    /// ServiceAccount token, which the kubelet replaces before it expires.
    TokenFile(Arc<PathBuf>),
}

impl Client {
    /// A client of the service at `base_url`, e.g. `http://127.0.0.1:8183`.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| ClientError::Unavailable(e.to_string()))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            credentials: Credentials::None,
        })
    }

    /// Sends `Authorization: Bearer <token>` with every call.
    pub fn with_token(mut self, token: &str) -> Self {
        self.credentials = Credentials::Token(token.trim().into());
        self
    }

    /// Sends the token in `path` with every call, read again each time (a
    /// rotated projected token is used as soon as the kubelet writes it).
    pub fn with_token_file(mut self, path: PathBuf) -> Self {
        self.credentials = Credentials::TokenFile(Arc::new(path));
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Creates or updates a node; returns it and whether it was created.
    pub async fn put_node(
        &self,
        id: &str,
        body: &PutBody,
    ) -> Result<(NodeBody, bool), ClientError> {
        let resp = self
            .send(
                self.http
                    .put(self.url(&format!("/api/v1/quotas/{id}")))
                    .json(body),
            )
            .await?;
        let created = resp.status() == StatusCode::CREATED;
        Ok((decode(resp).await?, created))
    }

    /// The node, or `None` when the service does not know it or it is
    /// deleted (410).
    pub async fn get_node(&self, id: &str) -> Result<Option<NodeBody>, ClientError> {
        match self
            .send(self.http.get(self.url(&format!("/api/v1/quotas/{id}"))))
            .await
        {
            Ok(resp) => Ok(Some(decode(resp).await?)),
            Err(ClientError::Api {
                status: 404 | 410, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Soft-deletes a node (idempotent); `Ok(None)` when it never existed.
    pub async fn delete_node(&self, id: &str) -> Result<Option<NodeBody>, ClientError> {
        match self
            .send(self.http.delete(self.url(&format!("/api/v1/quotas/{id}"))))
            .await
        {
            Ok(resp) => Ok(Some(decode(resp).await?)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The grants on a node: `(subject, role)`.
    pub async fn grants(&self, id: &str) -> Result<Vec<(String, String)>, ClientError> {
        let resp = self
            .send(
                self.http
                    .get(self.url(&format!("/api/v1/quotas/{id}/permissions"))),
            )
            .await?;
        let v: serde_json::Value = decode(resp).await?;
        Ok(v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|g| {
                        Some((
                            g["subject"].as_str()?.to_owned(),
                            g["role"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn grant(&self, id: &str, grant: &GrantBody) -> Result<(), ClientError> {
        let url = self.url(&format!("/api/v1/quotas/{id}/permissions/grant"));
        self.send(self.http.post(url).json(grant)).await.map(drop)
    }

    pub async fn revoke(&self, id: &str, grant: &GrantBody) -> Result<(), ClientError> {
        let url = self.url(&format!("/api/v1/quotas/{id}/permissions/revoke"));
        match self.send(self.http.post(url).json(grant)).await {
            Ok(_) | Err(ClientError::Api { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Nodes changed since `since`.
    pub async fn snapshot(&self, since: u64) -> Result<SnapshotBody, ClientError> {
        let resp = self
            .send(
                self.http
                    .get(self.url(&format!("/api/v1/snapshot?since={since}"))),
            )
            .await?;
        decode(resp).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; any non-2xx answer becomes an error.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let req = match &self.credentials {
            Credentials::None => req,
            Credentials::Token(t) => req.bearer_auth(t),
            Credentials::TokenFile(path) => {
                // A few hundred bytes from a tmpfs: not worth a thread hop.
                let token = std::fs::read_to_string(path.as_ref()).map_err(|e| {
                    ClientError::Unavailable(format!(
                        "cannot read the token file {}: {e}",
                        path.display()
                    ))
                })?;
                req.bearer_auth(token.trim())
            }
        };
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status.is_server_error() {
            let text = resp.text().await.unwrap_or_default();
            return Err(ClientError::Unavailable(format!("{status}: {text}")));
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Err(ClientError::Api {
            status: status.as_u16(),
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            details: body["error"].get("details").cloned(),
        })
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    resp.json()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))
}
