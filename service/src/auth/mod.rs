//! Authentication: who a call comes from, from its bearer token.
//!
//! ```text
//!   Authorization: Bearer <token>
//!        │
//!        ▼
//!   Authenticator ── none ────────▶ the anonymous admin (local development)
//!        ├────────── static ──────▶ tokens_file: SHA-256 of the token → identity
//!        └────────── kubernetes ──▶ cache (by SHA-256 of the token) ──miss──▶ TokenReview
//!        │                                                                (audience-bound)
//!        ▼
//!   Arc<Identity> (subject, groups, admin)  or  401 / 503
//! ```
//!
//! Authorization (which identity may do what on which node) is
//! `domain::access`, asked by each route. An identity is an admin of every
//! node when `AUTH_ADMINS` names its subject or one of its groups.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the [`Authenticator`], bearer parsing, the errors |
//! | `tokens_file.rs` | static mode: the tokens file, re-read when it changes |
//! | `token_review.rs` | kubernetes mode: TokenReview through the API server |
//! | `cache.rs` | the bounded cache of review results, one review per token at a time |

mod cache;
mod token_review;
mod tokens_file;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderValue;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::{AuthConfig, AuthMode};
use crate::domain::access::Identity;

pub use cache::{CacheLimits, IdentityCache};
pub use token_review::{Review, ReviewError, Reviewer, TokenReviewer};
pub use tokens_file::{RELOAD_EVERY, StaticTokens, TokensFileError};

/// The subject the audit trail names when authentication is off.
pub const ANONYMOUS: &str = "anonymous";

/// Why a call is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` header, or a token nobody knows:
    /// `401 unauthenticated`.
    #[error("{0}")]
    Unauthenticated(String),
    /// The token could not be checked (the API server cannot be reached):
    /// `503 auth_unavailable`. The call is not let through.
    #[error("{0}")]
    Unavailable(String),
}

/// A token's SHA-256 digest: what caches and maps are keyed by, so that no
/// token is kept in memory and no comparison ever runs over a token's bytes.
pub type TokenDigest = [u8; 32];

/// The SHA-256 of `token`. Each worker thread remembers the last token it
/// hashed: a workload sends one token for its lifetime (an hour for a
/// projected ServiceAccount token), and hashing a ServiceAccount token
/// (about a kilobyte) every call was most of what authentication cost.
/// The comparison with the remembered token takes the same time wherever
/// the two differ, so it says nothing about the remembered one.
pub fn digest(token: &str) -> TokenDigest {
    /// Longer tokens are hashed every time (no bigger memo per thread).
    const MEMO_MAX: usize = 4096;
    thread_local! {
        static LAST: RefCell<(Vec<u8>, TokenDigest)> = const { RefCell::new((Vec::new(), [0; 32])) };
    }
    let bytes = token.as_bytes();
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return Sha256::digest(bytes).into();
        };
        if !last.0.is_empty() && same_bytes(&last.0, bytes) {
            return last.1;
        }
        let d: TokenDigest = Sha256::digest(bytes).into();
        if bytes.len() <= MEMO_MAX {
            last.0.clear();
            last.0.extend_from_slice(bytes);
            last.1 = d;
        }
        d
    })
}

/// Equal bytes, compared without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Checks bearer tokens the way `AUTH_MODE` says.
#[derive(Debug)]
pub struct Authenticator {
    mode: Mode,
    admins: Arc<Admins>,
    refused: AtomicU64,
}

/// What `/metrics` shows of authentication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Calls answered 401 or 503 by authentication.
    pub refused: u64,
    /// TokenReviews sent (kubernetes mode).
    pub token_reviews: u64,
    /// Review results kept (kubernetes mode).
    pub cached: usize,
    /// Tokens known (static mode).
    pub static_tokens: usize,
}

#[derive(Debug)]
enum Mode {
    None(Arc<Identity>),
    Static(Arc<StaticTokens>),
    Kubernetes(Box<IdentityCache>),
}

/// `AUTH_ADMINS`: subjects and `group:NAME` entries that own every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admins(Vec<String>);

// === impl Admins ===

impl Admins {
    pub fn new(entries: Vec<String>) -> Self {
        Admins(entries)
    }

    /// An identity of `subject` and `groups`, an admin when named here.
    pub fn identity(&self, subject: String, groups: Vec<String>) -> Identity {
        let mut who = Identity {
            subject,
            groups,
            admin: false,
        };
        who.admin = self.0.iter().any(|entry| who.is(entry));
        who
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// Authentication off: every call is the anonymous admin.
    pub fn none() -> Arc<Self> {
        Arc::new(Authenticator {
            mode: Mode::None(Arc::new(Identity {
                subject: ANONYMOUS.into(),
                groups: Vec::new(),
                admin: true,
            })),
            admins: Arc::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// Static tokens from `tokens`.
    pub fn with_static(tokens: Arc<StaticTokens>) -> Arc<Self> {
        let admins = tokens.admins();
        Arc::new(Authenticator {
            mode: Mode::Static(tokens),
            admins,
            refused: AtomicU64::new(0),
        })
    }

    /// Tokens checked by `reviewer`, its results kept in `cache`.
    pub fn with_reviewer(
        reviewer: Arc<dyn Reviewer>,
        admins: Admins,
        clock: SharedClock,
        limits: CacheLimits,
    ) -> Arc<Self> {
        let admins = Arc::new(admins);
        Arc::new(Authenticator {
            mode: Mode::Kubernetes(Box::new(IdentityCache::new(
                reviewer,
                admins.clone(),
                clock,
                limits,
            ))),
            admins,
            refused: AtomicU64::new(0),
        })
    }

    /// The authenticator `config` asks for: reads the tokens file (and
    /// keeps re-reading it until `stop`), or connects to the API server.
    pub async fn from_config(
        config: &AuthConfig,
        clock: SharedClock,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        let admins = Admins::new(config.admins.clone());
        match config.mode {
            AuthMode::None => Ok(Self::none()),
            AuthMode::Static => {
                let path = config
                    .tokens_file
                    .clone()
                    .ok_or("AUTH_MODE=static needs AUTH_TOKENS_FILE")?;
                let tokens = StaticTokens::load(path, admins).map_err(|e| e.to_string())?;
                tokens.clone().watch(RELOAD_EVERY, stop);
                Ok(Self::with_static(tokens))
            }
            AuthMode::Kubernetes => {
                let reviewer = TokenReviewer::connect(config.audience.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Self::with_reviewer(
                    Arc::new(reviewer),
                    admins,
                    clock,
                    CacheLimits::default(),
                ))
            }
        }
    }

    /// Whether calls are checked at all.
    pub fn is_off(&self) -> bool {
        matches!(self.mode, Mode::None(_))
    }

    pub fn mode(&self) -> AuthMode {
        match self.mode {
            Mode::None(_) => AuthMode::None,
            Mode::Static(_) => AuthMode::Static,
            Mode::Kubernetes(_) => AuthMode::Kubernetes,
        }
    }

    /// Who the call with this `Authorization` header comes from.
    pub async fn authenticate(
        &self,
        header: Option<&HeaderValue>,
    ) -> Result<Arc<Identity>, AuthError> {
        if let Mode::None(anonymous) = &self.mode {
            return Ok(anonymous.clone());
        }
        let who = match bearer(header) {
            Err(e) => Err(e),
            Ok(token) => match &self.mode {
                Mode::None(anonymous) => Ok(anonymous.clone()),
                Mode::Static(tokens) => tokens.identity(&digest(token)).ok_or_else(|| {
                    AuthError::Unauthenticated("the bearer token is not valid".into())
                }),
                Mode::Kubernetes(cache) => cache.identity(token).await,
            },
        };
        if who.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        who
    }

    pub fn stats(&self) -> AuthStats {
        let mut stats = AuthStats {
            refused: self.refused.load(Ordering::Relaxed),
            ..AuthStats::default()
        };
        match &self.mode {
            Mode::None(_) => {}
            Mode::Static(tokens) => stats.static_tokens = tokens.len(),
            Mode::Kubernetes(cache) => {
                stats.token_reviews = cache.reviews_sent();
                stats.cached = cache.cached();
            }
        }
        stats
    }

    /// `AUTH_ADMINS` as this authenticator applies it.
    pub fn admins(&self) -> &Admins {
        &self.admins
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(header: Option<&HeaderValue>) -> Result<&str, AuthError> {
    let missing = || {
        AuthError::Unauthenticated("this call needs an Authorization: Bearer <token> header".into())
    };
    let value = header.ok_or_else(missing)?;
    // UTF-8 is checked a word at a time; a token with bytes no token has
    // is refused by the lookup or the review like any other wrong token.
    let value = std::str::from_utf8(value.as_bytes()).map_err(|_| {
        AuthError::Unauthenticated("the Authorization header is not readable text".into())
    })?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Unauthenticated(format!(
            "the Authorization scheme is {scheme:?}; expected Bearer"
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("x"))
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some(&header("Bearer abc.def"))), Ok("abc.def"));
        assert_eq!(bearer(Some(&header("bearer  abc "))), Ok("abc"));
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "abc"] {
            assert!(
                matches!(
                    bearer(Some(&header(bad))),
                    Err(AuthError::Unauthenticated(_))
                ),
                "{bad}"
            );
        }
        assert!(bearer(None).is_err());
    }

    #[test]
    fn the_remembered_digest_is_the_tokens_own() {
        let a = "a".repeat(900);
        let b = format!("{}b", "a".repeat(899));
        for t in [&a, &a, &b, &a, &b, &b, &"x".repeat(5000)] {
            let want: TokenDigest = Sha256::digest(t.as_bytes()).into();
            assert_eq!(digest(t), want);
        }
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd") && !same_bytes(b"abc", b"ab"));
    }

    #[test]
    fn admins_by_subject_or_group() {
        let admins = Admins::new(vec![
            "system:serviceaccount:edge-quota:operator".into(),
            "group:quota-admins".into(),
        ]);
        let op = admins.identity("system:serviceaccount:edge-quota:operator".into(), vec![]);
        assert!(op.admin);
        let member = admins.identity("alice".into(), vec!["quota-admins".into()]);
        assert!(member.admin);
        // Names are compared whole: another namespace's operator is not it.
        let other = admins.identity("system:serviceaccount:other:operator".into(), vec![]);
        assert!(!other.admin);
        let group_named_like_a_user = admins.identity("group:quota-admins".into(), vec![]);
        assert!(!group_named_like_a_user.admin);
    }

    #[tokio::test]
    async fn mode_none_lets_every_call_in_as_the_anonymous_admin() {
        let auth = Authenticator::none();
        let who = auth.authenticate(None).await;
        assert!(matches!(&who, Ok(w) if w.admin && w.subject == ANONYMOUS));
    }
}
