//! Model-based test of the redb queue of `storehook serve` (issue #10 §3):
//! random sequences of append / lease / ack / retry / dead-letter / replay /
//! clock steps / reopen after an abrupt drop, run against the real
//! `RedbQueue` on a real file and against a plain in-memory model of the
//! documented semantics (per-group FIFO, one message of a group in flight,
//! retry delays block the group, dead letters set the group free, replay puts
//! dead letters back after everything queued with a fresh receive count,
//! duplicates of a queued deduplication id are dropped, a reopen hands
//! in-flight messages out again). After every step the two must agree on what
//! a lease hands out, the dead letters and the depth.
//!
//! `PROPTEST_CASES=2000 cargo test -p storehook-shared --test redb_queue_model`
//! runs a longer search (the default is 48 cases of up to 60 steps).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use storehook_shared::queue::QueueMessage;
use storehook_shared::queue::redb::{Lease, RedbQueue};

#[derive(Debug, Clone)]
enum Op {
    /// Messages `(group, dedup)` appended in one call.
    Append(Vec<(u8, u8)>),
    Lease,
    Ack(usize),
    Retry(usize, u8),
    Dead(usize),
    Advance(u16),
    /// Replay every dead letter, or those with these dedup ids.
    Replay(Option<Vec<u8>>),
    /// Drop the queue without settling its leases, open the file again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..4, 0u8..10), 1..4).prop_map(Op::Append),
        5 => Just(Op::Lease),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => (any::<usize>(), 0u8..4).prop_map(|(i, d)| Op::Retry(i, d)),
        1 => any::<usize>().prop_map(Op::Dead),
        2 => (0u16..200).prop_map(Op::Advance),
        1 => prop::option::of(prop::collection::vec(0u8..10, 1..3)).prop_map(Op::Replay),
        1 => Just(Op::Reopen),
    ]
}

const DELAYS_MS: [i64; 4] = [0, 1, 10, 100];

#[derive(Debug, Clone, PartialEq)]
struct Msg {
    group: String,
    dedup: String,
    body: String,
    receive_count: u32,
    not_before_ms: i64,
    reason: Option<String>,
}

/// The documented semantics, written as plainly as possible.
#[derive(Debug, Default)]
struct Model {
    next_id: u64,
    queued: BTreeMap<u64, Msg>,
    dead: BTreeMap<u64, Msg>,
    in_flight: HashSet<String>,
}

impl Model {
    fn new() -> Self {
        Self {
            next_id: 1,
            ..Self::default()
        }
    }

    fn append(&mut self, msgs: &[QueueMessage], now: i64) {
        let mut seen = HashSet::new();
        for m in msgs {
            let queued = self.queued.values().any(|q| q.dedup == m.dedup_id);
            if queued || !seen.insert(m.dedup_id.clone()) {
                continue;
            }
            self.queued.insert(
                self.next_id,
                Msg {
                    group: m.group_id.clone(),
                    dedup: m.dedup_id.clone(),
                    body: m.body.clone(),
                    receive_count: 0,
                    not_before_ms: now,
                    reason: None,
                },
            );
            self.next_id += 1;
        }
    }

    /// The oldest head of a group with nothing in flight that is visible at
    /// `now`, leased; else the earliest time such a head becomes visible.
    fn lease(&mut self, now: i64) -> Result<(u64, Msg), Option<i64>> {
        let mut heads: BTreeMap<u64, i64> = BTreeMap::new();
        let mut groups_seen = HashSet::new();
        for (id, m) in &self.queued {
            if groups_seen.insert(m.group.clone()) && !self.in_flight.contains(&m.group) {
                heads.insert(*id, m.not_before_ms);
            }
        }
        match heads.iter().find(|(_, nb)| **nb <= now) {
            Some((id, _)) => {
                let m = self.queued.get_mut(id).unwrap();
                m.receive_count += 1;
                self.in_flight.insert(m.group.clone());
                Ok((*id, m.clone()))
            }
            None => Err(heads.values().min().copied()),
        }
    }

    fn ack(&mut self, id: u64) {
        let m = self.queued.remove(&id).unwrap();
        self.in_flight.remove(&m.group);
    }

    fn retry(&mut self, id: u64, not_before: i64) {
        let m = self.queued.get_mut(&id).unwrap();
        m.not_before_ms = not_before;
        self.in_flight.remove(&m.group.clone());
    }

    fn dead(&mut self, id: u64, reason: &str) {
        let mut m = self.queued.remove(&id).unwrap();
        self.in_flight.remove(&m.group);
        m.reason = Some(reason.to_owned());
        self.dead.insert(id, m);
    }

    fn replay(&mut self, only: Option<&[String]>, now: i64) -> usize {
        let chosen: Vec<u64> = self
            .dead
            .iter()
            .filter(|(_, m)| only.is_none_or(|o| o.contains(&m.dedup)))
            .map(|(id, _)| *id)
            .collect();
        for old in &chosen {
            let mut m = self.dead.remove(old).unwrap();
            m.receive_count = 0;
            m.not_before_ms = now;
            m.reason = None;
            self.queued.insert(self.next_id, m);
            self.next_id += 1;
        }
        chosen.len()
    }
}

fn stored(l: &Lease) -> Msg {
    Msg {
        group: l.message.group_id.clone(),
        dedup: l.message.dedup_id.clone(),
        body: l.message.body.clone(),
        receive_count: l.message.receive_count,
        not_before_ms: l.message.not_before_ms,
        reason: l.message.dead_reason.clone(),
    }
}

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs when there is one: thousands of fsyncs per run.
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = scratch_dir();
    let mut queue = Some(RedbQueue::open(dir.path()).unwrap());
    let mut model = Model::new();
    let mut held: Vec<(Lease, u64)> = Vec::new();
    let mut now: i64 = 1_000_000;
    let mut bodies = 0u32;
    for (step, op) in ops.into_iter().enumerate() {
        let q = queue.as_ref().unwrap();
        match op {
            Op::Append(list) => {
                let msgs: Vec<QueueMessage> = list
                    .iter()
                    .map(|(g, d)| {
                        bodies += 1;
                        QueueMessage {
                            group_id: format!("g{g}"),
                            dedup_id: format!("d{d}"),
                            body: format!("body-{bodies}"),
                        }
                    })
                    .collect();
                q.append(&msgs, now).await.unwrap();
                model.append(&msgs, now);
            }
            Op::Lease => {
                let real = q.lease(now).await.unwrap();
                let want = model.lease(now);
                match (real, want) {
                    (Ok(lease), Ok((id, m))) => {
                        prop_assert_eq!(lease.id, id, "step {}: leased id", step);
                        prop_assert_eq!(&stored(&lease), &m, "step {}: leased message", step);
                        held.push((lease, id));
                    }
                    (Err(r), Err(w)) => prop_assert_eq!(r, w, "step {}: next visible", step),
                    (r, w) => prop_assert!(false, "step {step}: lease {r:?} but model {w:?}"),
                }
            }
            Op::Ack(i) if !held.is_empty() => {
                let (lease, id) = held.remove(i % held.len());
                q.ack(&lease).await.unwrap();
                model.ack(id);
            }
            Op::Retry(i, d) if !held.is_empty() => {
                let (lease, id) = held.remove(i % held.len());
                let delay = DELAYS_MS[usize::from(d) % DELAYS_MS.len()];
                q.retry(&lease, Duration::from_millis(delay as u64), now)
                    .await
                    .unwrap();
                model.retry(id, now + delay);
            }
            Op::Dead(i) if !held.is_empty() => {
                let (lease, id) = held.remove(i % held.len());
                let reason = format!("reason {step}");
                q.dead_letter(&lease, &reason).await.unwrap();
                model.dead(id, &reason);
            }
            Op::Ack(_) | Op::Retry(..) | Op::Dead(_) => {}
            Op::Advance(ms) => now += i64::from(ms),
            Op::Replay(only) => {
                let only: Option<Vec<String>> =
                    only.map(|o| o.iter().map(|d| format!("d{d}")).collect());
                let n = q.replay(only.as_deref(), now).await.unwrap();
                prop_assert_eq!(
                    n,
                    model.replay(only.as_deref(), now),
                    "step {}: replayed",
                    step
                );
            }
            Op::Reopen => {
                held.clear();
                drop(queue.take()); // the process "dies": leases are never settled
                queue = Some(RedbQueue::open(dir.path()).unwrap());
                model.in_flight.clear();
            }
        }
        let q = queue.as_ref().unwrap();
        prop_assert_eq!(q.depth(), model.queued.len(), "step {}: depth", step);
        let dead: BTreeMap<u64, Msg> = q
            .dead_letters()
            .unwrap()
            .into_iter()
            .map(|(id, s)| {
                (
                    id,
                    Msg {
                        group: s.group_id,
                        dedup: s.dedup_id,
                        body: s.body,
                        receive_count: s.receive_count,
                        not_before_ms: s.not_before_ms,
                        reason: s.dead_reason,
                    },
                )
            })
            .collect();
        prop_assert_eq!(&dead, &model.dead, "step {}: dead letters", step);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_redb_queue_behaves_like_its_model(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}

/// Found by the model test: a replayed dead letter shares its deduplication id
/// with a message appended after it was dead-lettered; when that twin was
/// acknowledged, the index forgot the id although the replayed copy was still
/// queued, and a third copy was accepted.
#[test]
fn a_replayed_twin_keeps_its_deduplication_id_queued() {
    let ops = vec![
        Op::Append(vec![(0, 5), (1, 0)]),
        Op::Lease,
        Op::Lease,
        Op::Ack(1),
        Op::Dead(0),
        Op::Append(vec![(0, 5)]),
        Op::Append(vec![(0, 0)]),
        Op::Replay(None),
        Op::Lease,
        Op::Ack(0),
        Op::Append(vec![(0, 5)]),
        Op::Reopen,
        Op::Append(vec![(0, 5)]),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(ops)).unwrap();
}
