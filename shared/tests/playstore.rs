//! Google Play tests: every notification type against realistic API
//! resources served by a fake Google on 127.0.0.1, lifecycles applied through
//! the dispatcher's state transition, the captured real pushes of
//! tests/fixtures/playstore, and the negative matrix driven through `Ingest`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use base64::Engine;
use chrono::TimeZone;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use storehook_shared::clock::{Clock, ManualClock};
use storehook_shared::event::{
    ChangeEffective, Environment, Event, EventType, OfferType, PeriodType, PriceIncreaseStatus,
    ProductKind, RefundKind, Store, SubscriptionStatus,
};
use storehook_shared::ingest::{Ingest, StoreResponse};
use storehook_shared::queue::MemoryQueue;
use storehook_shared::state::{GroupState, transition};
use storehook_shared::stores::playstore::auth::MIN_REFETCH_SECS;
use storehook_shared::stores::playstore::links::{LinkError, LinkStore};
use storehook_shared::stores::playstore::model::PurchaseToken;
use storehook_shared::stores::playstore::*;
use storehook_testkit::playstore::payloads::*;
use storehook_testkit::playstore::*;

const NOW: i64 = T0 + 40 * DAY;

struct Harness {
    env: PlayTestEnv,
    endpoint: Arc<PlayStoreEndpoint>,
    ingest: Ingest,
    queue: Arc<MemoryQueue>,
}

async fn harness_with(extra: &[(&str, &str)]) -> Harness {
    let env = PlayTestEnv::start_with(extra).await;
    let endpoint = Arc::new(env.endpoint());
    let queue = Arc::new(MemoryQueue::new());
    let ingest = Ingest::new(endpoint.clone(), queue.clone(), env.clock.clone());
    Harness {
        env,
        endpoint,
        ingest,
        queue,
    }
}

async fn harness() -> Harness {
    harness_with(&[]).await
}

impl Harness {
    /// Moves the clock to `ms`.
    fn at(&self, ms: i64) {
        self.env
            .clock
            .set(chrono::Utc.timestamp_millis_opt(ms).unwrap());
    }

    fn sub(&self, token: &str, s: &Sub) {
        self.env.google.set_subscription(PACKAGE, token, s.json());
    }

    async fn send(&self, message_id: &str, notification: &Value) -> StoreResponse {
        let now = self.env.clock.now().timestamp_millis();
        self.ingest
            .handle(self.env.request(push_body(message_id, notification, now)))
            .await
    }

    /// Sends and returns the one queued event.
    async fn event(&self, message_id: &str, notification: &Value) -> Event {
        let before = self.queue.sent().len();
        let resp = self.send(message_id, notification).await;
        assert_eq!(resp.status, 200, "{message_id}: {}", resp.body);
        let sent = self.queue.sent();
        assert_eq!(sent.len(), before + 1, "{message_id}");
        let e: Event = serde_json::from_str(&sent[before].body).unwrap();
        assert_eq!(sent[before].dedup_id, e.id.0);
        assert_eq!(sent[before].group_id, e.group_key());
        e
    }
}

/// The dispatcher's state rules, to see what a webhook receiver would get.
#[derive(Default)]
struct Ledger(HashMap<String, GroupState>);

impl Ledger {
    /// Applies `e`; returns its type and the derived ACCESS_* types.
    fn apply(&mut self, e: &Event) -> Vec<EventType> {
        let key = e.group_key();
        let applied = transition(self.0.get(&key), e.clone(), e.received_at);
        self.0.insert(key, applied.next);
        std::iter::once(applied.event.kind)
            .chain(applied.derived.into_iter().map(|d| d.kind))
            .collect()
    }
}

fn status(e: &Event) -> SubscriptionStatus {
    e.subscription.as_ref().unwrap().status.clone()
}

// ---------------------------------------------------------------- fixtures

fn fixture_names() -> Vec<String> {
    let dir = format!("{}/../tests/fixtures/playstore", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/playstore/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn captured_pushes_decode_as_their_expectations_say_and_translate() {
    // GIVEN the real pushes of tests/fixtures/playstore and an endpoint for their apps
    let packages =
        "com.prometheuspoker.battle,com.edufox,com.billionfaces.casttree,com.anonymous.ipush";
    let h = harness_with(&[("PLAY_PACKAGE_NAMES", packages)]).await;
    let want = [
        ("google_01_TEST_prometheuspoker.json", EventType::Test),
        (
            "google_03_RENEWED_edufox.json",
            EventType::SubscriptionRenewed,
        ),
        (
            "google_04_CANCELED_casttree.json",
            EventType::RenewalDisabled,
        ),
        (
            "google_12_VOIDED_ipush.json",
            EventType::SubscriptionRefunded,
        ),
    ];
    assert_eq!(
        fixture_names().len(),
        want.len(),
        "a fixture without an expectation"
    );
    for (name, kind) in want {
        let f = fixture(name);
        let x = &f["expect"];
        let body = serde_json::to_vec(&f["body"]).unwrap();
        let package = x["packageName"].as_str().unwrap();

        // WHEN decoded
        let push = h.endpoint.decode(&body).unwrap();
        // THEN the DeveloperNotification is what `expect` says
        let n = &push.notification.as_ref().unwrap().notification;
        assert_eq!(n.package_name, package, "{name}");
        assert_eq!(
            n.event_time_millis.unwrap().to_string(),
            x["eventTimeMillis"].as_str().unwrap()
        );
        assert_eq!(n.version.as_deref(), x["version"].as_str());
        assert_eq!(
            push.message_id,
            f["body"]["message"]["messageId"].as_str().unwrap()
        );
        let token = x["purchaseToken"].as_str();
        match x["kind"].as_str().unwrap() {
            "testNotification" => assert!(n.test_notification.is_some()),
            "subscriptionNotification" => {
                let s = n.subscription_notification.as_ref().unwrap();
                assert_eq!(s.notification_type, x["notificationType"].as_i64());
                assert_eq!(s.purchase_token.as_str(), token.unwrap());
                assert_eq!(s.subscription_id.as_deref(), x["subscriptionId"].as_str());
            }
            "voidedPurchaseNotification" => {
                let v = n.voided_purchase_notification.as_ref().unwrap();
                assert_eq!(v.purchase_token.as_str(), token.unwrap());
                assert_eq!(v.order_id.as_deref(), x["orderId"].as_str());
                assert_eq!(v.product_type, x["productType"].as_i64());
                assert_eq!(v.refund_type, x["refundType"].as_i64());
            }
            other => panic!("{name}: unexpected kind {other}"),
        }

        // AND, with the API answering for its token, it translates to the mapped type
        if let Some(t) = token {
            let product = x["subscriptionId"].as_str().unwrap_or("premium");
            let s = Sub::active()
                .product(product, "monthly")
                .expiry(NOW + 20 * DAY)
                .state(if kind == EventType::RenewalDisabled {
                    "CANCELED"
                } else {
                    "ACTIVE"
                })
                .auto_renew(kind != EventType::RenewalDisabled);
            h.env.google.set_subscription(package, t, s.json());
        }
        let events = h
            .endpoint
            .process(&h.env.request(body), NOW)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, kind, "{name}");
        assert_eq!(e.app_id, package);
        assert_eq!(e.store, Store::GooglePlay);
        assert_eq!(e.store_notification.id, push.message_id);
        assert_eq!(
            e.occurred_at.to_string(),
            x["eventTimeISO"].as_str().unwrap()
        );
        // (a full void's id derives from its token and order, so that the
        // voided-purchases backfill of the same void is the same event)
        let want_id = match n.voided_purchase_notification.as_ref() {
            Some(v) => translate::voided_event_id(v).unwrap(),
            None => storehook_shared::event::EventId::derive(&["GOOGLE_PLAY", &push.message_id]),
        };
        assert_eq!(e.id, want_id);
        if let Some(name) = x["notificationTypeName"].as_str() {
            assert_eq!(e.store_notification.kind, name);
        }
        if let (Some(t), Some(s)) = (token, &e.subscription) {
            assert_eq!(
                s.store_subscription_id, t,
                "{name}: first token of the lineage"
            );
        }
    }
}

// ---------------------------------------------------------------- every type

#[tokio::test]
async fn every_subscription_notification_type_maps_per_events_md() {
    use EventType as T;
    use SubscriptionStatus as S;
    let h = harness().await;
    let future = NOW + 20 * DAY;
    let live = || {
        Sub::active()
            .expiry(future)
            .order("GPA.3301-2241-6549-81234..1")
    };
    let price = |state: &str| Sub {
        price_change: Some((5_990_000, state.into())),
        ..live()
    };
    let cases: Vec<(i64, Sub, T, S, bool)> = vec![
        (1, live(), T::SubscriptionRecovered, S::Active, true),
        (2, live(), T::SubscriptionRenewed, S::Active, true),
        (
            3,
            live().state("CANCELED").auto_renew(false).canceled("user"),
            T::RenewalDisabled,
            S::CanceledActive,
            true,
        ),
        (4, live(), T::SubscriptionStarted, S::Active, true),
        (
            5,
            live().state("ON_HOLD").expiry(NOW - DAY),
            T::BillingRetryStarted,
            S::OnHold,
            false,
        ),
        (
            6,
            live().state("IN_GRACE_PERIOD").expiry(NOW + 3 * DAY),
            T::GracePeriodStarted,
            S::InGracePeriod,
            true,
        ),
        (7, live(), T::RenewalEnabled, S::Active, true),
        (8, price("CONFIRMED"), T::PriceIncrease, S::Active, true),
        (
            9,
            live().expiry(NOW + 50 * DAY),
            T::RenewalExtended,
            S::Active,
            true,
        ),
        (
            10,
            Sub {
                resume_ms: Some(NOW + 30 * DAY),
                ..live().state("PAUSED").expiry(NOW - DAY)
            },
            T::SubscriptionPaused,
            S::Paused,
            false,
        ),
        (11, live(), T::SubscriptionPauseScheduled, S::Active, true),
        (
            12,
            live().state("EXPIRED").auto_renew(false),
            T::SubscriptionRevoked,
            S::Revoked,
            false,
        ),
        (
            13,
            live()
                .state("EXPIRED")
                .auto_renew(false)
                .expiry(NOW - DAY)
                .canceled("user"),
            T::SubscriptionExpired,
            S::Expired,
            false,
        ),
        (
            17,
            live().product("premium_bundle", "monthly"),
            T::ProductChanged,
            S::Active,
            true,
        ),
        (18, live(), T::RenewalDisabled, S::Active, true),
        (19, price("OUTSTANDING"), T::PriceIncrease, S::Active, true),
        (
            20,
            live().state("PENDING_PURCHASE_CANCELED").auto_renew(false),
            T::PurchasePendingCanceled,
            S::Expired,
            false,
        ),
        (22, price("OUTSTANDING"), T::PriceIncrease, S::Active, true),
        (99, live(), T::StoreNotification, S::Active, true),
    ];
    for (n, sub, kind, want_status, entitled) in cases {
        // GIVEN the API state after notification n
        let token = format!("tok-type-{n}");
        h.sub(&token, &sub);
        // WHEN the notification is pushed
        let e = h
            .event(
                &format!("m-type-{n}"),
                &subscription_notification(n, &token, NOW - 1000),
            )
            .await;
        // THEN it has the mapped type, the snapshot from the API and the entitlement rule
        assert_eq!(e.kind, kind, "type {n}");
        assert_eq!(status(&e), want_status, "type {n}");
        assert_eq!(e.entitlement.active, entitled, "type {n}");
        assert_eq!(
            e.store_notification.kind,
            model::subscription_type_name(n)
                .map_or(format!("SUBSCRIPTION_NOTIFICATION_{n}"), str::to_owned)
        );
        let s = e.subscription.as_ref().unwrap();
        assert_eq!(s.store_subscription_id, token);
        assert_eq!(s.country.as_deref(), Some("FR"));
        assert_eq!(e.app_user_id.as_deref(), Some("user-42"));
        assert_eq!(e.environment, Environment::Production);
        let p = e.product.as_ref().unwrap();
        assert_eq!(p.kind, ProductKind::AutoRenewable);
        assert_eq!(p.plan_id.as_deref(), Some("monthly"));
        assert_eq!(e.occurred_at.millis(), NOW - 1000);
        assert_eq!(e.received_at.millis(), NOW);
        let d = &e.details;
        match n {
            3 => assert_eq!(d.reason.as_deref(), Some("USER")),
            6 => assert_eq!(d.grace_period_expires_at.unwrap().millis(), NOW + 3 * DAY),
            8 => {
                assert_eq!(d.status, Some(PriceIncreaseStatus::Accepted));
                assert_eq!(d.new_price.as_ref().unwrap().amount_micros, 5_990_000);
            }
            9 => assert_eq!(d.new_expires_at.unwrap().millis(), NOW + 50 * DAY),
            10 => assert_eq!(d.resumes_at.unwrap().millis(), NOW + 30 * DAY),
            13 => assert_eq!(d.reason.as_deref(), Some("VOLUNTARY")),
            17 => assert_eq!(d.to_product_id.as_deref(), Some("premium_bundle")),
            18 => assert_eq!(d.reason.as_deref(), Some("USER")),
            19 | 22 => assert_eq!(d.status, Some(PriceIncreaseStatus::Pending)),
            _ => {}
        }
    }
}

#[tokio::test]
async fn the_snapshot_carries_price_plan_offer_order_and_environment() {
    let h = harness().await;
    // GIVEN a license tester's purchase in a free trial of an offer
    let s = Sub {
        offer_id: Some("trial-7d".into()),
        offer_phase: Some("freeTrial".into()),
        test: true,
        ..Sub::active().expiry(NOW + 7 * DAY).start(NOW - 1000)
    };
    h.sub("tok-snap", &s);
    let e = h
        .event(
            "m-snap",
            &subscription_notification(4, "tok-snap", NOW - 1000),
        )
        .await;
    let sub = e.subscription.as_ref().unwrap();
    assert_eq!(e.environment, Environment::Sandbox);
    assert_eq!(sub.period_type, PeriodType::Trial);
    assert_eq!(e.details.offer.as_ref().unwrap().kind, OfferType::FreeTrial);
    assert_eq!(
        e.details.offer.as_ref().unwrap().id.as_deref(),
        Some("trial-7d")
    );
    let price = sub.price.as_ref().unwrap();
    assert_eq!(
        (price.amount_micros, price.currency.as_str()),
        (4_990_000, "EUR")
    );
    assert!(sub.auto_renew);
    assert_eq!(sub.started_at.unwrap().millis(), NOW - 1000);
    // the latest order is the initial one: it started the current period
    assert_eq!(sub.current_period_started_at, sub.started_at);
    assert_eq!(sub.renewal_product_id.as_deref(), Some("premium"));
    let tx = e.transaction.as_ref().unwrap();
    assert_eq!(tx.id, "GPA.3301-2241-6549-81234");
    assert_eq!(tx.original_id.as_deref(), Some("GPA.3301-2241-6549-81234"));
    assert_eq!(tx.purchased_at, sub.started_at);
    assert!(e.raw.is_none());
}

// ---------------------------------------------------------------- lifecycles

#[tokio::test]
async fn purchase_renew_cancel_restart_expire() {
    use EventType as T;
    let h = harness().await;
    let mut ledger = Ledger::default();
    let tok = "tok-life";
    let base = Sub::active()
        .start(T0)
        .expiry(T0 + 30 * DAY)
        .order("GPA.1111-2222-3333-44444");
    let steps: Vec<(i64, i64, Sub, Vec<T>)> = vec![
        (
            T0,
            4,
            base.clone(),
            vec![T::SubscriptionStarted, T::AccessGranted],
        ),
        (
            T0 + 30 * DAY,
            2,
            base.clone()
                .expiry(T0 + 60 * DAY)
                .order("GPA.1111-2222-3333-44444..0"),
            vec![T::SubscriptionRenewed],
        ),
        (
            T0 + 40 * DAY,
            3,
            base.clone()
                .expiry(T0 + 60 * DAY)
                .state("CANCELED")
                .auto_renew(false)
                .canceled("user"),
            vec![T::RenewalDisabled],
        ),
        (
            T0 + 45 * DAY,
            7,
            base.clone().expiry(T0 + 60 * DAY),
            vec![T::RenewalEnabled],
        ),
        (
            T0 + 50 * DAY,
            3,
            base.clone()
                .expiry(T0 + 60 * DAY)
                .state("CANCELED")
                .auto_renew(false)
                .canceled("user"),
            vec![T::RenewalDisabled],
        ),
        (
            T0 + 60 * DAY,
            13,
            base.clone()
                .expiry(T0 + 60 * DAY)
                .state("EXPIRED")
                .auto_renew(false)
                .canceled("user"),
            vec![T::SubscriptionExpired, T::AccessRevoked],
        ),
    ];
    let mut ids = Vec::new();
    for (i, (t, n, sub, want)) in steps.into_iter().enumerate() {
        h.at(t + 2000);
        h.sub(tok, &sub);
        let e = h
            .event(
                &format!("m-life-{i}"),
                &subscription_notification(n, tok, t),
            )
            .await;
        assert_eq!(ledger.apply(&e), want, "step {i}");
        ids.push(e.subscription.as_ref().unwrap().id.clone());
        match i {
            1 => {
                let tx = e.transaction.as_ref().unwrap();
                assert_eq!(tx.id, "GPA.1111-2222-3333-44444..0");
                assert_eq!(tx.original_id.as_deref(), Some("GPA.1111-2222-3333-44444"));
                assert_eq!(
                    e.subscription.as_ref().unwrap().current_period_started_at,
                    None
                );
            }
            2 | 4 => {
                assert_eq!(status(&e), SubscriptionStatus::CanceledActive);
                assert!(!e.subscription.as_ref().unwrap().auto_renew);
                assert!(e.entitlement.active);
            }
            3 => assert_eq!(status(&e), SubscriptionStatus::Active),
            5 => {
                assert_eq!(status(&e), SubscriptionStatus::Expired);
                assert_eq!(e.details.reason.as_deref(), Some("VOLUNTARY"));
            }
            _ => {}
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one subscription id throughout"
    );
}

#[tokio::test]
async fn grace_then_hold_then_recovery() {
    use EventType as T;
    let h = harness().await;
    let mut ledger = Ledger::default();
    let tok = "tok-grace";
    let base = Sub::active().start(T0).expiry(T0 + 30 * DAY);
    let steps: Vec<(i64, i64, Sub, Vec<T>, SubscriptionStatus)> = vec![
        (
            T0,
            4,
            base.clone(),
            vec![T::SubscriptionStarted, T::AccessGranted],
            SubscriptionStatus::Active,
        ),
        (
            T0 + 30 * DAY,
            6,
            base.clone().state("IN_GRACE_PERIOD").expiry(T0 + 33 * DAY),
            vec![T::GracePeriodStarted],
            SubscriptionStatus::InGracePeriod,
        ),
        (
            T0 + 33 * DAY,
            5,
            base.clone().state("ON_HOLD").expiry(T0 + 33 * DAY),
            vec![T::BillingRetryStarted, T::AccessRevoked],
            SubscriptionStatus::OnHold,
        ),
        (
            T0 + 35 * DAY,
            1,
            base.clone()
                .expiry(T0 + 65 * DAY)
                .order("GPA.3301-2241-6549-81234..0"),
            vec![T::SubscriptionRecovered, T::AccessGranted],
            SubscriptionStatus::Active,
        ),
    ];
    for (i, (t, n, sub, want, st)) in steps.into_iter().enumerate() {
        h.at(t + 2000);
        h.sub(tok, &sub);
        let e = h
            .event(
                &format!("m-grace-{i}"),
                &subscription_notification(n, tok, t),
            )
            .await;
        assert_eq!(ledger.apply(&e), want, "step {i}");
        assert_eq!(status(&e), st);
        if i == 1 {
            assert_eq!(
                e.details.grace_period_expires_at.unwrap().millis(),
                T0 + 33 * DAY
            );
            assert_eq!(
                e.subscription
                    .as_ref()
                    .unwrap()
                    .grace_period_expires_at
                    .unwrap()
                    .millis(),
                T0 + 33 * DAY
            );
            assert_eq!(e.entitlement.expires_at.unwrap().millis(), T0 + 33 * DAY);
        }
    }
}

#[tokio::test]
async fn pause_scheduled_then_paused_then_resumed() {
    use EventType as T;
    let h = harness().await;
    let mut ledger = Ledger::default();
    let tok = "tok-pause";
    let base = Sub::active().start(T0).expiry(T0 + 30 * DAY);
    let paused = Sub {
        resume_ms: Some(T0 + 60 * DAY),
        ..base.clone().state("PAUSED")
    };
    let steps: Vec<(i64, i64, Sub, Vec<T>)> = vec![
        (
            T0,
            4,
            base.clone(),
            vec![T::SubscriptionStarted, T::AccessGranted],
        ),
        (
            T0 + 10 * DAY,
            11,
            base.clone(),
            vec![T::SubscriptionPauseScheduled],
        ),
        (
            T0 + 30 * DAY,
            10,
            paused,
            vec![T::SubscriptionPaused, T::AccessRevoked],
        ),
        (
            T0 + 60 * DAY,
            1,
            base.clone()
                .expiry(T0 + 90 * DAY)
                .order("GPA.3301-2241-6549-81234..0"),
            vec![T::SubscriptionRecovered, T::AccessGranted],
        ),
    ];
    for (i, (t, n, sub, want)) in steps.into_iter().enumerate() {
        h.at(t + 2000);
        h.sub(tok, &sub);
        let e = h
            .event(
                &format!("m-pause-{i}"),
                &subscription_notification(n, tok, t),
            )
            .await;
        assert_eq!(ledger.apply(&e), want, "step {i}");
        if i == 2 {
            assert_eq!(status(&e), SubscriptionStatus::Paused);
            assert_eq!(e.details.resumes_at.unwrap().millis(), T0 + 60 * DAY);
        }
    }
}

#[tokio::test]
async fn an_upgrade_keeps_the_subscription_and_the_replaced_token_cannot_revoke_it() {
    use EventType as T;
    let h = harness().await;
    let mut ledger = Ledger::default();
    // GIVEN a monthly purchase
    h.at(T0 + 2000);
    h.sub("tok-a", &Sub::active().start(T0).expiry(T0 + 30 * DAY));
    let first = h
        .event("m-up-1", &subscription_notification(4, "tok-a", T0))
        .await;
    assert_eq!(
        ledger.apply(&first),
        vec![T::SubscriptionStarted, T::AccessGranted]
    );

    // WHEN the user upgrades to yearly: a new token linked to the old one, the old one replaced
    let t = T0 + 10 * DAY;
    h.at(t + 2000);
    h.sub(
        "tok-a",
        &Sub::active()
            .start(T0)
            .expiry(t)
            .state("EXPIRED")
            .auto_renew(false)
            .canceled("replacement"),
    );
    h.sub(
        "tok-b",
        &Sub::active()
            .product("premium_plus", "yearly")
            .start(t)
            .expiry(t + 365 * DAY)
            .linked("tok-a")
            .order("GPA.5555-6666-7777-88888"),
    );
    let up = h
        .event("m-up-2", &subscription_notification(4, "tok-b", t))
        .await;
    // THEN it is a product change of the same subscription, first token kept
    assert_eq!(ledger.apply(&up), vec![T::ProductChanged]);
    let s = up.subscription.as_ref().unwrap();
    assert_eq!(s.id, first.subscription.as_ref().unwrap().id);
    assert_eq!(s.store_subscription_id, "tok-a");
    assert_eq!(up.details.from_product_id.as_deref(), Some("premium"));
    assert_eq!(up.details.to_product_id.as_deref(), Some("premium_plus"));
    assert_eq!(up.details.effective, Some(ChangeEffective::Immediate));
    assert_eq!(
        up.product.as_ref().unwrap().plan_id.as_deref(),
        Some("yearly")
    );

    // AND the old token's own EXPIRED carries no snapshot, so access stays granted
    let old = h
        .event(
            "m-up-3",
            &subscription_notification(13, "tok-a", t + 60_000),
        )
        .await;
    assert_eq!(old.kind, T::StoreNotification);
    assert_eq!(old.store_notification.kind, "SUBSCRIPTION_EXPIRED");
    assert!(old.subscription.is_none() && old.transaction.is_none());
    assert_eq!(ledger.apply(&old), vec![T::StoreNotification]);

    // AND the new token's renewal stays in the lineage
    let r = T0 + 375 * DAY;
    h.at(r + 2000);
    h.sub(
        "tok-b",
        &Sub::active()
            .product("premium_plus", "yearly")
            .start(t)
            .expiry(r + 365 * DAY)
            .linked("tok-a")
            .order("GPA.5555-6666-7777-88888..0"),
    );
    let renew = h
        .event("m-up-4", &subscription_notification(2, "tok-b", r))
        .await;
    assert_eq!(ledger.apply(&renew), vec![T::SubscriptionRenewed]);
    assert_eq!(renew.subscription.as_ref().unwrap().id, s.id);

    // AND a re-signup after the yearly plan expired is a resubscription of the same lineage
    let back = r + 400 * DAY;
    h.at(back + 2000);
    h.sub(
        "tok-b",
        &Sub::active()
            .product("premium_plus", "yearly")
            .start(t)
            .expiry(r + 365 * DAY)
            .state("EXPIRED")
            .auto_renew(false)
            .canceled("user"),
    );
    h.sub(
        "tok-c",
        &Sub::active()
            .start(back)
            .expiry(back + 30 * DAY)
            .linked("tok-b"),
    );
    let resub = h
        .event("m-up-5", &subscription_notification(4, "tok-c", back))
        .await;
    assert_eq!(resub.kind, T::SubscriptionResubscribed);
    assert_eq!(resub.subscription.as_ref().unwrap().id, s.id);
    assert_eq!(
        resub.subscription.as_ref().unwrap().store_subscription_id,
        "tok-a"
    );
    assert_eq!(h.env.links.len(), 3);
}

#[tokio::test]
async fn a_link_to_a_token_google_forgot_is_a_resubscription_rooted_there() {
    let h = harness().await;
    h.sub(
        "tok-new",
        &Sub::active().expiry(NOW + 30 * DAY).linked("tok-ancient"),
    );
    let e = h
        .event(
            "m-anc",
            &subscription_notification(4, "tok-new", NOW - 1000),
        )
        .await;
    assert_eq!(e.kind, EventType::SubscriptionResubscribed);
    let s = e.subscription.as_ref().unwrap();
    assert_eq!(s.store_subscription_id, "tok-ancient");
    assert_eq!(
        s.id,
        storehook_shared::stores::playstore::links::Lineage::rooted_at(&PurchaseToken::new(
            "tok-ancient"
        ))
        .subscription_id
    );
}

/// Serves a chain `tok-0 ← tok-1 ← … ← tok-<n-1>` (each linking to the one
/// before), all live-looking except that older ones were replaced.
fn serve_chain(h: &Harness, n: usize) {
    for i in 0..n {
        let mut s = Sub::active()
            .start(T0 + i as i64 * DAY)
            .expiry(NOW + 30 * DAY);
        if i > 0 {
            s = s.linked(&format!("tok-{}", i - 1));
        }
        if i + 1 < n {
            s = s.state("EXPIRED").auto_renew(false).canceled("replacement");
        }
        h.sub(&format!("tok-{i}"), &s);
    }
}

#[tokio::test]
async fn an_unknown_lineage_is_walked_back_to_its_first_token_through_the_api() {
    // GIVEN a fresh deployment (nothing linked) and Google knowing a chain of
    // five tokens (four upgrades)
    let h = harness().await;
    serve_chain(&h, 5);
    // WHEN the newest token's renewal arrives
    let e = h
        .event(
            "m-walk-1",
            &subscription_notification(2, "tok-4", NOW - 1000),
        )
        .await;
    // THEN the subscription is the first token's
    let s = e.subscription.as_ref().unwrap();
    assert_eq!(s.store_subscription_id, "tok-0");
    assert_eq!(
        s.id,
        links::Lineage::rooted_at(&PurchaseToken::new("tok-0")).subscription_id
    );
    // AND every token reached is linked to it
    assert_eq!(h.env.links.len(), 5);
    for i in 0..5 {
        let l = h
            .env
            .links
            .resolve(&PurchaseToken::new(format!("tok-{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(l.first_token.as_str(), "tok-0");
    }
    // AND a later notification of a middle token needs no walk (one API call: its own state)
    let before = h.env.google.api_requests();
    let mid = h
        .event("m-walk-2", &subscription_notification(13, "tok-2", NOW))
        .await;
    assert_eq!(h.env.google.api_requests(), before + 1);
    assert_eq!(mid.store_notification.kind, "SUBSCRIPTION_EXPIRED");
}

#[tokio::test]
async fn a_purchase_on_an_unknown_lineage_reuses_the_walk_for_its_predecessor() {
    // GIVEN a chain of three where the newest is a fresh upgrade (PURCHASED)
    let h = harness().await;
    serve_chain(&h, 3);
    let before = h.env.google.api_requests();
    let e = h
        .event(
            "m-walk-p",
            &subscription_notification(4, "tok-2", NOW - 1000),
        )
        .await;
    // THEN a product change of the first token's subscription, and exactly three
    // API calls: the token and its two predecessors (the predecessor is not read twice)
    assert_eq!(e.kind, EventType::ProductChanged);
    assert_eq!(
        e.subscription.as_ref().unwrap().store_subscription_id,
        "tok-0"
    );
    assert_eq!(h.env.google.api_requests(), before + 3);
}

#[tokio::test]
async fn the_lineage_walk_stops_at_its_bound_and_takes_the_oldest_token_reached() {
    use storehook_shared::stores::playstore::lineage::MAX_LINEAGE_DEPTH;
    // GIVEN a chain longer than the bound
    let h = harness().await;
    let n = MAX_LINEAGE_DEPTH + 5;
    serve_chain(&h, n);
    let newest = format!("tok-{}", n - 1);
    let before = h.env.google.api_requests();
    // WHEN the newest token is notified
    let e = h
        .event(
            "m-bound",
            &subscription_notification(2, &newest, NOW - 1000),
        )
        .await;
    // THEN the walk made at most MAX_LINEAGE_DEPTH predecessor calls (plus the token's own)
    assert_eq!(h.env.google.api_requests(), before + 1 + MAX_LINEAGE_DEPTH);
    // AND the oldest token read is the root
    let oldest = format!("tok-{}", n - 1 - MAX_LINEAGE_DEPTH);
    assert_eq!(
        e.subscription.as_ref().unwrap().store_subscription_id,
        oldest
    );
    assert_eq!(h.env.links.len(), MAX_LINEAGE_DEPTH + 1);
}

#[tokio::test]
async fn a_loop_of_linked_tokens_ends_the_walk() {
    // GIVEN tokens that link to each other (x → y → z → x)
    let h = harness().await;
    h.sub(
        "tok-x",
        &Sub::active().expiry(NOW + 30 * DAY).linked("tok-z"),
    );
    h.sub(
        "tok-y",
        &Sub::active().expiry(NOW + 30 * DAY).linked("tok-x"),
    );
    h.sub(
        "tok-z",
        &Sub::active().expiry(NOW + 30 * DAY).linked("tok-y"),
    );
    let before = h.env.google.api_requests();
    // WHEN one of them is notified
    let e = h
        .event("m-loop", &subscription_notification(2, "tok-x", NOW - 1000))
        .await;
    // THEN the walk stops at the loop: the oldest token reached (y) is the root
    assert_eq!(
        e.subscription.as_ref().unwrap().store_subscription_id,
        "tok-y"
    );
    assert_eq!(h.env.google.api_requests(), before + 3);
    assert_eq!(h.env.links.len(), 3);
}

#[tokio::test]
async fn a_walk_that_meets_a_known_token_joins_its_lineage() {
    // GIVEN tok-1 already linked to a lineage rooted at tok-0, Google knowing tok-2 → tok-1
    let h = harness().await;
    serve_chain(&h, 4);
    let root = links::Lineage::rooted_at(&PurchaseToken::new("tok-0"));
    h.env
        .links
        .link(&PurchaseToken::new("tok-1"), &root)
        .await
        .unwrap();
    h.env
        .google
        .set_subscription(PACKAGE, "tok-0", json!({"bad": "not asked"}));
    let before = h.env.google.api_requests();
    // WHEN tok-3 arrives
    let e = h
        .event("m-join", &subscription_notification(2, "tok-3", NOW - 1000))
        .await;
    // THEN tok-2 is read, tok-1 is known: no further call, the lineage is tok-0's
    assert_eq!(h.env.google.api_requests(), before + 2);
    assert_eq!(e.subscription.as_ref().unwrap().id, root.subscription_id);
    assert_eq!(h.env.links.len(), 3);
}

#[tokio::test]
async fn a_failing_api_during_the_walk_is_retryable_and_links_nothing() {
    let h = harness().await;
    serve_chain(&h, 3);
    // The token's own read succeeds, the predecessors' fail: emulate with a
    // predecessor the fake answers 503 for.
    h.env.google.set_subscription(PACKAGE, "tok-1", json!(null));
    h.env.google.set_api_status_for(PACKAGE, "tok-1", Some(503));
    let resp = h
        .send(
            "m-walk-fail",
            &subscription_notification(2, "tok-2", NOW - 1000),
        )
        .await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(h.env.links.is_empty());
    assert!(h.queue.sent().is_empty());
}

#[tokio::test]
async fn a_deferred_downgrade_takes_effect_at_the_next_renewal() {
    let h = harness().await;
    h.sub(
        "tok-y",
        &Sub {
            deferred_replacement: Some("basic".into()),
            ..Sub::active()
                .expiry(NOW + 100 * DAY)
                .state("CANCELED")
                .auto_renew(false)
                .canceled("replacement")
        },
    );
    h.sub(
        "tok-z",
        &Sub::active()
            .product("basic", "monthly")
            .expiry(NOW + 130 * DAY)
            .linked("tok-y"),
    );
    let e = h
        .event("m-down", &subscription_notification(4, "tok-z", NOW - 1000))
        .await;
    assert_eq!(e.kind, EventType::ProductChanged);
    assert_eq!(e.details.effective, Some(ChangeEffective::NextRenewal));
    assert_eq!(e.details.from_product_id.as_deref(), Some("premium"));
    assert_eq!(e.details.to_product_id.as_deref(), Some("basic"));
}

// ---------------------------------------------------------------- voided, one-time, test, refund review

#[tokio::test]
async fn voided_subscriptions_full_and_partial() {
    use EventType as T;
    let h = harness().await;
    let mut ledger = Ledger::default();
    // GIVEN a yearly plan bought at T0
    let yearly = Sub::active()
        .product("premium", "yearly")
        .start(T0)
        .expiry(T0 + 365 * DAY)
        .order("GPA.9999-0000-1111-22222");
    h.at(T0 + 2000);
    h.sub("tok-v", &yearly);
    let buy = h
        .event("m-v-1", &subscription_notification(4, "tok-v", T0))
        .await;
    ledger.apply(&buy);

    // WHEN it is partially refunded 5 days later (Google still says ACTIVE)
    h.at(T0 + 5 * DAY + 2000);
    let partial = h
        .event(
            "m-v-2",
            &voided_notification("tok-v", "GPA.9999-0000-1111-22222", 1, 2, T0 + 5 * DAY),
        )
        .await;
    assert_eq!(ledger.apply(&partial), vec![T::SubscriptionRefunded]);
    let r = partial.details.refund.as_ref().unwrap();
    assert_eq!(r.kind, Some(RefundKind::Partial));
    assert_eq!(status(&partial), SubscriptionStatus::Active);
    assert_eq!(
        partial.store_notification.subtype.as_deref(),
        Some("REFUND_TYPE_QUANTITY_BASED_PARTIAL_REFUND")
    );

    // AND then fully refunded: revoked whatever the API says, flagged as suspicious
    let full = h
        .event(
            "m-v-3",
            &voided_notification(
                "tok-v",
                "GPA.9999-0000-1111-22222",
                1,
                1,
                T0 + 5 * DAY + 1000,
            ),
        )
        .await;
    assert_eq!(
        ledger.apply(&full),
        vec![T::SubscriptionRefunded, T::AccessRevoked]
    );
    assert_eq!(status(&full), SubscriptionStatus::Revoked);
    assert!(!full.entitlement.active);
    let r = full.details.refund.as_ref().unwrap();
    assert_eq!(r.kind, Some(RefundKind::Full));
    assert_eq!(r.days_since_purchase, Some(5));
    assert_eq!(r.refunded_at.unwrap().millis(), T0 + 5 * DAY + 1000);
    assert_eq!(full.details.suspicious_refund, Some(true));
    assert_eq!(
        full.transaction.as_ref().unwrap().id,
        "GPA.9999-0000-1111-22222"
    );
    assert_eq!(
        full.subscription.as_ref().unwrap().id,
        buy.subscription.as_ref().unwrap().id
    );

    // AND a monthly plan's refund, or a renewal order's, is not suspicious
    h.sub("tok-m", &Sub::active().start(T0).expiry(T0 + 30 * DAY));
    let monthly = h
        .event(
            "m-v-4",
            &voided_notification("tok-m", "GPA.3301-2241-6549-81234", 1, 1, T0 + 5 * DAY),
        )
        .await;
    assert_eq!(monthly.details.suspicious_refund, Some(false));
    let renewal = h
        .event(
            "m-v-5",
            &voided_notification("tok-v", "GPA.9999-0000-1111-22222..0", 1, 1, T0 + 5 * DAY),
        )
        .await;
    assert_eq!(renewal.details.suspicious_refund, Some(false));
    assert_eq!(
        renewal.details.refund.as_ref().unwrap().days_since_purchase,
        None
    );
}

#[tokio::test]
async fn one_time_purchase_cancellation_and_refund() {
    use EventType as T;
    let h = harness().await;
    let mut ledger = Ledger::default();
    let order = "GPA.1234-5678-9012-34567";
    h.env.google.set_product(
        PACKAGE,
        "coins_100",
        "tok-otp",
        product_purchase(order, NOW - 5000, 0, false),
    );
    let buy = h
        .event(
            "m-otp-1",
            &one_time_notification(1, "tok-otp", "coins_100", NOW - 4000),
        )
        .await;
    assert_eq!(
        ledger.apply(&buy),
        vec![T::OneTimePurchase, T::AccessGranted]
    );
    assert!(buy.subscription.is_none());
    let p = buy.product.as_ref().unwrap();
    assert_eq!(
        (p.id.as_str(), &p.kind),
        ("coins_100", &ProductKind::NonConsumable)
    );
    let tx = buy.transaction.as_ref().unwrap();
    assert_eq!(tx.id, order);
    assert_eq!(tx.purchased_at.unwrap().millis(), NOW - 5000);
    assert_eq!(buy.app_user_id.as_deref(), Some("user-7"));
    assert_eq!(buy.environment, Environment::Production);
    assert_eq!(buy.store_notification.kind, "ONE_TIME_PRODUCT_PURCHASED");

    // a refund of it revokes access (same transaction group)
    let refund = h
        .event(
            "m-otp-2",
            &voided_notification("tok-otp", order, 2, 1, NOW - 1000),
        )
        .await;
    assert_eq!(refund.group_key(), buy.group_key());
    assert_eq!(
        ledger.apply(&refund),
        vec![T::OneTimePurchaseRefunded, T::AccessRevoked]
    );
    assert_eq!(
        refund.details.refund.as_ref().unwrap().kind,
        Some(RefundKind::Full)
    );
    assert_eq!(refund.details.suspicious_refund, Some(false));

    // a pending purchase canceled by the user (a license tester's)
    h.env.google.set_product(
        PACKAGE,
        "gem_pack",
        "tok-pend",
        product_purchase("GPA.7-7-7-7", NOW - 9000, 1, true),
    );
    let canceled = h
        .event(
            "m-otp-3",
            &one_time_notification(2, "tok-pend", "gem_pack", NOW - 8000),
        )
        .await;
    assert_eq!(canceled.kind, T::PurchasePendingCanceled);
    assert_eq!(
        canceled.store_notification.kind,
        "ONE_TIME_PRODUCT_CANCELED"
    );
    assert!(!canceled.entitlement.active);
    assert_eq!(canceled.environment, Environment::Sandbox);

    // unknown one-time types are kept
    let odd = h
        .event(
            "m-otp-4",
            &one_time_notification(9, "tok-otp", "coins_100", NOW - 500),
        )
        .await;
    assert_eq!(odd.kind, T::StoreNotification);
    assert_eq!(
        odd.store_notification.kind,
        "ONE_TIME_PRODUCT_NOTIFICATION_9"
    );
}

#[tokio::test]
async fn test_refund_review_and_unknown_notifications_need_no_api() {
    let h = harness().await;
    let t = h.event("m-test", &test_notification(NOW - 1000)).await;
    assert_eq!(t.kind, EventType::Test);
    assert_eq!(t.store_notification.kind, "TEST_NOTIFICATION");
    assert!(t.subscription.is_none() && t.transaction.is_none());

    let r = h
        .event(
            "m-review",
            &refund_review_notification("GPA.1-2-3-4", "user-9", NOW - 1000),
        )
        .await;
    assert_eq!(r.kind, EventType::RefundRequested);
    assert_eq!(r.app_user_id.as_deref(), Some("user-9"));
    assert_eq!(r.details.reason.as_deref(), Some("7"));
    assert_eq!(
        r.details.respond_by.unwrap().millis(),
        NOW - 1000 + 24 * 3_600_000
    );
    // a review is not a refund: nothing for the state to apply
    assert!(r.subscription.is_none() && r.transaction.is_none());

    let u = h
        .event("m-unknown", &json!({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1", "futureNotification": {}}))
        .await;
    assert_eq!(u.kind, EventType::StoreNotification);
    assert_eq!(u.store_notification.kind, "UNKNOWN_NOTIFICATION");
    assert_eq!(h.env.google.api_requests(), 0);
}

#[tokio::test]
async fn raw_payloads_are_included_when_configured() {
    let h = harness_with(&[("INCLUDE_RAW", "true")]).await;
    h.sub("tok-raw", &Sub::active().expiry(NOW + DAY));
    let e = h
        .event(
            "m-raw",
            &subscription_notification(2, "tok-raw", NOW - 1000),
        )
        .await;
    let raw = e.raw.as_ref().unwrap();
    assert_eq!(raw["developerNotification"]["packageName"], PACKAGE);
    assert_eq!(
        raw["subscriptionPurchase"]["kind"],
        "androidpublisher#subscriptionPurchaseV2"
    );
    assert_eq!(raw["message"]["messageId"], "m-raw");
}

// ---------------------------------------------------------------- ingest answers

#[tokio::test]
async fn refused_pushes_are_answered_with_status_and_code_and_queue_nothing() {
    let h = harness().await;
    let keys = TestKeys::shared();
    let now = h.env.now_secs();
    h.sub("tok-neg", &Sub::active().expiry(NOW + DAY));
    let body = || {
        push_body(
            "m-neg",
            &subscription_notification(2, "tok-neg", NOW - 1000),
            NOW,
        )
    };
    let claims = |f: &dyn Fn(&mut Value)| {
        let mut c = push_claims(AUDIENCE, PUSH_ACCOUNT, now);
        f(&mut c);
        c
    };
    let good = claims(&|_| {});
    let with = |token: &str| request_with_token(body(), Some(token), None);
    // a key Google never published, under a kid Google does not know
    let stranger = RsaTestKey::generate("g9");
    let cases: Vec<(&str, storehook_shared::ingest::StoreRequest, u16, &str)> = vec![
        (
            "missing",
            request_with_token(body(), None, None),
            401,
            "missing_token",
        ),
        ("not a JWT", with("abc"), 401, "malformed_token"),
        (
            "expired",
            with(&id_token(
                &keys.google,
                &claims(&|c| {
                    c["iat"] = json!(now - 7200);
                    c["exp"] = json!(now - 3600);
                }),
            )),
            401,
            "token_expired",
        ),
        (
            "issued in the future",
            with(&id_token(
                &keys.google,
                &claims(&|c| c["iat"] = json!(now + 600)),
            )),
            401,
            "invalid_issue_time",
        ),
        (
            "no exp",
            with(&id_token(
                &keys.google,
                &claims(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            )),
            401,
            "invalid_issue_time",
        ),
        (
            "wrong aud",
            with(&id_token(
                &keys.google,
                &claims(&|c| c["aud"] = json!("https://other.example.com/push")),
            )),
            401,
            "wrong_audience",
        ),
        (
            "wrong iss",
            with(&id_token(
                &keys.google,
                &claims(&|c| c["iss"] = json!("https://evil.example.com")),
            )),
            401,
            "wrong_issuer",
        ),
        (
            "wrong email",
            with(&id_token(
                &keys.google,
                &claims(&|c| c["email"] = json!("someone@evil.iam.gserviceaccount.com")),
            )),
            403,
            "wrong_service_account",
        ),
        (
            "email not verified",
            with(&id_token(
                &keys.google,
                &claims(&|c| c["email_verified"] = json!(false)),
            )),
            403,
            "email_not_verified",
        ),
        (
            "unsigned (alg none)",
            with(&unsigned_token("g1", &good)),
            401,
            "unsupported_algorithm",
        ),
        (
            "HS256 keyed with the public key",
            with(&hs256_token(
                keys.google.public_pem().as_bytes(),
                "g1",
                &good,
            )),
            401,
            "unsupported_algorithm",
        ),
        (
            "RS256 header, HMAC signature",
            with(&{
                let hs = hs256_token(keys.google.public_pem().as_bytes(), "g1", &good);
                let (_, rest) = hs.split_once('.').unwrap();
                let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(json!({"alg": "RS256", "kid": "g1"}).to_string());
                format!("{h}.{rest}")
            }),
            401,
            "invalid_signature",
        ),
        (
            "unknown kid",
            with(&id_token(&stranger, &good)),
            401,
            "unknown_key",
        ),
        (
            "forged with kid g1",
            with(&id_token(&keys.forger, &good)),
            401,
            "invalid_signature",
        ),
        (
            "wrong package",
            h.env.request(push_body(
                "m-neg",
                &{
                    let mut n = subscription_notification(2, "tok-neg", NOW - 1000);
                    n["packageName"] = json!("com.other.app");
                    n
                },
                NOW,
            )),
            403,
            "wrong_app",
        ),
        (
            "body not JSON",
            h.env.request(b"{".to_vec()),
            400,
            "malformed_body",
        ),
        (
            "not a push",
            h.env.request(br#"{"hello":"world"}"#.to_vec()),
            400,
            "malformed_body",
        ),
        (
            "no messageId",
            h.env
                .request(br#"{"message":{"data":"e30="},"subscription":"s"}"#.to_vec()),
            400,
            "malformed_body",
        ),
        (
            "malformed base64 without authentication",
            request_with_token(push_body_raw("m-neg", "%%%not-base64%%%", NOW), None, None),
            401,
            "missing_token",
        ),
        (
            "malformed JSON data without authentication",
            request_with_token(
                push_body_raw(
                    "m-neg",
                    &base64::engine::general_purpose::STANDARD.encode("{nope"),
                    NOW,
                ),
                Some(&id_token(&keys.forger, &good)),
                None,
            ),
            401,
            "invalid_signature",
        ),
    ];
    for (name, req, status, code) in cases {
        let resp = h.ingest.handle(req).await;
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        let v: Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(v["error"]["code"], code, "{name}");
        assert!(
            !resp.body.contains("tok-neg"),
            "{name}: a purchase token in an answer"
        );
    }
    assert!(h.queue.sent().is_empty(), "a refused push was queued");
    assert_eq!(
        h.env.google.api_requests(),
        0,
        "a refused push reached the Play API"
    );
    // the same push, properly authenticated, goes through
    assert_eq!(h.ingest.handle(h.env.request(body())).await.status, 200);
}

#[tokio::test]
async fn small_clock_skew_is_tolerated() {
    let h = harness().await;
    let now = h.env.now_secs();
    let keys = TestKeys::shared();
    let mut c = push_claims(AUDIENCE, PUSH_ACCOUNT, now);
    c["exp"] = json!(now - 30);
    c["iat"] = json!(now + 30);
    c["iss"] = json!("accounts.google.com");
    let req = request_with_token(
        push_body("m-skew", &test_notification(NOW), NOW),
        Some(&id_token(&keys.google, &c)),
        None,
    );
    assert_eq!(h.ingest.handle(req).await.status, 200);
}

#[tokio::test]
async fn authentic_pushes_with_undecodable_data_are_forwarded_not_dropped() {
    let h = harness().await;
    let cases = [
        ("m-bad-1", "%%%not-base64%%%".to_owned(), "not base64"),
        (
            "m-bad-2",
            base64::engine::general_purpose::STANDARD.encode("{not json"),
            "not JSON",
        ),
        (
            "m-bad-3",
            base64::engine::general_purpose::STANDARD
                .encode(r#"{"version":"1.0","eventTimeMillis":"5"}"#),
            "missing field `packageName`",
        ),
        ("m-bad-4", String::new(), "missing or empty"),
    ];
    for (id, data, why) in cases {
        let resp = h
            .ingest
            .handle(h.env.request(push_body_raw(id, &data, NOW - 3000)))
            .await;
        assert_eq!(resp.status, 200, "{id}: {}", resp.body);
        let e: Event = serde_json::from_str(&h.queue.sent().last().unwrap().body).unwrap();
        assert_eq!(e.kind, EventType::StoreNotification);
        assert_eq!(e.store_notification.kind, "UNDECODABLE_NOTIFICATION");
        assert_eq!(e.store_notification.id, id);
        assert!(
            e.details.error.as_deref().unwrap().contains(why),
            "{id}: {:?}",
            e.details.error
        );
        assert_eq!(e.app_id, PACKAGE, "the one configured package");
        assert_eq!(
            e.occurred_at.millis(),
            NOW - 3000,
            "publishTime when eventTimeMillis is unknown"
        );
    }
    // URL-safe base64 is accepted too
    let n = test_notification(NOW);
    let data = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_string());
    assert_eq!(
        h.ingest
            .handle(h.env.request(push_body_raw("m-urlsafe", &data, NOW)))
            .await
            .status,
        200
    );
    let e: Event = serde_json::from_str(&h.queue.sent().last().unwrap().body).unwrap();
    assert_eq!(e.kind, EventType::Test);
}

#[tokio::test]
async fn message_data_with_a_repeated_key_is_refused() {
    let h = harness().await;
    let n = test_notification(NOW).to_string();
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cases = [
        (
            "m-dup-1",
            n.replacen('{', r#"{"packageName":"com.other.app","#, 1),
        ),
        (
            "m-dup-2",
            n.replacen('{', r#"{"testNotification":{"version":"1.0"},"#, 1),
        ),
        (
            "m-dup-3",
            n.replacen(
                r#""testNotification":{"#,
                r#""testNotification":{"version":"2.0","#,
                1,
            ),
        ),
        ("m-dup-4", n.replacen('{', r#"{"package\u004eame":"x","#, 1)),
    ];
    for (id, doc) in cases {
        assert_ne!(doc, n, "{id}: the case must change the document");
        // GIVEN an authentic push whose data repeats a key
        let resp = h
            .ingest
            .handle(h.env.request(push_body_raw(id, &enc(&doc), NOW)))
            .await;
        // THEN it is refused, nothing queued
        assert_eq!(resp.status, 400, "{id}: {}", resp.body);
        let v: Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(v["error"]["code"], "malformed_notification", "{id}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("duplicate object key"),
            "{id}: {}",
            resp.body
        );
    }
    assert!(h.queue.sent().is_empty());
    // the push body itself is read strictly too
    let body = String::from_utf8(push_body_raw("m-dup-outer", &enc(&n), NOW)).unwrap();
    let dup = body.replacen('{', r#"{"subscription":"projects/x/subscriptions/y","#, 1);
    let resp = h.ingest.handle(h.env.request(dup.into_bytes())).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.body.contains("malformed_body"), "{}", resp.body);
    assert!(h.queue.sent().is_empty());
    // control: the same data without a repeat is accepted
    let resp = h
        .ingest
        .handle(h.env.request(push_body_raw("m-ok", &enc(&n), NOW)))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[tokio::test]
async fn play_api_failures_are_503_and_the_redelivery_dedupes() {
    let h = harness().await;
    h.sub("tok-503", &Sub::active().expiry(NOW + DAY));
    let n = subscription_notification(2, "tok-503", NOW - 1000);
    for status in [500, 503, 429, 403, 401] {
        h.env.google.set_api_failure(Some(status));
        let resp = h.send("m-503", &n).await;
        assert_eq!(resp.status, 503, "API {status}: {}", resp.body);
        assert!(resp.body.contains("play_api_unavailable"));
        assert!(!resp.body.contains("tok-503"));
    }
    h.env.google.set_api_failure(None);
    h.env.google.set_token_failure(Some(500));
    h.env.google.revoke_access_tokens();
    let resp = h.send("m-503", &n).await;
    assert_eq!(
        (resp.status, resp.body.contains("OAuth")),
        (503, true),
        "{}",
        resp.body
    );
    assert!(h.queue.sent().is_empty());

    // WHEN Google is back, Pub/Sub's redelivery goes through; a second one has the same ids
    h.env.google.set_token_failure(None);
    let a = h.event("m-503", &n).await;
    let b = h.event("m-503", &n).await;
    assert_eq!(a.id, b.id);
    assert_eq!(
        a.id,
        storehook_shared::event::EventId::derive(&["GOOGLE_PLAY", "m-503"])
    );
    assert_eq!(
        a.subscription.as_ref().unwrap().id,
        b.subscription.as_ref().unwrap().id
    );
}

#[tokio::test]
async fn purchases_unknown_to_google_are_forwarded_with_the_reason() {
    let h = harness().await;
    let e = h
        .event(
            "m-404",
            &subscription_notification(2, "tok-missing", NOW - 1000),
        )
        .await;
    assert_eq!(e.kind, EventType::StoreNotification);
    assert_eq!(e.store_notification.kind, "SUBSCRIPTION_RENEWED");
    let err = e.details.error.as_deref().unwrap();
    assert!(
        err.contains("404") && err.contains("NOT_FOUND/purchaseTokenNotFound"),
        "{err}"
    );
    assert!(!err.contains("tok-missing"));
    assert!(e.subscription.is_none());
    // a void Google no longer knows is still a refund
    let v = h
        .event(
            "m-404v",
            &voided_notification("tok-missing", "GPA.4-4-4-4", 1, 1, NOW - 1000),
        )
        .await;
    assert_eq!(v.kind, EventType::SubscriptionRefunded);
    assert!(v.details.error.is_some());
    assert_eq!(v.transaction.as_ref().unwrap().id, "GPA.4-4-4-4");
}

#[derive(Debug)]
struct BrokenLinks;

#[async_trait]
impl LinkStore for BrokenLinks {
    async fn resolve(
        &self,
        _: &PurchaseToken,
    ) -> Result<Option<storehook_shared::stores::playstore::links::Lineage>, LinkError> {
        Err(LinkError("throttled".into()))
    }
    async fn link(
        &self,
        _: &PurchaseToken,
        _: &storehook_shared::stores::playstore::links::Lineage,
    ) -> Result<storehook_shared::stores::playstore::links::Lineage, LinkError> {
        Err(LinkError("throttled".into()))
    }
}

#[tokio::test]
async fn a_link_store_failure_is_a_503() {
    let env = PlayTestEnv::start().await;
    env.google
        .set_subscription(PACKAGE, "tok-l", Sub::active().expiry(NOW + DAY).json());
    let endpoint =
        PlayStoreEndpoint::new(env.config.clone(), Arc::new(BrokenLinks), env.clock.clone())
            .unwrap();
    let req = env.request(push_body(
        "m-l",
        &subscription_notification(2, "tok-l", NOW),
        NOW,
    ));
    let err = endpoint.process(&req, NOW).await.unwrap_err().rejection();
    assert_eq!((err.status, err.code), (503, "link_store_unavailable"));
}

// ---------------------------------------------------------------- caches

#[tokio::test]
async fn the_jwks_is_cached_refreshed_on_ttl_and_once_on_an_unknown_kid() {
    let h = harness().await;
    h.env.google.set_jwks_max_age(Some(600));
    let keys = TestKeys::shared();
    let ok = |token: String| {
        request_with_token(
            push_body("m-j", &test_notification(NOW), NOW),
            Some(&token),
            None,
        )
    };
    let valid =
        |key: &RsaTestKey| id_token(key, &push_claims(AUDIENCE, PUSH_ACCOUNT, h.env.now_secs()));
    for _ in 0..5 {
        assert_eq!(h.ingest.handle(ok(valid(&keys.google))).await.status, 200);
    }
    assert_eq!(h.env.google.jwks_fetches(), 1, "cached across requests");

    // Google rotates: g2 is published and used. Within MIN_REFETCH of the last fetch: refused, no fetch.
    h.env.google.set_jwks(&[&keys.google, &keys.google_next]);
    assert_eq!(
        h.ingest.handle(ok(valid(&keys.google_next))).await.status,
        401
    );
    assert_eq!(h.env.google.jwks_fetches(), 1);
    // later: one refetch finds it, and later requests use the cache
    h.env
        .clock
        .advance(chrono::Duration::seconds(MIN_REFETCH_SECS + 1));
    assert_eq!(
        h.ingest.handle(ok(valid(&keys.google_next))).await.status,
        200
    );
    assert_eq!(
        h.ingest.handle(ok(valid(&keys.google_next))).await.status,
        200
    );
    assert_eq!(h.env.google.jwks_fetches(), 2);
    // an unknown kid triggers at most one refetch
    h.env
        .clock
        .advance(chrono::Duration::seconds(MIN_REFETCH_SECS + 1));
    let stranger = RsaTestKey::generate("g7");
    assert_eq!(h.ingest.handle(ok(valid(&stranger))).await.status, 401);
    assert_eq!(h.ingest.handle(ok(valid(&stranger))).await.status, 401);
    assert_eq!(h.env.google.jwks_fetches(), 3);

    // TTL (max-age=600) expiry refetches
    h.env.clock.advance(chrono::Duration::seconds(601));
    assert_eq!(h.ingest.handle(ok(valid(&keys.google))).await.status, 200);
    assert_eq!(h.env.google.jwks_fetches(), 4);

    // Google's JWKS down: the stale keys keep working within the grace period
    h.env.google.set_jwks_status(500);
    h.env.clock.advance(chrono::Duration::seconds(601));
    assert_eq!(h.ingest.handle(ok(valid(&keys.google))).await.status, 200);
    assert_eq!(h.env.google.jwks_fetches(), 5);
}

#[tokio::test]
async fn a_cold_jwks_outage_is_a_503() {
    let h = harness().await;
    h.env.google.set_jwks_status(503);
    let resp = h
        .ingest
        .handle(
            h.env
                .request(push_body("m-cold", &test_notification(NOW), NOW)),
        )
        .await;
    assert_eq!(resp.status, 503);
    assert!(resp.body.contains("jwks_unavailable"));
    assert!(h.queue.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_fetch_the_jwks_once() {
    let env = PlayTestEnv::start().await;
    env.google
        .set_jwks_delay(std::time::Duration::from_millis(300));
    let endpoint = Arc::new(env.endpoint());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let endpoint = endpoint.clone();
        let req = env.request(push_body(&format!("m-c{i}"), &test_notification(NOW), NOW));
        tasks.spawn(async move { endpoint.process(&req, NOW).await.map(|e| e.len()) });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), 1);
    }
    assert_eq!(env.google.jwks_fetches(), 1);
    assert_eq!(endpoint.authenticator().jwks().fetches(), 1);
}

#[tokio::test]
async fn the_access_token_is_cached_renewed_before_expiry_and_replaced_when_revoked() {
    let h = harness().await;
    for i in 0..3 {
        h.sub("tok-at", &Sub::active().expiry(NOW + 10 * DAY));
        h.event(
            &format!("m-at-{i}"),
            &subscription_notification(2, "tok-at", NOW),
        )
        .await;
    }
    assert_eq!(h.env.google.token_requests(), 1);
    assert!(
        h.env.google.assertion_errors().is_empty(),
        "{:?}",
        h.env.google.assertion_errors()
    );
    // shortly before expiry (3599 s - 300 s margin) a new one is fetched
    h.env.clock.advance(chrono::Duration::seconds(3300));
    h.event("m-at-4", &subscription_notification(2, "tok-at", NOW))
        .await;
    assert_eq!(h.env.google.token_requests(), 2);
    // a token Google revoked gets one retry with a new one
    h.env.google.revoke_access_tokens();
    h.event("m-at-5", &subscription_notification(2, "tok-at", NOW))
        .await;
    assert_eq!(h.env.google.token_requests(), 3);
    assert_eq!(h.env.google.api_unauthorized(), 1);
    assert_eq!(h.endpoint.api().unwrap().token_fetches(), 3);
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_key_that_is_not_the_service_accounts() {
    // GIVEN a key file whose key the fake does not know for this account
    let keys = TestKeys::shared();
    let wrong = service_account_json(API_ACCOUNT, &keys.google, "http://127.0.0.1:9/unused");
    let h = harness_with(&[("PLAY_SERVICE_ACCOUNT_JSON", &wrong)]).await;
    h.sub("tok-k", &Sub::active().expiry(NOW + DAY));
    let resp = h
        .send("m-k", &subscription_notification(2, "tok-k", NOW))
        .await;
    assert_eq!(resp.status, 503);
    assert!(resp.body.contains("invalid_grant"), "{}", resp.body);
    assert!(!h.env.google.assertion_errors().is_empty());
}

// ---------------------------------------------------------------- URL token mode, Lambda, config

#[tokio::test]
async fn the_url_token_mode_authenticates_pushes_without_oidc() {
    let secret = "0123456789abcdef-push-secret";
    let h = harness_with(&[
        ("PLAY_PUSH_AUDIENCE", ""),
        ("PLAY_PUSH_SERVICE_ACCOUNT", ""),
        ("PLAY_PUSH_TOKEN", secret),
    ])
    .await;
    let body = || push_body("m-q", &test_notification(NOW), NOW);
    let ok = request_with_token(body(), None, Some(&format!("token={secret}")));
    assert_eq!(h.ingest.handle(ok).await.status, 200);
    for (query, code) in [
        (None, "missing_push_token"),
        (
            Some("token=0123456789abcdef-push-secreT"),
            "invalid_push_token",
        ),
        (Some("token="), "invalid_push_token"),
    ] {
        let resp = h
            .ingest
            .handle(request_with_token(body(), None, query))
            .await;
        assert_eq!(resp.status, 401);
        assert!(resp.body.contains(code), "{}", resp.body);
        assert!(!resp.body.contains("secret"));
    }
    assert_eq!(h.queue.sent().len(), 1);
}

#[tokio::test]
async fn with_both_mechanisms_configured_both_must_pass() {
    let secret = "0123456789abcdef-push-secret";
    let h = harness_with(&[("PLAY_PUSH_TOKEN", secret)]).await;
    let body = || push_body("m-b", &test_notification(NOW), NOW);
    let token = h.env.push_token();
    let query = format!("token={secret}");
    assert_eq!(
        h.ingest
            .handle(request_with_token(body(), Some(&token), Some(&query)))
            .await
            .status,
        200
    );
    assert_eq!(
        h.ingest
            .handle(request_with_token(body(), None, Some(&query)))
            .await
            .status,
        401
    );
    assert_eq!(
        h.ingest
            .handle(request_with_token(body(), Some(&token), None))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn the_lambda_entry_point_takes_an_api_gateway_v2_push() {
    let secret = "0123456789abcdef-push-secret";
    let h = harness_with(&[("PLAY_PUSH_TOKEN", secret)]).await;
    let body = String::from_utf8(push_body("m-lambda", &test_notification(NOW), NOW)).unwrap();
    let event = json!({
        "version": "2.0", "routeKey": "POST /playstore", "rawPath": "/playstore", "rawQueryString": format!("token={secret}"),
        "headers": {"content-type": "application/json", "authorization": format!("Bearer {}", h.env.push_token()),
            "user-agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"},
        "queryStringParameters": {"token": secret},
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "x.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "x", "http": {"method": "POST", "path": "/playstore", "protocol": "HTTP/1.1", "sourceIp": "66.102.6.1", "userAgent": "APIs-Google"},
            "requestId": "r", "routeKey": "POST /playstore", "stage": "$default", "time": "12/Mar/2025:19:03:58 +0000", "timeEpoch": 1741806238000i64},
        "body": body, "isBase64Encoded": false
    });
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    let resp = h.ingest.lambda(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.queue.sent().len(), 1);
}

fn map(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

#[tokio::test]
async fn the_lambda_refuses_to_start_without_app_authentication_or_api_key() {
    let env = PlayTestEnv::start().await;
    let key = env
        .env_vars()
        .into_iter()
        .find(|(k, _)| k == "PLAY_SERVICE_ACCOUNT_JSON")
        .unwrap()
        .1;
    let full = |extra: &[(&str, &str)]| {
        let mut v = vec![
            ("PLAY_PACKAGE_NAMES", "com.a, com.b"),
            ("PLAY_PUSH_AUDIENCE", AUDIENCE),
            ("PLAY_PUSH_SERVICE_ACCOUNT", PUSH_ACCOUNT),
            ("PLAY_SERVICE_ACCOUNT_JSON", key.as_str()),
        ];
        for (k, val) in extra {
            v.retain(|(n, _)| n != k);
            v.push((*k, *val));
        }
        playstore_config(&map(&v), true)
    };
    let c = full(&[]).unwrap();
    assert_eq!(c.package_names, vec!["com.a", "com.b"]);
    assert_eq!(c.jwks_url, DEFAULT_JWKS_URL);
    assert_eq!(c.api_base_url, api::DEFAULT_API_BASE_URL);
    assert!(c.oauth_token_url.is_none());
    assert!(
        !format!("{c:?}").contains("PRIVATE KEY"),
        "the key is redacted in Debug"
    );
    for (extra, want) in [
        (
            vec![("PLAY_PACKAGE_NAMES", "")],
            "PLAY_PACKAGE_NAMES must be set",
        ),
        (
            vec![("PLAY_PACKAGE_NAMES", "com.a;drop")],
            "not an Android package name",
        ),
        (
            vec![
                ("PLAY_PUSH_AUDIENCE", ""),
                ("PLAY_PUSH_SERVICE_ACCOUNT", ""),
            ],
            "push authentication must be configured",
        ),
        (
            vec![("PLAY_PUSH_SERVICE_ACCOUNT", "")],
            "PLAY_PUSH_SERVICE_ACCOUNT must be set",
        ),
        (
            vec![("PLAY_PUSH_AUDIENCE", "")],
            "PLAY_PUSH_AUDIENCE must be set",
        ),
        (vec![("PLAY_PUSH_TOKEN", "short")], "at least 16"),
        (
            vec![("PLAY_SERVICE_ACCOUNT_JSON", "")],
            "PLAY_SERVICE_ACCOUNT_JSON must be set",
        ),
        (
            vec![(
                "PLAY_SERVICE_ACCOUNT_JSON",
                "{\"type\":\"service_account\"}",
            )],
            "no client_email",
        ),
        (vec![("PLAY_JWKS_URL", "ftp://x")], "PLAY_JWKS_URL"),
        (
            vec![("PLAY_API_BASE_URL", "not a url")],
            "PLAY_API_BASE_URL",
        ),
        (vec![("INCLUDE_RAW", "maybe")], "INCLUDE_RAW"),
    ] {
        let err = full(&extra).unwrap_err();
        assert!(err.to_string().contains(want), "{extra:?}: {err}");
    }
    // URL-token only is a valid production setup
    let t = full(&[
        ("PLAY_PUSH_AUDIENCE", ""),
        ("PLAY_PUSH_SERVICE_ACCOUNT", ""),
        ("PLAY_PUSH_TOKEN", "0123456789abcdef"),
    ])
    .unwrap();
    assert!(t.push_auth.oidc.is_none() && t.push_auth.query_token.is_some());
    assert!(!format!("{t:?}").contains("0123456789abcdef"));
    // the CLI may check nothing
    let open = playstore_config(&map(&[]), false).unwrap();
    assert!(
        open.package_names.is_empty() && open.push_auth.is_open() && open.service_account.is_none()
    );
}

#[tokio::test]
async fn without_a_service_account_api_notifications_are_503_and_others_pass() {
    let env = PlayTestEnv::start().await;
    let config = PlayStoreConfig {
        service_account: None,
        ..env.config.clone()
    };
    let clock = Arc::new(ManualClock::new(env.clock.now()));
    let endpoint = PlayStoreEndpoint::new(config, env.links.clone(), clock).unwrap();
    let sub = env.request(push_body(
        "m-n1",
        &subscription_notification(2, "tok-n", NOW),
        NOW,
    ));
    let err = endpoint.process(&sub, NOW).await.unwrap_err().rejection();
    assert_eq!((err.status, err.code), (503, "play_api_not_configured"));
    let test = env.request(push_body("m-n2", &test_notification(NOW), NOW));
    assert_eq!(
        endpoint.process(&test, NOW).await.unwrap()[0].kind,
        EventType::Test
    );
}

#[tokio::test]
async fn nothing_secret_shows_in_debug_output() {
    let h = harness_with(&[("PLAY_PUSH_TOKEN", "0123456789abcdef-push-secret")]).await;
    let d = format!("{:?} {:?}", h.endpoint, h.env.config);
    assert!(
        !d.contains("PRIVATE KEY") && !d.contains("push-secret"),
        "{d}"
    );
    h.sub("tok-dbg", &Sub::active().expiry(NOW + DAY));
    let push = h
        .endpoint
        .decode(&push_body(
            "m-dbg",
            &subscription_notification(2, "tok-dbg", NOW),
            NOW,
        ))
        .unwrap();
    assert!(!format!("{push:?}").contains("tok-dbg"));
}

#[tokio::test]
async fn the_sample_lambda_events_are_accepted() {
    // GIVEN the sample events of events/ and an endpoint configured as their notes say
    let h = harness_with(&[
        ("PLAY_PUSH_AUDIENCE", ""),
        ("PLAY_PUSH_SERVICE_ACCOUNT", ""),
        ("PLAY_PUSH_TOKEN", "local-push-token-change-me"),
        (
            "PLAY_PACKAGE_NAMES",
            "com.prometheuspoker.battle,com.edufox,com.billionfaces.casttree,com.anonymous.ipush",
        ),
    ])
    .await;
    let dir = format!("{}/../events", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("playstore-") && n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for name in names {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        // the API answers for every token of the samples
        let v: Value = serde_json::from_str(&text).unwrap();
        let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        let push = h.endpoint.decode(body.to_string().as_bytes()).unwrap();
        let n = push.notification.unwrap().notification;
        let token = n
            .subscription_notification
            .map(|s| s.purchase_token)
            .or(n.voided_purchase_notification.map(|v| v.purchase_token));
        if let Some(t) = token {
            h.env.google.set_subscription(
                &n.package_name,
                t.as_str(),
                Sub::active().expiry(NOW + DAY).json(),
            );
        }
        // WHEN invoked as the Lambda would be
        let req = lambda_http::request::from_str(&text).unwrap();
        let resp = h.ingest.lambda(req).await.unwrap();
        // THEN it is accepted
        assert_eq!(resp.status(), 200, "{name}");
    }
    assert_eq!(h.queue.sent().len(), 4);
}

// ---------------------------------------------------------------- outbound calls (issue 9 §5)

#[tokio::test]
async fn a_failing_jwks_is_asked_at_most_once_per_30_s() {
    // GIVEN Google's JWKS failing from the first request on
    let h = harness().await;
    h.env.google.set_jwks_status(503);
    // WHEN 200 pushes arrive within the same second
    for i in 0..200 {
        let resp = h
            .ingest
            .handle(
                h.env
                    .request(push_body(&format!("m-f{i}"), &test_notification(NOW), NOW)),
            )
            .await;
        // THEN each is a 503 (Pub/Sub redelivers) …
        assert_eq!(resp.status, 503, "{}", resp.body);
        assert!(resp.body.contains("jwks_unavailable"), "{}", resp.body);
    }
    // … and Google was asked once
    assert_eq!(h.env.google.jwks_fetches(), 1);
    assert!(h.queue.sent().is_empty());
    // still within 30 s: no new fetch
    h.env
        .clock
        .advance(chrono::Duration::seconds(MIN_REFETCH_SECS - 1));
    let again = |id: &str| h.env.request(push_body(id, &test_notification(NOW), NOW));
    assert_eq!(h.ingest.handle(again("m-f-a")).await.status, 503);
    assert_eq!(h.env.google.jwks_fetches(), 1);
    // 30 s after the failure: one new fetch, which fails again and is remembered again
    h.env.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(h.ingest.handle(again("m-f-b")).await.status, 503);
    assert_eq!(h.ingest.handle(again("m-f-c")).await.status, 503);
    assert_eq!(h.env.google.jwks_fetches(), 2);
    // Google recovers: the next fetch (30 s later) succeeds and the failure is forgotten
    h.env.google.set_jwks_status(200);
    h.env
        .clock
        .advance(chrono::Duration::seconds(MIN_REFETCH_SECS));
    assert_eq!(h.ingest.handle(again("m-f-d")).await.status, 200);
    assert_eq!(h.ingest.handle(again("m-f-e")).await.status, 200);
    assert_eq!(h.env.google.jwks_fetches(), 3);
}

#[tokio::test]
async fn a_failing_jwks_refresh_with_stale_keys_is_not_retried_per_request() {
    // GIVEN cached keys past their TTL and Google's JWKS failing
    let h = harness().await;
    h.env.google.set_jwks_max_age(Some(60));
    let send = |id: &str| h.env.request(push_body(id, &test_notification(NOW), NOW));
    assert_eq!(h.ingest.handle(send("m-s0")).await.status, 200);
    h.env.google.set_jwks_status(500);
    h.env.clock.advance(chrono::Duration::seconds(61));
    // WHEN 50 pushes arrive: the stale keys serve them, Google is asked once
    for i in 0..50 {
        assert_eq!(
            h.ingest.handle(send(&format!("m-s{}", i + 1))).await.status,
            200
        );
    }
    assert_eq!(h.env.google.jwks_fetches(), 2);
}

/// A Play endpoint whose JWKS / androidpublisher base point at `server`.
async fn endpoint_against(
    env: &PlayTestEnv,
    jwks_url: Option<String>,
    api_base: Option<String>,
) -> PlayStoreEndpoint {
    let mut config = env.config.clone();
    if let Some(u) = jwks_url {
        config.jwks_url = u;
    }
    if let Some(u) = api_base {
        config.api_base_url = u;
    }
    PlayStoreEndpoint::new(config, env.links.clone(), env.clock.clone()).unwrap()
}

#[tokio::test]
async fn redirects_from_google_are_not_followed() {
    use storehook_testkit::loopback::{Server, response};
    let env = PlayTestEnv::start().await;
    // another loopback server, where the redirects point
    let elsewhere = Server::start(|_| Some(response(200, &[], "{}"))).await;
    let location = format!("{}/elsewhere", elsewhere.url);
    let redirector =
        Server::start(move |_| Some(response(302, &[("location", location.as_str())], ""))).await;

    // the JWKS answers 302: not followed, 503 jwks_unavailable
    let e = endpoint_against(&env, Some(format!("{}/certs", redirector.url)), None).await;
    let req = env.request(push_body("m-r1", &test_notification(NOW), NOW));
    let err = e.process(&req, NOW).await.unwrap_err();
    let r = err.rejection();
    assert_eq!((r.status, r.code), (503, "jwks_unavailable"));
    assert!(r.message.contains("302"), "{}", r.message);

    // androidpublisher answers 302: not followed, 503 play_api_unavailable
    let e = endpoint_against(&env, None, Some(redirector.url.clone())).await;
    let req = env.request(push_body(
        "m-r2",
        &subscription_notification(2, "tok-redirect", NOW),
        NOW,
    ));
    let err = e.process(&req, NOW).await.unwrap_err();
    let r = err.rejection();
    assert_eq!((r.status, r.code), (503, "play_api_unavailable"));
    assert!(r.message.contains("302"), "{}", r.message);
    assert!(!r.message.contains("tok-redirect"), "{}", r.message);
    assert_eq!(redirector.seen().len(), 2);
    assert!(elsewhere.seen().is_empty(), "a redirect was followed");
}

#[tokio::test]
async fn identifiers_are_encoded_as_exactly_one_path_segment() {
    use storehook_testkit::loopback::{Server, response};
    let env = PlayTestEnv::start().await;
    let api = Server::start(|_| {
        Some(response(
            404,
            &[],
            r#"{"error":{"status":"NOT_FOUND","errors":[{"reason":"purchaseTokenNotFound"}]}}"#,
        ))
    })
    .await;
    let e = endpoint_against(&env, None, Some(format!("{}/prefix/", api.url))).await;
    // a token and a product id with characters that are special in a URL
    let token = "a b?c#d%2e..%2F;x=1&é";
    let sku = "pro.monthly+1 ~x";
    let req = env.request(push_body(
        "m-p1",
        &one_time_notification(1, token, sku, NOW),
        NOW,
    ));
    e.process(&req, NOW).await.unwrap();
    let req = env.request(push_body(
        "m-p2",
        &subscription_notification(2, "..x", NOW),
        NOW,
    ));
    e.process(&req, NOW).await.unwrap();
    let targets: Vec<String> = api.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        vec![
            "/prefix/androidpublisher/v3/applications/com.example.app/purchases/products/\
             pro.monthly%2B1%20~x/tokens/a%20b%3Fc%23d%252e..%252F%3Bx%3D1%26%C3%A9"
                .to_owned(),
            "/prefix/androidpublisher/v3/applications/com.example.app/purchases/subscriptionsv2/\
             tokens/..x"
                .to_owned(),
        ]
    );
}

#[tokio::test]
async fn dot_segments_and_slashes_are_refused_before_any_api_call() {
    let h = harness().await;
    let calls = || (h.env.google.api_requests(), h.env.google.token_requests());
    for (i, bad) in ["..", ".", "", "a/b", "/", "../../x"].iter().enumerate() {
        for (j, n) in [
            subscription_notification(2, bad, NOW),
            one_time_notification(1, bad, "pro.lifetime", NOW),
            one_time_notification(1, "tok-ok", bad, NOW),
            voided_notification(bad, "GPA.1", 1, 1, NOW),
        ]
        .iter()
        .enumerate()
        {
            let resp = h.send(&format!("m-bad-{i}-{j}"), n).await;
            assert_eq!(resp.status, 400, "{bad:?} #{j}: {}", resp.body);
            let v: Value = serde_json::from_str(&resp.body).unwrap();
            assert_eq!(v["error"]["code"], "malformed_notification", "{bad:?} #{j}");
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains("purchaseToken") || msg.contains("sku"),
                "{msg}"
            );
        }
    }
    assert_eq!(calls(), (0, 0), "an API call was made");
    assert!(h.queue.sent().is_empty());
}

#[tokio::test]
async fn a_repeated_key_in_a_play_api_answer_is_a_503() {
    use storehook_testkit::loopback::{Server, response};
    let env = PlayTestEnv::start().await;
    // subscriptionsv2 answers with subscriptionState twice
    let dup = Sub::active().json().to_string().replacen(
        "{",
        r#"{"subscriptionState":"SUBSCRIPTION_STATE_EXPIRED","#,
        1,
    );
    assert!(storehook_shared::json::check_unique_keys(dup.as_bytes()).is_err());
    let api = Server::start(move |_| Some(response(200, &[], &dup))).await;
    let e = endpoint_against(&env, None, Some(api.url.clone())).await;
    let req = env.request(push_body(
        "m-d1",
        &subscription_notification(2, "tok-dup", NOW),
        NOW,
    ));
    let r = e.process(&req, NOW).await.unwrap_err().rejection();
    assert_eq!((r.status, r.code), (503, "play_api_unavailable"));
    assert!(r.message.contains("repeated"), "{}", r.message);

    // the JWKS repeats "keys": 503 jwks_unavailable
    let jwks = Server::start(|_| Some(response(200, &[], r#"{"keys":[],"keys":[]}"#))).await;
    let e = endpoint_against(&env, Some(jwks.url.clone()), None).await;
    let req = env.request(push_body("m-d2", &test_notification(NOW), NOW));
    let r = e.process(&req, NOW).await.unwrap_err().rejection();
    assert_eq!((r.status, r.code), (503, "jwks_unavailable"));
    assert!(r.message.contains("repeats"), "{}", r.message);
}

// ---------------------------------------------------------------- voided purchases backfill

fn voided(token: &str, order: &str, voided_ms: i64, reason: i64) -> Value {
    json!({
        "kind": "androidpublisher#voidedPurchase",
        "purchaseToken": token,
        "orderId": order,
        "purchaseTimeMillis": (voided_ms - 3 * DAY).to_string(),
        "voidedTimeMillis": voided_ms.to_string(),
        "voidedSource": 0,
        "voidedReason": reason,
    })
}

fn ts(ms: i64) -> storehook_shared::event::Timestamp {
    storehook_shared::event::Timestamp::from_millis(ms).unwrap()
}

#[tokio::test]
async fn the_voided_backfill_pages_through_google_and_translates_each_void() {
    // GIVEN Google listing five voids on pages of two: a subscription whose
    // lineage storehook never saw (tok-v2 upgraded from tok-v1), a plain
    // subscription, a one-time product, one void outside the window and one
    // without an order id
    let h = harness().await;
    let g = &h.env.google;
    g.set_voided_page_size(Some(2));
    h.sub(
        "tok-v1",
        &Sub::active()
            .start(T0)
            .expiry(NOW - 5 * DAY)
            .state("EXPIRED")
            .auto_renew(false)
            .canceled("replacement"),
    );
    h.sub(
        "tok-v2",
        &Sub::active()
            .start(T0 + 10 * DAY)
            .expiry(NOW + 20 * DAY)
            .linked("tok-v1")
            .order("GPA.2222-0000-0000-00000"),
    );
    h.sub(
        "tok-s",
        &Sub::active()
            .start(NOW - 2 * DAY)
            .expiry(NOW + 28 * DAY)
            .order("GPA.3333-0000-0000-00000"),
    );
    g.add_voided(
        PACKAGE,
        voided("tok-v2", "GPA.2222-0000-0000-00000", NOW - 3 * DAY, 7),
    );
    g.add_voided(
        PACKAGE,
        voided("tok-s", "GPA.3333-0000-0000-00000", NOW - 2 * DAY, 1),
    );
    g.add_voided(
        PACKAGE,
        voided("tok-otp", "GPA.4444-0000-0000-00000", NOW - DAY, 0),
    );
    g.add_voided(
        PACKAGE,
        voided("tok-old", "GPA.5555-0000-0000-00000", NOW - 20 * DAY, 0),
    );
    let mut no_order = voided("tok-x", "", NOW - DAY, 0);
    no_order.as_object_mut().unwrap().remove("orderId");
    g.add_voided(PACKAGE, no_order);

    // WHEN the last ten days are backfilled
    let out = h
        .endpoint
        .voided_backfill(PACKAGE, ts(NOW - 10 * DAY), ts(NOW), ts(NOW))
        .await
        .unwrap();

    // THEN every page was read, with type=1, the window and the page tokens
    let queries = g.voided_queries();
    assert_eq!(queries.len(), 2, "{queries:?}");
    for q in &queries {
        assert_eq!(q["type"], "1");
        assert_eq!(q["startTime"], (NOW - 10 * DAY).to_string());
        assert_eq!(q["endTime"], NOW.to_string());
    }
    assert!(!queries[0].contains_key("token"));
    assert_eq!(queries[1]["token"], "page-2");
    assert!(g.assertion_errors().is_empty());
    assert_eq!(out.fetched, 4);
    assert_eq!(out.skipped, 1);
    assert_eq!(out.events.len(), 3);
    for e in &out.events {
        assert_eq!(e.details.source.as_deref(), Some("backfill"));
        assert_eq!(e.received_at.millis(), NOW);
        assert_eq!(e.store_notification.kind, "VOIDED_PURCHASE");
    }

    // AND the upgraded subscription's refund is in the first token's group, revoked
    let up = &out.events[0];
    assert_eq!(up.kind, EventType::SubscriptionRefunded);
    assert_eq!(up.occurred_at.millis(), NOW - 3 * DAY);
    let s = up.subscription.as_ref().unwrap();
    assert_eq!(s.store_subscription_id, "tok-v1");
    assert_eq!(
        s.id,
        links::Lineage::rooted_at(&PurchaseToken::new("tok-v1")).subscription_id
    );
    assert_eq!(s.status, SubscriptionStatus::Revoked);
    assert!(!up.entitlement.active);
    assert_eq!(
        up.details.refund.as_ref().unwrap().reason.as_deref(),
        Some("CHARGEBACK")
    );
    assert_eq!(
        up.details.refund.as_ref().unwrap().kind,
        Some(RefundKind::Full)
    );
    assert_eq!(
        up.transaction.as_ref().unwrap().id,
        "GPA.2222-0000-0000-00000"
    );

    // AND the plain subscription's refund is its own subscription's
    let plain = &out.events[1];
    assert_eq!(plain.kind, EventType::SubscriptionRefunded);
    assert_eq!(
        plain.subscription.as_ref().unwrap().store_subscription_id,
        "tok-s"
    );

    // AND a token subscriptionsv2 does not know is a one-time product's refund
    let otp = &out.events[2];
    assert_eq!(otp.kind, EventType::OneTimePurchaseRefunded);
    assert!(otp.subscription.is_none());
    assert_eq!(
        otp.transaction.as_ref().unwrap().id,
        "GPA.4444-0000-0000-00000"
    );
    assert!(!otp.entitlement.active);

    // AND a second backfill of the same window yields the same events (same ids)
    let again = h
        .endpoint
        .voided_backfill(PACKAGE, ts(NOW - 10 * DAY), ts(NOW), ts(NOW + 60_000))
        .await
        .unwrap();
    let ids = |v: &[Event]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again.events), ids(&out.events));
}

#[tokio::test]
async fn a_void_seen_by_its_notification_and_by_the_backfill_is_one_event_of_one_group() {
    // GIVEN a subscription refunded, its voidedPurchaseNotification delivered live
    let h = harness().await;
    h.sub(
        "tok-r",
        &Sub::active()
            .start(NOW - 2 * DAY)
            .expiry(NOW + 28 * DAY)
            .order("GPA.7777-0000-0000-00000"),
    );
    let live = h
        .event(
            "m-void-live",
            &voided_notification("tok-r", "GPA.7777-0000-0000-00000", 1, 1, NOW - DAY),
        )
        .await;
    assert_eq!(live.kind, EventType::SubscriptionRefunded);
    assert!(live.details.source.is_none());
    // WHEN the backfill lists the same void
    h.env.google.add_voided(
        PACKAGE,
        voided("tok-r", "GPA.7777-0000-0000-00000", NOW - DAY + 5, 1),
    );
    let out = h
        .endpoint
        .voided_backfill(PACKAGE, ts(NOW - 10 * DAY), ts(NOW), ts(NOW))
        .await
        .unwrap();
    // THEN it is the same event: same id, same group (the dispatcher applies an id once)
    assert_eq!(out.events.len(), 1);
    let back = &out.events[0];
    assert_eq!(back.id, live.id);
    assert_eq!(back.group_key(), live.group_key());
    assert_eq!(back.kind, live.kind);
    // AND another Pub/Sub delivery of the same void (a new messageId) is that event too
    let redelivered = h
        .event(
            "m-void-live-2",
            &voided_notification("tok-r", "GPA.7777-0000-0000-00000", 1, 1, NOW - DAY),
        )
        .await;
    assert_eq!(redelivered.id, live.id);
    // AND a partial refund keeps the message-derived id (it may repeat for one order)
    let partial = h
        .event(
            "m-void-partial",
            &voided_notification("tok-r", "GPA.7777-0000-0000-00000", 1, 2, NOW - DAY),
        )
        .await;
    assert_eq!(
        partial.id,
        storehook_shared::event::EventId::derive(&["GOOGLE_PLAY", "m-void-partial"])
    );
}

#[tokio::test]
async fn the_voided_backfill_reports_what_google_refuses_or_fails() {
    let h = harness().await;
    // a package that is not configured: refused before any call
    let before = h.env.google.api_requests();
    let err = h
        .endpoint
        .voided_backfill("com.other.app", ts(NOW - DAY), ts(NOW), ts(NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, PlayStoreError::WrongApp(_)), "{err}");
    assert_eq!(h.env.google.api_requests(), before);
    // Google failing: an error, nothing returned
    h.env
        .google
        .add_voided(PACKAGE, voided("tok-z", "GPA.1", NOW - DAY, 0));
    h.env.google.set_api_failure(Some(503));
    let err = h
        .endpoint
        .voided_backfill(PACKAGE, ts(NOW - DAY), ts(NOW), ts(NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, PlayStoreError::Api(_)), "{err}");
    assert!(!err.to_string().contains("tok-z"));
    // Google refusing the request (400): an error naming Google's reason
    h.env.google.set_api_failure(Some(400));
    let err = h
        .endpoint
        .voided_backfill(PACKAGE, ts(NOW - DAY), ts(NOW), ts(NOW))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("backendError"), "{err}");
}

// ---------------------------------------------------------------- the sweeper's Play source

mod sweeper {
    use super::*;
    use storehook_shared::stores::playstore::sweep::PlayStatusSource;
    use storehook_shared::sweep::{SourceError, StatusSource, sweep_event_id};

    /// A subscription started by notification, its group state in the ledger.
    async fn started(h: &Harness, ledger: &mut Ledger, token: &str, expiry: i64) -> String {
        h.sub(
            token,
            &Sub::active()
                .start(NOW - 30 * DAY)
                .expiry(expiry)
                .order("GPA.1000-0000-0000-00000"),
        );
        let e = h
            .event(
                &format!("m-start-{token}"),
                &subscription_notification(4, token, NOW - 30 * DAY),
            )
            .await;
        ledger.apply(&e);
        e.group_key()
    }

    fn source(h: &Harness) -> PlayStatusSource {
        PlayStatusSource::new(h.endpoint.clone()).unwrap()
    }

    #[tokio::test]
    async fn a_missed_renewal_is_swept_once_from_the_api_answer() {
        let h = harness().await;
        let mut ledger = Ledger::default();
        let old_expiry = NOW - DAY;
        let group = started(&h, &mut ledger, "tok-sw", old_expiry).await;
        let state = ledger.0[&group].clone();
        // GIVEN Google renewed it and the notification was lost
        h.sub(
            "tok-sw",
            &Sub::active()
                .start(NOW - 30 * DAY)
                .expiry(NOW + 29 * DAY)
                .order("GPA.1000-0000-0000-00000..0"),
        );
        // WHEN the sweeper asks
        let src = source(&h);
        let events = src.refresh(&group, &state, ts(NOW)).await.unwrap();
        // THEN one SUBSCRIPTION_RENEWED with the new expiry, in the group, from the API's facts
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, EventType::SubscriptionRenewed);
        assert_eq!(e.group_key(), group);
        assert_eq!(e.details.source.as_deref(), Some("sweeper"));
        assert_eq!(e.occurred_at.millis(), old_expiry);
        assert_eq!(e.received_at.millis(), NOW);
        let s = e.subscription.as_ref().unwrap();
        assert_eq!(s.expires_at.unwrap().millis(), NOW + 29 * DAY);
        assert!(e.entitlement.active);
        assert_eq!(
            e.id,
            sweep_event_id(
                &group,
                "SUBSCRIPTION_RENEWED",
                &[
                    "SUBSCRIPTION_STATE_ACTIVE",
                    "GPA.1000-0000-0000-00000..0",
                    &(NOW + 29 * DAY).to_string()
                ]
            )
        );
        // AND the same answer asked again is the same event (delivered once)
        let again = src.refresh(&group, &state, ts(NOW + 60_000)).await.unwrap();
        assert_eq!(again[0].id, e.id);
        // AND once applied, the answer implies nothing new
        ledger.apply(e);
        let after = ledger.0[&group].clone();
        assert!(
            src.refresh(&group, &after, ts(NOW))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn grace_hold_and_expiry_are_swept_as_the_notifications_would_be() {
        let h = harness().await;
        let mut ledger = Ledger::default();
        let expiry = NOW - DAY;
        let group = started(&h, &mut ledger, "tok-gh", expiry).await;
        let src = source(&h);
        for (api_state, kind, at) in [
            ("IN_GRACE_PERIOD", EventType::GracePeriodStarted, expiry),
            // the hold and the expiry keep Google's expiryTime: just after the last applied event
            ("ON_HOLD", EventType::BillingRetryStarted, expiry + 1),
            ("EXPIRED", EventType::SubscriptionExpired, expiry + 2),
        ] {
            let state = ledger.0[&group].clone();
            h.sub(
                "tok-gh",
                &Sub::active()
                    .start(NOW - 30 * DAY)
                    .expiry(expiry)
                    .order("GPA.1000-0000-0000-00000")
                    .state(api_state)
                    .auto_renew(api_state != "EXPIRED"),
            );
            let events = src.refresh(&group, &state, ts(NOW)).await.unwrap();
            assert_eq!(events.len(), 1, "{api_state}");
            let e = &events[0];
            assert_eq!(e.kind, kind, "{api_state}");
            assert_eq!(e.occurred_at.millis(), at, "{api_state}");
            assert_eq!(e.details.source.as_deref(), Some("sweeper"));
            assert_eq!(
                e.store_notification.kind,
                format!("SUBSCRIPTION_STATE_{api_state}")
            );
            ledger.apply(e);
            // the same state again implies nothing new
            let now_state = ledger.0[&group].clone();
            assert!(
                src.refresh(&group, &now_state, ts(NOW))
                    .await
                    .unwrap()
                    .is_empty(),
                "{api_state} twice"
            );
        }
        assert_eq!(
            ledger.0[&group].subscription.as_ref().unwrap().status,
            SubscriptionStatus::Expired
        );
        assert!(!ledger.0[&group].entitlement.active);
    }

    #[tokio::test]
    async fn the_sweeper_asks_about_the_newest_token_of_an_upgraded_lineage() {
        let h = harness().await;
        let mut ledger = Ledger::default();
        let group = started(&h, &mut ledger, "tok-u1", NOW + 5 * DAY).await;
        // GIVEN an upgrade to tok-u2, notified
        h.sub(
            "tok-u1",
            &Sub::active()
                .start(NOW - 30 * DAY)
                .expiry(NOW - 10 * DAY)
                .state("EXPIRED")
                .auto_renew(false)
                .canceled("replacement"),
        );
        h.sub(
            "tok-u2",
            &Sub::active()
                .start(NOW - 10 * DAY)
                .expiry(NOW - DAY)
                .linked("tok-u1")
                .order("GPA.2000-0000-0000-00000"),
        );
        let up = h
            .event(
                "m-up-u2",
                &subscription_notification(4, "tok-u2", NOW - 10 * DAY),
            )
            .await;
        assert_eq!(up.group_key(), group);
        ledger.apply(&up);
        // AND tok-u2 expired since
        h.sub(
            "tok-u2",
            &Sub::active()
                .start(NOW - 10 * DAY)
                .expiry(NOW - DAY)
                .linked("tok-u1")
                .state("EXPIRED")
                .auto_renew(false)
                .canceled("user"),
        );
        // WHEN swept
        let events = source(&h)
            .refresh(&group, &ledger.0[&group].clone(), ts(NOW))
            .await
            .unwrap();
        // THEN tok-u2 was asked (tok-u1, replaced, would have been refused)
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventType::SubscriptionExpired);
        assert_eq!(events[0].occurred_at.millis(), NOW - DAY);
        assert_eq!(
            events[0]
                .subscription
                .as_ref()
                .unwrap()
                .store_subscription_id,
            "tok-u1"
        );
    }

    #[tokio::test]
    async fn failures_are_unavailable_or_refused_and_nothing_without_credentials() {
        let h = harness().await;
        let mut ledger = Ledger::default();
        let group = started(&h, &mut ledger, "tok-f", NOW - DAY).await;
        let state = ledger.0[&group].clone();
        let src = source(&h);
        // 5xx: ask again later
        h.env.google.set_api_failure(Some(503));
        let err = src.refresh(&group, &state, ts(NOW)).await.unwrap_err();
        assert!(matches!(err, SourceError::Unavailable(_)), "{err}");
        assert!(!err.to_string().contains("tok-f"));
        h.env.google.set_api_failure(None);
        // 404 / 410: Google does not know it
        for status in [404, 410] {
            h.env
                .google
                .set_api_status_for(PACKAGE, "tok-f", Some(status));
            let err = src.refresh(&group, &state, ts(NOW)).await.unwrap_err();
            assert!(matches!(err, SourceError::Refused(_)), "{status}: {err}");
        }
        h.env.google.set_api_status_for(PACKAGE, "tok-f", None);
        // OAuth endpoint down: unavailable
        let fresh = PlayStatusSource::new(Arc::new(h.env.endpoint())).unwrap();
        h.env.google.set_token_failure(Some(500));
        let err = fresh.refresh(&group, &state, ts(NOW)).await.unwrap_err();
        assert!(matches!(err, SourceError::Unavailable(_)), "{err}");
        // a group of another store, or without origin: refused
        let mut other = state.clone();
        other.origin.as_mut().unwrap().store = Store::AppStore;
        assert!(matches!(
            src.refresh(&group, &other, ts(NOW)).await.unwrap_err(),
            SourceError::Refused(_)
        ));
        // no service account: no source
        let vars: HashMap<String, String> = h
            .env
            .env_vars()
            .into_iter()
            .filter(|(k, _)| k != "PLAY_SERVICE_ACCOUNT_JSON")
            .collect();
        let links: Arc<dyn LinkStore> = h.env.links.clone();
        assert!(
            PlayStatusSource::from_settings(
                &|k: &str| vars.get(k).cloned(),
                links.clone(),
                h.env.clock.clone()
            )
            .unwrap()
            .is_none()
        );
        let all: HashMap<String, String> = h.env.env_vars().into_iter().collect();
        assert!(
            PlayStatusSource::from_settings(
                &|k: &str| all.get(k).cloned(),
                links,
                h.env.clock.clone()
            )
            .unwrap()
            .is_some()
        );
    }
}

/// The sweeper function's daily `{"job": "play-voided"}` schedule reads
/// Google Play's voided purchases of the last two days onto the queue, once;
/// any other scheduled event sweeps; without Google Play the job is an error.
#[cfg(feature = "lambda")]
#[tokio::test]
async fn the_sweeper_functions_daily_job_enqueues_the_voided_purchases_of_two_days_once() {
    use storehook_shared::lambda::{PLAY_VOIDED_JOB, ScheduledJobs, VoidedJob, handle_scheduled};
    use storehook_shared::state::MemoryState;
    use storehook_shared::sweep::Sweeper;
    // GIVEN a subscription refunded yesterday and a void of five days ago
    let h = harness().await;
    h.at(NOW);
    h.sub(
        "tok-s",
        &Sub::active()
            .start(NOW - 2 * DAY)
            .expiry(NOW + 28 * DAY)
            .order("GPA.3333-0000-0000-00000"),
    );
    let g = &h.env.google;
    g.add_voided(
        PACKAGE,
        voided("tok-s", "GPA.3333-0000-0000-00000", NOW - DAY, 1),
    );
    g.add_voided(
        PACKAGE,
        voided("tok-old", "GPA.5555-0000-0000-00000", NOW - 5 * DAY, 0),
    );
    let state = Arc::new(MemoryState::new());
    let clock: Arc<dyn Clock> = h.env.clock.clone();
    let sweeper = Sweeper::new(state.clone(), h.queue.clone(), clock.clone());
    let jobs = ScheduledJobs {
        sweeper: sweeper.clone(),
        voided: Some(VoidedJob {
            endpoint: h.endpoint.clone(),
            queue: h.queue.clone(),
            state,
            clock,
        }),
    };
    // WHEN the daily schedule fires
    let job = json!({"job": PLAY_VOIDED_JOB});
    let report = handle_scheduled(&jobs, &job, None).await.unwrap();
    // THEN Google was asked for the last two days, and yesterday's refund is queued
    let q = g.voided_queries();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        q[0].get("startTime").map(String::as_str),
        Some((NOW - 2 * DAY).to_string().as_str()),
        "{q:?}"
    );
    assert_eq!(report["enqueued"], 1, "{report}");
    let sent = h.queue.sent();
    assert_eq!(sent.len(), 1);
    let e: Event = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(e.details.source.as_deref(), Some("backfill"));
    assert_eq!(e.occurred_at, ts(NOW - DAY));
    // AND a second run the same day adds nothing new (the queue drops the same id)
    handle_scheduled(&jobs, &job, None).await.unwrap();
    let again = h.queue.sent();
    assert!(again.iter().all(|m| m.dedup_id == e.id.0), "{again:?}");
    // AND any other scheduled event is a sweep (nothing due here)
    let swept = handle_scheduled(&jobs, &json!({"source": "aws.events"}), None)
        .await
        .unwrap();
    assert_eq!(swept["due"], 0, "{swept}");
    // AND without Google Play the job is refused, clearly
    let none = ScheduledJobs {
        sweeper,
        voided: None,
    };
    let err = handle_scheduled(&none, &job, None).await.unwrap_err();
    assert!(err.to_string().contains("PLAY_PACKAGE_NAMES"), "{err}");
}
