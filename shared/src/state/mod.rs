//! Per-subscription state: sequence numbers, the current snapshot, derived
//! `ACCESS_*` events, and delivery records.
//!
//! The rules live in the pure [`transition`]; the [`StateStore`] adapters
//! ([`MemoryState`], [`RedbState`] for the local server, `DynamoState` in AWS)
//! only make "claim the event id + apply + write history" atomic and
//! idempotent: applying an event id a second time returns exactly what was
//! stored the first time and changes nothing.
//!
//!
//! The rule is in [`transition`] (module docs there); this module is the port.

use crate::event::{Event, EventId, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

mod memory;
pub use memory::MemoryState;
pub mod transition;
pub use transition::{Applied, GroupState, transition};
mod redb;
pub use redb::RedbState;

#[cfg(feature = "aws")]
mod dynamo;
#[cfg(feature = "aws")]
pub use dynamo::DynamoState;

/// What [`StateStore::apply`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The event as delivered (same JSON on every call for the same id).
    pub event: Event,
    /// Its derived events (same on every call).
    pub derived: Vec<Event>,
    /// True when this call applied it; false when the id was already claimed
    /// (nothing was changed, the stored result is returned).
    pub first_time: bool,
}

/// Delivery bookkeeping of one event id (`EVT#<event id>` / `EVT`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// POST attempts so far.
    pub attempts: u32,
    /// HTTP status of the last attempt (None: no response).
    pub last_status: Option<u16>,
    /// Latency of the last attempt.
    pub latency_ms: u64,
    /// When a 2xx was received; `Some` = delivered, never sent again.
    pub delivered_at: Option<Timestamp>,
    /// Transport error of the last attempt (no URL, no secrets).
    pub last_error: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<Timestamp>,
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The store could not be reached or throttled; retry later.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Optimistic concurrency kept failing; retry later.
    #[error("state update conflict: {0}")]
    Conflict(String),
    /// The request can never succeed (e.g. item too large, corrupt stored data).
    #[error("state store rejected the operation: {0}")]
    Permanent(String),
}

impl StateError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Permanent(_))
    }
}

/// Where the dispatcher keeps per-group state and delivery records.
#[async_trait]
pub trait StateStore: Send + Sync + Debug {
    /// Claims `event.id`, applies the event to its group with [`transition`]
    /// and stores the group state, the history and the claim, atomically.
    /// For an id already claimed, returns the stored result and changes nothing.
    async fn apply(&self, event: Event) -> Result<Recorded, StateError>;

    /// The state of a group key.
    async fn group(&self, group_key: &str) -> Result<Option<GroupState>, StateError>;

    /// The events delivered for a group key, by sequence (history items expire after the retention).
    async fn history(&self, group_key: &str) -> Result<Vec<Event>, StateError>;

    /// Stores (replaces) the delivery record of an event id.
    async fn record_delivery(
        &self,
        event_id: &EventId,
        record: &DeliveryRecord,
    ) -> Result<(), StateError>;

    /// The delivery record of an event id.
    async fn delivery(&self, event_id: &EventId) -> Result<Option<DeliveryRecord>, StateError>;
}

/// What is stored under a claimed event id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub group: String,
    pub event: Event,
    pub derived: Vec<Event>,
}

/// Event builders shared by the state, dispatch and benchmark tests.
#[cfg(any(test, feature = "testing"))]
pub mod fixtures {
    use crate::event::*;

    /// Milliseconds since the epoch of a fixed base time plus `minutes`.
    pub fn t(minutes: i64) -> Timestamp {
        Timestamp::from_millis(1_750_000_000_000 + minutes * 60_000)
            .unwrap_or(Timestamp(chrono::DateTime::UNIX_EPOCH))
    }

    /// A subscription event of `sub` (store subscription id) with `status`,
    /// entitled iff `active`, occurring at `t(minute)`.
    pub fn sub_event(
        notification: &str,
        kind: EventType,
        sub: &str,
        minute: i64,
        active: bool,
    ) -> Event {
        let status = if active {
            SubscriptionStatus::Active
        } else {
            SubscriptionStatus::Expired
        };
        Event {
            api_version: API_VERSION,
            id: EventId::derive(&["TEST_STORE", notification]),
            kind,
            occurred_at: t(minute),
            received_at: t(minute + 1),
            sequence: 0,
            store: Store::AppStore,
            environment: Environment::Sandbox,
            app_id: "com.example.app".into(),
            app_user_id: Some("user-1".into()),
            product: Some(Product {
                id: "pro.monthly".into(),
                plan_id: None,
                kind: ProductKind::AutoRenewable,
            }),
            subscription: Some(Subscription {
                id: SubscriptionId::derive(&["APP_STORE", sub]),
                store_subscription_id: sub.into(),
                status,
                auto_renew: active,
                period_type: PeriodType::Normal,
                started_at: Some(t(0)),
                current_period_started_at: Some(t(minute)),
                expires_at: Some(t(minute + 30 * 24 * 60)),
                grace_period_expires_at: None,
                renewal_product_id: Some("pro.monthly".into()),
                price: Some(Money {
                    amount_micros: 4_990_000,
                    currency: "EUR".into(),
                }),
                country: Some("FR".into()),
            }),
            transaction: Some(Transaction {
                id: format!("txn-{notification}"),
                original_id: Some(sub.into()),
                purchased_at: Some(t(minute)),
                price: None,
            }),
            entitlement: Entitlement {
                active,
                expires_at: active.then(|| t(minute + 30 * 24 * 60)),
            },
            details: Details::default(),
            store_notification: StoreNotification {
                kind: "DID_RENEW".into(),
                subtype: None,
                id: notification.into(),
            },
            raw: None,
        }
    }

    /// A TEST event (no subscription, no transaction).
    pub fn test_event(notification: &str) -> Event {
        let mut e = sub_event(notification, EventType::Test, "none", 0, false);
        e.subscription = None;
        e.transaction = None;
        e.product = None;
        e.app_user_id = None;
        e.entitlement = Entitlement::none();
        e
    }
}

/// Conformance tests every [`StateStore`] adapter must pass (used by the
/// memory, redb and DynamoDB test modules).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod conformance {
    use super::fixtures::*;
    use super::*;
    use crate::event::EventType;

    /// Idempotent apply, sequence, derived events, history, delivery records.
    pub async fn idempotent_apply(store: &dyn StateStore) {
        // GIVEN a new subscription event (entitled)
        let e1 = sub_event("n1", EventType::SubscriptionStarted, "orig-1", 0, true);
        let group = e1.group_key();
        // WHEN applied
        let r1 = store.apply(e1.clone()).await.unwrap();
        // THEN it is first-time, seq 1, and derives ACCESS_GRANTED seq 2
        assert!(r1.first_time);
        assert_eq!(r1.event.sequence, 1);
        assert_eq!(r1.derived.len(), 1);
        assert_eq!(r1.derived[0].kind, EventType::AccessGranted);
        assert_eq!(r1.derived[0].sequence, 2);

        // WHEN the same event id is applied again (even with different content)
        let mut dup = e1.clone();
        dup.occurred_at = t(99);
        dup.entitlement.active = false;
        let r2 = store.apply(dup).await.unwrap();
        // THEN the stored result comes back unchanged and nothing is re-applied
        assert!(!r2.first_time);
        assert_eq!(
            serde_json::to_string(&r2.event).unwrap(),
            serde_json::to_string(&r1.event).unwrap()
        );
        assert_eq!(r2.derived, r1.derived);
        let g = store.group(&group).await.unwrap().unwrap();
        assert_eq!(g.sequence, 2);
        assert!(g.entitlement.active);

        // WHEN the next event arrives THEN it continues the sequence
        let e2 = sub_event("n2", EventType::SubscriptionRenewed, "orig-1", 10, true);
        let r3 = store.apply(e2).await.unwrap();
        assert_eq!(r3.event.sequence, 3);
        assert!(r3.derived.is_empty());
        assert_eq!(r3.event.details.renewal_number, Some(1));

        // AND the history holds every delivered event in order
        let h = store.history(&group).await.unwrap();
        let seqs: Vec<u64> = h.iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(h[0].id, r1.event.id);
        assert_eq!(h[1].kind, EventType::AccessGranted);

        // AND unknown groups / records are None
        assert_eq!(store.group("sub_nope").await.unwrap(), None);
        assert!(store.history("sub_nope").await.unwrap().is_empty());
        assert_eq!(
            store.delivery(&EventId("evt_nope".into())).await.unwrap(),
            None
        );

        // AND delivery records are stored and replaced
        let rec = DeliveryRecord {
            attempts: 1,
            last_status: Some(500),
            latency_ms: 12,
            delivered_at: None,
            last_error: None,
            last_attempt_at: Some(t(1)),
        };
        store.record_delivery(&r1.event.id, &rec).await.unwrap();
        assert_eq!(
            store.delivery(&r1.event.id).await.unwrap(),
            Some(rec.clone())
        );
        let done = DeliveryRecord {
            attempts: 2,
            last_status: Some(200),
            latency_ms: 3,
            delivered_at: Some(t(2)),
            last_error: None,
            last_attempt_at: Some(t(2)),
        };
        store.record_delivery(&r1.event.id, &done).await.unwrap();
        assert_eq!(store.delivery(&r1.event.id).await.unwrap(), Some(done));
        // AND a derived event's record works without a claim of its own
        let failed = DeliveryRecord {
            attempts: 1,
            last_status: None,
            latency_ms: 10_000,
            delivered_at: None,
            last_error: Some("timeout: operation timed out".into()),
            last_attempt_at: Some(t(3)),
        };
        store
            .record_delivery(&r1.derived[0].id, &failed)
            .await
            .unwrap();
        assert_eq!(
            store.delivery(&r1.derived[0].id).await.unwrap(),
            Some(failed)
        );
        // AND re-applying after delivery records exist still returns the stored result
        let r4 = store.apply(e1).await.unwrap();
        assert!(!r4.first_time);
        assert_eq!(r4.event.sequence, 1);
    }

    /// Many concurrent applies to one group: gap-free sequences, each id once.
    pub async fn concurrent_applies(store: std::sync::Arc<dyn StateStore>, n: usize) {
        // GIVEN n distinct events of one group, each submitted twice, concurrently
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            for _ in 0..2 {
                let s = store.clone();
                let e = sub_event(
                    &format!("c{i}"),
                    EventType::SubscriptionRenewed,
                    "orig-c",
                    i as i64,
                    true,
                );
                tasks.spawn(async move { s.apply(e).await });
            }
        }
        let mut firsts = Vec::new();
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let r = r.unwrap().unwrap();
            if r.first_time {
                firsts.push(r.event.id.clone());
            }
            all.push(r);
        }
        // THEN each id was applied exactly once
        firsts.sort();
        firsts.dedup();
        assert_eq!(firsts.len(), n);
        assert_eq!(all.iter().filter(|r| r.first_time).count(), n);
        // AND both submissions of an id got the same sequence
        for r in &all {
            let twin = all.iter().filter(|o| o.event.id == r.event.id);
            assert!(twin.clone().all(|o| o.event.sequence == r.event.sequence));
        }
        // AND the sequences are gap-free 1..=n+1 (one ACCESS_GRANTED)
        let group = all[0].event.group_key();
        let h = store.history(&group).await.unwrap();
        let seqs: Vec<u64> = h.iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, (1..=(n as u64 + 1)).collect::<Vec<_>>());
        assert_eq!(
            store.group(&group).await.unwrap().unwrap().sequence,
            n as u64 + 1
        );
    }
}
