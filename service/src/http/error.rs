//! Errors as the API reports them: `{"error": {"code": "...", "message": "..."}}`
//! with a fitting status code. [`ErrorCode`] is the whole vocabulary: every
//! code and the one status it comes with.
//!
//! Every handler returns `Result<_, AppError>`; rejections of axum's own
//! extractors (bad JSON, wrong content type, too large a body) are converted
//! here too, so no client ever sees a plain-text error.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoResponses, PartialSchema, ToResponse, ToSchema};

use crate::auth::AuthError;
use crate::domain::node::Refusal;
use crate::domain::tenant_id::TenantIdError;
use crate::persistence::StoreError;
use crate::quotas::{self, QuotaError};

/// Defines [`ErrorCode`] from one table: variant, code, status.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal, $status:ident;)*) => {
        /// Every error code the API answers with, and the status it comes
        /// with: the API's error vocabulary in one place.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        // === impl ErrorCode ===

        impl ErrorCode {
            /// Every code (the OpenAPI document's `ErrorCode` enum; the
            /// tests that keep the README in step).
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as the answer's `error.code` says it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status every answer with this code has.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    // The request cannot be read.
    InvalidJson => "invalid_json", BAD_REQUEST;
    /// The body could not be read (the connection failed mid-body).
    UnreadableBody => "invalid_body", BAD_REQUEST;
    InvalidPath => "invalid_path", BAD_REQUEST;
    InvalidQuery => "invalid_query", BAD_REQUEST;
    InvalidId => "invalid_id", BAD_REQUEST;
    InvalidTenantId => "invalid_tenant_id", BAD_REQUEST;
    /// No valid bearer token (with `WWW-Authenticate: Bearer`).
    Unauthenticated => "unauthenticated", UNAUTHORIZED;
    /// Authenticated, but no grant allows the call.
    Forbidden => "forbidden", FORBIDDEN;
    NodeSuspended => "node_suspended", FORBIDDEN;
    NotFound => "not_found", NOT_FOUND;
    NodeNotFound => "node_not_found", NOT_FOUND;
    TenantNotFound => "tenant_not_found", NOT_FOUND;
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED;
    NodeDeleted => "node_deleted", GONE;
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE;
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    // The request conflicts with the current state.
    ParentNotFound => "parent_not_found", CONFLICT;
    DoesNotFit => "does_not_fit", CONFLICT;
    AlreadyExists => "already_exists", CONFLICT;
    ParentImmutable => "parent_immutable", CONFLICT;
    HasChildren => "has_children", CONFLICT;
    WindowInUse => "window_in_use", CONFLICT;
    ResourceInUse => "resource_in_use", CONFLICT;
    ClaimConflict => "claim_conflict", CONFLICT;
    ClaimNotFound => "claim_not_found", CONFLICT;
    GrantNotFound => "grant_not_found", CONFLICT;
    StrictNode => "strict_node", CONFLICT;
    NoWindowToInherit => "no_window_to_inherit", CONFLICT;
    // Refused by what the node holds now: the same request may succeed
    // once its limits change (422 is kept for bodies that never can).
    UnknownResource => "unknown_resource", CONFLICT;
    CapacityResource => "capacity_resource", CONFLICT;
    NotACapacity => "not_a_capacity", CONFLICT;
    CounterOverflow => "counter_overflow", CONFLICT;
    // Read, but not acceptable, whatever the state.
    InvalidBody => "invalid_body", UNPROCESSABLE_ENTITY;
    // Refused for now: `retry_after_secs` says when to try again.
    QuotaExhausted => "quota_exhausted", TOO_MANY_REQUESTS;
    Overcommitted => "overcommitted", TOO_MANY_REQUESTS;
    StoreUnavailable => "store_unavailable", SERVICE_UNAVAILABLE;
    /// The token could not be checked (the API server is unreachable).
    AuthUnavailable => "auth_unavailable", SERVICE_UNAVAILABLE;
}

impl From<quotas::Conflict> for ErrorCode {
    fn from(c: quotas::Conflict) -> Self {
        match c {
            quotas::Conflict::AlreadyExists => ErrorCode::AlreadyExists,
            quotas::Conflict::ParentImmutable => ErrorCode::ParentImmutable,
            quotas::Conflict::HasChildren => ErrorCode::HasChildren,
            quotas::Conflict::WindowInUse => ErrorCode::WindowInUse,
            quotas::Conflict::ResourceInUse => ErrorCode::ResourceInUse,
            quotas::Conflict::ClaimIdTaken => ErrorCode::ClaimConflict,
            quotas::Conflict::ClaimNotFound => ErrorCode::ClaimNotFound,
            quotas::Conflict::GrantNotFound => ErrorCode::GrantNotFound,
            quotas::Conflict::StrictNode => ErrorCode::StrictNode,
            quotas::Conflict::DoesNotFit => ErrorCode::DoesNotFit,
            quotas::Conflict::NoWindowToInherit => ErrorCode::NoWindowToInherit,
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

/// The answer of every error: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    #[schema(value_type = ErrorCode)]
    code: &'a str,
    /// For humans: what was wrong and, where it helps, what to do.
    message: &'a str,
    /// Machine-readable detail: for `does_not_fit`, `shortages` (resource,
    /// requested, available, missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    details: Option<&'a serde_json::Value>,
}

// The vocabulary as the document's `ErrorCode` enum.
impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        let mut codes: Vec<&str> = Vec::new();
        for code in ErrorCode::ALL {
            if !codes.contains(&code.as_str()) {
                codes.push(code.as_str());
            }
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "What went wrong, for programs; each code comes with one status (`invalid_body` with 400 when the body could not be read, 422 when it was read but not acceptable).",
            ))
            .enum_values(Some(codes))
            .into()
    }
}

impl ToSchema for ErrorCode {}

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

impl AppError {
    /// The `error` object of the answer.
    pub fn detail(&self) -> ErrorDetail<'_> {
        ErrorDetail {
            code: self.code,
            message: &self.message,
            details: self.details.as_ref(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.detail(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"edge-quota\""),
            );
        }
        resp
    }
}

// === the error answers in the OpenAPI document ===

/// Defines a reusable response of the document per status: the error
/// body, described by the codes that come with that status.
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => $status:literal;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                    (stringify!($name), error_response($status))
                }
            }

            // Not every response is in a set.
            #[allow(dead_code)]
            impl $name {
                /// `(status, $ref to the component)`, for the sets below.
                fn entry() -> (String, RefOr<utoipa::openapi::Response>) {
                    let path = concat!("#/components/responses/", stringify!($name));
                    ($status.to_string(), RefOr::Ref(Ref::new(path)))
                }
            }
        )*

        /// Every reusable error response, for the document's components.
        pub fn error_responses() -> Vec<(String, RefOr<utoipa::openapi::Response>)> {
            vec![$((stringify!($name).to_owned(), error_response($status))),*]
        }
    };
}

error_responses! {
    /// 400: the request could not be read.
    BadRequest => 400;
    /// 401: no valid bearer token.
    Unauthenticated => 401;
    /// 403: no grant allows the call, or the node is suspended.
    Forbidden => 403;
    /// 404: no such node or tenant.
    NotFound => 404;
    /// 409: the call conflicts with the current state.
    Conflict => 409;
    /// 410: the node is deleted.
    Gone => 410;
    /// 413: the body is too large.
    PayloadTooLarge => 413;
    /// 415: the body is not JSON.
    UnsupportedMediaType => 415;
    /// 422: the body was read but is not acceptable.
    Unprocessable => 422;
    /// 503: the database or the token check is unavailable.
    Unavailable => 503;
}

/// Defines a set of error responses that operations share, named in
/// `#[utoipa::path(responses(...))]` beside the operation's own.
macro_rules! error_sets {
    ($($(#[$doc:meta])* $name:ident => [$($response:ident),*];)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                    BTreeMap::from([$($response::entry()),*])
                }
            }
        )*
    };
}

error_sets! {
    /// Every `/api` call: no valid token; the database or the token check
    /// unavailable.
    CallErrors => [Unauthenticated, Unavailable];
    /// A call with a JSON body.
    BodyErrors => [BadRequest, PayloadTooLarge, UnsupportedMediaType, Unprocessable];
    /// A call on a node named in the path: a bad id, no grant, no such
    /// node, a deleted one.
    NodeErrors => [BadRequest, Forbidden, NotFound, Gone];
}

/// The response of `status`: the error body, with the codes it comes with.
fn error_response(status: u16) -> RefOr<utoipa::openapi::Response> {
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .filter(|c| c.status().as_u16() == status)
        .map(|c| format!("`{}`", c.as_str()))
        .collect();
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut response = ResponseBuilder::new()
        .description(format!("{reason}: {}.", codes.join(", ")))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                .build(),
        );
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("`Bearer realm=\"edge-quota\"`"))
                .build(),
        );
    }
    RefOr::T(response.build())
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => AppError::new(ErrorCode::Unauthenticated, m),
            AuthError::Unavailable(m) => AppError::new(ErrorCode::AuthUnavailable, m),
        }
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
            QuotaError::Forbidden(_) => AppError::new(ErrorCode::Forbidden, message),
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
        for &code in ErrorCode::ALL {
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
        for &code in ErrorCode::ALL {
            if let Some(other) = seen.insert(code.as_str(), code.status())
                && other != code.status()
            {
                assert_eq!(code.as_str(), "invalid_body", "{code:?}");
            }
        }
    }
}
