//! Errors as the API reports them: `{"error": {"code": "...", "message": "..."}}`
//! with a fitting status code.
//!
//! Every handler returns `Result<_, AppError>`; rejections of axum's own
//! extractors (bad JSON, wrong content type, too large a body) are converted
//! here too, so no client ever sees a plain-text error.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::node::Refusal;
use crate::domain::tenant_id::TenantIdError;
use crate::persistence::StoreError;
use crate::quotas::QuotaError;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra machine-readable detail (e.g. what is missing for a 409).
    pub details: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                details: self.details.as_ref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        let (status, code) = match &r {
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_body"),
        };
        AppError::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::bad_request("invalid_path", r.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::bad_request("invalid_query", r.body_text())
    }
}

impl From<TenantIdError> for AppError {
    fn from(e: TenantIdError) -> Self {
        AppError::bad_request("invalid_tenant_id", e.to_string())
    }
}

impl From<QuotaError> for AppError {
    fn from(e: QuotaError) -> Self {
        let message = e.to_string();
        match e {
            QuotaError::NotFound(_) => AppError::not_found("node_not_found", message),
            QuotaError::Invalid(_) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
            }
            QuotaError::ParentNotFound(_) => {
                AppError::new(StatusCode::CONFLICT, "parent_not_found", message)
            }
            QuotaError::DoesNotFit { shortages, .. } => {
                let mut err = AppError::new(StatusCode::CONFLICT, "does_not_fit", message);
                err.details = Some(serde_json::json!({
                    "shortages": shortages.iter().map(|s| serde_json::json!({
                        "resource": s.resource,
                        "requested": s.requested,
                        "available": s.available,
                        "missing": s.requested.saturating_sub(s.available),
                    })).collect::<Vec<_>>()
                }));
                err
            }
            QuotaError::Conflict { code, .. } => AppError::new(StatusCode::CONFLICT, code, message),
            QuotaError::Refused(r) => r.into(),
            QuotaError::Store(e) => e.into(),
        }
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        let message = r.to_string();
        let (status, code) = match &r {
            Refusal::Suspended { .. } => (StatusCode::FORBIDDEN, "node_suspended"),
            Refusal::Deleted { .. } => (StatusCode::GONE, "node_deleted"),
            Refusal::UnknownResource { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown_resource")
            }
            Refusal::Capacity { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "capacity_resource"),
            Refusal::NotCapacity { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "not_a_capacity"),
            Refusal::Exhausted { .. } => (StatusCode::TOO_MANY_REQUESTS, "quota_exhausted"),
            Refusal::Overcommitted { .. } => (StatusCode::TOO_MANY_REQUESTS, "overcommitted"),
            Refusal::Overflow { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "counter_overflow"),
        };
        AppError::new(status, code, message)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store unavailable for a write-through call");
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the database could not be written; nothing was changed ({e})"),
        )
    }
}
