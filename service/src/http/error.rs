//! Errors as the API reports them: `{"error": {"code": "...", "message": "..."}}`
//! with a fitting status code. [`ErrorCode`] is the whole vocabulary: every
//! code and the one status it comes with.
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
use crate::quotas::{Conflict, QuotaError};

/// Every error code the API answers with, and the status it comes with:
/// the API's error vocabulary in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    // 400: the request cannot be read.
    InvalidJson,
    /// The body could not be read or is not the expected JSON shape.
    UnreadableBody,
    InvalidPath,
    InvalidQuery,
    InvalidId,
    InvalidTenantId,
    // 403, 404, 405, 410, 413, 415.
    NodeSuspended,
    NotFound,
    NodeNotFound,
    TenantNotFound,
    MethodNotAllowed,
    NodeDeleted,
    PayloadTooLarge,
    UnsupportedMediaType,
    // 409: the request conflicts with the current state.
    ParentNotFound,
    DoesNotFit,
    AlreadyExists,
    ParentImmutable,
    HasChildren,
    WindowInUse,
    ResourceInUse,
    ClaimConflict,
    ClaimNotFound,
    GrantNotFound,
    StrictNode,
    // 422: read, but not acceptable.
    InvalidBody,
    UnknownResource,
    CapacityResource,
    NotACapacity,
    CounterOverflow,
    // 429: refused for now; `retry_after_secs` says when to try again.
    QuotaExhausted,
    Overcommitted,
    // 503.
    StoreUnavailable,
}

// === impl ErrorCode ===

impl ErrorCode {
    /// Every code, for the tests that keep the docs in step.
    #[cfg(test)]
    const ALL: [ErrorCode; 33] = {
        use ErrorCode::*;
        [
            InvalidJson,
            UnreadableBody,
            InvalidPath,
            InvalidQuery,
            InvalidId,
            InvalidTenantId,
            NodeSuspended,
            NotFound,
            NodeNotFound,
            TenantNotFound,
            MethodNotAllowed,
            NodeDeleted,
            PayloadTooLarge,
            UnsupportedMediaType,
            ParentNotFound,
            DoesNotFit,
            AlreadyExists,
            ParentImmutable,
            HasChildren,
            WindowInUse,
            ResourceInUse,
            ClaimConflict,
            ClaimNotFound,
            GrantNotFound,
            StrictNode,
            InvalidBody,
            UnknownResource,
            CapacityResource,
            NotACapacity,
            CounterOverflow,
            QuotaExhausted,
            Overcommitted,
            StoreUnavailable,
        ]
    };

    /// The code as the answer's `error.code` says it.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            UnreadableBody | InvalidBody => "invalid_body",
            InvalidPath => "invalid_path",
            InvalidQuery => "invalid_query",
            InvalidId => "invalid_id",
            InvalidTenantId => "invalid_tenant_id",
            NodeSuspended => "node_suspended",
            NotFound => "not_found",
            NodeNotFound => "node_not_found",
            TenantNotFound => "tenant_not_found",
            MethodNotAllowed => "method_not_allowed",
            NodeDeleted => "node_deleted",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            ParentNotFound => "parent_not_found",
            DoesNotFit => "does_not_fit",
            AlreadyExists => "already_exists",
            ParentImmutable => "parent_immutable",
            HasChildren => "has_children",
            WindowInUse => "window_in_use",
            ResourceInUse => "resource_in_use",
            ClaimConflict => "claim_conflict",
            ClaimNotFound => "claim_not_found",
            GrantNotFound => "grant_not_found",
            StrictNode => "strict_node",
            UnknownResource => "unknown_resource",
            CapacityResource => "capacity_resource",
            NotACapacity => "not_a_capacity",
            CounterOverflow => "counter_overflow",
            QuotaExhausted => "quota_exhausted",
            Overcommitted => "overcommitted",
            StoreUnavailable => "store_unavailable",
        }
    }

    /// The HTTP status every answer with this code has.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidJson | UnreadableBody | InvalidPath | InvalidQuery | InvalidId
            | InvalidTenantId => StatusCode::BAD_REQUEST,
            NodeSuspended => StatusCode::FORBIDDEN,
            NotFound | NodeNotFound | TenantNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NodeDeleted => StatusCode::GONE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ParentNotFound | DoesNotFit | AlreadyExists | ParentImmutable | HasChildren
            | WindowInUse | ResourceInUse | ClaimConflict | ClaimNotFound | GrantNotFound
            | StrictNode => StatusCode::CONFLICT,
            InvalidBody | UnknownResource | CapacityResource | NotACapacity | CounterOverflow => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            QuotaExhausted | Overcommitted => StatusCode::TOO_MANY_REQUESTS,
            StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<Conflict> for ErrorCode {
    fn from(c: Conflict) -> Self {
        match c {
            Conflict::AlreadyExists => ErrorCode::AlreadyExists,
            Conflict::ParentImmutable => ErrorCode::ParentImmutable,
            Conflict::HasChildren => ErrorCode::HasChildren,
            Conflict::WindowInUse => ErrorCode::WindowInUse,
            Conflict::ResourceInUse => ErrorCode::ResourceInUse,
            Conflict::ClaimIdTaken => ErrorCode::ClaimConflict,
            Conflict::ClaimNotFound => ErrorCode::ClaimNotFound,
            Conflict::GrantNotFound => ErrorCode::GrantNotFound,
            Conflict::StrictNode => ErrorCode::StrictNode,
            Conflict::DoesNotFit => ErrorCode::DoesNotFit,
        }
    }
}

impl From<&Refusal> for ErrorCode {
    fn from(r: &Refusal) -> Self {
        match r {
            Refusal::Suspended { .. } => ErrorCode::NodeSuspended,
            Refusal::Deleted { .. } => ErrorCode::NodeDeleted,
            Refusal::UnknownResource { .. } => ErrorCode::UnknownResource,
            Refusal::Capacity { .. } => ErrorCode::CapacityResource,
            Refusal::NotCapacity { .. } => ErrorCode::NotACapacity,
            Refusal::Exhausted { .. } => ErrorCode::QuotaExhausted,
            Refusal::Overcommitted { .. } => ErrorCode::Overcommitted,
            Refusal::Overflow { .. } => ErrorCode::CounterOverflow,
        }
    }
}

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
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            status: code.status(),
            code: code.as_str(),
            message: message.into(),
            details: None,
        }
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
        let code = match &r {
            JsonRejection::JsonSyntaxError(_) => ErrorCode::InvalidJson,
            JsonRejection::JsonDataError(_) => ErrorCode::InvalidBody,
            JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::UnreadableBody,
        };
        AppError::new(code, r.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::new(ErrorCode::InvalidPath, r.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::new(ErrorCode::InvalidQuery, r.body_text())
    }
}

impl From<TenantIdError> for AppError {
    fn from(e: TenantIdError) -> Self {
        AppError::new(ErrorCode::InvalidTenantId, e.to_string())
    }
}

impl From<QuotaError> for AppError {
    fn from(e: QuotaError) -> Self {
        let message = e.to_string();
        match e {
            QuotaError::NotFound(_) => AppError::new(ErrorCode::NodeNotFound, message),
            QuotaError::Invalid(_) => AppError::new(ErrorCode::InvalidBody, message),
            QuotaError::ParentNotFound(_) => AppError::new(ErrorCode::ParentNotFound, message),
            QuotaError::DoesNotFit { shortages, .. } => {
                let mut err = AppError::new(ErrorCode::DoesNotFit, message);
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
            QuotaError::Conflict { kind, .. } => AppError::new(kind.into(), message),
            QuotaError::Refused(r) => r.into(),
            QuotaError::Store(e) => e.into(),
        }
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        AppError::new(ErrorCode::from(&r), r.to_string())
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store unavailable for a write-through call");
        AppError::new(
            ErrorCode::StoreUnavailable,
            format!("the database could not be written; nothing was changed ({e})"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_code_with_its_status() {
        let readme = include_str!("../../../README.md");
        let mut missing = Vec::new();
        for code in ErrorCode::ALL
            .into_iter()
            .chain([ErrorCode::StoreUnavailable])
        {
            let (status, name) = (code.status().as_u16(), code.as_str());
            let row = format!("| {status} | `{name}` |");
            let inline = format!("`{status} {name}`");
            if !readme.contains(&row) && !readme.contains(&inline) {
                missing.push(format!("{status} {name}"));
            }
        }
        assert!(missing.is_empty(), "README.md does not list: {missing:?}");
    }

    #[test]
    fn one_code_one_status_but_an_unreadable_body() {
        let mut seen = std::collections::BTreeMap::new();
        for code in ErrorCode::ALL {
            if let Some(other) = seen.insert(code.as_str(), code.status())
                && other != code.status()
            {
                assert_eq!(code.as_str(), "invalid_body", "{code:?}");
            }
        }
    }
}
