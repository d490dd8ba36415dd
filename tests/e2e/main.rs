//! End-to-end tests: App Store notification → ingest (Lambda handler) → SQS
//! FIFO → dispatcher (the Lambda's batch handler via `poll_once`) → DynamoDB →
//! signed webhook POST, against a local AWS emulator (moto).
//!
//! Run with `bash scripts/test.sh -p storehook-tests` (starts moto and sets
//! `STOREHOOK_TEST_AWS_ENDPOINT`); without it every test prints `SKIP`.
//! Each test provisions its own queue, dead-letter queue and table.

mod harness;

use harness::{AppleSub, Delivery, HOUR, Harness, Options, Reply};
use std::time::Duration;
use storehook_shared::dispatch::sqs_poller::replay_dead_letters;
use storehook_shared::event::{EventId, EventType, SubscriptionStatus};
use storehook_shared::webhook::{DEFAULT_TOLERANCE, WebhookSecret, WebhookSecrets, verify};
use storehook_testkit::appstore::TestPki;
use storehook_testkit::appstore::payloads::{BUNDLE_ID, DAY, T0};

const PUMP: Duration = Duration::from_secs(60);

fn ids(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.webhook_id.clone()).collect()
}

fn seqs(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(|d| d.event.sequence).collect()
}

fn kinds(ds: &[Delivery]) -> Vec<EventType> {
    ds.iter().map(|d| d.event.kind.clone()).collect()
}

/// 1. The App Store Lambda handler takes an API Gateway v2 event, the event
/// travels through SQS, the dispatcher applies it in DynamoDB and POSTs it,
/// signed, to the webhook.
#[tokio::test]
async fn appstore_lambda_to_signed_webhook_through_sqs_and_dynamodb() {
    let Some(h) = Harness::start(
        "appstore_lambda_to_signed_webhook_through_sqs_and_dynamodb",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let sub = AppleSub::new(h.store_id("1000"));
    let uuid = h.store_id("n-1");
    let id = AppleSub::event_id(&uuid);

    // WHEN App Store posts SUBSCRIBED/INITIAL_BUY to the Lambda (API Gateway HTTP API event)
    let resp = h.post_lambda(sub.subscribed(&h.pki, &uuid, T0)).await;
    // THEN it answers 200 once the event is queued
    assert_eq!(resp.status(), 200);
    let lambda_http::Body::Text(body) = resp.body() else {
        panic!("unexpected body {:?}", resp.body());
    };
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v, serde_json::json!({"status": "queued", "events": 1}));
    assert_eq!(h.depth(h.queue_url()).await, (1, 0));

    // WHEN the dispatcher consumes the queue
    h.pump_until_requests(2, PUMP).await;
    h.drain(PUMP).await;

    // THEN the webhook got the event (sequence 1, with the snapshot) then ACCESS_GRANTED,
    // each signed (verified by `deliveries`) with webhook-id = event id
    let ds = h.deliveries();
    assert_eq!(ds.len(), 2, "{:?}", h.summary());
    let e = &ds[0];
    assert_eq!(e.webhook_id, id.0);
    assert_eq!(e.event.id, id);
    assert_eq!(e.answered, 200);
    assert_eq!(e.event.kind, EventType::SubscriptionStarted);
    assert_eq!(e.event.sequence, 1);
    assert_eq!(e.event.app_id, BUNDLE_ID);
    assert_eq!(e.event.occurred_at.millis(), T0);
    assert_eq!(e.event.store_notification.kind, "SUBSCRIBED");
    assert_eq!(
        e.event.store_notification.subtype.as_deref(),
        Some("INITIAL_BUY")
    );
    assert_eq!(e.event.store_notification.id, uuid);
    let s = e.event.subscription.as_ref().expect("snapshot");
    assert_eq!(s.id.0, sub.group());
    assert_eq!(s.store_subscription_id, sub.original_id);
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert!(s.auto_renew);
    assert_eq!(s.expires_at.unwrap().millis(), T0 + 30 * DAY);
    assert_eq!(e.event.product.as_ref().unwrap().id, "pro.monthly");
    assert!(e.event.entitlement.active);
    assert_eq!(
        e.event.entitlement.expires_at.unwrap().millis(),
        T0 + 30 * DAY
    );
    let g = &ds[1];
    assert_eq!(g.event.kind, EventType::AccessGranted);
    assert_eq!(g.event.sequence, 2);
    assert_eq!(
        g.event.id,
        AppleSub::derived_id(&id, "ACCESS_GRANTED"),
        "derived ids are deterministic"
    );
    assert_eq!(g.webhook_id, g.event.id.0);
    assert_eq!(g.event.details.cause_event_id.as_ref(), Some(&id));

    // AND DynamoDB holds the STATE (sequence, snapshot), the history as delivered
    // and the delivery records
    let state = h.group(&sub.group()).await;
    assert_eq!(state.sequence, 2);
    assert!(state.entitlement.active);
    assert_eq!(state.subscription.as_ref(), e.event.subscription.as_ref());
    assert_eq!(state.applied_at.unwrap().millis(), T0);
    assert_eq!(
        h.history(&sub.group()).await,
        vec![e.event.clone(), g.event.clone()]
    );
    for ev in [&e.event, &g.event] {
        let rec = h.delivery(&ev.id).await;
        assert_eq!(rec.attempts, 1, "{ev:?}");
        assert_eq!(rec.last_status, Some(200));
        assert!(rec.delivered_at.is_some());
        assert_eq!(rec.last_error, None);
    }
    // AND the items have the documented keys in the template's table
    let item = h
        .ddb
        .get_item()
        .table_name(&h.resources.table_name)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("SUB#{}", sub.group())),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("STATE".into()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("STATE item");
    assert_eq!(item["seq"].as_n().unwrap(), "2");
    // AND the signatures really depend on the secret: another secret does not verify them
    let stranger = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
    for r in h.rx.requests() {
        assert!(
            verify(
                &r.headers,
                &r.body,
                &stranger,
                chrono::Utc::now(),
                DEFAULT_TOLERANCE
            )
            .is_err()
        );
    }
    assert_eq!(h.depth(h.dlq_url()).await, (0, 0));
    h.destroy().await;
}

/// The Lambda refuses a notification that does not verify, and queues nothing.
#[tokio::test]
async fn a_notification_that_does_not_verify_is_refused_and_not_queued() {
    let Some(h) = Harness::start(
        "a_notification_that_does_not_verify_is_refused_and_not_queued",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let sub = AppleSub::new(h.store_id("forged"));
    // GIVEN a notification signed by a chain that does not lead to a trusted root
    let stranger = TestPki::new();
    let resp = h
        .post_lambda(sub.subscribed(&stranger, &h.store_id("n-forged"), T0))
        .await;
    // THEN 401 with the error code, and the queue stays empty
    assert_eq!(resp.status(), 401);
    let lambda_http::Body::Text(body) = resp.body() else {
        panic!("unexpected body {:?}", resp.body());
    };
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "untrusted_chain");
    assert_eq!(h.depth(h.queue_url()).await, (0, 0));
    assert_eq!(h.poll(Duration::from_secs(1)).await, 0);
    assert_eq!(h.rx.count(), 0);
    assert!(h.state.group(&sub.group()).await.unwrap().is_none());
    h.destroy().await;
}

/// 2. One subscription's 50 events, interleaved with three other
/// subscriptions' events, reach the webhook in order with gap-free sequences
/// (derived ACCESS_* events included).
#[tokio::test]
async fn each_subscription_is_delivered_in_order_with_gap_free_sequences() {
    let Some(h) = Harness::start(
        "each_subscription_is_delivered_in_order_with_gap_free_sequences",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let month = 31 * DAY;
    // The 50 months end before T0, in the past: a signedDate later than the
    // moment of receipt (+ 5 min) would be clamped to it (ingest trust rule).
    let at = |k: i64| T0 - 50 * month + k * month;
    let a = AppleSub::new(h.store_id("A"));
    let others = [
        AppleSub::new(h.store_id("B")),
        AppleSub::new(h.store_id("C")),
        AppleSub::new(h.store_id("D")),
    ];

    // A: SUBSCRIBED (→ GRANTED), 24 renewals, EXPIRED (→ REVOKED), RESUBSCRIBE
    // (→ GRANTED), 22 renewals, AUTO_RENEW_DISABLED: 50 events, 53 deliveries.
    let mut a_plan: Vec<(String, Vec<u8>, Option<&str>)> = Vec::new();
    for k in 0..50_i64 {
        let uuid = h.store_id(&format!("A-{k}"));
        let (body, derived) = match k {
            0 => (a.subscribed(&h.pki, &uuid, at(k)), Some("ACCESS_GRANTED")),
            25 => (a.expired(&h.pki, &uuid, at(24)), Some("ACCESS_REVOKED")),
            26 => (a.resubscribed(&h.pki, &uuid, at(k)), Some("ACCESS_GRANTED")),
            49 => (
                a.auto_renew_disabled(&h.pki, &uuid, at(k), at(k) - DAY),
                None,
            ),
            _ => (a.renewed(&h.pki, &uuid, at(k)), None),
        };
        a_plan.push((uuid, body, derived));
    }
    // B, C, D: SUBSCRIBED (→ GRANTED), 2 renewals, AUTO_RENEW_DISABLED: 5 deliveries each.
    let mut other_plan: Vec<Vec<(String, Vec<u8>)>> = Vec::new();
    for (i, s) in others.iter().enumerate() {
        let mut p = Vec::new();
        for k in 0..4_i64 {
            let uuid = h.store_id(&format!("{i}-{k}"));
            let t = at(2 * k + 1) + HOUR;
            let body = match k {
                0 => s.subscribed(&h.pki, &uuid, t),
                3 => s.auto_renew_disabled(&h.pki, &uuid, t, t - DAY),
                _ => s.renewed(&h.pki, &uuid, t),
            };
            p.push((uuid, body));
        }
        other_plan.push(p);
    }

    // WHEN the store posts them interleaved: after A's k-th event (k odd, < 24),
    // the next event of B, C or D in turn
    let mut sent_other = [0_usize; 3];
    for (k, (_, body, _)) in a_plan.iter().enumerate() {
        h.post(body.clone()).await;
        if k % 2 == 1 && k < 24 {
            let i = (k / 2) % 3;
            let (_, body) = &other_plan[i][sent_other[i]];
            h.post(body.clone()).await;
            sent_other[i] += 1;
        }
    }
    assert_eq!(sent_other, [4, 4, 4]);
    let total = 53 + 3 * 5;
    h.pump_until_requests(total, Duration::from_secs(120)).await;
    h.drain(PUMP).await;

    // THEN nothing was delivered twice or failed
    let all = h.deliveries();
    assert_eq!(all.len(), total, "{:?}", h.summary());
    assert!(all.iter().all(|d| d.answered == 200));

    // AND A's events came in the order sent, each ACCESS_* right after its cause,
    // with sequences 1..=53
    let got = h.delivered_to(&a.group());
    assert_eq!(seqs(&got), (1..=53).collect::<Vec<u64>>());
    let mut expected_ids = Vec::new();
    for (uuid, _, derived) in &a_plan {
        let id = AppleSub::event_id(uuid);
        expected_ids.push(id.0.clone());
        if let Some(kind) = derived {
            expected_ids.push(AppleSub::derived_id(&id, kind).0);
        }
    }
    assert_eq!(ids(&got), expected_ids);
    let derived_kinds: Vec<(u64, EventType)> = got
        .iter()
        .filter(|d| d.event.details.cause_event_id.is_some())
        .map(|d| (d.event.sequence, d.event.kind.clone()))
        .collect();
    assert_eq!(
        derived_kinds,
        vec![
            (2, EventType::AccessGranted),
            (28, EventType::AccessRevoked),
            (30, EventType::AccessGranted)
        ]
    );
    assert!(got.iter().all(|d| d.event.details.out_of_order.is_none()));

    // AND each other subscription got its 5 in order, sequences 1..=5
    for (s, plan) in others.iter().zip(&other_plan) {
        let got = h.delivered_to(&s.group());
        assert_eq!(seqs(&got), vec![1, 2, 3, 4, 5], "{}", s.original_id);
        let first = AppleSub::event_id(&plan[0].0);
        let mut want = vec![
            first.0.clone(),
            AppleSub::derived_id(&first, "ACCESS_GRANTED").0,
        ];
        want.extend(plan[1..].iter().map(|(u, _)| AppleSub::event_id(u).0));
        assert_eq!(ids(&got), want);
    }

    // AND DynamoDB agrees: A is at sequence 53 with a 53-item history
    assert_eq!(h.group(&a.group()).await.sequence, 53);
    let hist = h.history(&a.group()).await;
    assert_eq!(
        hist.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=53).collect::<Vec<u64>>()
    );
    h.destroy().await;
}

/// 3. The store delivering one notification several times (before and after
/// storehook delivered it) results in one webhook delivery.
#[tokio::test]
async fn a_duplicated_store_notification_is_delivered_once() {
    let Some(h) = Harness::start(
        "a_duplicated_store_notification_is_delivered_once",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let sub = AppleSub::new(h.store_id("dup"));
    let uuid = h.store_id("n-dup");
    let id = AppleSub::event_id(&uuid);
    let body = sub.subscribed(&h.pki, &uuid, T0);

    // WHEN the store posts the notification twice before it is dispatched
    h.post(body.clone()).await;
    h.post(body.clone()).await;
    h.pump_until_requests(2, PUMP).await;
    h.drain(PUMP).await;
    // AND once more after storehook delivered it
    let handled_before = h.handled.load(std::sync::atomic::Ordering::SeqCst);
    h.post(body.clone()).await;
    h.drain(PUMP).await;
    let handled_after = h.handled.load(std::sync::atomic::Ordering::SeqCst);
    // moto's FIFO dedup only covers messages still queued, so the late copy reaches
    // the dispatcher and storehook's own claim must stop it (SQS on AWS would drop it
    // within its 5-minute window; this count is an emulator fact, see toolchain.md)
    assert_eq!(
        handled_after,
        handled_before + 1,
        "the late duplicate reached the dispatcher"
    );

    // THEN the event and its ACCESS_GRANTED were each delivered exactly once
    let ds = h.deliveries();
    assert_eq!(
        ids(&ds),
        vec![id.0.clone(), AppleSub::derived_id(&id, "ACCESS_GRANTED").0]
    );
    assert_eq!(seqs(&ds), vec![1, 2]);
    assert_eq!(h.delivery(&id).await.attempts, 1);
    assert_eq!(h.group(&sub.group()).await.sequence, 2);
    assert_eq!(h.history(&sub.group()).await.len(), 2);
    h.destroy().await;
}

/// 4. 500, then a timeout, then 200: three attempts with the same webhook-id
/// and body, spaced by the retry schedule.
#[tokio::test]
async fn a_500_then_a_timeout_then_200_is_retried_with_the_same_webhook_id() {
    let options = Options {
        sender_timeout: Duration::from_secs(1),
        ..Options::default()
    };
    let Some(h) = Harness::start(
        "a_500_then_a_timeout_then_200_is_retried_with_the_same_webhook_id",
        options,
    )
    .await
    else {
        return;
    };
    let sub = AppleSub::new(h.store_id("retry"));
    let uuid = h.store_id("n-retry");
    let id = AppleSub::event_id(&uuid);
    // GIVEN a receiver answering 500, then too slowly (3 s > the 1 s sender timeout), then 200
    h.rx.push(Reply::status(500));
    h.rx.push(Reply::status(200).after(Duration::from_secs(3)));
    h.post(sub.renewed(&h.pki, &uuid, T0)).await;

    // WHEN the dispatcher runs: attempt 1 gets the 500 and is recorded
    let attempts_are = |n: u32| {
        let (h, id) = (&h, &id);
        move || async move {
            h.state
                .delivery(id)
                .await
                .unwrap()
                .is_some_and(|r| r.attempts >= n)
        }
    };
    h.pump_until("attempt 1 recorded", PUMP, attempts_are(1))
        .await;
    let rec = h.delivery(&id).await;
    assert_eq!((rec.attempts, rec.last_status), (1, Some(500)));
    assert!(rec.delivered_at.is_none());
    // AND attempt 2 times out: no status, a timeout error
    h.pump_until("attempt 2 recorded", PUMP, attempts_are(2))
        .await;
    let rec = h.delivery(&id).await;
    assert_eq!((rec.attempts, rec.last_status), (2, None));
    assert!(
        rec.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("timeout")),
        "{rec:?}"
    );
    assert!(rec.delivered_at.is_none());
    // AND attempt 3 succeeds, then ACCESS_GRANTED follows
    h.pump_until_requests(4, PUMP).await;
    h.drain(PUMP).await;

    // THEN the event was POSTed three times, same webhook-id, same body, each signed
    let ds = h.deliveries();
    assert_eq!(ds.len(), 4, "{:?}", h.summary());
    let attempts: Vec<&Delivery> = ds.iter().filter(|d| d.webhook_id == id.0).collect();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|d| d.body == attempts[0].body));
    assert_eq!(
        attempts
            .iter()
            .map(|d| d.event.sequence)
            .collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
    // (the second answer, a 200 after 3 s, came after the sender had given up)
    assert_eq!(
        attempts.iter().map(|d| d.answered).collect::<Vec<_>>(),
        vec![500, 200, 200]
    );
    assert_eq!(ds[3].event.kind, EventType::AccessGranted);
    assert_eq!(ds[3].event.sequence, 2);
    // AND the retries waited for the schedule's 1 s step (visibility timeout)
    let at: Vec<_> =
        h.rx.requests()
            .iter()
            .filter(|r| r.webhook_id() == Some(id.as_str()))
            .map(|r| r.at)
            .collect();
    assert!(at[1] - at[0] >= Duration::from_millis(900), "{at:?}");
    assert!(at[2] - at[1] >= Duration::from_millis(1_900), "{at:?}");
    // AND the delivery record shows 3 attempts, the last one 200
    let rec = h.delivery(&id).await;
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.last_status, Some(200));
    assert!(rec.delivered_at.is_some());
    assert_eq!(h.delivery(&ds[3].event.id).await.attempts, 1);
    assert_eq!(h.depth(h.dlq_url()).await, (0, 0));
    h.destroy().await;
}

/// 5. 410 Gone dead-letters at once, the subscription's later events proceed,
/// and a replay from the DLQ delivers the event with its first sequence.
#[tokio::test]
async fn gone_dead_letters_at_once_and_a_replay_delivers_it() {
    let Some(h) = Harness::start(
        "gone_dead_letters_at_once_and_a_replay_delivers_it",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let sub = AppleSub::new(h.store_id("gone"));
    let u1 = h.store_id("n-1");
    let u2 = h.store_id("n-2");
    let e1 = AppleSub::event_id(&u1);
    let e2 = AppleSub::event_id(&u2);
    let granted = AppleSub::derived_id(&e1, "ACCESS_GRANTED");
    // GIVEN the endpoint answers 410 to the first request
    h.rx.push(Reply::status(410));
    h.post(sub.subscribed(&h.pki, &u1, T0)).await;
    h.post(sub.renewed(&h.pki, &u2, T0 + 30 * DAY)).await;

    // WHEN dispatched
    h.pump_until_requests(2, PUMP).await;
    h.drain(PUMP).await;
    // THEN e1 was tried once and dead-lettered; e2 (behind it in the group) was delivered
    let ds = h.deliveries();
    assert_eq!(
        ids(&ds),
        vec![e1.0.clone(), e2.0.clone()],
        "{:?}",
        h.summary()
    );
    assert_eq!(ds[0].answered, 410);
    assert_eq!(ds[0].event.sequence, 1);
    assert_eq!(ds[1].answered, 200);
    assert_eq!(
        ds[1].event.sequence, 3,
        "e1 and its ACCESS_GRANTED hold 1 and 2"
    );
    let rec = h.delivery(&e1).await;
    assert_eq!((rec.attempts, rec.last_status), (1, Some(410)));
    assert!(rec.delivered_at.is_none());
    let dead = h.peek_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&dead[0].0).unwrap();
    assert_eq!(body["id"], e1.0);
    assert!(dead[0].1["storehook-reason"].contains("410"), "{dead:?}");
    assert_eq!(dead[0].1["storehook-receive-count"], "1");

    // WHEN the dead letter is replayed and the endpoint accepts again
    let moved = replay_dead_letters(&h.sqs, h.dlq_url(), h.queue_url(), None)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    h.pump_until_requests(4, PUMP).await;
    h.drain(PUMP).await;

    // THEN e1 is delivered as first applied (sequence 1, same body), then its ACCESS_GRANTED
    let ds = h.deliveries();
    assert_eq!(
        ids(&ds),
        vec![e1.0.clone(), e2.0.clone(), e1.0.clone(), granted.0.clone()]
    );
    assert_eq!(seqs(&ds), vec![1, 3, 1, 2]);
    assert_eq!(ds[2].answered, 200);
    assert_eq!(ds[2].body, ds[0].body);
    let rec = h.delivery(&e1).await;
    assert_eq!((rec.attempts, rec.last_status), (2, Some(200)));
    assert_eq!(h.group(&sub.group()).await.sequence, 3);
    assert_eq!(h.depth(h.dlq_url()).await, (0, 0));
    h.destroy().await;
}

/// 6. A store event older than the last applied one is delivered flagged
/// `out_of_order`, carrying the newer snapshot, and leaves the state alone.
#[tokio::test]
async fn an_older_store_event_is_delivered_out_of_order_with_the_newer_snapshot() {
    let Some(h) = Harness::start(
        "an_older_store_event_is_delivered_out_of_order_with_the_newer_snapshot",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let sub = AppleSub::new(h.store_id("ooo"));
    let older = h.store_id("n-older");
    let newer = h.store_id("n-newer");
    // GIVEN the renewal at T0+30d arrives before the auto-renew change signed at T0+10d
    h.post(sub.renewed(&h.pki, &newer, T0 + 30 * DAY)).await;
    h.post(sub.auto_renew_disabled(&h.pki, &older, T0 + 10 * DAY, T0))
        .await;

    // WHEN dispatched
    h.pump_until_requests(3, PUMP).await;
    h.drain(PUMP).await;

    // THEN: renewal (1), ACCESS_GRANTED (2), then the older event (3) marked out of order
    let ds = h.deliveries();
    assert_eq!(
        kinds(&ds),
        vec![
            EventType::SubscriptionRenewed,
            EventType::AccessGranted,
            EventType::RenewalDisabled
        ],
        "{:?}",
        h.summary()
    );
    assert_eq!(seqs(&ds), vec![1, 2, 3]);
    let (new, old) = (&ds[0].event, &ds[2].event);
    assert_eq!(old.id, AppleSub::event_id(&older));
    assert_eq!(old.details.out_of_order, Some(true));
    assert_eq!(new.details.out_of_order, None);
    assert_eq!(old.occurred_at.millis(), T0 + 10 * DAY);
    // it carries the newer snapshot, not its own (auto-renew off, period from T0)
    assert_eq!(old.subscription, new.subscription);
    assert_eq!(old.entitlement, new.entitlement);
    let s = old.subscription.as_ref().unwrap();
    assert!(s.auto_renew);
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert_eq!(s.expires_at.unwrap().millis(), T0 + 60 * DAY);
    // AND the stored snapshot is still the newer one
    let state = h.group(&sub.group()).await;
    assert_eq!(state.sequence, 3);
    assert_eq!(state.subscription, new.subscription);
    assert_eq!(state.applied_at.unwrap().millis(), T0 + 30 * DAY);
    assert!(state.entitlement.active);
    h.destroy().await;
}

/// 7. ACCESS_GRANTED after SUBSCRIBED/INITIAL_BUY, nothing after a
/// RENEWAL_DISABLED that keeps access, ACCESS_REVOKED after EXPIRED.
#[tokio::test]
async fn access_events_are_derived_when_the_entitlement_flips() {
    let Some(h) = Harness::start(
        "access_events_are_derived_when_the_entitlement_flips",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let sub = AppleSub::new(h.store_id("acc"));
    let (u1, u2, u3) = (h.store_id("n-1"), h.store_id("n-2"), h.store_id("n-3"));
    h.post(sub.subscribed(&h.pki, &u1, T0)).await;
    h.post(sub.auto_renew_disabled(&h.pki, &u2, T0 + 5 * DAY, T0))
        .await;
    h.post(sub.expired(&h.pki, &u3, T0)).await;

    h.pump_until_requests(5, PUMP).await;
    h.drain(PUMP).await;

    let ds = h.deliveries();
    assert_eq!(
        kinds(&ds),
        vec![
            EventType::SubscriptionStarted,
            EventType::AccessGranted,
            EventType::RenewalDisabled,
            EventType::SubscriptionExpired,
            EventType::AccessRevoked
        ],
        "{:?}",
        h.summary()
    );
    assert_eq!(seqs(&ds), vec![1, 2, 3, 4, 5]);
    let e: Vec<EventId> = [&u1, &u2, &u3]
        .iter()
        .map(|u| AppleSub::event_id(u))
        .collect();
    // GRANTED follows its cause and names it
    assert_eq!(ds[1].event.details.cause_event_id.as_ref(), Some(&e[0]));
    assert_eq!(
        ds[1].event.details.cause_type,
        Some(EventType::SubscriptionStarted)
    );
    assert_eq!(
        ds[1].event.id,
        AppleSub::derived_id(&e[0], "ACCESS_GRANTED")
    );
    assert!(ds[1].event.entitlement.active);
    // RENEWAL_DISABLED keeps access: canceled but active until the period ends
    assert_eq!(ds[2].event.id, e[1]);
    assert!(ds[2].event.entitlement.active);
    assert_eq!(
        ds[2].event.subscription.as_ref().unwrap().status,
        SubscriptionStatus::CanceledActive
    );
    // REVOKED follows EXPIRED and names it
    assert_eq!(ds[3].event.id, e[2]);
    assert!(!ds[3].event.entitlement.active);
    assert_eq!(ds[4].event.details.cause_event_id.as_ref(), Some(&e[2]));
    assert_eq!(
        ds[4].event.details.cause_type,
        Some(EventType::SubscriptionExpired)
    );
    assert_eq!(
        ds[4].event.id,
        AppleSub::derived_id(&e[2], "ACCESS_REVOKED")
    );
    assert!(!ds[4].event.entitlement.active);
    let state = h.group(&sub.group()).await;
    assert_eq!(state.sequence, 5);
    assert!(!state.entitlement.active);
    assert_eq!(
        state.subscription.unwrap().status,
        SubscriptionStatus::Expired
    );
    h.destroy().await;
}

/// The template's redrive policy: a message that keeps failing is moved to the
/// DLQ by SQS after `maxReceiveCount` receives, even while the dispatcher's own
/// schedule would still retry it; such a dead letter (without storehook's
/// attributes) replays like an explicit one.
#[tokio::test]
async fn the_redrive_policy_moves_a_message_that_keeps_failing() {
    let options = Options {
        schedule: "1s,1s,1s,1s,1s,1s",
        max_receive_count: 2,
        visibility_timeout_s: 30,
        ..Options::default()
    };
    let Some(h) = Harness::start(
        "the_redrive_policy_moves_a_message_that_keeps_failing",
        options,
    )
    .await
    else {
        return;
    };
    h.rx.set_default(Reply::status(503));
    let sub = AppleSub::new(h.store_id("redrive"));
    let uuid = h.store_id("n-redrive");
    let id = AppleSub::event_id(&uuid);
    h.post(sub.renewed(&h.pki, &uuid, T0)).await;

    // WHEN the dispatcher keeps failing (503) on it
    h.pump_until("the message in the DLQ", PUMP, || async {
        h.depth(h.dlq_url()).await == (1, 0)
    })
    .await;

    // THEN SQS moved it after 2 receives (= 2 attempts): the DLQ holds the event unchanged
    let ds = h.deliveries();
    assert_eq!(
        ids(&ds),
        vec![id.0.clone(), id.0.clone()],
        "{:?}",
        h.summary()
    );
    let rec = h.delivery(&id).await;
    assert_eq!((rec.attempts, rec.last_status), (2, Some(503)));
    assert!(rec.delivered_at.is_none());
    let dead = h.peek_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&dead[0].0).unwrap();
    assert_eq!(body["id"], id.0);
    assert_eq!(h.depth(h.queue_url()).await, (0, 0));

    // WHEN the endpoint recovers and the redriven message is replayed
    h.rx.set_default(Reply::status(200));
    let moved = replay_dead_letters(&h.sqs, h.dlq_url(), h.queue_url(), None)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    h.pump_until_requests(4, PUMP).await;
    h.drain(PUMP).await;
    // THEN it is delivered (3rd attempt, same webhook-id), then its ACCESS_GRANTED
    let ds = h.deliveries();
    assert_eq!(
        kinds(&ds)[2..],
        [EventType::SubscriptionRenewed, EventType::AccessGranted]
    );
    assert_eq!(ds[2].webhook_id, id.0);
    assert_eq!(seqs(&ds), vec![1, 1, 1, 2]);
    let rec = h.delivery(&id).await;
    assert_eq!((rec.attempts, rec.last_status), (3, Some(200)));
    assert_eq!(h.depth(h.dlq_url()).await, (0, 0));
    h.destroy().await;
}

/// 10. The sweeper Lambda's handler: a subscription whose entitlement ended
/// without a closing notification is found in the table's due index, its
/// SUBSCRIPTION_EXPIRED goes through SQS, the dispatcher applies it (next
/// sequence, ACCESS_REVOKED) and delivers it exactly once, however often the
/// sweep repeats.
#[tokio::test]
async fn the_sweeper_lambda_expires_a_lapsed_subscription_through_the_queue_once() {
    use std::sync::Arc;
    use storehook_shared::clock::ManualClock;
    use storehook_shared::config::sweeper::SweeperConfig;
    use storehook_shared::event::Timestamp;
    use storehook_shared::lambda::sweep_scheduled;
    use storehook_shared::queue::sqs::SqsQueue;
    use storehook_shared::state::DynamoState;
    use storehook_shared::sweep::{DEFAULT_RETRY_AFTER, Sweeper};

    let Some(h) = Harness::start("sweeper", Options::default()).await else {
        return;
    };
    // GIVEN a subscription started at T0 (period until T0 + 30 days), delivered
    let sub = AppleSub::new(h.store_id("2000"));
    h.post(sub.subscribed(&h.pki, &h.store_id("s-1"), T0)).await;
    h.pump_until_requests(2, PUMP).await;
    h.drain(PUMP).await;
    // AND the sweeper as the Lambda builds it from its environment (SWEEP_LEEWAY=0)
    let (queue_url, table) = (h.queue_url().to_owned(), h.resources.table_name.clone());
    let config = SweeperConfig::from_lookup(move |k: &str| match k {
        "QUEUE_URL" => Some(queue_url.clone()),
        "TABLE_NAME" => Some(table.clone()),
        "SWEEP_LEEWAY" => Some("0".to_owned()),
        _ => None,
    })
    .unwrap();
    let clock = Arc::new(ManualClock::new(
        Timestamp::from_millis(T0 + 29 * DAY).unwrap().0,
    ));
    let sweeper = Sweeper::new(
        Arc::new(DynamoState::new(
            h.ddb.clone(),
            &config.table_name,
            clock.clone(),
        )),
        Arc::new(SqsQueue::new(h.sqs.clone(), config.queue_url.clone())),
        clock.clone(),
    )
    .with_leeway(config.leeway);

    // WHEN it runs before the period ends THEN nothing is due
    let r = sweep_scheduled(&sweeper, None).await.unwrap();
    assert_eq!((r.due, r.emitted), (0, 0));
    // WHEN it runs after the end
    clock.set(Timestamp::from_millis(T0 + 30 * DAY + HOUR).unwrap().0);
    let r = sweep_scheduled(&sweeper, None).await.unwrap();
    // THEN it queues one SUBSCRIPTION_EXPIRED
    assert_eq!((r.due, r.emitted, r.expired_by_leeway), (1, 1, 1), "{r}");
    // AND a sweep repeated after the retry pause queues the same id again
    clock.advance(chrono::Duration::from_std(DEFAULT_RETRY_AFTER).unwrap());
    let r = sweep_scheduled(&sweeper, None).await.unwrap();
    assert_eq!(r.emitted, 1, "{r}");

    // WHEN the dispatcher consumes the queue
    h.pump_until_requests(4, PUMP).await;
    h.drain(PUMP).await;
    // THEN the webhook got SUBSCRIPTION_EXPIRED (sequence 3, from the sweeper, at the
    // signed end) then ACCESS_REVOKED, once each
    let ds = h.deliveries();
    assert_eq!(
        kinds(&ds),
        vec![
            EventType::SubscriptionStarted,
            EventType::AccessGranted,
            EventType::SubscriptionExpired,
            EventType::AccessRevoked
        ],
        "{:?}",
        h.summary()
    );
    assert_eq!(seqs(&ds), vec![1, 2, 3, 4]);
    let x = &ds[2].event;
    assert_eq!(x.details.source.as_deref(), Some("sweeper"));
    assert_eq!(x.occurred_at.millis(), T0 + 30 * DAY);
    assert_eq!(x.subscription.as_ref().unwrap().id.0, sub.group());
    assert_eq!(
        x.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Expired
    );
    assert!(!x.entitlement.active);
    assert_eq!(x.store_notification.kind, "STOREHOOK_SWEEP");
    // AND the closed subscription left the due index
    clock.advance(chrono::Duration::days(365));
    let r = sweep_scheduled(&sweeper, None).await.unwrap();
    assert_eq!(r.due, 0, "{r}");
    assert_eq!(h.deliveries().len(), 4);
    assert!(!h.group(&sub.group()).await.entitlement.active);
    h.destroy().await;
}

/// The refund defence on the AWS path: an App Store CONSUMPTION_REQUEST goes
/// through ingest → SQS → the dispatcher Lambda's batch handler, is delivered
/// as REFUND_REQUESTED; the backend answers with consumption information; the
/// job travels through SQS in a group of its own; Apple (a loopback fake that
/// checks the JWT and the body) gets it; REFUND_CONSUMPTION_SENT is delivered
/// in the subscription's stream right after the request.
#[tokio::test]
async fn the_dispatcher_lambda_answers_a_refund_request_through_the_queue() {
    use std::sync::Arc;
    use storehook_shared::clock::SystemClock;
    use storehook_shared::consumption::{RefundDefence, Settings};
    use storehook_shared::queue::sqs::SqsQueue;
    use storehook_shared::stores::appstore::api::{ApiSettings, AppleApi};
    use storehook_shared::stores::appstore::verify::JwsVerifier;
    use storehook_testkit::apple_api::{ApiKey, FakeAppleApi};

    let Some(mut h) = Harness::start(
        "the_dispatcher_lambda_answers_a_refund_request_through_the_queue",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let key = ApiKey::generate();
    let fake = FakeAppleApi::start(key.clone(), BUNDLE_ID, TestPki::new()).await;
    let api = AppleApi::new(
        ApiSettings::new(&key.key_id, &key.issuer_id, BUNDLE_ID, &key.private_key_pem)
            .with_base_url(fake.url()),
        Arc::new(JwsVerifier::new(std::slice::from_ref(&h.pki.root_der)).unwrap()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let defence = RefundDefence::new(
        Arc::new(api),
        Arc::new(SqsQueue::new(h.sqs.clone(), h.queue_url().to_owned())),
        Settings::default(),
        Arc::new(SystemClock),
    );
    h.dispatcher = Arc::new(
        (*h.dispatcher)
            .clone()
            .with_refund_defence(Some(Arc::new(defence))),
    );
    let answer = r#"{"consumption":{"customerConsented":true,"deliveryStatus":"DELIVERED","sampleContentProvided":true,"refundPreference":"DECLINE"}}"#;
    h.rx.set_default(Reply::status(200).with_body(answer));

    // GIVEN a subscription bought yesterday, and Apple's refund request now
    let now = chrono::Utc::now().timestamp_millis();
    let sub = AppleSub::new(h.store_id("refund"));
    h.post(sub.subscribed(&h.pki, &format!("{}-buy", h.tag), now - DAY))
        .await;
    let request = harness::Notice {
        ntype: "CONSUMPTION_REQUEST",
        subtype: None,
        uuid: format!("{}-cr", h.tag),
        signed_ms: now,
        status: 1,
        purchase_ms: now - DAY,
        auto_renew: true,
    };
    h.post(sub.body(&h.pki, &request)).await;

    // WHEN the dispatcher consumes the queue
    h.pump_until("REFUND_CONSUMPTION_SENT delivered", PUMP, || async {
        h.delivered_to(&sub.group())
            .iter()
            .any(|d| d.event.kind == EventType::RefundConsumptionSent)
    })
    .await;
    h.drain(PUMP).await;

    // THEN Apple got the backend's answer for the request's transaction
    let sent = fake.consumptions();
    assert_eq!(sent.len(), 1, "refused: {:?}", fake.refused());
    assert_eq!(sent[0].0, format!("{}-{}", sub.original_id, now - DAY));
    assert_eq!(sent[0].1["refundPreference"], "DECLINE");
    // AND the outcome follows the request in the subscription's stream
    let ds = h.delivered_to(&sub.group());
    let req = ds
        .iter()
        .find(|d| d.event.kind == EventType::RefundRequested)
        .expect("REFUND_REQUESTED delivered");
    let out = ds
        .iter()
        .find(|d| d.event.kind == EventType::RefundConsumptionSent)
        .unwrap();
    assert_eq!(
        out.event.sequence,
        req.event.sequence + 1,
        "{:?}",
        seqs(&ds)
    );
    assert_eq!(
        out.event.details.cause_event_id.as_ref(),
        Some(&req.event.id)
    );
    let c = out.event.details.consumption.as_ref().unwrap();
    assert_eq!(
        (c.result.as_str(), c.origin.as_str(), c.apple_status),
        ("ACCEPTED", "backend", Some(202))
    );
    assert_eq!(c.sent.as_ref(), Some(&sent[0].1));
    // AND each was delivered once (the job itself is never delivered)
    assert_eq!(
        ds.iter()
            .filter(|d| d.event.kind == EventType::RefundConsumptionSent)
            .count(),
        1
    );
    assert_eq!(h.depth(h.dlq_url()).await, (0, 0));
    h.destroy().await;
}

/// Several endpoints on the AWS path (issue #13): the dispatcher Lambda's
/// batch handler applies each event once and queues one delivery job per
/// endpoint in the endpoint's own FIFO group; an endpoint in a long outage
/// ("down", answering 503) never holds the other ("main"), and gets its events
/// in order once it is back.
#[tokio::test]
async fn an_endpoint_in_an_outage_never_holds_another_through_sqs() {
    use std::sync::Arc;
    use storehook_shared::clock::SystemClock;
    use storehook_shared::fanout::{Destination, Fanout, Filter, Format};
    use storehook_shared::queue::sqs::SqsQueue;
    use storehook_shared::webhook::HttpWebhookSender;
    use storehook_testkit::receiver::TestReceiver;

    let Some(mut h) = Harness::start(
        "an_endpoint_in_an_outage_never_holds_another_through_sqs",
        Options {
            schedule: "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let down = TestReceiver::start().await.unwrap();
    down.set_default(Reply::status(503));
    let sender = |url: &str| {
        Arc::new(
            HttpWebhookSender::new(
                url,
                h.secrets.clone(),
                Duration::from_secs(5),
                Arc::new(SystemClock),
            )
            .unwrap(),
        )
    };
    let fanout = Fanout::new(
        vec![
            Destination {
                name: "main".into(),
                filter: Filter::default(),
                format: Format::Event,
                sender: sender(&h.rx.url()),
            },
            Destination {
                name: "down".into(),
                filter: Filter::default(),
                format: Format::Event,
                sender: sender(&down.url()),
            },
        ],
        Arc::new(SqsQueue::new(h.sqs.clone(), h.queue_url().to_owned())),
    );
    h.dispatcher = Arc::new((*h.dispatcher).clone().with_fanout(Some(Arc::new(fanout))));

    // GIVEN a subscription's start and two renewals
    let sub = AppleSub::new(h.store_id("fan"));
    h.post(sub.subscribed(&h.pki, &format!("{}-1", h.tag), T0))
        .await;
    h.post(sub.renewed(&h.pki, &format!("{}-2", h.tag), T0 + 30 * DAY))
        .await;
    h.post(sub.renewed(&h.pki, &format!("{}-3", h.tag), T0 + 60 * DAY))
        .await;
    // WHEN the dispatcher runs while "down" answers 503
    h.pump_until("main has every event", PUMP, || async {
        h.delivered_to(&sub.group()).len() >= 4
    })
    .await;
    // THEN "main" got all of them in order, applied once
    let ds = h.delivered_to(&sub.group());
    assert_eq!(seqs(&ds), [1, 2, 3, 4], "{:?}", kinds(&ds));
    assert_eq!(
        ds.iter()
            .map(|d| d.event.previous_sequence)
            .collect::<Vec<_>>(),
        [None, Some(1), Some(2), Some(3)]
    );
    assert_eq!(h.history(&sub.group()).await.len(), 4, "state applied once");
    assert!(down.count() >= 1 && down.requests().iter().all(|r| r.answered == 503));

    // WHEN "down" comes back
    down.set_default(Reply::status(200));
    h.pump_until("down has every event", PUMP, || async {
        down.requests().iter().filter(|r| r.answered == 200).count() >= 4
    })
    .await;
    // THEN it gets the same events, in order, once each
    let got: Vec<storehook_shared::event::Event> = down
        .requests()
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        got.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        got.iter().map(|e| e.id.0.clone()).collect::<Vec<_>>(),
        ids(&ds)
    );
    h.drain(PUMP).await;
    assert_eq!(h.depth(h.dlq_url()).await, (0, 0));
    assert_eq!(
        h.delivered_to(&sub.group()).len(),
        4,
        "main got nothing twice"
    );
    h.destroy().await;
}

/// Amazon end to end: SNS-signed RTN messages (certificate over loopback
/// HTTPS, RVS a loopback fake) into the Amazon Lambda's handler, through SQS
/// and DynamoDB, to the signed webhook: in order, an SNS retry delivered once,
/// the refund revoking the access the purchase granted.
#[tokio::test]
async fn amazon_sns_messages_reach_the_webhook_in_order_through_sqs_and_dynamodb() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use storehook_shared::clock::SystemClock;
    use storehook_shared::ingest::Ingest;
    use storehook_shared::queue::sqs::SqsQueue;
    use storehook_shared::stores::amazon::{Amazon, AmazonEndpoint, amazon_config};
    use storehook_testkit::amazon::{
        FakeRvs, PACKAGE, SHARED_SECRET, SnsMessage, SnsPki, TOPIC_ARN, rtn, subscription_receipt,
    };
    let Some(h) = Harness::start(
        "amazon_sns_messages_reach_the_webhook_in_order_through_sqs_and_dynamodb",
        Options::default(),
    )
    .await
    else {
        return;
    };
    let pki = SnsPki::new();
    let certs = pki.serve().await;
    let rvs = FakeRvs::start().await;
    let settings = HashMap::from([
        ("AMAZON_APP_PACKAGES", PACKAGE.to_owned()),
        ("AMAZON_TOPIC_ARNS", TOPIC_ARN.to_owned()),
        ("AMAZON_RVS_SHARED_SECRET", SHARED_SECRET.to_owned()),
        ("AMAZON_RVS_URL", rvs.server.url.clone()),
        (
            "AMAZON_SNS_CERT_HOSTS",
            certs.url.trim_start_matches("https://").to_owned(),
        ),
        ("AMAZON_SNS_TRUST_ROOTS", pki.root_pem.clone()),
    ]);
    let lookup = |k: &str| settings.get(k).cloned();
    let amazon = Amazon::new(amazon_config(&lookup, true).unwrap(), Arc::new(SystemClock)).unwrap();
    let ingest = Ingest::new(
        Arc::new(AmazonEndpoint(amazon)),
        Arc::new(SqsQueue::new(h.sqs.clone(), h.queue_url().to_owned())),
        Arc::new(SystemClock),
    );
    let lambda = |body: String| {
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "POST /amazon", "rawPath": "/amazon", "rawQueryString": "",
            "headers": {"content-type": "text/plain; charset=UTF-8",
                        "user-agent": "Amazon Simple Notification Service Agent",
                        "x-amz-sns-message-type": "Notification"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "e2e",
                "domainName": "e2e.execute-api.us-east-1.amazonaws.com", "domainPrefix": "e2e",
                "http": {"method": "POST", "path": "/amazon", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.20", "userAgent": "Amazon Simple Notification Service Agent"},
                "requestId": "amazon-e2e", "routeKey": "POST /amazon",
                "stage": "$default", "time": "30/Nov/2026:12:00:00 +0000", "timeEpoch": 1_796_040_000_000_i64
            },
            "body": body, "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).expect("API Gateway v2 event parses")
    };
    let now = chrono::Utc::now().timestamp_millis();
    let receipt = h.store_id("amz-receipt");
    let cert_url = format!("{}/cert.pem", certs.url);
    rvs.answer(
        &receipt,
        200,
        &subscription_receipt(&receipt, now - 1000, now + 30 * DAY),
    );
    let purchase = SnsMessage::notification(
        &rtn("SUBSCRIPTION_PURCHASED", &receipt, now - 1000).to_string(),
        &h.store_id("m-1"),
        &cert_url,
    )
    .signed(&pki);
    for _ in 0..2 {
        // The second post is SNS retrying the same message: one event.
        let r = ingest.lambda(lambda(purchase.clone())).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut refunded = subscription_receipt(&receipt, now - 1000, now + 30 * DAY);
    refunded["autoRenewing"] = serde_json::json!(false);
    refunded["cancelDate"] = serde_json::json!(now - 500);
    refunded["cancelReason"] = serde_json::json!(1);
    rvs.answer(&receipt, 200, &refunded);
    let cancel = SnsMessage::notification(
        &rtn("SUBSCRIPTION_CANCELLED", &receipt, now - 500).to_string(),
        &h.store_id("m-2"),
        &cert_url,
    )
    .signed(&pki);
    let r = ingest.lambda(lambda(cancel)).await.unwrap();
    assert_eq!(r.status(), 200);

    h.pump_until_requests(4, PUMP).await;
    h.drain(PUMP).await;
    let ds = h.deliveries();
    assert_eq!(
        kinds(&ds),
        vec![
            EventType::SubscriptionStarted,
            EventType::AccessGranted,
            EventType::SubscriptionRefunded,
            EventType::AccessRevoked
        ],
        "{:?}",
        h.summary()
    );
    assert_eq!(seqs(&ds), vec![1, 2, 3, 4]);
    let group = ds[0].event.subscription.as_ref().unwrap().id.0.clone();
    assert!(ds.iter().all(|d| d.event.group_key() == group));
    assert_eq!(ds[0].event.store_notification.id, h.store_id("m-1"));
    assert_eq!(
        ds[2].event.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Revoked
    );
    let state = h.group(&group).await;
    assert_eq!(state.sequence, 4);
    assert!(!state.entitlement.active);
    assert_eq!(
        certs.seen().len(),
        1,
        "one certificate download for three messages"
    );
    h.destroy().await;
}
