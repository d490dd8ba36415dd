//! The OAuth access-token cache of the store API clients (Huawei's app-level
//! token, Google's service-account token): one token per process, fetched by
//! the first caller that needs it while concurrent callers wait for that one
//! fetch, and replaced shortly before it expires or when the API refused it.
//!
//! The fetch itself (the grant and its answer) is the store's; this module only
//! decides when a cached token may be used.

use crate::clock::Clock;
use chrono::{DateTime, Duration, Utc};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A token is replaced this long before it expires, or at half its life when
/// that is shorter.
pub const REFRESH_MARGIN_SECS: i64 = 300;
/// The longest lifetime believed, whatever the token endpoint says.
pub const MAX_LIFETIME_SECS: i64 = 86_400;

/// A token as the endpoint issued it.
#[derive(Debug)]
pub struct Issued<T> {
    /// The access token.
    pub value: T,
    /// `expires_in` (seconds); `None` means the endpoints' usual 3600.
    pub expires_in: Option<i64>,
}

struct Cached<T> {
    value: T,
    refresh_at: DateTime<Utc>,
}

/// One cached access token of type `T` (kept out of `Debug`).
pub struct TokenCache<T> {
    slot: tokio::sync::Mutex<Option<Cached<T>>>,
    clock: Arc<dyn Clock>,
    fetches: AtomicU64,
}

impl<T> fmt::Debug for TokenCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// When a token issued at `now` for `expires_in` seconds is replaced.
fn refresh_at(now: DateTime<Utc>, expires_in: Option<i64>) -> DateTime<Utc> {
    let lifetime = expires_in.unwrap_or(3600).clamp(0, MAX_LIFETIME_SECS);
    let usable = lifetime - REFRESH_MARGIN_SECS.min(lifetime / 2);
    now.checked_add_signed(Duration::seconds(usable))
        .unwrap_or(now)
}

impl<T: Clone + PartialEq> TokenCache<T> {
    /// An empty cache reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
            clock,
            fetches: AtomicU64::new(0),
        }
    }

    /// How many tokens were requested so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A usable token: the cached one unless it is due for refresh or is
    /// `rejected` (the API just refused it), else a new one from `fetch`
    /// (called with the current time). Concurrent callers wait for one fetch.
    pub async fn get<E, F, Fut>(&self, rejected: Option<&T>, fetch: F) -> Result<T, E>
    where
        F: FnOnce(DateTime<Utc>) -> Fut,
        Fut: Future<Output = Result<Issued<T>, E>>,
    {
        let mut slot = self.slot.lock().await;
        let now = self.clock.now();
        if let Some(c) = slot.as_ref()
            && now < c.refresh_at
            && rejected != Some(&c.value)
        {
            return Ok(c.value.clone());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let issued = fetch(now).await?;
        *slot = Some(Cached {
            value: issued.value.clone(),
            refresh_at: refresh_at(now, issued.expires_in),
        });
        Ok(issued.value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn refresh_comes_five_minutes_early_or_at_half_life() {
        let s = |secs: Option<i64>| (refresh_at(t0(), secs) - t0()).num_seconds();
        assert_eq!(s(Some(3600)), 3300);
        assert_eq!(s(None), 3300);
        assert_eq!(s(Some(400)), 200);
        assert_eq!(s(Some(0)), 0);
        assert_eq!(s(Some(-5)), 0);
        assert_eq!(s(Some(10 * 86_400)), 86_400 - 300);
    }

    #[tokio::test]
    async fn a_token_is_reused_until_due_or_rejected() {
        // GIVEN a cache and an endpoint issuing t1, t2, ... for an hour each
        let clock = Arc::new(ManualClock::new(t0()));
        let cache = TokenCache::<String>::new(clock.clone());
        let issue = |n: u64| async move {
            Ok::<_, String>(Issued {
                value: format!("t{n}"),
                expires_in: Some(3600),
            })
        };
        // THEN the first call fetches, the next reuses
        assert_eq!(cache.get(None, |_| issue(1)).await.unwrap(), "t1");
        assert_eq!(cache.get(None, |_| issue(2)).await.unwrap(), "t1");
        // AND a rejected token is replaced at once
        let t1 = "t1".to_owned();
        assert_eq!(cache.get(Some(&t1), |_| issue(2)).await.unwrap(), "t2");
        // AND a token is replaced 5 minutes before it expires
        clock.advance(chrono::Duration::seconds(3299));
        assert_eq!(cache.get(None, |_| issue(3)).await.unwrap(), "t2");
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(cache.get(None, |_| issue(3)).await.unwrap(), "t3");
        assert_eq!(cache.fetches(), 3);
        // AND a failed fetch reports its error, and the next call fetches again
        clock.advance(chrono::Duration::seconds(3600));
        let e = cache
            .get(None, |_| async {
                Err::<Issued<String>, _>("down".to_owned())
            })
            .await
            .unwrap_err();
        assert_eq!(e, "down");
        assert_eq!(cache.get(None, |_| issue(4)).await.unwrap(), "t4");
    }
}
