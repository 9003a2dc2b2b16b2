//! Kubernetes mode: ServiceAccount (and other) tokens checked by the API
//! server's TokenReview API, bound to our audience.
//!
//! The review asks for `spec.audiences = [AUTH_AUDIENCE]`; a token minted
//! for the API server or for another service is refused by the API server,
//! and the answer's `status.audiences` must name ours as well (an empty
//! list means the API server's own audience: refused). A token sent to us
//! therefore cannot be replayed against the API server, nor theirs here.

use std::fmt::Debug;

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

/// What a review says of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// The token is valid for our audience and names this user.
    Authenticated {
        subject: String,
        groups: Vec<String>,
    },
    /// The token is not valid here (why, for the log and the answer).
    Refused(String),
}

/// The token could not be checked: the API server cannot be reached or
/// does not let us review tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReviewError(pub String);

/// Reviews tokens. The service's is [`TokenReviewer`]; tests of the cache
/// count and script reviews.
pub trait Reviewer: Send + Sync + Debug + 'static {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>>;
}

/// Reviews through the Kubernetes API.
#[derive(Clone)]
pub struct TokenReviewer {
    api: Api<TokenReview>,
    audience: String,
}

impl Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

// === impl TokenReviewer ===

impl TokenReviewer {
    /// A client from the pod's ServiceAccount (or `KUBECONFIG`). Nothing is
    /// sent yet: an API server that is down at startup fails reviews, not
    /// the start.
    pub async fn connect(audience: String) -> Result<Self, ReviewError> {
        let client = kube::Client::try_default().await.map_err(|e| {
            ReviewError(format!(
                "AUTH_MODE=kubernetes needs the Kubernetes API (in-cluster or KUBECONFIG): {e}"
            ))
        })?;
        Ok(Self::new(client, audience))
    }

    pub fn new(client: kube::Client, audience: String) -> Self {
        TokenReviewer {
            api: Api::all(client),
            audience,
        }
    }
}

impl Reviewer for TokenReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>> {
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_owned()),
                    audiences: Some(vec![self.audience.clone()]),
                },
                ..TokenReview::default()
            };
            let answer = self
                .api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| match &e {
                    kube::Error::Api(s) if s.code == 401 || s.code == 403 => ReviewError(format!(
                        "the service may not create TokenReviews (the chart's ClusterRole allows it; elsewhere bind system:auth-delegator): {e}"
                    )),
                    _ => ReviewError(format!("the Kubernetes API did not answer a TokenReview: {e}")),
                })?;
            Ok(judge(answer, &self.audience))
        })
    }
}

/// The verdict on an answered review.
fn judge(answer: TokenReview, audience: &str) -> Review {
    let Some(status) = answer.status else {
        return Review::Refused("the TokenReview came back without a status".into());
    };
    if status.authenticated != Some(true) {
        let why = status.error.unwrap_or_else(|| "not authenticated".into());
        return Review::Refused(format!(
            "the token is not valid for audience {audience:?}: {why}"
        ));
    }
    if !status
        .audiences
        .as_ref()
        .is_some_and(|a| a.iter().any(|a| a == audience))
    {
        return Review::Refused(format!(
            "the token is not for audience {audience:?} (it is for {:?})",
            status.audiences.unwrap_or_default()
        ));
    }
    let user = status.user.unwrap_or_default();
    match user.username.filter(|u| !u.is_empty()) {
        Some(subject) => Review::Authenticated {
            subject,
            groups: user.groups.unwrap_or_default(),
        },
        None => Review::Refused("the TokenReview named no user".into()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    use super::*;

    fn answer(authenticated: bool, audiences: Option<Vec<&str>>, user: &str) -> TokenReview {
        TokenReview {
            status: Some(TokenReviewStatus {
                authenticated: Some(authenticated),
                audiences: audiences.map(|a| a.into_iter().map(String::from).collect()),
                user: Some(UserInfo {
                    username: Some(user.into()),
                    groups: Some(vec!["system:serviceaccounts:team-a".into()]),
                    ..UserInfo::default()
                }),
                error: None,
            }),
            ..TokenReview::default()
        }
    }

    #[test]
    fn only_an_authenticated_answer_for_our_audience_counts() {
        let sa = "system:serviceaccount:team-a:web";
        assert_eq!(
            judge(answer(true, Some(vec!["edge-quota"]), sa), "edge-quota"),
            Review::Authenticated {
                subject: sa.into(),
                groups: vec!["system:serviceaccounts:team-a".into()]
            }
        );
        for bad in [
            answer(false, Some(vec!["edge-quota"]), sa),
            // The API server's audience, or none named: not ours.
            answer(true, None, sa),
            answer(true, Some(vec![]), sa),
            answer(true, Some(vec!["https://kubernetes.default.svc"]), sa),
            answer(true, Some(vec!["edge-quota"]), ""),
            TokenReview::default(),
        ] {
            assert!(matches!(judge(bad, "edge-quota"), Review::Refused(_)));
        }
    }
}
