//! Huawei verification and translation tests: generated RSA keys signing every
//! notification type in both body versions and both algorithms, the negative
//! matrix through `Ingest` (nothing queued), the subscription/order APIs
//! against a fake server, and the committed sample event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeZone;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use storehook_shared::clock::ManualClock;
use storehook_shared::event::{
    ChangeEffective, Environment, Event, EventType, OfferType, PeriodType, PriceIncreaseStatus,
    ProductKind, SubscriptionStatus, Timestamp,
};
use storehook_shared::ingest::{Ingest, MAX_BODY_BYTES, StoreRequest};
use storehook_shared::queue::{MemoryQueue, QueueError};
use storehook_shared::stores::huawei::verify::IapPublicKey;
use storehook_shared::stores::huawei::*;
use storehook_testkit::huawei::{
    FakeHuaweiApi, FakeReply, HuaweiTestKey, SignAs, payloads::*, v2_order_body,
    v2_subscription_body,
};

/// "Now" of the tests: 10 days into a monthly period that started at T0 + 30 days.
const NOW: i64 = T0 + 40 * DAY;
const PERIOD_START: i64 = T0 + 30 * DAY;
const PERIOD_END: i64 = T0 + 60 * DAY;

/// Generating RSA keys takes a while: two shared keys for the whole module.
/// `ms` as a [`Timestamp`] (the applying instant of state tests).
fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).expect("a representable test time")
}

fn key() -> &'static HuaweiTestKey {
    static KEY: OnceLock<HuaweiTestKey> = OnceLock::new();
    KEY.get_or_init(HuaweiTestKey::generate)
}

fn stranger() -> &'static HuaweiTestKey {
    static KEY: OnceLock<HuaweiTestKey> = OnceLock::new();
    KEY.get_or_init(HuaweiTestKey::generate)
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        chrono::Utc.timestamp_millis_opt(NOW).unwrap(),
    ))
}

fn config() -> HuaweiConfig {
    HuaweiConfig::new(vec![APP_ID.into()], vec![key().public_key()])
}

fn endpoint() -> Huawei {
    Huawei::new(config(), clock()).unwrap()
}

fn renewal_receipt() -> Value {
    receipt("pro.monthly", PERIOD_START, PERIOD_END)
}

async fn one(h: &Huawei, body: &[u8]) -> Event {
    let mut events = h.process(body, NOW).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.len(), 1);
    events.remove(0)
}

async fn rejected(h: &Huawei, body: &[u8]) -> (u16, &'static str) {
    let e = h.process(body, NOW).await.unwrap_err();
    (e.status(), e.code())
}

fn ingest_for(h: Huawei) -> (Ingest, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::new());
    let ingest = Ingest::new(Arc::new(HuaweiEndpoint(h)), queue.clone(), clock());
    (ingest, queue)
}

fn post(body: Vec<u8>) -> StoreRequest {
    StoreRequest {
        method: "POST".into(),
        query: None,
        headers: http::HeaderMap::new(),
        body: body.into(),
    }
}

// ------------------------------------------------------------ types × formats

#[tokio::test]
async fn every_notification_type_translates_in_both_versions_and_algorithms() {
    use EventType as T;
    let cases = [
        (0, "INITIAL_BUY", T::SubscriptionStarted),
        (1, "CANCEL", T::SubscriptionRefunded),
        (2, "RENEWAL", T::SubscriptionRecovered),
        (3, "INTERACTIVE_RENEWAL", T::SubscriptionResubscribed),
        (4, "NEW_RENEWAL_PREF", T::ProductChanged),
        (5, "RENEWAL_STOPPED", T::RenewalDisabled),
        (6, "RENEWAL_RESTORED", T::RenewalEnabled),
        (7, "RENEWAL_RECURRING", T::SubscriptionRenewed),
        (8, "IN_GRACE_PERIOD", T::GracePeriodStarted),
        (9, "ON_HOLD", T::BillingRetryStarted),
        (10, "PAUSED", T::SubscriptionPaused),
        (11, "PAUSE_PLAN_CHANGED", T::SubscriptionPauseScheduled),
        (12, "PRICE_CHANGE_CONFIRMED", T::PriceIncrease),
        (13, "DEFERRED", T::RenewalExtended),
        (14, "14", T::StoreNotification),
        (99, "99", T::StoreNotification),
    ];
    let h = endpoint();
    let formats: [(&str, Option<SignAs>); 4] = [
        ("v1", None),
        ("v2 SHA256WithRSA", Some(SignAs::Pkcs1)),
        ("v2 SHA256WithRSA/PSS", Some(SignAs::Pss)),
        ("v2 SHA256WithRSA/PSS max salt", Some(SignAs::PssMaxSalt)),
    ];
    for (ntype, name, want) in cases {
        for (format, how) in formats {
            // GIVEN a genuine notification of this type (CANCEL carries no receipt)
            let r = renewal_receipt();
            let status = status_update(ntype, (ntype != 1).then_some(&r));
            let body = match how {
                None => key().v1_body(&status),
                Some(how) => key().v2_body(&status, how, NOW - 1000),
            };
            // WHEN it is verified and translated
            let e = one(&h, &body).await;
            // THEN it has the type events.md gives and the signed facts
            let ctx = format!("{name} {format}");
            assert_eq!(e.kind, want, "{ctx}");
            assert_eq!(e.store_notification.kind, name, "{ctx}");
            assert_eq!(e.store_notification.subtype, None);
            assert_eq!(e.store, storehook_shared::event::Store::HuaweiAppGallery);
            assert_eq!(e.app_id, APP_ID, "{ctx}");
            assert_eq!(e.environment, Environment::Production, "{ctx}");
            assert_eq!(e.received_at.millis(), NOW);
            // occurred_at: the signed time (a purchase or renewal: the receipt's
            // purchaseTime), else the reception; never the unsigned notifyTime
            let occurred = if matches!(ntype, 0 | 2 | 3 | 7) {
                PERIOD_START
            } else {
                NOW
            };
            assert_eq!(e.occurred_at.millis(), occurred, "{ctx}");
            let s = e.subscription.as_ref().unwrap_or_else(|| panic!("{ctx}"));
            assert_eq!(s.store_subscription_id, SUBSCRIPTION_ID);
            assert_eq!(
                s.id,
                storehook_shared::event::SubscriptionId::derive(&[
                    "HUAWEI_APPGALLERY",
                    SUBSCRIPTION_ID
                ])
            );
            assert_eq!(e.product.as_ref().unwrap().id, "pro.monthly");
            assert_eq!(e.product.as_ref().unwrap().kind, ProductKind::AutoRenewable);
            assert_eq!(e.details.error, None);
            assert!(e.raw.is_none(), "raw only when configured");
        }
    }
}

#[tokio::test]
async fn a_renewal_carries_the_receipt_snapshot() {
    // GIVEN a RENEWAL_RECURRING with the new period's receipt
    let h = endpoint();
    let r = renewal_receipt();
    let body = key().v2_body(&status_update(7, Some(&r)), SignAs::Pkcs1, NOW - 5);
    // WHEN translated
    let e = one(&h, &body).await;
    // THEN the snapshot is the receipt's
    let s = e.subscription.as_ref().unwrap();
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert!(s.auto_renew);
    assert_eq!(s.period_type, PeriodType::Normal);
    assert_eq!(s.started_at.unwrap().millis(), T0);
    assert_eq!(s.current_period_started_at.unwrap().millis(), PERIOD_START);
    assert_eq!(s.expires_at.unwrap().millis(), PERIOD_END);
    assert_eq!(s.grace_period_expires_at, None);
    assert_eq!(s.renewal_product_id.as_deref(), Some("pro.monthly"));
    let price = s.price.as_ref().unwrap();
    assert_eq!(
        (price.amount_micros, price.currency.as_str()),
        (4_990_000, "EUR")
    );
    assert_eq!(s.country.as_deref(), Some("FR"));
    assert!(e.entitlement.active);
    assert_eq!(e.entitlement.expires_at, s.expires_at);
    assert_eq!(e.app_user_id.as_deref(), Some("user-42"));
    let t = e.transaction.as_ref().unwrap();
    assert_eq!(t.id, format!("order-{PERIOD_START}"));
    assert_eq!(t.original_id.as_deref(), Some(SUBSCRIPTION_ID));
    assert_eq!(t.purchased_at.unwrap().millis(), PERIOD_START);
    assert_eq!(t.price.as_ref().unwrap().amount_micros, 4_990_000);
    assert_eq!(e.group_key(), s.id.0);
}

#[tokio::test]
async fn states_follow_the_type_and_the_receipt() {
    let h = endpoint();
    let body =
        |ntype: i64, r: &Value| key().v2_body(&status_update(ntype, Some(r)), SignAs::Pkcs1, NOW);

    // RENEWAL_STOPPED: paid period still valid → CANCELED_ACTIVE, entitled
    let mut stopped = renewal_receipt();
    stopped["autoRenewing"] = json!(false);
    stopped["cancelWay"] = json!(0);
    let e = one(&h, &body(5, &stopped)).await;
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::CanceledActive
    );
    assert!(!e.subscription.as_ref().unwrap().auto_renew);
    assert!(e.entitlement.active);
    assert_eq!(e.details.reason.as_deref(), Some("USER"));
    // … even when the receipt still says autoRenewing (the type is the witness)
    let e = one(&h, &body(5, &renewal_receipt())).await;
    assert!(!e.subscription.as_ref().unwrap().auto_renew);
    assert_eq!(e.details.reason.as_deref(), Some("UNKNOWN"));
    // … with the price-increase reason when the receipt says so
    let mut declined = stopped.clone();
    declined["expirationIntent"] = json!(5);
    assert_eq!(
        one(&h, &body(5, &declined)).await.details.reason.as_deref(),
        Some("PRICE_INCREASE")
    );

    // IN_GRACE_PERIOD: period over, grace running → entitled until grace ends
    let mut grace = receipt("pro.monthly", T0, T0 + 30 * DAY);
    grace["graceExpirationTime"] = json!(NOW + 3 * DAY);
    grace["subIsvalid"] = json!(true);
    let e = one(&h, &body(8, &grace)).await;
    let s = e.subscription.as_ref().unwrap();
    assert_eq!(s.status, SubscriptionStatus::InGracePeriod);
    assert_eq!(
        e.details.grace_period_expires_at.unwrap().millis(),
        NOW + 3 * DAY
    );
    assert!(e.entitlement.active);
    assert_eq!(e.entitlement.expires_at.unwrap().millis(), NOW + 3 * DAY);

    // ON_HOLD: no access
    let mut hold = receipt("pro.monthly", T0, T0 + 30 * DAY);
    hold["retryFlag"] = json!(1);
    hold["subIsvalid"] = json!(false);
    let e = one(&h, &body(9, &hold)).await;
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::OnHold
    );
    assert!(!e.entitlement.active);

    // PAUSED / PAUSE_PLAN_CHANGED: resumes_at
    let mut paused = receipt("pro.monthly", T0, T0 + 30 * DAY);
    paused["resumeTime"] = json!(NOW + 20 * DAY);
    let e = one(&h, &body(10, &paused)).await;
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Paused
    );
    assert_eq!(e.details.resumes_at.unwrap().millis(), NOW + 20 * DAY);
    assert!(!e.entitlement.active);
    let mut plan = renewal_receipt();
    plan["resumeTime"] = json!(PERIOD_END + 30 * DAY);
    let e = one(&h, &body(11, &plan)).await;
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Active
    );
    assert_eq!(
        e.details.resumes_at.unwrap().millis(),
        PERIOD_END + 30 * DAY
    );

    // PRICE_CHANGE_CONFIRMED: accepted, new price
    let mut price = renewal_receipt();
    price["renewPrice"] = json!(699);
    price["priceConsentStatus"] = json!(1);
    let e = one(&h, &body(12, &price)).await;
    assert_eq!(e.details.status, Some(PriceIncreaseStatus::Accepted));
    assert_eq!(
        e.details.new_price.as_ref().unwrap().amount_micros,
        6_990_000
    );

    // DEFERRED: the new expiry
    let mut deferred = renewal_receipt();
    deferred["expirationDate"] = json!(PERIOD_END + 7 * DAY);
    deferred["deferFlag"] = json!(1);
    let e = one(&h, &body(13, &deferred)).await;
    assert_eq!(
        e.details.new_expires_at.unwrap().millis(),
        PERIOD_END + 7 * DAY
    );

    // NEW_RENEWAL_PREF: from the current product to the notification's
    let mut pref = status_update(4, Some(&renewal_receipt()));
    pref["productId"] = json!("basic.monthly");
    let e = one(&h, &key().v2_body(&pref, SignAs::Pkcs1, NOW)).await;
    assert_eq!(e.details.from_product_id.as_deref(), Some("pro.monthly"));
    assert_eq!(e.details.to_product_id.as_deref(), Some("basic.monthly"));
    assert_eq!(e.details.effective, Some(ChangeEffective::NextRenewal));
    assert_eq!(
        e.subscription
            .as_ref()
            .unwrap()
            .renewal_product_id
            .as_deref(),
        Some("basic.monthly")
    );

    // a lapsed receipt → EXPIRED (Huawei sends no expiry notification of its own)
    let mut lapsed = receipt("pro.monthly", T0, T0 + 30 * DAY);
    lapsed["autoRenewing"] = json!(false);
    lapsed["subIsvalid"] = json!(false);
    let e = one(&h, &body(6, &lapsed)).await;
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Expired
    );
    assert!(!e.entitlement.active);

    // trial and intro periods are offers
    let mut trial = receipt("pro.monthly", T0, T0 + 60 * DAY);
    trial["trialFlag"] = json!(1);
    let e = one(&h, &body(0, &trial)).await;
    assert_eq!(
        e.subscription.as_ref().unwrap().period_type,
        PeriodType::Trial
    );
    assert_eq!(e.details.offer.as_ref().unwrap().kind, OfferType::FreeTrial);
    let mut intro = renewal_receipt();
    intro["introductoryFlag"] = json!(1);
    let e = one(&h, &body(3, &intro)).await;
    assert_eq!(e.details.offer.as_ref().unwrap().kind, OfferType::Intro);
}

#[tokio::test]
async fn a_customer_service_cancellation_is_a_refund_and_revokes() {
    // GIVEN a CANCEL of a yearly plan 3 days after purchase (no receipt, as Huawei sends it)
    let h = endpoint();
    let mut n = status_update(1, None);
    n["cancellationDate"] = json!(NOW - DAY);
    n["refundPayOrderId"] = json!("refund-1");
    n["autoRenewStatus"] = json!(0);
    let e = one(&h, &key().v2_body(&n, SignAs::Pkcs1, NOW)).await;
    // THEN SUBSCRIPTION_REFUNDED, revoked, no access
    assert_eq!(e.kind, EventType::SubscriptionRefunded);
    let s = e.subscription.as_ref().unwrap();
    assert_eq!(s.status, SubscriptionStatus::Revoked);
    assert!(!s.auto_renew);
    assert!(!e.entitlement.active);
    let refund = e.details.refund.as_ref().unwrap();
    assert_eq!(refund.reason.as_deref(), Some("CUSTOMER_SERVICE"));
    assert_eq!(refund.refunded_at.unwrap().millis(), NOW - DAY);
    assert_eq!(
        e.details.suspicious_refund,
        Some(false),
        "no receipt: nothing to judge"
    );

    // GIVEN the same with a receipt of a yearly period bought 3 days earlier
    let mut yearly = receipt("pro.yearly", NOW - 4 * DAY, NOW - 4 * DAY + 365 * DAY);
    yearly["cancelReason"] = json!(1);
    let mut n = status_update(1, Some(&yearly));
    n["cancellationDate"] = json!(NOW - DAY);
    let e = one(&h, &key().v1_body(&n)).await;
    // THEN the refund is flagged suspicious (the "buy yearly, refund quickly" pattern)
    let refund = e.details.refund.as_ref().unwrap();
    assert_eq!(refund.days_since_purchase, Some(3));
    assert_eq!(refund.reason.as_deref(), Some("APP_ISSUE"));
    assert_eq!(refund.amount.as_ref().unwrap().amount_micros, 4_990_000);
    assert_eq!(e.details.suspicious_refund, Some(true));
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Revoked
    );
}

#[tokio::test]
async fn environments_and_app_ids_are_read_from_the_signed_content() {
    let h = endpoint();
    let r = renewal_receipt();
    // SandBox (Huawei's casing)
    let mut n = status_update(7, Some(&r));
    n["environment"] = json!("SandBox");
    assert_eq!(
        one(&h, &key().v1_body(&n)).await.environment,
        Environment::Sandbox
    );
    // no environment: the receipt's purchaseType 0 means sandbox
    let mut sandbox_receipt = r.clone();
    sandbox_receipt["purchaseType"] = json!(0);
    let mut n = status_update(7, Some(&sandbox_receipt));
    n.as_object_mut().unwrap().remove("environment");
    assert_eq!(
        one(&h, &key().v1_body(&n)).await.environment,
        Environment::Sandbox
    );
    let mut n = status_update(7, Some(&r));
    n.as_object_mut().unwrap().remove("environment");
    assert_eq!(
        one(&h, &key().v1_body(&n)).await.environment,
        Environment::Production
    );
    // numbers and strings are both accepted where Huawei is inconsistent
    let mut n = status_update(7, Some(&r));
    n["notificationType"] = json!("7");
    n["applicationId"] = json!(APP_ID.parse::<i64>().unwrap());
    let e = one(&h, &key().v1_body(&n)).await;
    assert_eq!(e.kind, EventType::SubscriptionRenewed);
    assert_eq!(e.app_id, APP_ID);
    // no applicationId anywhere: the only configured app (its key signed it)
    let mut bare = r.clone();
    bare.as_object_mut().unwrap().remove("applicationId");
    let mut n = status_update(7, Some(&bare));
    n.as_object_mut().unwrap().remove("applicationId");
    assert_eq!(one(&h, &key().v1_body(&n)).await.app_id, APP_ID);
    // … but several configured apps need the notification to say which
    let mut two = config();
    two.app_ids.push("109999999".into());
    let h2 = Huawei::new(two, clock()).unwrap();
    assert_eq!(rejected(&h2, &key().v1_body(&n)).await, (403, "wrong_app"));
    // an endpoint without app ids (CLI) accepts any app
    let any = Huawei::new(HuaweiConfig::new(vec![], vec![key().public_key()]), clock()).unwrap();
    let mut other = status_update(7, Some(&r));
    other["applicationId"] = json!("555");
    let mut other_receipt = r.clone();
    other_receipt["applicationId"] = json!(555);
    other["latestReceiptInfo"] = json!(other_receipt.to_string());
    assert_eq!(one(&any, &key().v1_body(&other)).await.app_id, "555");
}

#[tokio::test]
async fn event_ids_are_stable_across_resends_and_distinct_otherwise() {
    let h = endpoint();
    let n = status_update(7, Some(&renewal_receipt()));
    // the same signed notification, resent (v2 with another notifyTime, PSS re-signed, or v1)
    let a = one(&h, &key().v2_body(&n, SignAs::Pkcs1, NOW)).await;
    let b = one(&h, &key().v2_body(&n, SignAs::Pss, NOW + 60_000)).await;
    let c = one(&h, &key().v1_body(&n)).await;
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, c.id);
    assert_eq!(a.store_notification.id, b.store_notification.id);
    assert!(a.id.as_str().starts_with("evt_"));
    // another notification of the same subscription: another id, same group
    let d = one(
        &h,
        &key().v1_body(&status_update(5, Some(&renewal_receipt()))),
    )
    .await;
    assert_ne!(a.id, d.id);
    assert_eq!(a.group_key(), d.group_key());
}

#[tokio::test]
async fn an_undecodable_receipt_is_kept_as_an_error_without_a_snapshot() {
    // GIVEN an authentic RENEWAL_RECURRING whose latestReceiptInfo is not JSON
    let h = endpoint();
    let mut n = status_update(7, Some(&renewal_receipt()));
    n["latestReceiptInfo"] = json!("{not json");
    let e = one(&h, &key().v1_body(&n)).await;
    // THEN the event is not dropped: its type stays, the reason is given, and it
    // carries no snapshot (it must neither grant nor revoke access on no evidence)
    assert_eq!(e.kind, EventType::SubscriptionRenewed);
    assert!(
        e.details
            .error
            .as_deref()
            .unwrap()
            .contains("latestReceiptInfo")
    );
    assert!(e.subscription.is_none());
    assert!(e.transaction.is_none());
    assert!(!e.entitlement.active);
    assert_eq!(e.product.as_ref().unwrap().id, "pro.monthly");
}

#[tokio::test]
async fn raw_holds_the_decoded_payloads_when_configured() {
    let mut c = config();
    c.include_raw = true;
    let h = Huawei::new(c, clock()).unwrap();
    let e = one(
        &h,
        &key().v2_body(
            &status_update(7, Some(&renewal_receipt())),
            SignAs::Pss,
            NOW,
        ),
    )
    .await;
    let raw = e.raw.unwrap();
    assert_eq!(raw["version"], "v2");
    assert_eq!(raw["statusUpdateNotification"]["notificationType"], 7);
    assert_eq!(
        raw["statusUpdateNotification"]["latestReceiptInfo"]["productId"],
        "pro.monthly"
    );
}

// ---------------------------------------------------------- negative matrix

#[tokio::test]
async fn refusals_answer_status_and_code_and_queue_nothing() {
    let (ingest, queue) = ingest_for(endpoint());
    let n = status_update(7, Some(&renewal_receipt()));
    let signed = n.to_string();
    let pkcs1 = key().sign(SignAs::Pkcs1, &signed);
    let pss = key().sign(SignAs::Pss, &signed);

    let mut tampered = n.clone();
    tampered["productId"] = json!("pro.yearly");
    let mut wrong_inner_app = n.clone();
    wrong_inner_app["applicationId"] = json!("109999999");
    let mut wrong_receipt_app = renewal_receipt();
    wrong_receipt_app["applicationId"] = json!(109_999_999);
    let mut weird_env = n.clone();
    weird_env["environment"] = json!("STAGING");
    let mut outer_app =
        serde_json::from_slice::<Value>(&key().v2_body(&n, SignAs::Pkcs1, NOW)).unwrap();
    outer_app["applicationId"] = json!("109999999");
    let mut order_other_app: Value =
        serde_json::from_slice(&v2_order_body(1, PURCHASE_TOKEN, "coins.100", NOW)).unwrap();
    order_other_app["applicationId"] = json!("109999999");

    let v1 = |signed: &str, sig: &str| {
        serde_json::to_vec(
            &json!({"statusUpdateNotification": signed, "notifycationSignature": sig}),
        )
        .unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        // authentication
        ("signature of other data", v2_subscription_body(&signed, &key().sign(SignAs::Pkcs1, "other"), Some("SHA256WithRSA"), NOW), 401, "invalid_signature"),
        ("signed by another key", stranger().v2_body(&n, SignAs::Pkcs1, NOW), 401, "invalid_signature"),
        ("v1 signed by another key", stranger().v1_body(&n), 401, "invalid_signature"),
        ("PKCS#1 signature announced as PSS", v2_subscription_body(&signed, &pkcs1, Some("SHA256WithRSA/PSS"), NOW), 401, "invalid_signature"),
        ("PSS signature announced as PKCS#1", v2_subscription_body(&signed, &pss, Some("SHA256WithRSA"), NOW), 401, "invalid_signature"),
        ("PSS signature without algorithm", v2_subscription_body(&signed, &pss, None, NOW), 401, "invalid_signature"),
        ("v1 PSS signature (v1 is PKCS#1)", v1(&signed, &pss), 401, "invalid_signature"),
        ("tampered inner JSON", v2_subscription_body(&tampered.to_string(), &pkcs1, Some("SHA256WithRSA"), NOW), 401, "invalid_signature"),
        ("re-serialised inner JSON", v2_subscription_body(&serde_json::to_string_pretty(&n).unwrap(), &pkcs1, Some("SHA256WithRSA"), NOW), 401, "invalid_signature"),
        ("unlisted algorithm", v2_subscription_body(&signed, &pkcs1, Some("SHA1WithRSA"), NOW), 401, "unsupported_algorithm"),
        ("unlisted algorithm v1", serde_json::to_vec(&json!({"statusUpdateNotification": signed, "notifycationSignature": pkcs1, "signatureAlgorithm": "SHA512WithRSA"})).unwrap(), 401, "unsupported_algorithm"),
        ("no signature v2", serde_json::to_vec(&json!({"version": "v2", "eventType": "SUBSCRIPTION", "subNotification": {"statusUpdateNotification": signed}})).unwrap(), 401, "missing_signature"),
        ("no signature v1", serde_json::to_vec(&json!({"statusUpdateNotification": signed})).unwrap(), 401, "missing_signature"),
        ("empty signature", v2_subscription_body(&signed, "", None, NOW), 400, "malformed_signature"),
        ("signature not base64", v2_subscription_body(&signed, "***", None, NOW), 400, "malformed_signature"),
        // app and environment
        ("another app (signed)", key().v2_body(&wrong_inner_app, SignAs::Pkcs1, NOW), 403, "wrong_app"),
        ("another app (receipt)", key().v1_body(&status_update(7, Some(&wrong_receipt_app))), 403, "wrong_app"),
        ("another app (outer, unsigned)", serde_json::to_vec(&outer_app).unwrap(), 403, "wrong_app"),
        ("ORDER for another app", serde_json::to_vec(&order_other_app).unwrap(), 403, "wrong_app"),
        ("unknown environment", key().v1_body(&weird_env), 403, "wrong_environment"),
        // malformed
        ("not JSON", b"not json".to_vec(), 400, "malformed_body"),
        ("empty body", Vec::new(), 400, "malformed_body"),
        ("array", b"[]".to_vec(), 400, "malformed_body"),
        ("empty object", b"{}".to_vec(), 400, "malformed_body"),
        ("statusUpdateNotification not a string", serde_json::to_vec(&json!({"statusUpdateNotification": n, "notifycationSignature": pkcs1})).unwrap(), 400, "malformed_body"),
        ("SUBSCRIPTION without subNotification", serde_json::to_vec(&json!({"version": "v2", "eventType": "SUBSCRIPTION"})).unwrap(), 400, "malformed_body"),
        ("ORDER without orderNotification", serde_json::to_vec(&json!({"version": "v2", "eventType": "ORDER"})).unwrap(), 400, "malformed_body"),
        ("ORDER without token", serde_json::to_vec(&json!({"version": "v2", "eventType": "ORDER", "orderNotification": {"notificationType": 1, "productId": "x"}})).unwrap(), 400, "malformed_body"),
        ("empty statusUpdateNotification", v2_subscription_body("", &pkcs1, None, NOW), 400, "malformed_body"),
        ("unknown eventType", serde_json::to_vec(&json!({"version": "v2", "eventType": "REFUND_REVIEW", "subNotification": {}})).unwrap(), 400, "unsupported_event_type"),
        ("signed content not an object", v2_subscription_body("[1,2]", &key().sign(SignAs::Pkcs1, "[1,2]"), None, NOW), 400, "malformed_notification"),
        ("signed content not JSON", v2_subscription_body("hello", &key().sign(SignAs::Pkcs1, "hello"), None, NOW), 400, "malformed_notification"),
        ("too large", vec![b' '; MAX_BODY_BYTES + 1], 413, "body_too_large"),
        // ORDER notifications are unsigned: without API credentials they wait (Huawei resends)
        ("ORDER without API credentials", v2_order_body(1, PURCHASE_TOKEN, "coins.100", NOW), 503, "order_verification_unavailable"),
    ];
    for (name, body, status, code) in cases {
        // WHEN the body is posted
        let resp = ingest.handle(post(body)).await;
        // THEN it is refused with its status and code, and a message without the token
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        let v: Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(v["error"]["code"], code, "{name}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{name}");
        assert!(
            !resp.body.contains(PURCHASE_TOKEN),
            "{name}: token in the answer"
        );
    }
    // AND nothing was queued
    assert!(queue.sent().is_empty());
}

#[tokio::test]
async fn success_is_200_with_huaweis_body_after_queueing_and_503_when_the_queue_fails() {
    let (ingest, queue) = ingest_for(endpoint());
    let body = key().v2_body(
        &status_update(0, Some(&renewal_receipt())),
        SignAs::Pss,
        NOW,
    );
    // GIVEN the queue fails
    queue.fail_with(Some(QueueError::Unavailable("throttled".into())));
    let resp = ingest.handle(post(body.clone())).await;
    // THEN 503 so Huawei resends
    assert_eq!(resp.status, 503);
    assert!(resp.body.contains("queue_unavailable"));
    // WHEN the queue is back and Huawei resends
    queue.fail_with(None);
    let resp = ingest.handle(post(body)).await;
    // THEN 200 with the body Huawei's demos answer, after exactly one message
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, SUCCESS_BODY);
    let sent = queue.sent();
    assert_eq!(sent.len(), 1);
    let e: Event = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(e.kind, EventType::SubscriptionStarted);
    assert_eq!(sent[0].dedup_id, e.id.0);
    assert_eq!(sent[0].group_id, e.subscription.as_ref().unwrap().id.0);
}

#[test]
fn tokens_never_show_in_debug_output() {
    let h = endpoint();
    let body = key().v1_body(&status_update(7, Some(&renewal_receipt())));
    let Notice::Subscription(v) = h.verify(&body).unwrap() else {
        panic!("not a subscription")
    };
    let debug = format!("{v:?}");
    assert!(!debug.contains(PURCHASE_TOKEN));
    assert!(debug.contains("Opaque(<"));
    let order = h
        .verify(&v2_order_body(1, PURCHASE_TOKEN, "coins.100", NOW))
        .unwrap();
    assert!(!format!("{order:?}").contains(PURCHASE_TOKEN));
    let api = storehook_shared::stores::huawei::api::ApiConfig::new("id", "very-secret-value");
    assert!(!format!("{api:?}").contains("very-secret-value"));
}

// ------------------------------------------------------------ keys and config

#[test]
fn keys_are_read_as_appgallery_connect_shows_them() {
    let k = key();
    let spki = k.public_key_base64();
    assert_eq!(IapPublicKey::from_base64(&spki).unwrap().bits(), 2048);
    // PEM armour and line breaks are tolerated
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &spki[..64],
        &spki[64..]
    );
    let a = IapPublicKey::from_base64(&pem).unwrap();
    assert_eq!(
        a.fingerprint(),
        IapPublicKey::from_base64(&spki).unwrap().fingerprint()
    );
    // a bare PKCS#1 RSAPublicKey too
    let (_, parsed) =
        <x509_parser::prelude::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            k.public_key_der(),
        )
        .unwrap();
    let pkcs1 = parsed.subject_public_key.data.to_vec();
    let b = IapPublicKey::from_der(&pkcs1).unwrap();
    let sig = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        k.sign(SignAs::Pkcs1, "x"),
    )
    .unwrap();
    assert!(b.verifies(verify::SignatureAlgorithm::Sha256WithRsa, b"x", &sig));
    // not base64, not a key, not RSA
    assert!(matches!(
        IapPublicKey::from_base64("***"),
        Err(verify::KeyError::NotBase64(_))
    ));
    assert!(matches!(
        IapPublicKey::from_base64("AAAA"),
        Err(verify::KeyError::NotSpki)
    ));
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert!(matches!(
        IapPublicKey::from_der(&rcgen::PublicKeyData::subject_public_key_info(&ec)),
        Err(verify::KeyError::NotRsa(_))
    ));
    // larger keys work
    let big = HuaweiTestKey::generate_with(aws_lc_rs::rsa::KeySize::Rsa3072);
    let sig = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        big.sign(SignAs::Pss, "y"),
    )
    .unwrap();
    assert_eq!(big.public_key().bits(), 3072);
    assert!(
        big.public_key()
            .verifies(verify::SignatureAlgorithm::Sha256WithRsaPss, b"y", &sig)
    );
}

#[test]
fn algorithm_names_are_the_documented_ones() {
    use verify::SignatureAlgorithm as A;
    assert_eq!(A::from_field(None), Ok(A::Sha256WithRsa));
    assert_eq!(A::from_field(Some("")), Ok(A::Sha256WithRsa));
    assert_eq!(A::from_field(Some("SHA256WithRSA")), Ok(A::Sha256WithRsa));
    assert_eq!(A::from_field(Some("SHA256withRSA")), Ok(A::Sha256WithRsa));
    assert_eq!(
        A::from_field(Some("SHA256WithRSA/PSS")),
        Ok(A::Sha256WithRsaPss)
    );
    for bad in ["SHA1WithRSA", "RS256", "SHA256WithRSA/PSS/MGF1", "PSS"] {
        assert_eq!(
            A::from_field(Some(bad)).unwrap_err().code(),
            "unsupported_algorithm"
        );
    }
}

fn map(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

#[test]
fn config_is_read_strictly_and_the_lambda_refuses_to_start_without_app_and_key() {
    let pk = key().public_key_base64();
    // the Lambda needs both
    let err = huawei_config(&map(&[("HUAWEI_PUBLIC_KEY", &pk)]), true).unwrap_err();
    assert!(err.to_string().contains("HUAWEI_APP_IDS"));
    let err = huawei_config(&map(&[("HUAWEI_APP_IDS", APP_ID)]), true).unwrap_err();
    assert!(err.to_string().contains("HUAWEI_PUBLIC_KEY"));
    // the CLI may accept any app, but nothing is verifiable without a key
    assert!(
        huawei_config(&map(&[("HUAWEI_PUBLIC_KEY", &pk)]), false)
            .unwrap()
            .app_ids
            .is_empty()
    );
    assert!(huawei_config(&map(&[]), false).is_err());
    // lists and defaults
    let two_keys = format!("{pk}, {}", stranger().public_key_base64());
    let c = huawei_config(
        &map(&[
            ("HUAWEI_APP_IDS", " 101234567, 109999999 ,"),
            ("HUAWEI_PUBLIC_KEY", &two_keys),
            ("INCLUDE_RAW", "true"),
            ("SUSPICIOUS_REFUND_MAX_DAYS", "7"),
        ]),
        true,
    )
    .unwrap();
    assert_eq!(c.app_ids, vec!["101234567", "109999999"]);
    assert_eq!(c.public_keys.len(), 2);
    assert!(c.api.is_none());
    assert!(c.include_raw);
    assert_eq!(c.refund_policy.max_days_since_purchase, 7);
    // API credentials: both or neither; URLs https (http only to loopback)
    let base = [
        ("HUAWEI_APP_IDS", APP_ID),
        ("HUAWEI_PUBLIC_KEY", pk.as_str()),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(extra);
        huawei_config(&map(&all), true)
    };
    let api = with(&[("HUAWEI_CLIENT_ID", "1"), ("HUAWEI_CLIENT_SECRET", "s")])
        .unwrap()
        .api
        .unwrap();
    assert_eq!(api.oauth_url, api::DEFAULT_OAUTH_URL);
    assert_eq!(api.subscription_url, api::DEFAULT_SUBSCRIPTION_API_URL);
    assert_eq!(api.order_url, api::DEFAULT_ORDER_API_URL);
    assert!(!format!("{api:?}").contains("\"s\""));
    assert!(with(&[("HUAWEI_CLIENT_ID", "1")]).is_err());
    assert!(with(&[("HUAWEI_CLIENT_SECRET", "s")]).is_err());
    let custom = with(&[
        ("HUAWEI_CLIENT_ID", "1"),
        ("HUAWEI_CLIENT_SECRET", "s"),
        (
            "HUAWEI_API_URL",
            "https://subscr-drcn.iap.cloud.huawei.com.cn",
        ),
        ("HUAWEI_ORDER_API_URL", "http://127.0.0.1:9"),
        ("HUAWEI_API_TIMEOUT_MS", "2500"),
    ])
    .unwrap()
    .api
    .unwrap();
    assert_eq!(
        custom.subscription_url,
        "https://subscr-drcn.iap.cloud.huawei.com.cn"
    );
    assert_eq!(custom.timeout, std::time::Duration::from_millis(2500));
    for bad in [
        ("HUAWEI_API_URL", "http://subscr.example.com"),
        ("HUAWEI_OAUTH_URL", "not a url"),
        ("HUAWEI_API_TIMEOUT_MS", "10"),
        ("HUAWEI_API_TIMEOUT_MS", "x"),
    ] {
        assert!(
            with(&[
                ("HUAWEI_CLIENT_ID", "1"),
                ("HUAWEI_CLIENT_SECRET", "s"),
                bad
            ])
            .is_err(),
            "{bad:?}"
        );
    }
    // unusable keys and flags
    assert!(
        huawei_config(
            &map(&[("HUAWEI_APP_IDS", APP_ID), ("HUAWEI_PUBLIC_KEY", "nope!")]),
            true
        )
        .is_err()
    );
    assert!(with(&[("INCLUDE_RAW", "maybe")]).is_err());
}

// ------------------------------------------------------- the Huawei APIs (fake)

async fn with_api(sign_as: SignAs) -> (FakeHuaweiApi, Huawei, Arc<ManualClock>) {
    let fake = FakeHuaweiApi::start(key().clone(), sign_as).await;
    let mut c = config();
    c.api = Some(fake.api_config());
    let clock = clock();
    let h = Huawei::new(c, clock.clone()).unwrap();
    (fake, h, clock)
}

#[tokio::test]
async fn the_subscription_api_answer_is_the_snapshot_and_the_token_is_cached() {
    // GIVEN the API knows the subscription was renewed meanwhile (a later period)
    let (fake, h, clock) = with_api(SignAs::Pss).await;
    let mut current = receipt("pro.monthly", PERIOD_END, PERIOD_END + 30 * DAY);
    current["orderId"] = json!("order-current");
    fake.set_subscription(current);
    // WHEN an older RENEWAL_STOPPED arrives (its receipt: the period ending at PERIOD_END)
    let e = one(
        &h,
        &key().v2_body(
            &status_update(7, Some(&renewal_receipt())),
            SignAs::Pkcs1,
            NOW,
        ),
    )
    .await;
    // THEN the snapshot is the API's, the type the notification's
    assert_eq!(e.kind, EventType::SubscriptionRenewed);
    let s = e.subscription.as_ref().unwrap();
    assert_eq!(s.expires_at.unwrap().millis(), PERIOD_END + 30 * DAY);
    assert_eq!(e.transaction.as_ref().unwrap().id, "order-current");
    assert!(e.entitlement.active);
    // AND the API got what it documents
    let bodies = fake.bodies();
    assert_eq!(bodies[0]["subscriptionId"], SUBSCRIPTION_ID);
    assert_eq!(bodies[0]["purchaseToken"], PURCHASE_TOKEN);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());

    // WHEN a second notification arrives within the token's life
    one(
        &h,
        &key().v1_body(&status_update(6, Some(&renewal_receipt()))),
    )
    .await;
    // THEN the token was reused
    assert_eq!(fake.tokens_issued(), 1);
    // WHEN the token nears its expiry (3600 s, refreshed 300 s before)
    clock.advance(chrono::Duration::seconds(3301));
    one(
        &h,
        &key().v1_body(&status_update(0, Some(&renewal_receipt()))),
    )
    .await;
    // THEN a new one is fetched
    assert_eq!(fake.tokens_issued(), 2);
    // WHEN Huawei forgets the token early (401): renewed once and the call repeated
    fake.revoke_token();
    one(
        &h,
        &key().v1_body(&status_update(3, Some(&renewal_receipt()))),
    )
    .await;
    assert_eq!(fake.tokens_issued(), 3);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn apptouch_subscriptions_are_queried_on_the_apptouch_site() {
    let (fake, h, _) = with_api(SignAs::Pkcs1).await;
    let mut r = renewal_receipt();
    r["accountFlag"] = json!(1);
    fake.set_subscription(r.clone());
    let e = one(&h, &key().v1_body(&status_update(7, Some(&r)))).await;
    assert_eq!(e.kind, EventType::SubscriptionRenewed);
    assert_eq!(fake.api_calls(), 1);
}

#[tokio::test]
async fn api_failures_are_503_so_huawei_resends_and_nothing_is_queued() {
    let body = key().v2_body(
        &status_update(7, Some(&renewal_receipt())),
        SignAs::Pkcs1,
        NOW,
    );
    let cases: Vec<(&str, Option<FakeReply>, Option<Value>, &str)> = vec![
        (
            "HTTP 500",
            Some(FakeReply::Status(500)),
            Some(renewal_receipt()),
            "store_api_unavailable",
        ),
        (
            "responseCode 6",
            Some(FakeReply::Json(
                json!({"responseCode": "6", "responseMessage": "token invalid"}),
            )),
            Some(renewal_receipt()),
            "store_api_refused",
        ),
        (
            "answer without receipt",
            Some(FakeReply::Json(json!({"responseCode": "0"}))),
            Some(renewal_receipt()),
            "store_api_malformed",
        ),
        (
            "receipt not signed by the IAP key",
            Some(FakeReply::Json(stranger().api_answer(
                "inappPurchaseData",
                &renewal_receipt(),
                SignAs::Pkcs1,
            ))),
            None,
            "store_api_invalid_signature",
        ),
        (
            "receipt of another subscription",
            None,
            Some({
                let mut r = renewal_receipt();
                r["subscriptionId"] = json!("other");
                r
            }),
            "store_api_mismatch",
        ),
        (
            "receipt of another app",
            None,
            Some({
                let mut r = renewal_receipt();
                r["applicationId"] = json!(109_999_999);
                r
            }),
            "store_api_mismatch",
        ),
    ];
    for (name, reply, receipt, code) in cases {
        let (fake, h, _) = with_api(SignAs::Pkcs1).await;
        if let Some(r) = receipt {
            fake.set_subscription(r);
        }
        if let Some(reply) = reply {
            fake.push(reply);
        }
        let (ingest, queue) = ingest_for(h);
        let resp = ingest.handle(post(body.clone())).await;
        assert_eq!(resp.status, 503, "{name}: {}", resp.body);
        let v: Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(v["error"]["code"], code, "{name}");
        assert!(!resp.body.contains(PURCHASE_TOKEN), "{name}");
        assert!(queue.sent().is_empty(), "{name}");
    }
    // an unreachable API is 503 too
    let mut c = config();
    c.api = Some(
        storehook_shared::stores::huawei::api::ApiConfig::new("1", "s")
            .with_base_url("http://127.0.0.1:9"),
    );
    let (ingest, queue) = ingest_for(Huawei::new(c, clock()).unwrap());
    let resp = ingest.handle(post(body)).await;
    assert_eq!(resp.status, 503);
    assert!(resp.body.contains("store_api_unavailable"));
    assert!(queue.sent().is_empty());
}

#[tokio::test]
async fn order_notifications_are_confirmed_with_the_order_api() {
    let (fake, h, _) = with_api(SignAs::Pss).await;
    let (ingest, queue) = ingest_for(Huawei::new(h.config().clone(), clock()).unwrap());
    // GIVEN a paid consumable
    fake.set_order(order_receipt("coins.100", 0, NOW - 60_000, 0));
    // WHEN its ORDER notification arrives
    let e = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "coins.100", NOW)).await;
    // THEN ONE_TIME_PURCHASE with the API's signed facts
    assert_eq!(e.kind, EventType::OneTimePurchase);
    assert_eq!(e.store_notification.kind, "ORDER");
    assert_eq!(
        e.store_notification.subtype.as_deref(),
        Some("PAYMENT_SUCCESS")
    );
    assert_eq!(e.product.as_ref().unwrap().kind, ProductKind::Consumable);
    assert!(e.subscription.is_none());
    assert!(!e.entitlement.active, "a consumable grants nothing lasting");
    assert_eq!(e.app_id, APP_ID);
    assert_eq!(e.app_user_id.as_deref(), Some("user-42"));
    let t = e.transaction.as_ref().unwrap();
    assert_eq!(t.id, format!("order-{}", NOW - 60_000));
    assert_eq!(t.price.as_ref().unwrap().amount_micros, 1_990_000);
    assert_eq!(
        e.occurred_at.millis(),
        NOW - 60_000,
        "the receipt's purchaseTime"
    );
    assert_eq!(fake.bodies()[0]["productId"], "coins.100");
    assert_eq!(fake.bodies()[0]["purchaseToken"], PURCHASE_TOKEN);

    // a non-consumable is entitled; its refund revokes and shares the purchase's group
    fake.set_order(order_receipt("premium", 1, NOW - DAY, 0));
    let bought = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", NOW)).await;
    assert!(bought.entitlement.active);
    let mut refunded = order_receipt("premium", 1, NOW - DAY, 2);
    refunded["cancelTime"] = json!(NOW - 1000);
    refunded["cancelReason"] = json!(1);
    fake.set_order(refunded);
    let refund = one(&h, &v2_order_body(2, PURCHASE_TOKEN, "premium", NOW)).await;
    assert_eq!(refund.kind, EventType::OneTimePurchaseRefunded);
    assert!(!refund.entitlement.active);
    let r = refund.details.refund.as_ref().unwrap();
    assert_eq!(r.refunded_at.unwrap().millis(), NOW - 1000);
    assert_eq!(r.days_since_purchase, Some(0));
    assert_eq!(r.reason.as_deref(), Some("APP_ISSUE"));
    assert_eq!(refund.details.suspicious_refund, Some(false));
    assert_eq!(bought.group_key(), refund.group_key());
    assert_ne!(bought.id, refund.id);

    // an order type storehook does not know: the confirmed receipt still decides
    let e = one(&h, &v2_order_body(7, PURCHASE_TOKEN, "premium", NOW)).await;
    assert_eq!(e.kind, EventType::OneTimePurchaseRefunded);
    assert_eq!(
        e.store_notification.subtype.as_deref(),
        Some("REFUND_SUCCESS")
    );
    assert_eq!(e.id, refund.id);

    // the same notification resent: the same id
    let again = one(&h, &v2_order_body(2, PURCHASE_TOKEN, "premium", NOW + 5000)).await;
    assert_eq!(again.id, refund.id);

    // through Ingest: 200 + Huawei's body, queued
    let resp = ingest
        .handle(post(v2_order_body(2, PURCHASE_TOKEN, "premium", NOW)))
        .await;
    assert_eq!((resp.status, resp.body.as_str()), (200, SUCCESS_BODY));
    assert_eq!(queue.sent().len(), 1);

    // the API's receipt must be for the notified product and signed by the IAP key
    fake.set_order(order_receipt("coins.500", 0, NOW, 0));
    assert_eq!(
        rejected(&h, &v2_order_body(1, PURCHASE_TOKEN, "coins.100", NOW)).await,
        (503, "store_api_mismatch")
    );
    fake.push(FakeReply::Json(stranger().api_answer(
        "purchaseTokenData",
        &order_receipt("coins.100", 0, NOW, 0),
        SignAs::Pkcs1,
    )));
    assert_eq!(
        rejected(&h, &v2_order_body(1, PURCHASE_TOKEN, "coins.100", NOW)).await,
        (503, "store_api_invalid_signature")
    );
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

// ------------------------------------------- only authenticated data decides

/// 2100-01-01T00:00:00Z: the `notifyTime` of a forged copy.
const YEAR_2100: i64 = 4_102_444_800_000;

/// A legacy body around an already built signed text, validly signed.
fn v1_signed(text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "statusUpdateNotification": text,
        "notifycationSignature": key().sign(SignAs::Pkcs1, text),
    }))
    .unwrap()
}

/// Through `Ingest`: (status, code, message); nothing may be queued.
async fn refused_by_ingest(h: Huawei, body: Vec<u8>) -> (u16, String, String) {
    let (ingest, queue) = ingest_for(h);
    let resp = ingest.handle(post(body)).await;
    assert!(queue.sent().is_empty(), "nothing is queued on a refusal");
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    (
        resp.status,
        v["error"]["code"].as_str().unwrap().to_owned(),
        v["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_unsigned_notify_time_never_becomes_occurred_at_nor_changes_the_event() {
    let h = endpoint();
    for ntype in [0, 1, 5, 7] {
        // GIVEN one signed notification, posted with honest, future and past notifyTimes
        let r = renewal_receipt();
        let n = status_update(ntype, (ntype != 1).then_some(&r));
        let honest = one(&h, &key().v2_body(&n, SignAs::Pkcs1, NOW - 1000)).await;
        for forged in [YEAR_2100, 0] {
            let e = one(&h, &key().v2_body(&n, SignAs::Pkcs1, forged)).await;
            // THEN nothing but raw could differ: same id, time, snapshot, entitlement
            assert_eq!(e.id, honest.id, "type {ntype}");
            assert_eq!(e.occurred_at, honest.occurred_at, "type {ntype}");
            assert_eq!(e.subscription, honest.subscription, "type {ntype}");
            assert_eq!(e.entitlement, honest.entitlement, "type {ntype}");
        }
        assert!(honest.occurred_at.millis() <= NOW, "type {ntype}");
    }
    // a CANCEL's signed cancellationDate is its time, whatever notifyTime says
    let mut cancel = status_update(1, None);
    cancel["cancellationDate"] = json!(NOW - 5000);
    let e = one(&h, &key().v2_body(&cancel, SignAs::Pkcs1, YEAR_2100)).await;
    assert_eq!(e.occurred_at.millis(), NOW - 5000);

    // with the subscription API, the snapshot is the state when storehook asked
    let (fake, h, _) = with_api(SignAs::Pkcs1).await;
    fake.set_subscription(renewal_receipt());
    let n = status_update(5, Some(&renewal_receipt()));
    let e = one(&h, &key().v2_body(&n, SignAs::Pkcs1, YEAR_2100)).await;
    assert_eq!(e.occurred_at.millis(), NOW);
    assert!(e.entitlement.active);
}

#[tokio::test]
async fn a_renewal_received_after_its_period_is_timed_by_its_receipt_and_judged_at_reception() {
    // GIVEN a RENEWAL_RECURRING for the period T0..T0+30d, received at T0+40d
    let late = receipt("pro.monthly", T0, T0 + 30 * DAY);
    let n = status_update(7, Some(&late));
    let e = one(&endpoint(), &key().v2_body(&n, SignAs::Pkcs1, YEAR_2100)).await;
    // THEN it happened at its signed purchaseTime, and at reception it has expired
    assert_eq!(e.occurred_at.millis(), T0);
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Expired
    );
    assert!(!e.entitlement.active);
}

#[tokio::test]
async fn a_forged_late_order_cannot_outlive_the_genuine_refund() {
    use storehook_shared::state::{MemoryState, StateStore};
    let (fake, h, _) = with_api(SignAs::Pkcs1).await;
    let state = MemoryState::new();
    // GIVEN a bought non-consumable whose owner posts an (unsigned) ORDER dated 2100
    fake.set_order(order_receipt("premium", 1, NOW - DAY, 0));
    let forged = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", YEAR_2100)).await;
    assert_eq!(
        forged.occurred_at.millis(),
        NOW - DAY,
        "the receipt's purchaseTime"
    );
    let r1 = state.apply(forged, at(NOW)).await.unwrap();
    assert!(r1.event.entitlement.active);
    // WHEN Huawei's own refund notification arrives afterwards
    let mut refunded = order_receipt("premium", 1, NOW - DAY, 2);
    refunded["cancelTime"] = json!(NOW - 1000);
    fake.set_order(refunded);
    let genuine = one(&h, &v2_order_body(2, PURCHASE_TOKEN, "premium", NOW)).await;
    let r2 = state.apply(genuine, at(NOW)).await.unwrap();
    // THEN it is applied in order, ends the entitlement and revokes access
    assert!(r2.first_time);
    assert_eq!(r2.event.kind, EventType::OneTimePurchaseRefunded);
    assert_eq!(r2.event.details.out_of_order, None);
    assert_eq!(
        r2.event.occurred_at.millis(),
        NOW - 1000,
        "the receipt's cancelTime"
    );
    assert!(!r2.event.entitlement.active);
    assert_eq!(r2.derived.len(), 1);
    assert_eq!(r2.derived[0].kind, EventType::AccessRevoked);
    // AND another forged purchase ORDER afterwards is the confirmed refund again
    let again = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", YEAR_2100)).await;
    assert_eq!(again.kind, EventType::OneTimePurchaseRefunded);
    let r3 = state.apply(again, at(NOW)).await.unwrap();
    assert!(!r3.first_time);
    let g = state.group(&r2.event.group_key()).await.unwrap().unwrap();
    assert!(!g.entitlement.active);
}

#[tokio::test]
async fn an_order_notifications_type_comes_from_the_confirmed_receipt() {
    let (fake, h, _) = with_api(SignAs::Pss).await;
    // GIVEN a refunded non-consumable, an ORDER claiming a payment yields the refund
    let mut refunded = order_receipt("premium", 1, NOW - DAY, 2);
    refunded["cancelTime"] = json!(NOW - 1000);
    fake.set_order(refunded);
    let e = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", NOW)).await;
    assert_eq!(e.kind, EventType::OneTimePurchaseRefunded);
    assert_eq!(
        e.store_notification.subtype.as_deref(),
        Some("REFUND_SUCCESS")
    );
    assert!(!e.entitlement.active);
    assert!(e.details.refund.is_some());
    // a receipt canceled (purchaseState 1) is a refund too
    fake.set_order(order_receipt("premium", 1, NOW - DAY, 1));
    let e = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", NOW)).await;
    assert_eq!(e.kind, EventType::OneTimePurchaseRefunded);
    assert!(!e.entitlement.active);
    // and vice versa: a paid one, an ORDER claiming a refund yields the purchase
    fake.set_order(order_receipt("premium", 1, NOW - DAY, 0));
    let e = one(&h, &v2_order_body(2, PURCHASE_TOKEN, "premium", NOW)).await;
    assert_eq!(e.kind, EventType::OneTimePurchase);
    assert_eq!(
        e.store_notification.subtype.as_deref(),
        Some("PAYMENT_SUCCESS")
    );
    assert!(e.entitlement.active);
    assert!(e.details.refund.is_none());
    // a receipt not paid (purchaseState -1) can neither grant nor revoke
    fake.set_order(order_receipt("premium", 1, NOW - DAY, -1));
    let e = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", NOW)).await;
    assert_eq!(e.kind, EventType::StoreNotification);
    assert_eq!(
        e.store_notification.subtype.as_deref(),
        Some("PURCHASE_STATE_-1")
    );
    assert!(!e.entitlement.active);
    assert!(e.transaction.is_none());
    assert_eq!(e.occurred_at.millis(), NOW);
    // the receipt must be for the notified token
    let mut other = order_receipt("premium", 1, NOW - DAY, 0);
    other["purchaseToken"] = json!("another-token");
    fake.set_order(other);
    assert_eq!(
        rejected(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", NOW)).await,
        (503, "store_api_mismatch")
    );
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn order_event_ids_come_from_confirmed_fields_only() {
    use storehook_shared::state::{MemoryState, StateStore};
    let (fake, h, _) = with_api(SignAs::Pkcs1).await;
    let state = MemoryState::new();
    fake.set_order(order_receipt("premium", 1, NOW - DAY, 0));
    // GIVEN an attacker's early copy (notifyTime 2100, another notificationType)
    let early = one(&h, &v2_order_body(2, PURCHASE_TOKEN, "premium", YEAR_2100)).await;
    // AND Huawei's own notification of the same purchase
    let genuine = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", NOW)).await;
    // THEN identical authenticated content has one id and one content
    assert_eq!(early.id, genuine.id);
    assert_eq!(early.store_notification, genuine.store_notification);
    assert_eq!(early.kind, genuine.kind);
    assert_eq!(early.occurred_at, genuine.occurred_at);
    assert_eq!(early.entitlement, genuine.entitlement);
    assert_eq!(early.transaction, genuine.transaction);
    // so the early copy taking the id first delivers exactly the genuine facts
    let first = state.apply(early, at(NOW)).await.unwrap();
    let dup = state.apply(genuine.clone(), at(NOW)).await.unwrap();
    assert!(first.first_time && !dup.first_time);
    assert_eq!(dup.event.kind, genuine.kind);
    assert_eq!(dup.event.occurred_at, genuine.occurred_at);
    assert_eq!(dup.event.entitlement, genuine.entitlement);
    // AND the genuine refund later is another id: never a duplicate of the copy
    fake.set_order(order_receipt("premium", 1, NOW - DAY, 2));
    let refund = one(&h, &v2_order_body(2, PURCHASE_TOKEN, "premium", NOW)).await;
    assert_ne!(refund.id, genuine.id);
    let r = state.apply(refund, at(NOW)).await.unwrap();
    assert!(r.first_time);
    assert!(!r.event.entitlement.active);
    // another purchase (another orderId) of the same product: another id
    let mut rebought = order_receipt("premium", 1, NOW, 0);
    rebought["orderId"] = json!("order-second");
    fake.set_order(rebought);
    let second = one(&h, &v2_order_body(1, PURCHASE_TOKEN, "premium", NOW)).await;
    assert_ne!(second.id, genuine.id);
}

#[tokio::test]
async fn signed_content_that_is_not_a_notification_is_refused() {
    let (fake, h_api, _) = with_api(SignAs::Pkcs1).await;
    fake.set_subscription(renewal_receipt());
    // GIVEN the app's client-side purchase data, signed by the same IAP key
    let purchase_data = renewal_receipt();
    let mut with_type = purchase_data.clone();
    with_type["notificationType"] = json!(7);
    let mut no_type = status_update(7, Some(&renewal_receipt()));
    no_type.as_object_mut().unwrap().remove("notificationType");
    let mut text_type = status_update(7, Some(&renewal_receipt()));
    text_type["notificationType"] = json!("RENEWAL_RECURRING");
    let cases = [
        ("purchase data, v1", key().v1_body(&purchase_data)),
        (
            "purchase data, v2 dated 2100",
            key().v2_body(&purchase_data, SignAs::Pkcs1, YEAR_2100),
        ),
        (
            "purchase data + notificationType",
            key().v1_body(&with_type),
        ),
        ("no notificationType", key().v1_body(&no_type)),
        ("notificationType not an integer", key().v1_body(&text_type)),
        ("empty object", key().v1_body(&json!({}))),
    ];
    for (what, body) in cases {
        for (api, h) in [
            (false, endpoint()),
            (true, Huawei::new(h_api.config().clone(), clock()).unwrap()),
        ] {
            // WHEN it is posted as a notification
            let (status, code, message) = refused_by_ingest(h, body.clone()).await;
            // THEN it is refused, and nothing was asked from Huawei
            assert_eq!(
                (status, code.as_str()),
                (400, "malformed_notification"),
                "{what} api={api}"
            );
            assert!(message.contains("not a notification"), "{what}: {message}");
            assert!(!message.contains(PURCHASE_TOKEN));
        }
    }
    assert_eq!(fake.api_calls(), 0);
    // the genuine notification (numeric string type included) is accepted
    let mut numeric_text = status_update(7, Some(&renewal_receipt()));
    numeric_text["notificationType"] = json!("7");
    let e = one(&endpoint(), &key().v1_body(&numeric_text)).await;
    assert_eq!(e.kind, EventType::SubscriptionRenewed);
}

#[tokio::test]
async fn repeated_keys_in_signed_json_are_refused() {
    let n = status_update(7, Some(&renewal_receipt()));
    let text = n.to_string();
    // control: the same bytes without a repeated key are accepted
    let e = one(&endpoint(), &v1_signed(&text)).await;
    assert_eq!(e.product.as_ref().unwrap().id, "pro.monthly");

    let receipt_text = renewal_receipt().to_string();
    let dup_receipt = receipt_text.replacen('{', r#"{"productId":"pro.yearly","#, 1);
    let mut in_receipt = n.clone();
    in_receipt["latestReceiptInfo"] = json!(dup_receipt);
    let mut in_expired = n.clone();
    in_expired
        .as_object_mut()
        .unwrap()
        .remove("latestReceiptInfo");
    in_expired["latestExpiredReceiptInfo"] = json!(dup_receipt);
    let mut in_expired_too = n.clone();
    in_expired_too["latestExpiredReceiptInfo"] = json!(dup_receipt);
    let nested = renewal_receipt()
        .to_string()
        .replacen('{', r#"{"appInfo":{"a":1,"a":2},"#, 1);
    let mut in_nested = n.clone();
    in_nested["latestReceiptInfo"] = json!(nested);
    let cases = [
        (
            "two productId keys",
            text.replacen('{', r#"{"productId":"pro.yearly","#, 1),
        ),
        (
            "an escaped twin key",
            text.replacen('{', r#"{"product\u0049d":"pro.yearly","#, 1),
        ),
        ("inside latestReceiptInfo", in_receipt.to_string()),
        ("inside latestExpiredReceiptInfo", in_expired.to_string()),
        (
            "inside the unused latestExpiredReceiptInfo",
            in_expired_too.to_string(),
        ),
        ("nested inside the receipt", in_nested.to_string()),
    ];
    for (what, signed) in cases {
        // GIVEN validly signed content with a repeated key: only the repeat can refuse it
        let (status, code, message) = refused_by_ingest(endpoint(), v1_signed(&signed)).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "malformed_notification"),
            "{what}"
        );
        assert!(
            message.contains("duplicate object key"),
            "{what}: {message}"
        );
    }
    // the unsigned outer body is read strictly too
    let body = String::from_utf8(key().v2_body(&n, SignAs::Pkcs1, NOW)).unwrap();
    let dup_outer = body.replacen('{', r#"{"notifyTime":1,"#, 1);
    let (status, code, _) = refused_by_ingest(endpoint(), dup_outer.into_bytes()).await;
    assert_eq!((status, code.as_str()), (400, "malformed_body"));

    // an API receipt with a repeated key, validly signed: refused (Huawei resends)
    let (fake, h, _) = with_api(SignAs::Pkcs1).await;
    let data = renewal_receipt()
        .to_string()
        .replacen('{', r#"{"subIsvalid":false,"#, 1);
    fake.push(FakeReply::Json(json!({
        "responseCode": "0",
        "responseMessage": "success",
        "inappPurchaseData": data,
        "dataSignature": key().sign(SignAs::Pkcs1, &data),
        "signatureAlgorithm": "SHA256WithRSA",
    })));
    assert_eq!(
        rejected(&h, &v1_signed(&text)).await,
        (503, "store_api_malformed")
    );
    // control: the same answer without the repeat is the snapshot
    fake.set_subscription(renewal_receipt());
    assert!(one(&h, &v1_signed(&text)).await.entitlement.active);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

// ------------------------------------------------------- committed sample event

const SAMPLES: [(&str, &str); 2] = [
    ("huawei-v2-renewal-recurring.json", "RENEWAL_RECURRING"),
    ("huawei-v1-initial-buy.json", "INITIAL_BUY"),
];

fn repo_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// `STOREHOOK_BLESS=1 cargo test -p storehook-shared --lib stores::huawei::tests::committed_samples`
/// regenerates the key and the samples (with a new key: commit them together).
#[tokio::test]
async fn committed_samples_verify_with_the_committed_key() {
    if std::env::var_os("STOREHOOK_BLESS").is_some() {
        bless_samples();
    }
    let pk = std::fs::read_to_string(repo_path("tests/fixtures/huawei/public_key.txt")).unwrap();
    let c = huawei_config(
        &map(&[("HUAWEI_APP_IDS", APP_ID), ("HUAWEI_PUBLIC_KEY", pk.trim())]),
        true,
    )
    .unwrap();
    for (file, name) in SAMPLES {
        let text = std::fs::read_to_string(repo_path(&format!("events/{file}"))).unwrap();
        let req = lambda_http::request::from_str(&text).unwrap();
        let (ingest, queue) = ingest_for(Huawei::new(c.clone(), clock()).unwrap());
        let resp = ingest.lambda(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let sent = queue.sent();
        assert_eq!(sent.len(), 1, "{file}");
        let e: Event = serde_json::from_str(&sent[0].body).unwrap();
        assert_eq!(e.store_notification.kind, name, "{file}");
    }
}

fn bless_samples() {
    let k = HuaweiTestKey::generate();
    std::fs::create_dir_all(repo_path("tests/fixtures/huawei")).unwrap();
    std::fs::write(
        repo_path("tests/fixtures/huawei/public_key.txt"),
        format!("{}\n", k.public_key_base64()),
    )
    .unwrap();
    let start = T0 + 30 * DAY;
    let r = receipt("pro.monthly", start, start + 30 * DAY);
    let bodies = [
        key_body_v2(&k, &status_update(7, Some(&r)), start + 1000),
        k.v1_body(&status_update(
            0,
            Some(&receipt("pro.monthly", T0, T0 + 30 * DAY)),
        )),
    ];
    for ((file, _), body) in SAMPLES.iter().zip(bodies) {
        let event = json!({
            "version": "2.0",
            "routeKey": "POST /huawei",
            "rawPath": "/huawei",
            "rawQueryString": "",
            "headers": {
                "content-type": "application/json; charset=UTF-8",
                "host": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
                "user-agent": "Huawei-IAP-Notification"
            },
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abcdef1234",
                "domainName": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
                "domainPrefix": "abcdef1234",
                "http": {"method": "POST", "path": "/huawei", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "Huawei-IAP-Notification"},
                "requestId": "huawei-sample",
                "routeKey": "POST /huawei",
                "stage": "$default",
                "time": "31/Mar/2025:00:00:01 +0000",
                "timeEpoch": start + 1000
            },
            "body": String::from_utf8(body).unwrap(),
            "isBase64Encoded": false
        });
        std::fs::write(
            repo_path(&format!("events/{file}")),
            serde_json::to_string_pretty(&event).unwrap() + "\n",
        )
        .unwrap();
    }
}

fn key_body_v2(k: &HuaweiTestKey, status: &Value, notify_time: i64) -> Vec<u8> {
    k.v2_body(status, SignAs::Pkcs1, notify_time)
}

// ------------------------------------------------------- the sweeper's Huawei source

mod sweeper {
    use super::*;
    use storehook_shared::event::Timestamp;
    use storehook_shared::state::{GroupState, transition};
    use storehook_shared::stores::huawei::sweep::HuaweiStatusSource;
    use storehook_shared::stores::playstore::links::{LinkStore, MemoryLinkStore};
    use storehook_shared::sweep::{SourceError, StatusSource};

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    struct Setup {
        fake: FakeHuaweiApi,
        huawei: Arc<Huawei>,
        tokens: Arc<MemoryLinkStore>,
        group: String,
        state: GroupState,
    }

    /// A subscription bought through a verified INITIAL_BUY (period
    /// PERIOD_START..PERIOD_END), its token recorded, its state applied.
    async fn bought() -> Setup {
        let fake = FakeHuaweiApi::start(key().clone(), SignAs::Pkcs1).await;
        fake.set_subscription(renewal_receipt());
        let mut c = config();
        c.api = Some(fake.api_config());
        let tokens = Arc::new(MemoryLinkStore::new());
        let huawei = Huawei::new(c, clock())
            .unwrap()
            .with_token_store(tokens.clone());
        let e = one(
            &huawei,
            &key().v1_body(&status_update(0, Some(&renewal_receipt()))),
        )
        .await;
        let group = e.group_key();
        let state = {
            let at = e.received_at;
            transition(None, e, at).next
        };
        Setup {
            fake,
            huawei: Arc::new(huawei),
            tokens,
            group,
            state,
        }
    }

    fn source(s: &Setup) -> HuaweiStatusSource {
        let tokens: Arc<dyn LinkStore> = s.tokens.clone();
        HuaweiStatusSource::new(s.huawei.clone(), tokens).unwrap()
    }

    #[tokio::test]
    async fn a_lapsed_subscription_is_asked_about_and_its_signed_answer_decides() {
        let s = bought().await;
        let src = source(&s);
        let after = PERIOD_END + DAY;

        // renewed meanwhile (Huawei's notification lost): SUBSCRIPTION_RENEWED
        s.fake
            .set_subscription(receipt("pro.monthly", PERIOD_END, PERIOD_END + 30 * DAY));
        let events = src.refresh(&s.group, &s.state, ts(after)).await.unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, EventType::SubscriptionRenewed);
        assert_eq!(e.group_key(), s.group);
        assert_eq!(e.occurred_at.millis(), PERIOD_END);
        assert_eq!(e.received_at.millis(), after);
        assert_eq!(e.details.source.as_deref(), Some("sweeper"));
        assert_eq!(
            e.subscription
                .as_ref()
                .unwrap()
                .expires_at
                .unwrap()
                .millis(),
            PERIOD_END + 30 * DAY
        );
        assert!(e.entitlement.active);
        // the same answer twice is the same event
        let again = src
            .refresh(&s.group, &s.state, ts(after + 1000))
            .await
            .unwrap();
        assert_eq!(again[0].id, e.id);
        // once applied, nothing new
        let renewed = transition(Some(&s.state), e.clone(), e.received_at).next;
        assert!(
            src.refresh(&s.group, &renewed, ts(after))
                .await
                .unwrap()
                .is_empty()
        );
        // the API got the recorded token and the subscription id
        let bodies = s.fake.bodies();
        let last = bodies.last().unwrap();
        assert_eq!(last["purchaseToken"], PURCHASE_TOKEN);
        assert_eq!(last["subscriptionId"], SUBSCRIPTION_ID);
        assert!(s.fake.problems().is_empty(), "{:?}", s.fake.problems());

        // grace, then account hold, then expired
        let mut grace = renewal_receipt();
        grace["graceExpirationTime"] = json!(PERIOD_END + 3 * DAY);
        s.fake.set_subscription(grace);
        let e = &src.refresh(&s.group, &s.state, ts(after)).await.unwrap()[0];
        assert_eq!(e.kind, EventType::GracePeriodStarted);
        assert_eq!(e.occurred_at.millis(), PERIOD_END);
        let in_grace = transition(Some(&s.state), e.clone(), e.received_at).next;

        let mut hold = renewal_receipt();
        hold["retryFlag"] = json!(1);
        hold["graceExpirationTime"] = json!(PERIOD_END + 3 * DAY);
        s.fake.set_subscription(hold);
        let later = PERIOD_END + 5 * DAY;
        let e = &src.refresh(&s.group, &in_grace, ts(later)).await.unwrap()[0];
        assert_eq!(e.kind, EventType::BillingRetryStarted);
        assert_eq!(e.occurred_at.millis(), PERIOD_END + 3 * DAY);
        let on_hold = transition(Some(&in_grace), e.clone(), e.received_at).next;

        let mut expired = renewal_receipt();
        expired["subIsvalid"] = json!(false);
        s.fake.set_subscription(expired);
        let e = &src
            .refresh(&s.group, &on_hold, ts(later + DAY))
            .await
            .unwrap()[0];
        assert_eq!(e.kind, EventType::SubscriptionExpired);
        assert!(
            e.occurred_at.millis() > PERIOD_END + 3 * DAY,
            "after the last applied event"
        );
        assert!(!e.entitlement.active);
        let closed = transition(Some(&on_hold), e.clone(), e.received_at).next;
        assert_eq!(
            closed.subscription.as_ref().unwrap().status,
            SubscriptionStatus::Expired
        );
        assert!(
            src.refresh(&s.group, &closed, ts(later + DAY))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_answer_not_signed_by_the_iap_key_is_refused() {
        // GIVEN a subscription, then Huawei's API answering with a receipt signed by another key
        let s = bought().await;
        let forger = FakeHuaweiApi::start(stranger().clone(), SignAs::Pkcs1).await;
        forger.set_subscription(receipt("pro.monthly", PERIOD_END, PERIOD_END + 30 * DAY));
        let mut c = config();
        c.api = Some(forger.api_config());
        let tokens: Arc<dyn LinkStore> = s.tokens.clone();
        let src =
            HuaweiStatusSource::new(Arc::new(Huawei::new(c, clock()).unwrap()), tokens).unwrap();
        // THEN the answer is refused, no event
        let err = src
            .refresh(&s.group, &s.state, ts(PERIOD_END + DAY))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Refused(_)), "{err}");
        assert!(!err.to_string().contains(PURCHASE_TOKEN));
    }

    #[tokio::test]
    async fn failures_and_missing_tokens_and_credentials() {
        let s = bought().await;
        let src = source(&s);
        // HTTP 500: ask again later
        s.fake.push(FakeReply::Status(500));
        let err = src
            .refresh(&s.group, &s.state, ts(PERIOD_END + DAY))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Unavailable(_)), "{err}");
        // responseCode other than 0: refused
        s.fake.push(FakeReply::Json(
            json!({"responseCode": "6", "responseMessage": "not found"}),
        ));
        let err = src
            .refresh(&s.group, &s.state, ts(PERIOD_END + DAY))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Refused(_)), "{err}");
        // no token recorded for the group
        let empty: Arc<dyn LinkStore> = Arc::new(MemoryLinkStore::new());
        let blind = HuaweiStatusSource::new(s.huawei.clone(), empty).unwrap();
        let err = blind
            .refresh(&s.group, &s.state, ts(PERIOD_END + DAY))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Refused(_)), "{err}");
        // without API credentials: no source
        let tokens: Arc<dyn LinkStore> = s.tokens.clone();
        assert!(HuaweiStatusSource::new(Arc::new(endpoint()), tokens.clone()).is_none());
        let settings: HashMap<String, String> = HashMap::from([
            ("HUAWEI_APP_IDS".to_owned(), APP_ID.to_owned()),
            ("HUAWEI_PUBLIC_KEY".to_owned(), key().public_key_base64()),
        ]);
        assert!(
            HuaweiStatusSource::from_settings(&|k: &str| settings.get(k).cloned(), tokens, clock())
                .unwrap()
                .is_none()
        );
    }
}
