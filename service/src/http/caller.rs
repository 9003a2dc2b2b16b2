//! Who a call comes from: the [`Caller`] extractor every API handler takes
//! first, so that an unauthenticated call is answered `401` before its body
//! is even read, and nothing changes.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::AppError;
use crate::auth::Authenticator;
use crate::domain::access::{Action, Identity};
use crate::quotas::Quotas;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Identity>);

impl<S> FromRequestParts<S> for Caller
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let auth = Arc::<Authenticator>::from_ref(state);
        let who = auth.authenticate(parts.headers.get(AUTHORIZATION)).await?;
        Ok(Caller(who))
    }
}

// === impl Caller ===

impl Caller {
    /// The subject the audit trail names.
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// `Ok` when the caller may do `action` on node `id`; `403 forbidden`
    /// otherwise. A node another replica created moments ago is brought in
    /// first ([`Quotas::authorize_caught_up`]), so the answer and the call
    /// after it see it.
    pub async fn may(&self, quotas: &Quotas, action: Action, id: &str) -> Result<(), AppError> {
        Ok(quotas.authorize_caught_up(&self.0, action, id).await?)
    }

    /// [`Caller::may`] on what this replica knows now (filters of lists).
    pub fn may_now(&self, quotas: &Quotas, action: Action, id: &str) -> Result<(), AppError> {
        Ok(quotas.authorize(&self.0, action, id)?)
    }

    /// `Ok` for the admins of every node only.
    pub fn must_be_admin(&self, quotas: &Quotas, what: &str) -> Result<(), AppError> {
        Ok(quotas.authorize_admin(&self.0, what)?)
    }

    pub fn identity(&self) -> &Identity {
        &self.0
    }
}
