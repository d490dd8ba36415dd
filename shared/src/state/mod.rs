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
pub use transition::{
    Applied, GroupState, Origin, entitlement_at, entitlement_end, is_closed, transition,
};
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

/// A group due for the sweeper ([`StateStore::due`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The group key.
    pub group_key: String,
    /// Its state when it was listed.
    pub state: GroupState,
    /// When it became due: its entitlement end ([`GroupState::due_at`]), or
    /// the time it was snoozed to ([`StateStore::snooze`]).
    pub due_at: Timestamp,
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
    /// `now` is the applying dispatcher's clock: [`transition`] judges
    /// entitlements at it (an entitlement whose end has passed is inactive).
    async fn apply(&self, event: Event, now: Timestamp) -> Result<Recorded, StateError>;

    /// The groups due for the sweeper at `now` (at most `limit`, earliest
    /// first where the store can order them): every group whose due entry is
    /// at or before `now`. Each apply sets a group's entry to
    /// [`GroupState::due_at`] of its new state (its entitlement end while its
    /// subscription status is not closed) in the same atomic write, or
    /// removes it (closed, no subscription, no end); no full scan is needed.
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Due>, StateError>;

    /// Postpones a due group: its entry moves to `until` if it still has
    /// one and it is earlier (never earlier than it was, so an apply in
    /// between that moved it later wins). A group without an entry (closed
    /// meanwhile) stays without.
    async fn snooze(&self, group_key: &str, until: Timestamp) -> Result<(), StateError>;

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

/// Event builders of the test kit (`storehook_testkit::fixtures`), compiled
/// into the unit tests so they build this crate's `Event`s.
#[cfg(test)]
#[path = "../../../testkit/src/fixtures.rs"]
pub(crate) mod fixtures;

/// The test kit's [`StateStore`] conformance suite
/// (`storehook_testkit::conformance`), run by the memory and redb unit tests.
#[cfg(test)]
#[path = "../../../testkit/src/conformance.rs"]
pub(crate) mod conformance;
