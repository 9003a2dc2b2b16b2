//! Extractors whose rejections answer in the API's error format.
//!
//! [`ApiJson`] also enforces the body limit itself, per extractor (`LIMIT`),
//! instead of a `DefaultBodyLimit` layer on the router: `Router::layer` wraps
//! every route in one more boxed service, a cost on every request
//! (docs/perf-history/02-second-pass-callgrind.md).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::MAX_BODY_BYTES;
use super::error::{AppError, ErrorCode};
use super::strict_json;

/// A JSON body of at most `LIMIT` bytes, read strictly
/// ([`strict_json`]), rejecting with [`AppError`]: 415 without a JSON
/// content type, 413 past the limit, 400 for malformed JSON and 422 for
/// JSON of the wrong shape (an array for an object, an unknown field, a
/// key twice, a `null`), naming the field and the position.
#[derive(Debug)]
pub struct ApiJson<T, const LIMIT: usize = MAX_BODY_BYTES>(pub T);

/// `axum::extract::Path`, rejecting with [`AppError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query`, rejecting with [`AppError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct ApiQuery<T>(pub T);

// === impl ApiJson ===

impl<T, S, const LIMIT: usize> FromRequest<S> for ApiJson<T, LIMIT>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, AppError> {
        if !json_content_type(req.headers()) {
            return Err(AppError::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let bytes = read_body(req, LIMIT).await?;
        match strict_json::from_slice(&bytes) {
            Ok(value) => Ok(ApiJson(value)),
            // Tracking the path of every value read costs a third of a
            // 100-item batch's CPU: only to explain a failure
            // (`items[3].usage: invalid type ... at line 1 column 42`).
            Err(_) => {
                let (syntax, message) = strict_json::explain::<T>(&bytes);
                Err(if syntax {
                    AppError::new(ErrorCode::InvalidJson, message)
                } else {
                    AppError::new(ErrorCode::InvalidBody, message)
                })
            }
        }
    }
}

async fn read_body(req: Request, limit: usize) -> Result<Bytes, AppError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            if is_length_limit(&e) {
                AppError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("request body is larger than {limit} bytes"),
                )
            } else {
                AppError::new(
                    ErrorCode::UnreadableBody,
                    format!("cannot read the body: {e}"),
                )
            }
        })
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// `application/json` or any `application/*+json`, parameters allowed (as
/// `axum::Json` accepts).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if value == "application/json" {
        return true; // what nearly every caller sends
    }
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype
                    .get(subtype.len() - 5..)
                    .is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(ct: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h
    }

    #[test]
    fn json_content_types_as_axum_accepts_them() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
            "application/vnd.api+json;v=1",
        ] {
            assert!(json_content_type(&with(ok)), "{ok}");
        }
        for bad in [
            "text/json",
            "application/jsonx",
            "application/+json",
            "application",
            "text/plain",
            "",
        ] {
            assert!(!json_content_type(&with(bad)), "{bad}");
        }
        assert!(!json_content_type(&HeaderMap::new()));
    }
}
