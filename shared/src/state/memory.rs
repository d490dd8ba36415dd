//! The in-memory state store (tests, benchmarks).

use super::{Claim, DeliveryRecord, Due, GroupState, Recorded, StateError, StateStore, transition};
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
    /// The due index: group → its entry (ms), and (entry, group) in order.
    due_of: HashMap<String, i64>,
    due: std::collections::BTreeSet<(i64, String)>,
}

impl MemoryInner {
    /// Sets (or removes) the due entry of `group`.
    fn set_due(&mut self, group: &str, at: Option<Timestamp>) {
        if let Some(old) = self.due_of.remove(group) {
            self.due.remove(&(old, group.to_owned()));
        }
        if let Some(at) = at {
            self.due_of.insert(group.to_owned(), at.millis());
            self.due.insert((at.millis(), group.to_owned()));
        }
    }
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
        g.set_due(&group, applied.next.due_at());
        g.groups.insert(group, applied.next);
        Ok(Recorded {
            event: applied.event,
            derived: applied.derived,
            first_time: true,
        })
    }

    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Due>, StateError> {
        self.check()?;
        let g = lock(&self.inner);
        let mut out = Vec::new();
        for (at, group) in g.due.iter().take_while(|(at, _)| *at <= now.millis()) {
            if out.len() >= limit {
                break;
            }
            let Some(state) = g.groups.get(group) else {
                continue;
            };
            out.push(Due {
                group_key: group.clone(),
                state: state.clone(),
                due_at: Timestamp::from_millis_clamped(*at),
            });
        }
        Ok(out)
    }

    async fn snooze(&self, group_key: &str, until: Timestamp) -> Result<(), StateError> {
        self.check()?;
        let mut g = lock(&self.inner);
        if g.due_of
            .get(group_key)
            .is_some_and(|&old| old < until.millis())
        {
            g.set_due(group_key, Some(until));
        }
        Ok(())
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
    async fn memory_state_keeps_the_due_index() {
        conformance::due_index(&MemoryState::new()).await;
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
        assert!(
            s.apply(test_event("x"), apply_now())
                .await
                .unwrap()
                .first_time
        );
        assert!(!StateError::Permanent("x".into()).is_retryable());
    }
}
