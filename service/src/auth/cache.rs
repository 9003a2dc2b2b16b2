//! The review results of kubernetes mode, kept for a short while.
//!
//! ```text
//!  token ─▶ SHA-256 ─▶ entries (bounded) ── fresh ──▶ identity / 401
//!                          │ missing or stale
//!                          ▼
//!                      in flight? ── yes: wait for that review
//!                          │ no
//!                          ▼
//!                      TokenReview (at most `max_concurrent_reviews` at once)
//!                          ├─ valid:    kept ≤ success_ttl, never past the token's `exp`
//!                          ├─ refused:  kept failure_ttl (a flood of bad tokens costs
//!                          │            one review each per failure_ttl)
//!                          └─ error:    not kept: 503 now, a new review next call
//! ```
//!
//! Each worker thread also remembers the last identity it took from the
//! map (until that entry's own expiry), so the steady calls of a workload
//! with one token skip the shared map's lock.
//!
//! Keys are digests, never tokens. Concurrent calls with one new token
//! share one review. When the API server cannot be reached, the identities
//! still in the cache keep working until they expire; everything else is
//! `503 auth_unavailable`, never let through.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use dashmap::DashMap;
use serde::Deserialize;
use tokio::sync::{OnceCell, Semaphore};

use super::token_review::{Review, Reviewer};
use super::{Admins, AuthError, TokenDigest, digest};
use crate::clock::SharedClock;
use crate::domain::access::Identity;

/// The cache's bounds and lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most results kept; past it, expired ones go first, then any.
    pub max_entries: usize,
    /// Seconds a valid token's identity is kept (never past its `exp`).
    pub success_ttl: i64,
    /// Seconds a refused token stays refused without a new review.
    pub failure_ttl: i64,
    /// Reviews in flight at once (the API server is shared).
    pub max_concurrent_reviews: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_entries: 10_000,
            success_ttl: 60,
            failure_ttl: 10,
            max_concurrent_reviews: 16,
        }
    }
}

/// A review's outcome as callers see it.
#[derive(Debug, Clone)]
enum Outcome {
    Known(Arc<Identity>),
    Refused(Arc<str>),
    Unavailable(Arc<str>),
}

#[derive(Debug)]
struct Cached {
    outcome: Outcome,
    /// Unix second from which the entry is stale.
    until: i64,
}

/// Identities by token digest, reviewed on a miss.
#[derive(Debug)]
pub struct IdentityCache {
    reviewer: Arc<dyn Reviewer>,
    admins: Arc<Admins>,
    clock: SharedClock,
    limits: CacheLimits,
    entries: DashMap<TokenDigest, Cached, foldhash::fast::RandomState>,
    in_flight: Mutex<HashMap<TokenDigest, Arc<OnceCell<Outcome>>>>,
    reviews: Semaphore,
    reviews_sent: AtomicU64,
    /// Tells this cache's entries in the per-thread memo from another's.
    instance: u64,
}

/// The identity a worker thread last took from a cache, so the next call
/// with the same token (a workload sends one for its lifetime) finds it
/// without the shared map's lock. It lives no longer than the entry it
/// was copied from.
#[derive(Debug)]
struct Memo {
    instance: u64,
    key: TokenDigest,
    identity: Arc<Identity>,
    until: i64,
}

thread_local! {
    static LAST_KNOWN: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

// === impl IdentityCache ===

impl IdentityCache {
    pub fn new(
        reviewer: Arc<dyn Reviewer>,
        admins: Arc<Admins>,
        clock: SharedClock,
        limits: CacheLimits,
    ) -> Self {
        IdentityCache {
            reviewer,
            admins,
            clock,
            limits,
            entries: DashMap::default(),
            in_flight: Mutex::default(),
            reviews: Semaphore::new(limits.max_concurrent_reviews.max(1)),
            reviews_sent: AtomicU64::new(0),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The identity `token` stands for.
    pub async fn identity(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        let key = digest(token);
        let now = self.clock.now();
        let memo = LAST_KNOWN.with(|m| {
            m.try_borrow().ok().and_then(|m| {
                m.as_ref()
                    .filter(|m| m.instance == self.instance && m.key == key && m.until > now)
                    .map(|m| m.identity.clone())
            })
        });
        if let Some(identity) = memo {
            return Ok(identity);
        }
        if let Some(c) = self.entries.get(&key)
            && c.until > now
        {
            let (outcome, until) = (c.outcome.clone(), c.until);
            drop(c);
            if let Outcome::Known(identity) = &outcome {
                let memo = Memo {
                    instance: self.instance,
                    key,
                    identity: identity.clone(),
                    until,
                };
                LAST_KNOWN.with(|m| {
                    if let Ok(mut m) = m.try_borrow_mut() {
                        *m = Some(memo);
                    }
                });
            }
            return outcome.into_result();
        }
        let cell = self
            .lock_in_flight()
            .entry(key)
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let outcome = cell
            .get_or_init(|| async {
                // A permit is only refused once the semaphore is closed,
                // which it never is.
                let _permit = self.reviews.acquire().await.ok();
                self.reviews_sent.fetch_add(1, Ordering::Relaxed);
                self.review(token).await
            })
            .await
            .clone();
        // Kept before the review leaves the in-flight map, so a later call
        // finds one or the other.
        self.keep(key, &outcome, token);
        let mut in_flight = self.lock_in_flight();
        if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&key);
        }
        drop(in_flight);
        outcome.into_result()
    }

    /// TokenReviews sent so far.
    pub fn reviews_sent(&self) -> u64 {
        self.reviews_sent.load(Ordering::Relaxed)
    }

    /// Results kept now.
    pub fn cached(&self) -> usize {
        self.entries.len()
    }

    async fn review(&self, token: &str) -> Outcome {
        match self.reviewer.review(token).await {
            Ok(Review::Authenticated { subject, groups }) => {
                Outcome::Known(Arc::new(self.admins.identity(subject, groups)))
            }
            Ok(Review::Refused(why)) => {
                tracing::debug!(reason = %why, "token refused");
                Outcome::Refused(why.into())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a token; answering 503");
                Outcome::Unavailable(e.0.into())
            }
        }
    }

    fn keep(&self, key: TokenDigest, outcome: &Outcome, token: &str) {
        let now = self.clock.now();
        let until = match outcome {
            Outcome::Known(_) => {
                let ttl = self.limits.success_ttl;
                now + expires_in(token, now).map_or(ttl, |left| left.min(ttl))
            }
            Outcome::Refused(_) => now + self.limits.failure_ttl,
            Outcome::Unavailable(_) => return,
        };
        if until <= now {
            return;
        }
        if self.entries.len() >= self.limits.max_entries && !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        self.entries.insert(
            key,
            Cached {
                outcome: outcome.clone(),
                until,
            },
        );
    }

    /// Drops the stale entries; if that is not enough, a tenth of the rest.
    fn make_room(&self, now: i64) {
        self.entries.retain(|_, c| c.until > now);
        let max = self.limits.max_entries;
        if self.entries.len() >= max {
            let excess = self.entries.len() + 1 - max + max / 10;
            let victims: Vec<TokenDigest> =
                self.entries.iter().take(excess).map(|e| *e.key()).collect();
            for k in victims {
                self.entries.remove(&k);
            }
        }
    }

    fn lock_in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, Arc<OnceCell<Outcome>>>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Outcome ===

impl Outcome {
    fn into_result(self) -> Result<Arc<Identity>, AuthError> {
        match self {
            Outcome::Known(who) => Ok(who),
            Outcome::Refused(why) => Err(AuthError::Unauthenticated(format!(
                "the bearer token is not valid: {why}"
            ))),
            Outcome::Unavailable(why) => Err(AuthError::Unavailable(format!(
                "the token cannot be checked now; try again shortly ({why})"
            ))),
        }
    }
}

/// Seconds until the token's `exp`, when it is a JWT that says. Read
/// without verifying: it only ever shortens how long a reviewed identity is
/// kept.
fn expires_in(token: &str, now: i64) -> Option<i64> {
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<i64>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    Some(claims.exp? - now)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use futures::future::BoxFuture;

    use super::super::token_review::ReviewError;
    use super::*;
    use crate::clock::ManualClock;

    /// Answers by token: `good-*` valid, `down` an error, anything else
    /// refused; counts the reviews; the API server "goes down" on request.
    #[derive(Debug, Default)]
    struct Scripted {
        calls: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
        delay_ms: u64,
    }

    impl Reviewer for Scripted {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
                if self.down.load(Ordering::SeqCst) {
                    return Err(ReviewError("connection refused".into()));
                }
                Ok(match token.strip_prefix("good-") {
                    Some(name) => Review::Authenticated {
                        subject: format!("system:serviceaccount:team-a:{name}"),
                        groups: vec!["system:serviceaccounts:team-a".into()],
                    },
                    None => Review::Refused("invalid bearer token".into()),
                })
            })
        }
    }

    fn cache(
        reviewer: Arc<Scripted>,
        clock: Arc<ManualClock>,
        limits: CacheLimits,
    ) -> IdentityCache {
        IdentityCache::new(
            reviewer,
            Arc::new(Admins::new(vec!["system:serviceaccount:team-a:op".into()])),
            clock,
            limits,
        )
    }

    fn jwt_expiring_at(exp: i64) -> String {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "good-{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(&format!(r#"{{"exp":{exp},"aud":["edge-quota"]}}"#))
        )
    }

    #[tokio::test]
    async fn a_valid_token_is_reviewed_once_until_it_goes_stale() {
        let reviewer = Arc::new(Scripted::default());
        let clock = ManualClock::new(1_000);
        let c = cache(reviewer.clone(), clock.clone(), CacheLimits::default());
        for _ in 0..5 {
            let who = c.identity("good-web").await;
            assert!(matches!(&who, Ok(w) if w.subject.ends_with(":web") && !w.admin));
        }
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 1);
        clock.advance(59);
        assert!(c.identity("good-web").await.is_ok());
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 1);
        clock.advance(1);
        assert!(c.identity("good-web").await.is_ok());
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 2, "stale after 60 s");
        assert!(matches!(c.identity("good-op").await, Ok(w) if w.admin));
    }

    #[tokio::test]
    async fn the_per_thread_memo_never_answers_for_another_cache() {
        let (first, second) = (Arc::new(Scripted::default()), Arc::new(Scripted::default()));
        let clock = ManualClock::new(1_000);
        let a = cache(first.clone(), clock.clone(), CacheLimits::default());
        let b = cache(second.clone(), clock.clone(), CacheLimits::default());
        assert!(a.identity("good-web").await.is_ok());
        assert!(a.identity("good-web").await.is_ok());
        // Same thread, same token, another cache: its own review.
        assert!(b.identity("good-web").await.is_ok());
        assert_eq!(first.calls.load(Ordering::SeqCst), 1);
        assert_eq!(second.calls.load(Ordering::SeqCst), 1);
        // A refusal is never memoized: still refused, from the map.
        assert!(b.identity("bad").await.is_err());
        assert!(b.identity("bad").await.is_err());
        assert_eq!(second.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn never_kept_past_the_tokens_expiry() {
        let reviewer = Arc::new(Scripted::default());
        let clock = ManualClock::new(1_000);
        let c = cache(reviewer.clone(), clock.clone(), CacheLimits::default());
        let token = jwt_expiring_at(1_020);
        assert!(c.identity(&token).await.is_ok());
        clock.advance(19);
        assert!(c.identity(&token).await.is_ok());
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 1);
        clock.advance(1);
        let _ = c.identity(&token).await;
        assert_eq!(
            reviewer.calls.load(Ordering::SeqCst),
            2,
            "reviewed again at exp"
        );
        assert_eq!(expires_in("not-a-jwt", 0), None);
        assert_eq!(expires_in("a.!!!.c", 0), None);
    }

    #[tokio::test]
    async fn refusals_are_kept_briefly_and_errors_not_at_all() {
        let reviewer = Arc::new(Scripted::default());
        let clock = ManualClock::new(1_000);
        let c = cache(reviewer.clone(), clock.clone(), CacheLimits::default());
        for _ in 0..3 {
            assert!(matches!(
                c.identity("forged").await,
                Err(AuthError::Unauthenticated(_))
            ));
        }
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 1);
        clock.advance(10);
        let _ = c.identity("forged").await;
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 2);

        // The API server goes away: a kept identity keeps working, a new
        // token is 503 every time (each call tries again), nothing passes.
        assert!(c.identity("good-web").await.is_ok());
        reviewer.down.store(true, Ordering::SeqCst);
        assert!(c.identity("good-web").await.is_ok());
        for _ in 0..2 {
            assert!(matches!(
                c.identity("good-new").await,
                Err(AuthError::Unavailable(_))
            ));
        }
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 5);
        clock.advance(60);
        assert!(matches!(
            c.identity("good-web").await,
            Err(AuthError::Unavailable(_))
        ));
        reviewer.down.store(false, Ordering::SeqCst);
        assert!(c.identity("good-new").await.is_ok());
    }

    #[tokio::test]
    async fn concurrent_calls_with_one_token_share_one_review() {
        let reviewer = Arc::new(Scripted {
            delay_ms: 50,
            ..Scripted::default()
        });
        let c = Arc::new(cache(
            reviewer.clone(),
            ManualClock::new(1_000),
            CacheLimits::default(),
        ));
        let calls: Vec<_> = (0..20)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let token = if i % 2 == 0 { "good-a" } else { "good-b" };
                    c.identity(token).await.is_ok()
                })
            })
            .collect();
        for call in calls {
            assert!(matches!(call.await, Ok(true)));
        }
        assert_eq!(reviewer.calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.reviews_sent(), 2);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bound() {
        let reviewer = Arc::new(Scripted::default());
        let clock = ManualClock::new(1_000);
        let limits = CacheLimits {
            max_entries: 50,
            ..CacheLimits::default()
        };
        let c = cache(reviewer.clone(), clock.clone(), limits);
        for i in 0..500 {
            let _ = c.identity(&format!("forged-{i}")).await;
            assert!(c.cached() <= 50, "{} entries", c.cached());
        }
        // Kept identities still answer from the cache after the flood.
        assert!(c.identity("good-web").await.is_ok());
        assert!(c.cached() <= 50);
    }
}
