//! Conformance tests every [`StateStore`] adapter must pass: the memory and
//! redb unit tests of storehook-shared and the DynamoDB test against the
//! emulator (`tests/emulator`).
//!
//! Compiled into storehook-shared's unit tests too (`#[path]` module
//! `state::conformance`, beside `state::fixtures`), like the fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::fixtures::*;
use storehook_shared::event::{EventId, EventType};
use storehook_shared::state::{DeliveryRecord, StateStore};

/// Idempotent apply, sequence, derived events, history, delivery records.
pub async fn idempotent_apply(store: &dyn StateStore) {
    // GIVEN a new subscription event (entitled)
    let e1 = sub_event("n1", EventType::SubscriptionStarted, "orig-1", 0, true);
    let group = e1.group_key();
    // WHEN applied
    let r1 = store.apply(e1.clone(), apply_now()).await.unwrap();
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
    let r2 = store.apply(dup, apply_now()).await.unwrap();
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
    let r3 = store.apply(e2, apply_now()).await.unwrap();
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
    let r4 = store.apply(e1, apply_now()).await.unwrap();
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
            tasks.spawn(async move { s.apply(e, apply_now()).await });
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

/// The sweeper's due index: a group is due at its entitlement end while its
/// subscription is not closed; every apply moves or removes its entry
/// atomically; `snooze` only postpones; `limit` is honoured.
pub async fn due_index(store: &dyn StateStore) {
    use storehook_shared::event::{SubscriptionStatus, Timestamp};
    const DAY: i64 = 24 * 60;
    let far = t(10 * 365 * DAY);
    let groups_due = |due: Vec<storehook_shared::state::Due>| {
        due.into_iter()
            .map(|d| (d.group_key, d.due_at))
            .collect::<Vec<(String, Timestamp)>>()
    };
    // GIVEN an entitled subscription whose period ends at t(30 days)
    let start = sub_event("d1", EventType::SubscriptionStarted, "due-a", 0, true);
    let a = start.group_key();
    let end_1 = start.entitlement.expires_at.unwrap();
    store.apply(start.clone(), apply_now()).await.unwrap();
    // AND a closed one (EXPIRED) and a group without a subscription
    let expired = sub_event("d2", EventType::SubscriptionExpired, "due-b", 0, false);
    assert_eq!(
        expired.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Expired
    );
    store.apply(expired, apply_now()).await.unwrap();
    store.apply(test_event("d3"), apply_now()).await.unwrap();

    // THEN nothing is due before the end
    assert!(store.due(apply_now(), 100).await.unwrap().is_empty());
    assert!(
        store
            .due(Timestamp::from_millis(end_1.millis() - 1).unwrap(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    // AND at the end exactly the open subscription is due, with its state
    let due = store.due(end_1, 100).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].group_key, a);
    assert_eq!(due[0].due_at, end_1);
    assert_eq!(due[0].state, store.group(&a).await.unwrap().unwrap());
    // (closed and subscription-less groups never are)
    assert_eq!(
        groups_due(store.due(far, 100).await.unwrap()),
        vec![(a.clone(), end_1)]
    );

    // WHEN a renewal moves the end later
    let renew = sub_event("d4", EventType::SubscriptionRenewed, "due-a", 10, true);
    let end_2 = renew.entitlement.expires_at.unwrap();
    store.apply(renew.clone(), apply_now()).await.unwrap();
    // THEN the entry moved with it (one entry per group)
    assert!(store.due(end_1, 100).await.unwrap().is_empty());
    assert_eq!(
        groups_due(store.due(end_2, 100).await.unwrap()),
        vec![(a.clone(), end_2)]
    );
    // AND re-applying a claimed id changes nothing
    store.apply(start, apply_now()).await.unwrap();
    assert_eq!(
        groups_due(store.due(far, 100).await.unwrap()),
        vec![(a.clone(), end_2)]
    );

    // WHEN the sweeper snoozes it
    let later = t(10 + 31 * DAY);
    store.snooze(&a, later).await.unwrap();
    // THEN it is due at the new time only
    assert!(store.due(end_2, 100).await.unwrap().is_empty());
    assert_eq!(
        groups_due(store.due(later, 100).await.unwrap()),
        vec![(a.clone(), later)]
    );
    // AND a snooze never brings it forward
    store.snooze(&a, end_2).await.unwrap();
    assert!(store.due(end_2, 100).await.unwrap().is_empty());
    // AND snoozing a group without an entry adds none
    let b = sub_event("x", EventType::SubscriptionExpired, "due-b", 0, false).group_key();
    store.snooze(&b, later).await.unwrap();
    store.snooze("sub_nope", later).await.unwrap();
    assert_eq!(
        groups_due(store.due(far, 100).await.unwrap()),
        vec![(a.clone(), later)]
    );

    // WHEN a closing event arrives (EXPIRED)
    store
        .apply(
            sub_event("d5", EventType::SubscriptionExpired, "due-a", 20, false),
            apply_now(),
        )
        .await
        .unwrap();
    // THEN the group leaves the index, even its snoozed entry
    assert!(store.due(far, 100).await.unwrap().is_empty());
    store.snooze(&a, far).await.unwrap();
    assert!(store.due(far, 100).await.unwrap().is_empty());

    // GIVEN three open groups ending at different times
    for (i, minute) in [(0, 300), (1, 100), (2, 200)] {
        store
            .apply(
                sub_event(
                    &format!("l{i}"),
                    EventType::SubscriptionStarted,
                    &format!("due-l{i}"),
                    minute,
                    true,
                ),
                apply_now(),
            )
            .await
            .unwrap();
    }
    // THEN all three are due later, earliest first, and `limit` caps the answer
    let all = store.due(far, 100).await.unwrap();
    let times: Vec<Timestamp> = all.iter().map(|d| d.due_at).collect();
    assert_eq!(
        times,
        vec![t(100 + 30 * DAY), t(200 + 30 * DAY), t(300 + 30 * DAY)]
    );
    assert_eq!(store.due(far, 2).await.unwrap().len(), 2);
    // AND only the ones whose end has passed are due
    assert_eq!(store.due(t(150 + 30 * DAY), 100).await.unwrap().len(), 1);
}
