//! The in-memory state store (tests, benchmarks).

use super::{Claim, DeliveryRecord, GroupState, Recorded, StateError, StateStore, transition};
use crate::event::{Event, EventId, Timestamp};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// In-memory [`StateStore`] (tests, benchmarks, `storehook serve --memory`).
#[derive(Debug, Default)]
pub struct MemoryState {
    inner: Mutex<MemoryInner>,
    fail: Mutex<Option<StateError>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    groups: HashMap<String, GroupState>,
    claims: HashMap<EventId, Claim>,
    history: BTreeMap<(String, u64), Event>,
    deliveries: HashMap<EventId, DeliveryRecord>,
}

impl MemoryState {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every following operation fail with `err` (None: work again).
    pub fn fail_with(&self, err: Option<StateError>) {
        *lock(&self.fail) = err;
    }

    fn check(&self) -> Result<(), StateError> {
        match lock(&self.fail).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl StateStore for MemoryState {
    async fn apply(&self, event: Event, now: Timestamp) -> Result<Recorded, StateError> {
        self.check()?;
        let mut g = lock(&self.inner);
        if let Some(c) = g.claims.get(&event.id) {
            return Ok(Recorded {
                event: c.event.clone(),
                derived: c.derived.clone(),
                first_time: false,
            });
        }
        let group = event.group_key();
        let applied = transition(g.groups.get(&group), event, now);
        for e in std::iter::once(&applied.event).chain(&applied.derived) {
            g.history.insert((group.clone(), e.sequence), e.clone());
        }
        g.claims.insert(
            applied.event.id.clone(),
            Claim {
                group: group.clone(),
                event: applied.event.clone(),
                derived: applied.derived.clone(),
            },
        );
        g.groups.insert(group, applied.next);
        Ok(Recorded {
            event: applied.event,
            derived: applied.derived,
            first_time: true,
        })
    }

    async fn group(&self, group_key: &str) -> Result<Option<GroupState>, StateError> {
        self.check()?;
        Ok(lock(&self.inner).groups.get(group_key).cloned())
    }

    async fn history(&self, group_key: &str) -> Result<Vec<Event>, StateError> {
        self.check()?;
        let g = lock(&self.inner);
        Ok(g.history
            .range((group_key.to_owned(), 0)..=(group_key.to_owned(), u64::MAX))
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn record_delivery(
        &self,
        event_id: &EventId,
        record: &DeliveryRecord,
    ) -> Result<(), StateError> {
        self.check()?;
        lock(&self.inner)
            .deliveries
            .insert(event_id.clone(), record.clone());
        Ok(())
    }

    async fn delivery(&self, event_id: &EventId) -> Result<Option<DeliveryRecord>, StateError> {
        self.check()?;
        Ok(lock(&self.inner).deliveries.get(event_id).cloned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::state::conformance;
    use crate::state::fixtures::*;

    #[tokio::test]
    async fn memory_state_is_idempotent() {
        conformance::idempotent_apply(&MemoryState::new()).await;
    }

    #[tokio::test]
    async fn memory_state_serializes_concurrent_applies() {
        conformance::concurrent_applies(std::sync::Arc::new(MemoryState::new()), 20).await;
    }

    #[tokio::test]
    async fn memory_state_can_be_told_to_fail() {
        // GIVEN a store told to be unavailable
        let s = MemoryState::new();
        s.fail_with(Some(StateError::Unavailable("down".into())));
        // THEN operations fail retryably, then work again
        let e = s.apply(test_event("x"), apply_now()).await.unwrap_err();
        assert!(e.is_retryable());
        s.fail_with(None);
        assert!(s.apply(test_event("x"), apply_now()).await.unwrap().first_time);
        assert!(!StateError::Permanent("x".into()).is_retryable());
    }
}
