//! The operator's error type.

use quota_api::ClientError;

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("quota service error: {0}")]
    Service(#[from] ClientError),
    #[error("invalid spec: {0}")]
    Spec(String),
    #[error("deletion waits for: {0}")]
    DeletionBlocked(String),
    #[error("finalizer error: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
