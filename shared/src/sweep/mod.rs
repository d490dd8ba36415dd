//! Truth when the store is silent: the expiry sweeper's port to the stores.
//!
//! A subscription's state changes when a notification arrives. When the store
//! says nothing (Huawei sends nothing when a subscription simply lapses, a
//! notification was lost or is late), the sweeper finds the groups whose
//! entitlement ended by time without a closing event and asks the store what
//! became of them through a [`StatusSource`] (Apple: Get All Subscription
//! Statuses; Play: subscriptionsv2; Huawei: the subscription status API).
//! The events a source returns go through the same queue, sequence and
//! delivery path as any notification.
//!
//! Trust: a source only turns the store's *authenticated* answer (Apple's
//! signed transaction/renewal info verified like a notification, Huawei's
//! signed receipt, Play's API answer over OAuth) into events; their
//! `occurred_at` comes from that answer, never from the sweeper's clock.

use crate::event::{Event, EventId, Store, Timestamp};

mod sweeper;
use crate::state::GroupState;
use async_trait::async_trait;
use std::fmt::Debug;
pub use sweeper::{
    DEFAULT_BATCH, DEFAULT_LEEWAY, DEFAULT_RETRY_AFTER, SWEEP_NOTIFICATION_TYPE, SweepError,
    SweepReport, Sweeper, expired_event,
};

/// `details.source` of the events the sweeper emits.
pub const SOURCE_SWEEPER: &str = "sweeper";
/// `details.source` of the events `storehook backfill` emits (Play voided
/// purchases; App Store backfill re-posts the original signed notifications,
/// whose events are the original ones and carry no source).
pub const SOURCE_BACKFILL: &str = "backfill";

/// Why a [`StatusSource`] gave no answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The store could not be reached, throttled or answered 5xx: ask again at
    /// the next sweep.
    #[error("store API unavailable: {0}")]
    Unavailable(String),
    /// The store does not know the subscription (404 and the like), or its
    /// answer failed verification: asking again will not help.
    #[error("store API refused: {0}")]
    Refused(String),
}

/// Asks one store what became of a subscription.
#[async_trait]
pub trait StatusSource: Send + Sync + Debug {
    /// The store this source answers for.
    fn store(&self) -> Store;

    /// Asks the store about the subscription of the group `group_key`, whose
    /// last applied state is `state` (its entitlement ended by time), and
    /// returns the events the store's authenticated answer implies, in order:
    /// a renewal storehook missed → `SUBSCRIPTION_RENEWED` with the new expiry,
    /// billing retry / grace → `BILLING_RETRY_STARTED` / `GRACE_PERIOD_STARTED`,
    /// expired → `SUBSCRIPTION_EXPIRED`, revoked/refunded → those events.
    ///
    /// Every event has `details.source = Some(SOURCE_SWEEPER)`, the group's
    /// subscription id (so it lands in the same group), and a deterministic id
    /// ([`sweep_event_id`]) built from the store's answer, so a sweep repeated
    /// against the same answer is not delivered twice. `received_at` = `now`.
    /// `Ok(vec![])` when the answer implies nothing storehook does not already
    /// know (the sweeper then tries again at the next sweep).
    async fn refresh(
        &self,
        group_key: &str,
        state: &GroupState,
        now: Timestamp,
    ) -> Result<Vec<Event>, SourceError>;
}

/// The `occurred_at` (ms) of a store-API sweeper event whose store time is
/// `at_ms`: never after `now`, and never before the group's last applied
/// event + 1 ms (so it orders after what the group already holds).
pub fn occurred_ms(at_ms: i64, state: &GroupState, now: Timestamp) -> i64 {
    let mut ms = at_ms.min(now.millis());
    if let Some(applied) = state.applied_at
        && ms <= applied.millis()
    {
        ms = (applied.millis() + 1).min(now.millis());
    }
    ms
}

/// The deterministic id of a sweeper event: the group key, the event type and
/// the store-authenticated facts that identify the answer (e.g. the new
/// transaction id, the expiry in ms).
pub fn sweep_event_id(group_key: &str, kind: &str, facts: &[&str]) -> EventId {
    let mut parts = vec![SOURCE_SWEEPER, group_key, kind];
    parts.extend_from_slice(facts);
    EventId::derive(&parts)
}

/// Parses a sweeper duration setting (`SWEEP_INTERVAL`, `SWEEP_LEEWAY`):
/// `0`, or a whole number with a unit `ms`, `s`, `m`, `h` or `d` (`60s`,
/// `5m`, `24h`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration (e.g. 0, 90s, 5m, 24h, 2d)");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_refuse_anything_else() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "s", "-1s", "1.5h", "5 m", "1w", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
