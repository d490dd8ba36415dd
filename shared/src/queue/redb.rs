//! The redb queue of `storehook serve`: a durable, per-group FIFO queue in
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

use crate::clock::Clock;
use crate::queue::{EventQueue, QueueError, QueueMessage, Received};
use crate::redb_file::group_commit::{GroupCommitter, Job};
use crate::redb_file::{Health, RedbFile};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
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
pub struct RedbQueueError(pub String);

fn err(e: impl std::fmt::Display) -> RedbQueueError {
    RedbQueueError(e.to_string())
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
    /// The queued positions carrying each deduplication id. Usually one, but a
    /// replayed dead letter may share its id with a message appended after it
    /// was dead-lettered: the id stays "queued" until the last of them leaves.
    dedup: HashMap<String, BTreeSet<u64>>,
    /// Deduplication ids written by the transaction being built (not committed yet).
    uncommitted: HashSet<String>,
}

impl Index {
    fn push(&mut self, id: u64, group: String, not_before: i64, dedup: String) {
        self.dedup.entry(dedup).or_default().insert(id);
        self.pending.insert(id, (group.clone(), not_before));
        let q = self.groups.entry(group.clone()).or_default();
        q.push_back(id);
        if q.len() == 1 && !self.in_flight.contains(&group) {
            self.ready.insert(id);
        }
    }

    /// Removes a finished message (the head of its in-flight group) and frees the group.
    fn remove(&mut self, id: u64, dedup: &str) {
        if let Some(ids) = self.dedup.get_mut(dedup) {
            ids.remove(&id);
            if ids.is_empty() {
                self.dedup.remove(dedup);
            }
        }
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

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, RedbQueueError>>;

/// What every queue job needs after its commit: the index and the waiters.
#[derive(Clone)]
struct Shared {
    index: Arc<Mutex<Index>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A leased message whose outcome could not be recorded becomes available
    /// again (at-least-once: the dispatcher's idempotency absorbs the repeat)
    /// instead of blocking its group until a restart.
    fn release(&self, group: &str) {
        self.lock().release(group);
        self.wake.notify_waiters();
    }
}

fn table_err(e: impl std::fmt::Display) -> String {
    format!("embedded queue: {e}")
}

fn to_json(s: &Stored) -> Result<Vec<u8>, String> {
    serde_json::to_vec(s).map_err(table_err)
}

fn next_id(meta: &mut redb::Table<&str, u64>) -> Result<u64, String> {
    let next = meta
        .get("next_id")
        .map_err(table_err)?
        .map(|v| v.value())
        .unwrap_or(1);
    meta.insert("next_id", next + 1).map_err(table_err)?;
    Ok(next)
}

struct AppendJob {
    messages: Vec<QueueMessage>,
    now_ms: i64,
    shared: Shared,
    added: Vec<(u64, Stored)>,
    reply: Reply<()>,
}

impl Job for AppendJob {
    fn write(&mut self, tx: &redb::WriteTransaction) -> Result<(), String> {
        self.added.clear();
        let mut q = tx.open_table(QUEUE).map_err(table_err)?;
        let mut meta = tx.open_table(META).map_err(table_err)?;
        let mut idx = self.shared.lock();
        for m in &self.messages {
            // Queued, written by an earlier job of this batch, or repeated in this call.
            if idx.dedup.contains_key(&m.dedup_id) || !idx.uncommitted.insert(m.dedup_id.clone()) {
                continue;
            }
            let id = next_id(&mut meta)?;
            let s = Stored {
                group_id: m.group_id.clone(),
                dedup_id: m.dedup_id.clone(),
                body: m.body.clone(),
                receive_count: 0,
                not_before_ms: self.now_ms,
                dead_reason: None,
            };
            q.insert(id, to_json(&s)?.as_slice()).map_err(table_err)?;
            self.added.push((id, s));
        }
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let mut idx = self.shared.lock();
        for m in &self.messages {
            idx.uncommitted.remove(&m.dedup_id);
        }
        if committed.is_ok() {
            for (id, s) in self.added {
                idx.push(id, s.group_id, s.not_before_ms, s.dedup_id);
            }
        }
        drop(idx);
        self.shared.wake.notify_waiters();
        let _ = self.reply.send(committed.map_err(RedbQueueError));
    }
}

struct LeaseJob {
    id: u64,
    group: String,
    shared: Shared,
    leased: Result<Option<Stored>, String>,
    reply: Reply<Stored>,
}

impl Job for LeaseJob {
    fn write(&mut self, tx: &redb::WriteTransaction) -> Result<(), String> {
        let mut q = tx.open_table(QUEUE).map_err(table_err)?;
        let found = q.get(self.id).map_err(table_err)?.map(|v| {
            serde_json::from_slice::<Stored>(v.value())
                .map_err(|e| table_err(format!("stored message {} is corrupt: {e}", self.id)))
        });
        self.leased = match found {
            // Only after a commit whose I/O failed but which became durable
            // (the index is rebuilt on reopen): the message is gone for good.
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(mut s)) => {
                s.receive_count += 1;
                q.insert(self.id, to_json(&s)?.as_slice())
                    .map_err(table_err)?;
                Ok(Some(s))
            }
        };
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        if committed.is_ok() && matches!(self.leased, Ok(None)) {
            // Not in the file: drop it from the index, or the group would hand
            // out a message that no longer exists, forever.
            let mut idx = self.shared.lock();
            let dedup = idx
                .dedup
                .iter()
                .find_map(|(d, ids)| ids.contains(&self.id).then(|| d.clone()));
            idx.remove(self.id, dedup.as_deref().unwrap_or_default());
        }
        let result = committed
            .and(self.leased)
            .and_then(|s| s.ok_or_else(|| table_err("leased message vanished")));
        if result.is_err() {
            self.shared.release(&self.group);
        }
        let _ = self.reply.send(result.map_err(RedbQueueError));
    }
}

/// What a worker's lease ends with.
enum Settle {
    Ack,
    Retry { not_before_ms: i64 },
    Dead { reason: String },
}

struct SettleJob {
    lease: Lease,
    settle: Settle,
    shared: Shared,
    reply: Reply<()>,
}

impl Job for SettleJob {
    fn write(&mut self, tx: &redb::WriteTransaction) -> Result<(), String> {
        let mut q = tx.open_table(QUEUE).map_err(table_err)?;
        match &self.settle {
            Settle::Ack => {
                q.remove(self.lease.id).map_err(table_err)?;
            }
            Settle::Retry { not_before_ms } => {
                let mut s = self.lease.message.clone();
                s.not_before_ms = *not_before_ms;
                q.insert(self.lease.id, to_json(&s)?.as_slice())
                    .map_err(table_err)?;
            }
            Settle::Dead { reason } => {
                let mut d = tx.open_table(DEAD).map_err(table_err)?;
                let mut s = self.lease.message.clone();
                s.dead_reason = Some(reason.clone());
                let json = to_json(&s)?;
                q.remove(self.lease.id).map_err(table_err)?;
                d.insert(self.lease.id, json.as_slice())
                    .map_err(table_err)?;
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let group = &self.lease.message.group_id;
        match (&committed, &self.settle) {
            (Err(_), _) => self.shared.release(group),
            (Ok(()), Settle::Retry { not_before_ms }) => {
                let mut idx = self.shared.lock();
                if let Some(entry) = idx.pending.get_mut(&self.lease.id) {
                    entry.1 = *not_before_ms;
                }
                idx.release(group);
                drop(idx);
                self.shared.wake.notify_waiters();
            }
            (Ok(()), Settle::Ack | Settle::Dead { .. }) => {
                self.shared
                    .lock()
                    .remove(self.lease.id, &self.lease.message.dedup_id);
                self.shared.wake.notify_waiters();
            }
        }
        let _ = self.reply.send(committed.map_err(RedbQueueError));
    }
}

struct ReplayJob {
    only: Option<Vec<String>>,
    now_ms: i64,
    shared: Shared,
    added: Vec<(u64, Stored)>,
    reply: Reply<usize>,
}

impl Job for ReplayJob {
    fn write(&mut self, tx: &redb::WriteTransaction) -> Result<(), String> {
        self.added.clear();
        let mut q = tx.open_table(QUEUE).map_err(table_err)?;
        let mut d = tx.open_table(DEAD).map_err(table_err)?;
        let mut meta = tx.open_table(META).map_err(table_err)?;
        let mut chosen = Vec::new();
        for row in d.iter().map_err(table_err)? {
            let (k, v) = row.map_err(table_err)?;
            let s: Stored = serde_json::from_slice(v.value()).map_err(table_err)?;
            if self
                .only
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|i| crate::fanout::selects(i, &s.dedup_id)))
            {
                chosen.push((k.value(), s));
            }
        }
        for (old, mut s) in chosen {
            d.remove(old).map_err(table_err)?;
            s.receive_count = 0;
            s.not_before_ms = self.now_ms;
            s.dead_reason = None;
            let id = next_id(&mut meta)?;
            q.insert(id, to_json(&s)?.as_slice()).map_err(table_err)?;
            self.added.push((id, s));
        }
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let n = self.added.len();
        if committed.is_ok() {
            let mut idx = self.shared.lock();
            for (id, s) in self.added {
                idx.push(id, s.group_id, s.not_before_ms, s.dedup_id);
            }
            drop(idx);
            self.shared.wake.notify_waiters();
        }
        let _ = self
            .reply
            .send(committed.map(|()| n).map_err(RedbQueueError));
    }
}

/// The durable per-group FIFO queue.
///
/// Every write (append, lease, ack, retry, dead letter, replay) goes through
/// one group committer: concurrent writes share one redb transaction and one
/// fsync, and each caller is answered only once its write is durable.
#[derive(Debug, Clone)]
pub struct RedbQueue {
    file: Arc<RedbFile>,
    index: Arc<Mutex<Index>>,
    wake: Arc<tokio::sync::Notify>,
    committer: GroupCommitter,
}

impl RedbQueue {
    /// Opens (or creates) `dir/queue.redb`. Messages in flight when the process
    /// stopped are visible again.
    pub fn open(dir: &Path) -> Result<Self, RedbQueueError> {
        Self::open_file(|init| RedbFile::open_in(dir, "queue.redb", init))
    }

    fn open_file(
        open: impl FnOnce(crate::redb_file::Init) -> Result<Arc<RedbFile>, String>,
    ) -> Result<Self, RedbQueueError> {
        let index = Arc::new(Mutex::new(Index::default()));
        let for_init = index.clone();
        // Runs at the first open and after every reopen: a commit whose I/O
        // failed may or may not have become durable, so the index is rebuilt
        // from the file; groups leased right now stay blocked until their
        // worker settles them.
        let init: crate::redb_file::Init = Box::new(move |db, _| {
            let w = db.begin_write().map_err(table_err)?;
            let mut fresh = Index::default();
            {
                let q = w.open_table(QUEUE).map_err(table_err)?;
                fresh.in_flight = for_init
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .in_flight
                    .clone();
                for row in q.iter().map_err(table_err)? {
                    let (k, v) = row.map_err(table_err)?;
                    let s: Stored = serde_json::from_slice(v.value()).map_err(table_err)?;
                    fresh.push(k.value(), s.group_id, s.not_before_ms, s.dedup_id);
                }
                w.open_table(DEAD).map_err(table_err)?;
                w.open_table(META).map_err(table_err)?;
            }
            w.commit().map_err(table_err)?;
            *for_init.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
            Ok(())
        });
        let file = open(init).map_err(RedbQueueError)?;
        let committer = GroupCommitter::start(file.clone(), "storehook-queue").map_err(err)?;
        Ok(Self {
            file,
            index,
            wake: Arc::new(tokio::sync::Notify::new()),
            committer,
        })
    }

    /// The condition of the queue file: failed after an I/O error (a full
    /// disk) until it is reopened, which happens by itself.
    pub fn health(&self) -> Health {
        self.file.health()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shared(&self) -> Shared {
        Shared {
            index: self.index.clone(),
            wake: self.wake.clone(),
        }
    }

    async fn run<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Box<dyn Job>,
    ) -> Result<T, RedbQueueError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.committer.submit(job(reply));
        answer
            .await
            .map_err(|_| RedbQueueError("the commit thread dropped a write".into()))?
    }

    /// Appends messages durably (one transaction); duplicates of queued ids are dropped.
    pub async fn append(
        &self,
        messages: &[QueueMessage],
        now_ms: i64,
    ) -> Result<(), RedbQueueError> {
        let (messages, shared) = (messages.to_vec(), self.shared());
        self.run(|reply| {
            Box::new(AppendJob {
                messages,
                now_ms,
                shared,
                added: Vec::new(),
                reply,
            })
        })
        .await
    }

    /// The oldest visible message of a group with nothing in flight, leased to
    /// the caller (its receive count incremented, durably), or the instant the
    /// next one becomes visible.
    pub async fn lease(&self, now_ms: i64) -> Result<Result<Lease, Option<i64>>, RedbQueueError> {
        let (id, group) = {
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
                    idx.in_flight.insert(group.clone());
                    (id, group)
                }
                None => return Ok(Err(earliest)),
            }
        };
        let shared = self.shared();
        let message = self
            .run(|reply| {
                Box::new(LeaseJob {
                    id,
                    group,
                    shared,
                    leased: Ok(None),
                    reply,
                })
            })
            .await?;
        Ok(Ok(Lease { id, message }))
    }

    /// Waits for a lease (or until `max_wait`).
    pub async fn next(
        &self,
        clock: &dyn Clock,
        max_wait: Duration,
    ) -> Result<Option<Lease>, RedbQueueError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let notified = self.wake.notified();
            let now = clock.now().timestamp_millis();
            let wait = match self.lease(now).await? {
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

    async fn settle(&self, lease: &Lease, settle: Settle) -> Result<(), RedbQueueError> {
        let (lease, shared) = (lease.clone(), self.shared());
        self.run(|reply| {
            Box::new(SettleJob {
                lease,
                settle,
                shared,
                reply,
            })
        })
        .await
    }

    /// Removes a processed message (durably: once acknowledged, a message is
    /// never handed out again, even after a crash). If the removal cannot be
    /// written, the message is handed out again (at least once).
    pub async fn ack(&self, lease: &Lease) -> Result<(), RedbQueueError> {
        self.settle(lease, Settle::Ack).await
    }

    /// Makes a message visible again after `delay`; its group stays blocked until then.
    pub async fn retry(
        &self,
        lease: &Lease,
        delay: Duration,
        now_ms: i64,
    ) -> Result<(), RedbQueueError> {
        let not_before_ms =
            now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        self.settle(lease, Settle::Retry { not_before_ms }).await
    }

    /// Moves a message to the dead letters (its group proceeds).
    pub async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), RedbQueueError> {
        let reason = reason.to_owned();
        self.settle(lease, Settle::Dead { reason }).await
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<(u64, Stored)>, RedbQueueError> {
        let db = self.file.db().map_err(RedbQueueError)?;
        let r = db.begin_read().map_err(err)?;
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
    pub async fn replay(
        &self,
        only: Option<&[String]>,
        now_ms: i64,
    ) -> Result<usize, RedbQueueError> {
        let (only, shared) = (only.map(<[String]>::to_vec), self.shared());
        self.run(|reply| {
            Box::new(ReplayJob {
                only,
                now_ms,
                shared,
                added: Vec::new(),
                reply,
            })
        })
        .await
    }
}

impl From<RedbQueueError> for QueueError {
    fn from(e: RedbQueueError) -> Self {
        QueueError::Unavailable(e.to_string())
    }
}

#[async_trait]
impl EventQueue for RedbQueue {
    async fn send(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        Ok(self.append(messages, Utc::now().timestamp_millis()).await?)
    }
}

/// A [`Lease`] on its queue: the [`Received`] message a worker settles.
/// [`retry`](Received::retry) counts its delay from `clock`'s now.
#[derive(Debug)]
pub struct Leased<'a> {
    /// The queue the lease came from.
    pub queue: &'a RedbQueue,
    /// The leased message.
    pub lease: Lease,
    /// The time retries count from.
    pub clock: &'a dyn Clock,
}

#[async_trait]
impl Received for Leased<'_> {
    /// The deduplication id (the event id): dead letters are listed and replayed by it.
    fn id(&self) -> &str {
        &self.lease.message.dedup_id
    }

    fn group_id(&self) -> &str {
        &self.lease.message.group_id
    }

    fn body(&self) -> &str {
        &self.lease.message.body
    }

    fn receive_count(&self) -> u32 {
        self.lease.message.receive_count
    }

    async fn ack(&self) -> Result<(), QueueError> {
        Ok(self.queue.ack(&self.lease).await?)
    }

    async fn retry(&self, delay: Duration) -> Result<(), QueueError> {
        let now = self.clock.now().timestamp_millis();
        Ok(self.queue.retry(&self.lease, delay, now).await?)
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), QueueError> {
        Ok(self.queue.dead_letter(&self.lease, reason).await?)
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
    use crate::redb_file::write_private_new;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn data_dir_is_created_0700_and_every_redb_file_0600() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("data");
        let _q = RedbQueue::open(&dir).unwrap();
        let _s = crate::state::RedbState::open(&dir).unwrap();
        let _l = crate::stores::playstore::links::redb::RedbLinkStore::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        for f in ["queue.redb", "state.redb", "links.redb"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }

        // a file left world-readable by an older version is tightened on open
        let old = tmp.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("queue.redb"), b"").unwrap();
        std::fs::set_permissions(
            old.join("queue.redb"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let _q = RedbQueue::open(&old).unwrap();
        assert_eq!(mode(&old.join("queue.redb")), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn write_private_new_creates_0600_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("secret");
        write_private_new(&p, b"one").unwrap();
        assert_eq!(mode(&p), 0o600);
        let e = write_private_new(&p, b"two").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
    }

    fn msg(group: &str, id: &str) -> QueueMessage {
        QueueMessage {
            group_id: group.into(),
            dedup_id: id.into(),
            body: format!("{{\"id\":\"{id}\"}}"),
        }
    }

    async fn lease_id(q: &RedbQueue, now: i64) -> Option<String> {
        q.lease(now).await.unwrap().ok().map(|l| l.message.dedup_id)
    }

    #[tokio::test]
    async fn groups_are_fifo_and_block_while_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let q = RedbQueue::open(dir.path()).unwrap();
        q.append(&[msg("a", "a1"), msg("a", "a2"), msg("b", "b1")], 0)
            .await
            .unwrap();
        // GIVEN a1 in flight, WHEN leasing again THEN b1 (not a2)
        let a1 = q.lease(0).await.unwrap().unwrap();
        assert_eq!(a1.message.dedup_id, "a1");
        let b1 = q.lease(0).await.unwrap().unwrap();
        assert_eq!(b1.message.dedup_id, "b1");
        assert!(q.lease(0).await.unwrap().is_err(), "a2 must wait for a1");
        // a1 fails: retried in 5 s; a2 still waits behind it
        q.retry(&a1, Duration::from_secs(5), 0).await.unwrap();
        assert_eq!(q.lease(1000).await.unwrap().unwrap_err(), Some(5000));
        let again = q.lease(5000).await.unwrap().unwrap();
        assert_eq!(
            (again.message.dedup_id.as_str(), again.message.receive_count),
            ("a1", 2)
        );
        q.ack(&again).await.unwrap();
        assert_eq!(lease_id(&q, 5000).await.as_deref(), Some("a2"));
        q.ack(&b1).await.unwrap();
    }

    #[tokio::test]
    async fn messages_survive_a_restart_and_duplicates_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = RedbQueue::open(dir.path()).unwrap();
            q.append(&[msg("a", "a1"), msg("a", "a1")], 0)
                .await
                .unwrap();
            q.append(&[msg("a", "a1"), msg("a", "a2")], 0)
                .await
                .unwrap();
            assert_eq!(q.depth(), 2);
            let l = q.lease(0).await.unwrap().unwrap();
            assert_eq!(l.message.dedup_id, "a1");
            // process "crashes" with a1 in flight
        }
        let q = RedbQueue::open(dir.path()).unwrap();
        assert_eq!(q.depth(), 2);
        let l = q.lease(0).await.unwrap().unwrap();
        assert_eq!(l.message.dedup_id, "a1");
        assert_eq!(l.message.receive_count, 2, "the crashed receive counts");
    }

    #[tokio::test]
    async fn dead_letters_unblock_the_group_and_replay_requeues_them() {
        let dir = tempfile::tempdir().unwrap();
        let q = RedbQueue::open(dir.path()).unwrap();
        q.append(&[msg("a", "a1"), msg("a", "a2"), msg("c", "c1")], 0)
            .await
            .unwrap();
        let a1 = q.lease(0).await.unwrap().unwrap();
        q.dead_letter(&a1, "410 Gone").await.unwrap();
        assert_eq!(lease_id(&q, 0).await.as_deref(), Some("a2"));
        let dead = q.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].1.dead_reason.as_deref(), Some("410 Gone"));
        // replay by id: only the named one moves
        assert_eq!(q.replay(Some(&["nope".to_string()]), 0).await.unwrap(), 0);
        assert_eq!(q.replay(Some(&["a1".to_string()]), 0).await.unwrap(), 1);
        assert!(q.dead_letters().unwrap().is_empty());
        // it comes after what was queued, with a fresh receive count
        let c1 = q.lease(0).await.unwrap().unwrap();
        assert_eq!(c1.message.dedup_id, "c1");
        q.ack(&c1).await.unwrap();
        assert!(q.lease(0).await.unwrap().is_err(), "a2 is still in flight");
        let pending: Vec<String> = {
            let idx = q.lock();
            idx.pending.values().map(|(g, _)| g.clone()).collect()
        };
        assert_eq!(pending, vec!["a".to_string(), "a".to_string()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_commits_and_keep_each_id_once() {
        // GIVEN 40 tasks appending at once, every id sent by two of them
        let dir = tempfile::tempdir().unwrap();
        let q = RedbQueue::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..40 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let n = t % 20;
                q.append(&[msg(&format!("g{}", n % 5), &format!("m{n}"))], 0)
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // THEN each id is queued once, and the groups stay FIFO by arrival
        assert_eq!(q.depth(), 20);
        let mut seen = Vec::new();
        while let Ok(l) = q.lease(0).await.unwrap() {
            seen.push(l.message.dedup_id.clone());
            q.ack(&l).await.unwrap();
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 20);
        // AND everything is durable once answered: the file reopens at once with nothing left
        drop(q);
        assert_eq!(RedbQueue::open(dir.path()).unwrap().depth(), 0);
    }

    /// A write that fails: the storage failure of a batch.
    struct Broken;
    impl Job for Broken {
        fn write(&mut self, _: &redb::WriteTransaction) -> Result<(), String> {
            Err("disk on fire".into())
        }
        fn finish(self: Box<Self>, _: Result<(), String>) {}
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_ack_hands_the_message_out_again_instead_of_blocking_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let q = RedbQueue::open(dir.path()).unwrap();
        q.append(&[msg("a", "a1"), msg("a", "a2")], 0)
            .await
            .unwrap();
        let a1 = q.lease(0).await.unwrap().unwrap();
        // GIVEN the commit thread held in a transaction, then a failing write and
        // a1's ack queued behind it (so both land in the same, failing, batch)
        let go = q.committer.hold(); // its batch holds only the gate
        q.committer.submit(Box::new(Broken));
        let mut ack = Box::pin(q.ack(&a1));
        tokio::select! {
            biased;
            r = &mut ack => panic!("answered before the commit: {r:?}"),
            () = std::future::ready(()) => {} // polled once: the ack is submitted
        }
        go.send(()).unwrap();
        // THEN the ack fails, nothing is removed, and a1 is handed out again, first
        let e = ack.await.unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
        assert_eq!(q.depth(), 2);
        let again = q.lease(0).await.unwrap().unwrap();
        assert_eq!(
            (again.message.dedup_id.as_str(), again.message.receive_count),
            ("a1", 2)
        );
        q.ack(&again).await.unwrap();
        assert_eq!(lease_id(&q, 0).await.as_deref(), Some("a2"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_refuses_intake_and_the_queue_heals_by_itself() {
        use crate::redb_file::testing;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        let full = testing::DiskFull::default();
        let q = RedbQueue::open_file(|init| {
            RedbFile::open_with(&path, testing::opener(&path, &full), init)
        })
        .unwrap();
        // GIVEN an acknowledged (durably appended) message
        q.append(&[msg("a", "a1")], 0).await.unwrap();
        // WHEN the disk runs full
        full.set(true);
        // THEN intake is refused (the store retries) and the condition is reported
        assert!(q.append(&[msg("b", "b1")], 0).await.is_err());
        assert!(matches!(q.health(), Health::Failed { .. }));
        assert!(q.append(&[msg("b", "b1")], 0).await.is_err());
        // WHEN space returns THEN the queue reopens by itself, nothing
        // acknowledged is lost, and intake and leasing work again
        full.set(false);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while q.health() != Health::Ok {
            assert!(std::time::Instant::now() < deadline, "{:?}", q.health());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        q.append(&[msg("b", "b1")], 0).await.unwrap();
        assert_eq!(q.depth(), 2);
        let mut got = vec![
            lease_id(&q, 0).await.unwrap(),
            lease_id(&q, 0).await.unwrap(),
        ];
        got.sort();
        assert_eq!(got, ["a1", "b1"]);
    }

    #[tokio::test]
    async fn a_message_missing_from_the_file_is_dropped_from_the_index_not_leased_forever() {
        // GIVEN the index and the file disagree (a commit reported failed that
        // became durable): a1 is no longer in the file
        let dir = tempfile::tempdir().unwrap();
        let q = RedbQueue::open(dir.path()).unwrap();
        q.append(&[msg("a", "a1"), msg("a", "a2")], 0)
            .await
            .unwrap();
        {
            let db = q.file.db().unwrap();
            let w = db.begin_write().unwrap();
            w.open_table(QUEUE).unwrap().remove(1u64).unwrap();
            w.commit().unwrap();
        }
        // WHEN leasing THEN a1 fails once and is forgotten; the group moves on
        assert!(q.lease(0).await.is_err());
        assert_eq!(lease_id(&q, 0).await.as_deref(), Some("a2"));
        assert_eq!(q.depth(), 1);
    }
}
