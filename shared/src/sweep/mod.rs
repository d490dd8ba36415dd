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

/// The deterministic id of a sweeper event: the group key, the event type and
/// the store-authenticated facts that identify the answer (e.g. the new
/// transaction id, the expiry in ms).
pub fn sweep_event_id(group_key: &str, kind: &str, facts: &[&str]) -> EventId {
    let mut parts = vec![SOURCE_SWEEPER, group_key, kind];
    parts.extend_from_slice(facts);
    EventId::derive(&parts)
}
