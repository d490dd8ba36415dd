//! `DynamoState` against the emulator: the StateStore conformance suite and
//! two instances on one table. (The tests of its conditional writes and item
//! layout use private items and stay unit tests in `state/dynamo.rs`.)

use aws_sdk_dynamodb::Client;
use std::sync::Arc;
use storehook_shared::clock::ManualClock;
use storehook_shared::event::EventType;
use storehook_shared::state::{DynamoState, StateStore};
use storehook_testkit::conformance;
use storehook_testkit::emulator::test_sdk_config;
use storehook_testkit::fixtures::*;

/// A store on a fresh, uniquely named table of the emulator at
/// `STOREHOOK_TEST_AWS_ENDPOINT`; None (with a skip line) when unset.
async fn store(test: &str) -> Option<DynamoState> {
    let Some(sdk) = test_sdk_config().await else {
        eprintln!(
            "SKIP {test}: STOREHOOK_TEST_AWS_ENDPOINT is not set (start moto_server and set it to run DynamoDB tests)"
        );
        return None;
    };
    let table = format!("storehook-{test}-{}", fastrand::u64(..));
    let clock = Arc::new(ManualClock::new(t(0).0));
    let st = DynamoState::new(Client::new(&sdk), table, clock);
    st.create_table().await.unwrap();
    Some(st)
}

#[tokio::test]
async fn dynamo_state_is_idempotent() {
    let Some(st) = store("idem").await else {
        return;
    };
    conformance::idempotent_apply(&st).await;
}

#[tokio::test]
async fn dynamo_state_keeps_the_due_index() {
    let Some(st) = store("due").await else {
        return;
    };
    conformance::due_index(&st).await;
}

#[tokio::test]
async fn dynamo_state_applies_a_group_sequentially_across_instances() {
    let Some(a) = store("seq").await else { return };
    // GIVEN two store instances on one table (two Lambda containers)
    let b = a.clone();
    // WHEN they alternate applying a group's events, each id twice
    let mut seqs = Vec::new();
    for i in 0..6 {
        let e = sub_event(
            &format!("x{i}"),
            EventType::SubscriptionRenewed,
            "orig-x",
            i,
            i % 2 == 0,
        );
        let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let r = first.apply(e.clone(), apply_now()).await.unwrap();
        let r2 = second.apply(e, apply_now()).await.unwrap();
        assert!(r.first_time && !r2.first_time);
        assert_eq!(r2.event, r.event);
        seqs.push(r.event.sequence);
        seqs.extend(r.derived.iter().map(|d| d.sequence));
    }
    // THEN sequences are gap-free across instances, entitlement flips derived each time
    assert_eq!(seqs, (1..=12).collect::<Vec<u64>>());
    let h = a
        .history(&sub_event("x0", EventType::SubscriptionRenewed, "orig-x", 0, true).group_key())
        .await
        .unwrap();
    assert_eq!(h.len(), 12);
}
