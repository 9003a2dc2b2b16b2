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

use crate::domain::counter::Overflow;
use crate::domain::tenant_id::TenantIdError;
use crate::persistence::StoreError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
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
        let message = match code {
            "payload_too_large" => format!(
                "request body is larger than {} bytes",
                super::MAX_BODY_BYTES
            ),
            "unsupported_media_type" => "expected Content-Type: application/json".to_owned(),
            _ => r.body_text(),
        };
        AppError::new(status, code, message)
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

impl From<Overflow> for AppError {
    fn from(e: Overflow) -> Self {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "counter_overflow",
            e.to_string(),
        )
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
