//! The embedded queue of `storehook serve`: a durable, per-group FIFO queue in
//! one redb file, with SQS FIFO semantics where they matter —
//!
//! - a message is written to disk before `send` returns (the store's 2xx means
//!   "durably queued", as with SQS);
//! - only the oldest message of a group is ever handed out, and not while
//!   another message of the same group is in flight (strict per-subscription
//!   order, different groups in parallel);
//! - a failed message becomes visible again after its retry delay and keeps
//!   blocking its group meanwhile;
//! - dead letters are kept in their own table and can be replayed.
//!
//! Deduplication: a message whose deduplication id is still queued is dropped
//! (SQS FIFO keeps ids for 5 minutes; the dispatcher's own idempotency on the
//! event id covers the rest).

use crate::queue::{EventQueue, QueueError, QueueMessage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// A stored message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stored {
    /// FIFO group.
    pub group_id: String,
    /// Deduplication id (the event id).
    pub dedup_id: String,
    /// The event JSON.
    pub body: String,
    /// How many times it was handed out.
    pub receive_count: u32,
    /// Not handed out before this instant (ms).
    pub not_before_ms: i64,
    /// Why it was dead-lettered (dead letters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
}

/// A message handed out to a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Queue position (ack/retry/dead-letter it by this).
    pub id: u64,
    /// The message.
    pub message: Stored,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[error("embedded queue: {0}")]
pub struct EmbeddedError(pub String);

fn err(e: impl std::fmt::Display) -> EmbeddedError {
    EmbeddedError(e.to_string())
}

/// The in-memory scheduling index (rebuilt from the file at open).
#[derive(Debug, Default)]
struct Index {
    /// Every queued message by position: (group, not_before_ms).
    pending: BTreeMap<u64, (String, i64)>,
    /// Each group's queued positions, oldest first.
    groups: HashMap<String, VecDeque<u64>>,
    /// Heads of the groups with nothing in flight: the only candidates for a lease.
    ready: BTreeSet<u64>,
    in_flight: HashSet<String>,
    dedup: HashMap<String, u64>,
}

impl Index {
    fn push(&mut self, id: u64, group: String, not_before: i64, dedup: String) {
        self.dedup.insert(dedup, id);
        self.pending.insert(id, (group.clone(), not_before));
        let q = self.groups.entry(group.clone()).or_default();
        q.push_back(id);
        if q.len() == 1 && !self.in_flight.contains(&group) {
            self.ready.insert(id);
        }
    }

    /// Removes a finished message (the head of its in-flight group) and frees the group.
    fn remove(&mut self, id: u64, dedup: &str) {
        self.dedup.remove(dedup);
        if let Some((group, _)) = self.pending.remove(&id) {
            self.ready.remove(&id);
            if let Some(q) = self.groups.get_mut(&group) {
                q.retain(|x| *x != id);
                if q.is_empty() {
                    self.groups.remove(&group);
                }
            }
            self.release(&group);
        }
    }

    /// Marks `group` as not in flight; its head becomes a candidate again.
    fn release(&mut self, group: &str) {
        self.in_flight.remove(group);
        if let Some(head) = self.groups.get(group).and_then(|q| q.front()) {
            self.ready.insert(*head);
        }
    }
}

/// The durable per-group FIFO queue.
#[derive(Debug, Clone)]
pub struct EmbeddedQueue {
    db: Arc<Database>,
    index: Arc<Mutex<Index>>,
    wake: Arc<tokio::sync::Notify>,
}

impl EmbeddedQueue {
    /// Opens (or creates) `dir/queue.redb`. Messages in flight when the process
    /// stopped are visible again.
    pub fn open(dir: &Path) -> Result<Self, EmbeddedError> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let db = Database::create(dir.join("queue.redb")).map_err(err)?;
        let mut index = Index::default();
        {
            let w = db.begin_write().map_err(err)?;
            {
                let q = w.open_table(QUEUE).map_err(err)?;
                for row in q.iter().map_err(err)? {
                    let (k, v) = row.map_err(err)?;
                    let s: Stored = serde_json::from_slice(v.value()).map_err(err)?;
                    index.push(k.value(), s.group_id, s.not_before_ms, s.dedup_id);
                }
                w.open_table(DEAD).map_err(err)?;
                w.open_table(META).map_err(err)?;
            }
            w.commit().map_err(err)?;
        }
        Ok(Self {
            db: Arc::new(db),
            index: Arc::new(Mutex::new(index)),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_id(meta: &mut redb::Table<&str, u64>) -> Result<u64, EmbeddedError> {
        let next = meta
            .get("next_id")
            .map_err(err)?
            .map(|v| v.value())
            .unwrap_or(1);
        meta.insert("next_id", next + 1).map_err(err)?;
        Ok(next)
    }

    /// Appends messages durably (one transaction); duplicates of queued ids are dropped.
    pub fn append(&self, messages: &[QueueMessage], now_ms: i64) -> Result<(), EmbeddedError> {
        let mut added = Vec::new();
        let w = self.db.begin_write().map_err(err)?;
        {
            let mut q = w.open_table(QUEUE).map_err(err)?;
            let mut meta = w.open_table(META).map_err(err)?;
            let queued: HashSet<String> = {
                let idx = self.lock();
                messages
                    .iter()
                    .filter(|m| idx.dedup.contains_key(&m.dedup_id))
                    .map(|m| m.dedup_id.clone())
                    .collect()
            };
            let mut seen = HashSet::new();
            for m in messages {
                if queued.contains(&m.dedup_id) || !seen.insert(m.dedup_id.clone()) {
                    continue;
                }
                let id = Self::next_id(&mut meta)?;
                let s = Stored {
                    group_id: m.group_id.clone(),
                    dedup_id: m.dedup_id.clone(),
                    body: m.body.clone(),
                    receive_count: 0,
                    not_before_ms: now_ms,
                    dead_reason: None,
                };
                q.insert(id, serde_json::to_vec(&s).map_err(err)?.as_slice())
                    .map_err(err)?;
                added.push((id, s));
            }
        }
        w.commit().map_err(err)?;
        let mut idx = self.lock();
        for (id, s) in added {
            idx.push(id, s.group_id, s.not_before_ms, s.dedup_id);
        }
        drop(idx);
        self.wake.notify_waiters();
        Ok(())
    }

    /// The oldest visible message of a group with nothing in flight, leased to
    /// the caller (its receive count incremented), or the instant the next one
    /// becomes visible.
    pub fn lease(&self, now_ms: i64) -> Result<Result<Lease, Option<i64>>, EmbeddedError> {
        let chosen = {
            let mut idx = self.lock();
            let mut earliest: Option<i64> = None;
            let mut chosen = None;
            for id in idx.ready.iter() {
                let Some((group, not_before)) = idx.pending.get(id) else {
                    continue;
                };
                if *not_before <= now_ms {
                    chosen = Some((*id, group.clone()));
                    break;
                }
                earliest = Some(earliest.map_or(*not_before, |e: i64| e.min(*not_before)));
            }
            match chosen {
                Some((id, group)) => {
                    idx.ready.remove(&id);
                    idx.in_flight.insert(group);
                    id
                }
                None => return Ok(Err(earliest)),
            }
        };
        let result = (|| {
            let mut w = self.db.begin_write().map_err(err)?;
            let stored = {
                let mut q = w.open_table(QUEUE).map_err(err)?;
                let mut s: Stored = {
                    let v = q
                        .get(chosen)
                        .map_err(err)?
                        .ok_or_else(|| EmbeddedError("leased message vanished".into()))?;
                    serde_json::from_slice(v.value()).map_err(err)?
                };
                s.receive_count += 1;
                q.insert(chosen, serde_json::to_vec(&s).map_err(err)?.as_slice())
                    .map_err(err)?;
                s
            };
            w.set_durability(redb::Durability::None).map_err(err)?;
            w.commit().map_err(err)?;
            Ok(stored)
        })();
        match result {
            Ok(message) => Ok(Ok(Lease {
                id: chosen,
                message,
            })),
            Err(e) => {
                let mut idx = self.lock();
                if let Some((g, _)) = idx.pending.get(&chosen).cloned() {
                    idx.release(&g);
                }
                Err(e)
            }
        }
    }

    /// Waits for a lease (or until `max_wait`).
    pub async fn next(
        &self,
        clock: &dyn crate::clock::Clock,
        max_wait: Duration,
    ) -> Result<Option<Lease>, EmbeddedError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let notified = self.wake.notified();
            let now = clock.now().timestamp_millis();
            // redb writes block (the single writer may be fsyncing an append):
            // keep them off the async runtime's threads.
            let q = self.clone();
            let leased = tokio::task::spawn_blocking(move || q.lease(now))
                .await
                .map_err(|e| EmbeddedError(format!("lease task: {e}")))??;
            let wait = match leased {
                Ok(lease) => return Ok(Some(lease)),
                Err(Some(at)) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)),
                Err(None) => max_wait,
            };
            let until = (tokio::time::Instant::now() + wait).min(deadline);
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    fn finish(&self, lease: &Lease) {
        let mut idx = self.lock();
        idx.release(&lease.message.group_id);
        drop(idx);
        self.wake.notify_waiters();
    }

    /// Removes a processed message (durably: once acknowledged, a message is
    /// never handed out again, even after a crash).
    pub fn ack(&self, lease: &Lease) -> Result<(), EmbeddedError> {
        let w = self.db.begin_write().map_err(err)?;
        w.open_table(QUEUE)
            .map_err(err)?
            .remove(lease.id)
            .map_err(err)?;
        w.commit().map_err(err)?;
        self.lock().remove(lease.id, &lease.message.dedup_id);
        self.wake.notify_waiters();
        Ok(())
    }

    /// Makes a message visible again after `delay`; its group stays blocked until then.
    pub fn retry(&self, lease: &Lease, delay: Duration, now_ms: i64) -> Result<(), EmbeddedError> {
        let not_before =
            now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let mut w = self.db.begin_write().map_err(err)?;
        w.set_durability(redb::Durability::None).map_err(err)?;
        {
            let mut q = w.open_table(QUEUE).map_err(err)?;
            let mut s = lease.message.clone();
            s.not_before_ms = not_before;
            q.insert(lease.id, serde_json::to_vec(&s).map_err(err)?.as_slice())
                .map_err(err)?;
        }
        w.commit().map_err(err)?;
        {
            let mut idx = self.lock();
            if let Some(entry) = idx.pending.get_mut(&lease.id) {
                entry.1 = not_before;
            }
        }
        self.finish(lease);
        Ok(())
    }

    /// Moves a message to the dead letters (its group proceeds).
    pub fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), EmbeddedError> {
        let w = self.db.begin_write().map_err(err)?;
        {
            let mut q = w.open_table(QUEUE).map_err(err)?;
            let mut d = w.open_table(DEAD).map_err(err)?;
            let mut s = lease.message.clone();
            s.dead_reason = Some(reason.to_owned());
            q.remove(lease.id).map_err(err)?;
            d.insert(lease.id, serde_json::to_vec(&s).map_err(err)?.as_slice())
                .map_err(err)?;
        }
        w.commit().map_err(err)?;
        self.lock().remove(lease.id, &lease.message.dedup_id);
        self.wake.notify_waiters();
        Ok(())
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<(u64, Stored)>, EmbeddedError> {
        let r = self.db.begin_read().map_err(err)?;
        let d = r.open_table(DEAD).map_err(err)?;
        let mut out = Vec::new();
        for row in d.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            out.push((k.value(), serde_json::from_slice(v.value()).map_err(err)?));
        }
        Ok(out)
    }

    /// Number of queued (not dead) messages.
    pub fn depth(&self) -> usize {
        self.lock().pending.len()
    }

    /// Moves dead letters back to the queue (all, or those whose deduplication
    /// id — the event id — is in `only`), with a fresh receive count, after
    /// everything already queued. Returns how many were moved.
    pub fn replay(&self, only: Option<&[String]>, now_ms: i64) -> Result<usize, EmbeddedError> {
        let dead = self.dead_letters()?;
        let chosen: Vec<(u64, Stored)> = dead
            .into_iter()
            .filter(|(_, s)| only.is_none_or(|ids| ids.iter().any(|i| i == &s.dedup_id)))
            .collect();
        let mut added = Vec::new();
        let w = self.db.begin_write().map_err(err)?;
        {
            let mut q = w.open_table(QUEUE).map_err(err)?;
            let mut d = w.open_table(DEAD).map_err(err)?;
            let mut meta = w.open_table(META).map_err(err)?;
            for (old, mut s) in chosen {
                d.remove(old).map_err(err)?;
                s.receive_count = 0;
                s.not_before_ms = now_ms;
                s.dead_reason = None;
                let id = Self::next_id(&mut meta)?;
                q.insert(id, serde_json::to_vec(&s).map_err(err)?.as_slice())
                    .map_err(err)?;
                added.push((id, s));
            }
        }
        w.commit().map_err(err)?;
        let n = added.len();
        let mut idx = self.lock();
        for (id, s) in added {
            idx.push(id, s.group_id, s.not_before_ms, s.dedup_id);
        }
        drop(idx);
        self.wake.notify_waiters();
        Ok(n)
    }
}

#[async_trait]
impl EventQueue for EmbeddedQueue {
    async fn send(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        let q = self.clone();
        let messages = messages.to_vec();
        let now = Utc::now().timestamp_millis();
        tokio::task::spawn_blocking(move || q.append(&messages, now))
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))?
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }
}

/// Milliseconds of a UTC time (helper for callers holding `DateTime`s).
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn msg(group: &str, id: &str) -> QueueMessage {
        QueueMessage {
            group_id: group.into(),
            dedup_id: id.into(),
            body: format!("{{\"id\":\"{id}\"}}"),
        }
    }

    fn lease_id(q: &EmbeddedQueue, now: i64) -> Option<String> {
        q.lease(now).unwrap().ok().map(|l| l.message.dedup_id)
    }

    #[test]
    fn groups_are_fifo_and_block_while_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(dir.path()).unwrap();
        q.append(&[msg("a", "a1"), msg("a", "a2"), msg("b", "b1")], 0)
            .unwrap();
        // GIVEN a1 in flight, WHEN leasing again THEN b1 (not a2)
        let a1 = q.lease(0).unwrap().unwrap();
        assert_eq!(a1.message.dedup_id, "a1");
        let b1 = q.lease(0).unwrap().unwrap();
        assert_eq!(b1.message.dedup_id, "b1");
        assert!(q.lease(0).unwrap().is_err(), "a2 must wait for a1");
        // a1 fails: retried in 5 s; a2 still waits behind it
        q.retry(&a1, Duration::from_secs(5), 0).unwrap();
        assert_eq!(q.lease(1000).unwrap().unwrap_err(), Some(5000));
        let again = q.lease(5000).unwrap().unwrap();
        assert_eq!(
            (again.message.dedup_id.as_str(), again.message.receive_count),
            ("a1", 2)
        );
        q.ack(&again).unwrap();
        assert_eq!(lease_id(&q, 5000).as_deref(), Some("a2"));
        q.ack(&b1).unwrap();
    }

    #[test]
    fn messages_survive_a_restart_and_duplicates_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = EmbeddedQueue::open(dir.path()).unwrap();
            q.append(&[msg("a", "a1"), msg("a", "a1")], 0).unwrap();
            q.append(&[msg("a", "a1"), msg("a", "a2")], 0).unwrap();
            assert_eq!(q.depth(), 2);
            let l = q.lease(0).unwrap().unwrap();
            assert_eq!(l.message.dedup_id, "a1");
            // process "crashes" with a1 in flight
        }
        let q = EmbeddedQueue::open(dir.path()).unwrap();
        assert_eq!(q.depth(), 2);
        let l = q.lease(0).unwrap().unwrap();
        assert_eq!(l.message.dedup_id, "a1");
        assert_eq!(l.message.receive_count, 2, "the crashed receive counts");
    }

    #[test]
    fn dead_letters_unblock_the_group_and_replay_requeues_them() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(dir.path()).unwrap();
        q.append(&[msg("a", "a1"), msg("a", "a2"), msg("c", "c1")], 0)
            .unwrap();
        let a1 = q.lease(0).unwrap().unwrap();
        q.dead_letter(&a1, "410 Gone").unwrap();
        assert_eq!(lease_id(&q, 0).as_deref(), Some("a2"));
        let dead = q.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].1.dead_reason.as_deref(), Some("410 Gone"));
        // replay by id: only the named one moves
        assert_eq!(q.replay(Some(&["nope".to_string()]), 0).unwrap(), 0);
        assert_eq!(q.replay(Some(&["a1".to_string()]), 0).unwrap(), 1);
        assert!(q.dead_letters().unwrap().is_empty());
        // it comes after what was queued, with a fresh receive count
        let c1 = q.lease(0).unwrap().unwrap();
        assert_eq!(c1.message.dedup_id, "c1");
        q.ack(&c1).unwrap();
        assert!(q.lease(0).unwrap().is_err(), "a2 is still in flight");
        let pending: Vec<String> = {
            let idx = q.lock();
            idx.pending.values().map(|(g, _)| g.clone()).collect()
        };
        assert_eq!(pending, vec!["a".to_string(), "a".to_string()]);
    }
}
