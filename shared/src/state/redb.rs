//! [`RedbState`]: the embedded [`StateStore`] of the local all-in-one server.
//! One redb file (`<data dir>/state.redb`); every apply (claim + group state +
//! history) is written inside an ACID write transaction — shared with the
//! other writes waiting at that moment (group commit) — so it survives
//! restarts and crashes without half-applied events.

use super::{Claim, DeliveryRecord, Due, GroupState, Recorded, StateError, StateStore, transition};
use crate::event::{Event, EventId, Timestamp};
use crate::redb_file::group_commit::{GroupCommitter, Job};
use crate::redb_file::{Health, RedbFile, Reopen};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const CLAIMS: TableDefinition<&str, &[u8]> = TableDefinition::new("claims");
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");
/// The due index of the sweeper: (due ms, group key) → (), in due order.
const DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("due");
/// The due entry of each group in [`DUE`]: group key → due ms.
const DUE_OF: TableDefinition<&str, u64> = TableDefinition::new("due_of");

/// Markers of one-time upgrades of the file: name → ().
const UPGRADES: TableDefinition<&str, ()> = TableDefinition::new("upgrades");
/// The marker of the due index's backfill.
const DUE_INDEX_BUILT: &str = "due_index_v1";

/// A due time as the index key (times before 1970 sort first, as 0).
fn due_key(t: Timestamp) -> u64 {
    u64::try_from(t.millis()).unwrap_or(0)
}

/// Sets (or removes, `None`) the due entry of `group`, inside `tx`.
fn set_due(tx: &redb::WriteTransaction, group: &str, at: Option<u64>) -> Result<(), StateError> {
    let mut due = tx.open_table(DUE).map_err(db_err)?;
    let mut due_of = tx.open_table(DUE_OF).map_err(db_err)?;
    let old = due_of.remove(group).map_err(db_err)?.map(|v| v.value());
    if let Some(old) = old {
        due.remove((old, group)).map_err(db_err)?;
    }
    if let Some(at) = at {
        due.insert((at, group), ()).map_err(db_err)?;
        due_of.insert(group, at).map_err(db_err)?;
    }
    Ok(())
}

/// File name inside the data directory.
pub const FILE_NAME: &str = "state.redb";

/// Embedded, persistent [`StateStore`] (redb).
///
/// Writes are group-committed ([`crate::group_commit`]): concurrent `apply`
/// and `record_delivery` calls (different subscriptions, from parallel
/// dispatcher workers) are written one after the other inside ONE write
/// transaction and made durable by one fsync; every caller gets its answer
/// only after that commit. Same semantics as one transaction each, a
/// fraction of the commits. An apply that fails on its own (corrupt stored
/// data) fails alone; a storage failure fails the whole batch, uncommitted.
#[derive(Clone)]
pub struct RedbState {
    file: Arc<RedbFile>,
    path: PathBuf,
    committer: GroupCommitter,
}

type Reply = tokio::sync::oneshot::Sender<Result<Recorded, StateError>>;

impl fmt::Debug for RedbState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbState")
            .field("path", &self.path)
            .finish()
    }
}

fn db_err(e: impl fmt::Display) -> StateError {
    StateError::Unavailable(format!("redb: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(v).map_err(|e| StateError::Permanent(format!("serialize: {e}")))
}

fn from_json<T: DeserializeOwned>(b: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(b)
        .map_err(|e| StateError::Permanent(format!("corrupt stored state: {e}")))
}

impl RedbState {
    /// Opens (or creates) `<dir>/state.redb`, creating `dir` if needed.
    /// A file can be open only once at a time (redb locks it).
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(FILE_NAME);
        let file = RedbFile::open_in(dir, FILE_NAME, Box::new(create_tables)).map_err(db_err)?;
        let committer = GroupCommitter::start(file.clone(), "storehook-state").map_err(db_err)?;
        Ok(Self {
            file,
            path,
            committer,
        })
    }

    /// The condition of the state file: failed after an I/O error (a full
    /// disk) until it is reopened, which happens by itself.
    pub fn health(&self) -> Health {
        self.file.health()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StateError> + Send + 'static,
    {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || f(&*file.db().map_err(StateError::Unavailable)?))
            .await
            .map_err(|e| StateError::Unavailable(format!("redb task: {e}")))?
    }
}

/// The tables, at every open of the file.
fn create_tables(db: &Database, _: Reopen) -> Result<(), String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    tx.open_table(GROUPS).map_err(|e| e.to_string())?;
    tx.open_table(CLAIMS).map_err(|e| e.to_string())?;
    tx.open_table(HISTORY).map_err(|e| e.to_string())?;
    tx.open_table(DELIVERIES).map_err(|e| e.to_string())?;
    tx.open_table(DUE).map_err(|e| e.to_string())?;
    tx.open_table(DUE_OF).map_err(|e| e.to_string())?;
    build_due_index(&tx).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

/// Once per file (marker [`DUE_INDEX_BUILT`]): gives every group stored
/// before the due index existed its entry, so a subscription that lapsed
/// before the upgrade is swept too. One pass over the groups at the first
/// open of an older file, never again (the sweeper itself never scans). A
/// group whose stored state does not parse is left out (its applies fail
/// alone, see `apply_in`).
fn build_due_index(tx: &redb::WriteTransaction) -> Result<(), StateError> {
    let mut upgrades = tx.open_table(UPGRADES).map_err(db_err)?;
    if upgrades.get(DUE_INDEX_BUILT).map_err(db_err)?.is_some() {
        return Ok(());
    }
    let mut entries = Vec::new();
    {
        let groups = tx.open_table(GROUPS).map_err(db_err)?;
        for row in groups.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let Ok(state) = from_json::<GroupState>(v.value()) else {
                continue;
            };
            if let Some(at) = state.due_at() {
                entries.push((k.value().to_owned(), due_key(at)));
            }
        }
    }
    for (group, at) in &entries {
        set_due(tx, group, Some(*at))?;
    }
    upgrades.insert(DUE_INDEX_BUILT, ()).map_err(db_err)?;
    if !entries.is_empty() {
        tracing::info!(
            groups = entries.len(),
            "due index built for groups stored before it existed"
        );
    }
    Ok(())
}

/// Applies `event` inside `tx` (no commit).
fn apply_in(
    tx: &redb::WriteTransaction,
    event: Event,
    now: Timestamp,
) -> Result<Recorded, StateError> {
    let mut claims = tx.open_table(CLAIMS).map_err(db_err)?;
    if let Some(c) = claims.get(event.id.as_str()).map_err(db_err)? {
        let c: Claim = from_json(c.value())?;
        return Ok(Recorded {
            event: c.event,
            derived: c.derived,
            first_time: false,
        });
    }
    let group = event.group_key();
    let mut groups = tx.open_table(GROUPS).map_err(db_err)?;
    let prev: Option<GroupState> = match groups.get(group.as_str()).map_err(db_err)? {
        Some(v) => Some(from_json(v.value())?),
        None => None,
    };
    let applied = transition(prev.as_ref(), event, now);
    // Serialize everything before the first write, so a failure leaves no partial write.
    let mut rows = Vec::with_capacity(1 + applied.derived.len());
    for e in std::iter::once(&applied.event).chain(&applied.derived) {
        rows.push((e.sequence, to_json(e)?));
    }
    let claim = Claim {
        group: group.clone(),
        event: applied.event,
        derived: applied.derived,
    };
    let claim_json = to_json(&claim)?;
    let next_json = to_json(&applied.next)?;
    let mut history = tx.open_table(HISTORY).map_err(db_err)?;
    for (seq, json) in &rows {
        history
            .insert((group.as_str(), *seq), json.as_slice())
            .map_err(db_err)?;
    }
    claims
        .insert(claim.event.id.as_str(), claim_json.as_slice())
        .map_err(db_err)?;
    groups
        .insert(group.as_str(), next_json.as_slice())
        .map_err(db_err)?;
    set_due(tx, &group, applied.next.due_at().map(due_key))?;
    Ok(Recorded {
        event: claim.event,
        derived: claim.derived,
        first_time: true,
    })
}

/// One apply of a group commit.
struct ApplyJob {
    event: Option<Event>,
    now: Timestamp,
    /// Set by `write`: the recorded event, or a failure of this event alone
    /// (bad stored data, found before anything was written).
    outcome: Option<Result<Recorded, StateError>>,
    reply: Reply,
}

impl Job for ApplyJob {
    fn write(&mut self, tx: &redb::WriteTransaction) -> Result<(), String> {
        let Some(event) = self.event.take() else {
            return Ok(());
        };
        match apply_in(tx, event, self.now) {
            Ok(r) => self.outcome = Some(Ok(r)),
            Err(e @ StateError::Permanent(_)) => self.outcome = Some(Err(e)),
            Err(e) => return Err(e.to_string()),
        }
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match committed {
            Ok(()) => self
                .outcome
                .unwrap_or_else(|| Err(StateError::Unavailable("apply was not written".into()))),
            Err(e) => Err(StateError::Unavailable(e)),
        };
        let _ = self.reply.send(result);
    }
}

/// A delivery record, written in the next group commit.
struct DeliveryJob {
    key: String,
    value: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<Result<(), StateError>>,
}

impl Job for DeliveryJob {
    fn write(&mut self, tx: &redb::WriteTransaction) -> Result<(), String> {
        let mut t = tx.open_table(DELIVERIES).map_err(|e| e.to_string())?;
        t.insert(self.key.as_str(), self.value.as_slice())
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let _ = self.reply.send(committed.map_err(StateError::Unavailable));
    }
}

/// A snooze, written in the next group commit.
struct SnoozeJob {
    group: String,
    until: u64,
    reply: tokio::sync::oneshot::Sender<Result<(), StateError>>,
}

impl Job for SnoozeJob {
    fn write(&mut self, tx: &redb::WriteTransaction) -> Result<(), String> {
        let current = tx
            .open_table(DUE_OF)
            .map_err(|e| e.to_string())?
            .get(self.group.as_str())
            .map_err(|e| e.to_string())?
            .map(|v| v.value());
        if current.is_some_and(|c| c < self.until) {
            set_due(tx, &self.group, Some(self.until)).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let _ = self.reply.send(committed.map_err(StateError::Unavailable));
    }
}

#[async_trait]
impl StateStore for RedbState {
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Due>, StateError> {
        let upto = due_key(now).saturating_add(1);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let due = tx.open_table(DUE).map_err(db_err)?;
            let groups = tx.open_table(GROUPS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in due.range(..(upto, "")).map_err(db_err)? {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = row.map_err(db_err)?;
                let (at, group) = k.value();
                let Some(v) = groups.get(group).map_err(db_err)? else {
                    continue;
                };
                out.push(Due {
                    group_key: group.to_owned(),
                    state: from_json(v.value())?,
                    due_at: Timestamp::from_millis_clamped(i64::try_from(at).unwrap_or(i64::MAX)),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn snooze(&self, group_key: &str, until: Timestamp) -> Result<(), StateError> {
        let (reply, answered) = tokio::sync::oneshot::channel();
        self.committer.submit(Box::new(SnoozeJob {
            group: group_key.to_owned(),
            until: due_key(until),
            reply,
        }));
        answered
            .await
            .map_err(|_| StateError::Unavailable("redb commit thread dropped a snooze".into()))?
    }

    async fn apply(&self, event: Event, now: Timestamp) -> Result<Recorded, StateError> {
        let (reply, answered) = tokio::sync::oneshot::channel();
        self.committer.submit(Box::new(ApplyJob {
            event: Some(event),
            now,
            outcome: None,
            reply,
        }));
        answered
            .await
            .map_err(|_| StateError::Unavailable("redb commit thread dropped an apply".into()))?
    }

    async fn group(&self, group_key: &str) -> Result<Option<GroupState>, StateError> {
        let key = group_key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(GROUPS).map_err(db_err)?;
            match t.get(key.as_str()).map_err(db_err)? {
                Some(v) => Ok(Some(from_json(v.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn history(&self, group_key: &str) -> Result<Vec<Event>, StateError> {
        let key = group_key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(HISTORY).map_err(db_err)?;
            let mut out = Vec::new();
            for row in t
                .range((key.as_str(), 0)..=(key.as_str(), u64::MAX))
                .map_err(db_err)?
            {
                let (_, v) = row.map_err(db_err)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn record_delivery(
        &self,
        event_id: &EventId,
        record: &DeliveryRecord,
    ) -> Result<(), StateError> {
        let (reply, answered) = tokio::sync::oneshot::channel();
        // Shares the group commit of the applies: no transaction of its own.
        self.committer.submit(Box::new(DeliveryJob {
            key: event_id.0.clone(),
            value: to_json(record)?,
            reply,
        }));
        answered.await.map_err(|_| {
            StateError::Unavailable("redb commit thread dropped a delivery record".into())
        })?
    }

    async fn delivery(&self, event_id: &EventId) -> Result<Option<DeliveryRecord>, StateError> {
        let key = event_id.0.clone();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(DELIVERIES).map_err(db_err)?;
            match t.get(key.as_str()).map_err(db_err)? {
                Some(v) => Ok(Some(from_json(v.value())?)),
                None => Ok(None),
            }
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::conformance;
    use super::super::fixtures::*;
    use super::*;
    use crate::event::EventType;
    use crate::state::DeliveryRecord;

    #[tokio::test]
    async fn redb_state_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        conformance::idempotent_apply(&RedbState::open(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn redb_state_keeps_the_due_index() {
        let dir = tempfile::tempdir().unwrap();
        conformance::due_index(&RedbState::open(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn redb_state_serializes_concurrent_applies() {
        let dir = tempfile::tempdir().unwrap();
        conformance::concurrent_applies(Arc::new(RedbState::open(dir.path()).unwrap()), 10).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commits_apply_many_subscriptions_at_once_and_persist() {
        // GIVEN 40 applies in flight at once, over 20 subscriptions (2 events each)
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbState::open(dir.path()).unwrap();
            let mut tasks = Vec::new();
            for i in 0..20 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let sub = format!("gc-{i}");
                    let a = s
                        .apply(
                            sub_event(
                                &format!("{sub}-a"),
                                EventType::SubscriptionStarted,
                                &sub,
                                0,
                                true,
                            ),
                            apply_now(),
                        )
                        .await
                        .unwrap();
                    let b = s
                        .apply(
                            sub_event(
                                &format!("{sub}-b"),
                                EventType::SubscriptionRenewed,
                                &sub,
                                1,
                                true,
                            ),
                            apply_now(),
                        )
                        .await
                        .unwrap();
                    (a.event.sequence, b.event.sequence)
                }));
            }
            // THEN each subscription's sequences are gap-free: 1 (+ ACCESS_GRANTED 2), then 3
            for t in tasks {
                assert_eq!(t.await.unwrap(), (1, 3));
            }
        }
        // AND everything was durable: the store is closed once dropped (its
        // commit thread joined), so the file reopens at once.
        let s = RedbState::open(dir.path()).unwrap();
        for i in 0..20 {
            let g = sub_event(
                "x",
                EventType::SubscriptionStarted,
                &format!("gc-{i}"),
                0,
                true,
            )
            .group_key();
            assert_eq!(s.group(&g).await.unwrap().unwrap().sequence, 3);
        }
    }

    #[tokio::test]
    async fn redb_state_survives_restart() {
        // GIVEN a store with an applied event and a delivery record
        let dir = tempfile::tempdir().unwrap();
        let e1 = sub_event("r1", EventType::SubscriptionStarted, "orig-r", 0, true);
        let group = e1.group_key();
        let first = {
            let s = RedbState::open(&dir.path().join("nested")).unwrap();
            let r = s.apply(e1.clone(), apply_now()).await.unwrap();
            s.record_delivery(
                &r.event.id,
                &DeliveryRecord {
                    attempts: 1,
                    last_status: Some(200),
                    latency_ms: 4,
                    delivered_at: Some(t(1)),
                    last_error: None,
                    last_attempt_at: Some(t(1)),
                },
            )
            .await
            .unwrap();
            r
        }; // dropped: file closed
        // WHEN it is reopened
        let s = RedbState::open(&dir.path().join("nested")).unwrap();
        // THEN the claim, state, history and record are still there
        let again = s.apply(e1, apply_now()).await.unwrap();
        assert!(!again.first_time);
        assert_eq!(again.event, first.event);
        assert_eq!(again.derived, first.derived);
        assert_eq!(s.group(&group).await.unwrap().unwrap().sequence, 2);
        assert_eq!(s.history(&group).await.unwrap().len(), 2);
        assert_eq!(
            s.delivery(&first.event.id)
                .await
                .unwrap()
                .unwrap()
                .delivered_at,
            Some(t(1))
        );
        // AND the sequence continues after the restart
        let e2 = sub_event("r2", EventType::SubscriptionRenewed, "orig-r", 5, true);
        assert_eq!(s.apply(e2, apply_now()).await.unwrap().event.sequence, 3);
        assert!(s.path().ends_with(FILE_NAME));
    }

    #[tokio::test]
    async fn groups_stored_before_the_due_index_get_their_entry_once() {
        // GIVEN a file whose groups were written without due entries (an older version)
        let dir = tempfile::tempdir().unwrap();
        let open = sub_event("u1", EventType::SubscriptionStarted, "old-open", 0, true);
        let mut closed = sub_event("u2", EventType::SubscriptionExpired, "old-closed", 0, false);
        closed.subscription.as_mut().unwrap().status = crate::event::SubscriptionStatus::Expired;
        let end = open.entitlement.expires_at.unwrap();
        {
            let s = RedbState::open(dir.path()).unwrap();
            s.apply(open.clone(), apply_now()).await.unwrap();
            s.apply(closed.clone(), apply_now()).await.unwrap();
            let tx = s.file.db().unwrap().begin_write().unwrap();
            assert!(tx.delete_table(DUE_OF).unwrap());
            assert!(tx.delete_table(DUE).unwrap());
            assert!(tx.delete_table(UPGRADES).unwrap());
            tx.open_table(GROUPS)
                .unwrap()
                .insert("sub_corrupt", b"{not json".as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        // WHEN it is opened by this version
        let s = RedbState::open(dir.path()).unwrap();
        // THEN the open subscription is due at its end, the closed and corrupt ones are not
        let due = s.due(t(400 * 24 * 60), 10).await.unwrap();
        assert_eq!(
            due.iter()
                .map(|d| (d.group_key.clone(), d.due_at))
                .collect::<Vec<_>>(),
            vec![(open.group_key(), end)]
        );
        // AND the backfill ran once: a snooze is not undone by the next open
        s.snooze(&open.group_key(), t(400 * 24 * 60)).await.unwrap();
        drop(s);
        let s = RedbState::open(dir.path()).unwrap();
        assert!(s.due(end, 10).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_state_fails_only_its_own_apply_in_a_shared_commit() {
        // GIVEN subscription "bad" whose stored state is not JSON
        let dir = tempfile::tempdir().unwrap();
        let s = RedbState::open(dir.path()).unwrap();
        let bad = sub_event("bad-1", EventType::SubscriptionRenewed, "orig-bad", 1, true);
        let good = sub_event(
            "good-1",
            EventType::SubscriptionStarted,
            "orig-good",
            0,
            true,
        );
        {
            let tx = s.file.db().unwrap().begin_write().unwrap();
            tx.open_table(GROUPS)
                .unwrap()
                .insert(bad.group_key().as_str(), b"{not json".as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        // WHEN both are applied in the same group commit
        let go = s.committer.hold();
        let mut a = Box::pin(s.apply(bad.clone(), apply_now()));
        let mut b = Box::pin(s.apply(good.clone(), apply_now()));
        tokio::select! {
            biased;
            _ = &mut a => panic!("answered before the commit"),
            _ = &mut b => panic!("answered before the commit"),
            () = std::future::ready(()) => {}
        }
        go.send(()).unwrap();
        // THEN the corrupt one fails permanently and alone; the other is applied
        let err = a.await.unwrap_err();
        assert!(matches!(err, StateError::Permanent(_)), "{err:?}");
        let ok = b.await.unwrap();
        assert!(ok.first_time);
        assert_eq!(ok.event.sequence, 1);
        assert_eq!(
            s.group(&good.group_key()).await.unwrap().unwrap().sequence,
            2
        );
        assert!(s.history(&bad.group_key()).await.unwrap().is_empty());
    }
}
