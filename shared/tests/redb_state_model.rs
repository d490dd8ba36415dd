//! Differential test of the redb state of `storehook serve` (issue #10 §3):
//! random events of a few subscriptions, in random arrival order with
//! duplicates, applied to the real `RedbState` on a real file — dropped and
//! reopened at random moments, as after a crash — and to `MemoryState`, the
//! model (the pure transition with id claims). Every apply must answer the
//! same (event with its sequence, derived events, first time or not), the
//! sweeper's due index (listed and snoozed at random) must answer the same,
//! and at the end every group's state, history, delivery records and due
//! entries must be equal.
//!
//! `PROPTEST_CASES=1000 cargo test -p storehook-shared --test redb_state_model`
//! runs a longer search (the default is 32 cases).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use storehook_shared::event::{Event, EventType};
use storehook_shared::state::{DeliveryRecord, MemoryState, RedbState, StateStore};
use storehook_testkit::fixtures::{apply_now, sub_event, t};

const KINDS: [(EventType, bool); 6] = [
    (EventType::SubscriptionStarted, true),
    (EventType::SubscriptionRenewed, true),
    (EventType::RenewalDisabled, true),
    (EventType::BillingRetryStarted, false),
    (EventType::SubscriptionExpired, false),
    (EventType::SubscriptionRefunded, false),
];

#[derive(Debug, Clone)]
enum Step {
    /// Apply the generated event with this index (modulo their number).
    Apply(usize),
    /// Record a delivery of that event.
    Deliver(usize, u32),
    /// Drop the store without warning and open the file again.
    Reopen,
    /// Snooze the group of that event to `t(minutes)`.
    Snooze(usize, i64),
    /// List the groups due at `t(minutes)` (the sweeper's index).
    Due(i64),
}

/// A minute of the fixtures' time line, for due times: their periods end 30
/// days after each event (minutes 0..20).
fn due_minute() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..100, (30 * DAY)..(30 * DAY + 40)]
}

const DAY: i64 = 24 * 60;

/// `(subscription, kind, minute)` of each generated event.
type Spec = (u8, usize, i64);

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec((0u8..3, 0usize..KINDS.len(), 0i64..20), 1..14)
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            6 => any::<usize>().prop_map(Step::Apply),
            1 => (any::<usize>(), 1u32..4).prop_map(|(i, n)| Step::Deliver(i, n)),
            1 => Just(Step::Reopen),
            1 => (any::<usize>(), due_minute()).prop_map(|(i, m)| Step::Snooze(i, m)),
            2 => due_minute().prop_map(Step::Due),
        ],
        1..40,
    )
}

fn events(specs: &[Spec]) -> Vec<Event> {
    specs
        .iter()
        .enumerate()
        .map(|(i, &(sub, kind, minute))| {
            let (kind, active) = KINDS[kind].clone();
            sub_event(
                &format!("n{i}"),
                kind,
                &format!("sub-{sub}"),
                minute,
                active,
            )
        })
        .collect()
}

async fn run(specs: Vec<Spec>, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let events = events(&specs);
    let model = MemoryState::new();
    let mut real = Some(RedbState::open(dir.path()).unwrap());
    for (n, step) in steps.into_iter().enumerate() {
        match step {
            Step::Apply(i) => {
                let e = events[i % events.len()].clone();
                let got = real
                    .as_ref()
                    .unwrap()
                    .apply(e.clone(), apply_now())
                    .await
                    .unwrap();
                let want = model.apply(e, apply_now()).await.unwrap();
                prop_assert_eq!(got, want, "step {}: apply", n);
            }
            Step::Deliver(i, attempts) => {
                let id = &events[i % events.len()].id;
                let record = DeliveryRecord {
                    attempts,
                    ..DeliveryRecord::default()
                };
                real.as_ref()
                    .unwrap()
                    .record_delivery(id, &record)
                    .await
                    .unwrap();
                model.record_delivery(id, &record).await.unwrap();
            }
            Step::Reopen => {
                drop(real.take());
                real = Some(RedbState::open(dir.path()).unwrap());
            }
            Step::Snooze(i, minute) => {
                let g = events[i % events.len()].group_key();
                real.as_ref().unwrap().snooze(&g, t(minute)).await.unwrap();
                model.snooze(&g, t(minute)).await.unwrap();
            }
            Step::Due(minute) => {
                let got = real.as_ref().unwrap().due(t(minute), 100).await.unwrap();
                let want = model.due(t(minute), 100).await.unwrap();
                prop_assert_eq!(got, want, "step {}: due", n);
            }
        }
    }
    let real = real.unwrap();
    let far = t(400 * DAY);
    prop_assert_eq!(
        real.due(far, 100).await.unwrap(),
        model.due(far, 100).await.unwrap()
    );
    for e in &events {
        let g = e.group_key();
        prop_assert_eq!(
            real.group(&g).await.unwrap(),
            model.group(&g).await.unwrap()
        );
        prop_assert_eq!(
            real.history(&g).await.unwrap(),
            model.history(&g).await.unwrap()
        );
        prop_assert_eq!(
            real.delivery(&e.id).await.unwrap(),
            model.delivery(&e.id).await.unwrap()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_redb_state_answers_like_the_memory_model_across_reopens(
        specs in specs(),
        steps in steps(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(specs, steps))?;
    }
}
