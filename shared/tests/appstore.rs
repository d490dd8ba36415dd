//! App Store verification and translation tests: real Apple notifications,
//! a generated PKI signing every type/subtype, and the negative matrix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::sync::Arc;
use storehook_shared::clock::ManualClock;
use storehook_shared::event::{
    ChangeDirection, ChangeEffective, EventType, OfferType, PeriodType, ProductKind, RefundKind,
    SubscriptionStatus,
};
use storehook_shared::ingest::{Ingest, StoreEndpoint, StoreRequest};
use storehook_shared::queue::MemoryQueue;
use storehook_shared::stores::appstore::*;
use storehook_testkit::appstore::{Curve, PkiOptions, TestPki, payloads::*};

const NOW: i64 = T0 + 400 * DAY;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/appstore/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fixture_names() -> Vec<String> {
    let dir = format!("{}/../tests/fixtures/appstore", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// An endpoint that trusts only Apple's bundled root, accepting any app.
fn apple_endpoint() -> Arc<AppStore> {
    Arc::new(AppStore::new(AppStoreConfig::default()).unwrap())
}

fn endpoint_for(
    pki: &TestPki,
    bundle: Option<&str>,
    app_id: Option<i64>,
    envs: &[AppleEnvironment],
) -> Arc<AppStore> {
    Arc::new(
        AppStore::new(AppStoreConfig {
            bundle_id: bundle.map(str::to_owned),
            app_apple_id: app_id,
            environments: envs.to_vec(),
            extra_roots: vec![pki.root_der.clone()],
            ..AppStoreConfig::default()
        })
        .unwrap(),
    )
}

fn strict(pki: &TestPki) -> Arc<AppStore> {
    endpoint_for(
        pki,
        Some(BUNDLE_ID),
        Some(APP_APPLE_ID),
        &[AppleEnvironment::Production, AppleEnvironment::Sandbox],
    )
}

fn body_of(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&v["body"]).unwrap()
}

// ---------------------------------------------------------------- real Apple

#[test]
fn real_apple_notifications_verify_against_the_bundled_root_and_translate() {
    // GIVEN the real sandbox notifications captured from public sources
    let endpoint = apple_endpoint();
    let expected_types = [
        ("apple_001_DID_RENEW.json", EventType::SubscriptionRenewed),
        ("apple_002_TEST.json", EventType::Test),
        (
            "apple_009_EXPIRED_VOLUNTARY.json",
            EventType::SubscriptionExpired,
        ),
        (
            "apple_010_SUBSCRIBED_RESUBSCRIBE.json",
            EventType::SubscriptionResubscribed,
        ),
        (
            "apple_052_DID_CHANGE_RENEWAL_STATUS_AUTO_RENEW_DISABLED.json",
            EventType::RenewalDisabled,
        ),
        (
            "apple_061_DID_CHANGE_RENEWAL_PREF_UPGRADE.json",
            EventType::ProductChanged,
        ),
        (
            "apple_122_CONSUMPTION_REQUEST.json",
            EventType::RefundRequested,
        ),
        ("apple_123_REFUND.json", EventType::OneTimePurchaseRefunded),
    ];
    assert_eq!(
        fixture_names().len(),
        expected_types.len(),
        "a fixture without an expectation"
    );
    for (name, want) in expected_types {
        let f = fixture(name);
        let expect = &f["expect"];
        // WHEN verified (at their signedDate: the leaves have since expired) and translated
        let events = endpoint
            .process(&body_of(&f), NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // THEN they carry the types events.md gives and the facts Apple signed
        assert_eq!(events.len(), 1, "{name}");
        let e = &events[0];
        assert_eq!(e.kind, want, "{name}");
        assert_eq!(
            e.store_notification.kind,
            expect["notificationType"].as_str().unwrap()
        );
        assert_eq!(
            e.store_notification.subtype.as_deref(),
            expect["subtype"].as_str()
        );
        assert_eq!(
            e.store_notification.id,
            expect["notificationUUID"].as_str().unwrap()
        );
        assert_eq!(e.app_id, expect["bundleId"].as_str().unwrap());
        assert_eq!(e.environment, storehook_shared::event::Environment::Sandbox);
        assert_eq!(
            e.occurred_at.millis(),
            expect["signedDate"].as_i64().unwrap()
        );
        assert_eq!(e.received_at.millis(), NOW);
        if let Some(product) = expect["productId"].as_str() {
            assert_eq!(e.product.as_ref().unwrap().id, product, "{name}");
            let tx = e.transaction.as_ref().unwrap();
            assert_eq!(tx.id, expect["transactionId"].as_str().unwrap());
            let price = tx.price.as_ref().unwrap();
            assert_eq!(
                price.amount_micros,
                expect["price"].as_i64().unwrap() * 1000
            );
            assert_eq!(price.currency, expect["currency"].as_str().unwrap());
        }
        if expect["transactionType"] == "Auto-Renewable Subscription" {
            let s = e.subscription.as_ref().unwrap();
            assert_eq!(
                s.store_subscription_id,
                expect["originalTransactionId"].as_str().unwrap()
            );
            assert_eq!(
                s.expires_at.unwrap().millis(),
                expect["expiresDate"].as_i64().unwrap()
            );
            assert_eq!(s.auto_renew, expect["autoRenewStatus"] == 1, "{name}");
            assert_eq!(s.country.as_deref(), Some("CA"));
            assert_eq!(
                s.renewal_product_id.as_deref(),
                expect["autoRenewProductId"].as_str()
            );
        } else {
            assert!(e.subscription.is_none(), "{name}");
        }
    }
}

#[test]
fn real_apple_snapshots_match_the_signed_status() {
    let endpoint = apple_endpoint();
    let one = |name: &str| {
        endpoint
            .process(&body_of(&fixture(name)), NOW)
            .unwrap()
            .remove(0)
    };

    let renew = one("apple_001_DID_RENEW.json");
    let s = renew.subscription.as_ref().unwrap();
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert!(renew.entitlement.active);
    assert_eq!(renew.entitlement.expires_at, s.expires_at);

    let disabled = one("apple_052_DID_CHANGE_RENEWAL_STATUS_AUTO_RENEW_DISABLED.json");
    assert_eq!(
        disabled.subscription.as_ref().unwrap().status,
        SubscriptionStatus::CanceledActive
    );
    assert!(
        disabled.entitlement.active,
        "auto-renew off keeps access until expiry"
    );
    assert_eq!(disabled.details.reason.as_deref(), Some("USER"));

    let expired = one("apple_009_EXPIRED_VOLUNTARY.json");
    assert_eq!(
        expired.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Expired
    );
    assert!(!expired.entitlement.active);
    assert_eq!(expired.details.reason.as_deref(), Some("VOLUNTARY"));

    let upgrade = one("apple_061_DID_CHANGE_RENEWAL_PREF_UPGRADE.json");
    assert_eq!(upgrade.details.direction, Some(ChangeDirection::Upgrade));
    assert_eq!(upgrade.details.effective, Some(ChangeEffective::Immediate));
    assert_eq!(
        upgrade.details.to_product_id.as_deref(),
        Some("ca.geniusparentingai.basic.monthly")
    );

    let req = one("apple_122_CONSUMPTION_REQUEST.json");
    assert_eq!(req.details.reason.as_deref(), Some("UNINTENDED_PURCHASE"));
    assert_eq!(
        req.details.respond_by.unwrap().millis(),
        1_738_826_340_653 + 12 * 3_600_000
    );
    assert_eq!(req.product.as_ref().unwrap().kind, ProductKind::Consumable);

    let refund = one("apple_123_REFUND.json");
    let r = refund.details.refund.as_ref().unwrap();
    assert_eq!(r.kind, Some(RefundKind::Full));
    assert_eq!(r.reason.as_deref(), Some("OTHER"));
    assert_eq!(r.days_since_purchase, Some(0));
    assert_eq!(r.amount.as_ref().unwrap().amount_micros, 4_990_000);
    assert_eq!(
        refund.details.suspicious_refund,
        Some(false),
        "a consumable has no period"
    );
    assert!(!refund.entitlement.active);

    // All notifications of one subscription share its id; the event ids differ.
    let a = one("apple_001_DID_RENEW.json");
    let b = one("apple_010_SUBSCRIBED_RESUBSCRIBE.json");
    assert_eq!(
        a.subscription.as_ref().unwrap().id,
        b.subscription.as_ref().unwrap().id
    );
    assert_ne!(a.id, b.id);
    assert_eq!(a.group_key(), b.group_key());
}

#[test]
fn real_apple_notifications_are_refused_for_another_app_or_environment() {
    let f = fixture("apple_001_DID_RENEW.json");
    let wrong_bundle = AppStore::new(AppStoreConfig {
        bundle_id: Some("com.other".into()),
        ..AppStoreConfig::default()
    })
    .unwrap();
    assert_eq!(
        wrong_bundle
            .process(&body_of(&f), NOW)
            .unwrap_err()
            .rejection()
            .code,
        "wrong_app"
    );
    let prod_only = AppStore::new(AppStoreConfig {
        bundle_id: Some("GeniusParentingAI".into()),
        app_apple_id: Some(6_747_332_178),
        environments: vec![AppleEnvironment::Production],
        ..AppStoreConfig::default()
    })
    .unwrap();
    let err = prod_only
        .process(&body_of(&f), NOW)
        .unwrap_err()
        .rejection();
    assert_eq!((err.status, err.code), (403, "wrong_environment"));
}

#[test]
fn real_apple_notifications_do_not_verify_without_apples_root() {
    // GIVEN a verifier that trusts only a generated root
    let pki = TestPki::new();
    let v = verify::JwsVerifier::with_roots(std::slice::from_ref(&pki.root_der)).unwrap();
    let f = fixture("apple_002_TEST.json");
    let jws = f["body"]["signedPayload"].as_str().unwrap();
    let err = v
        .verify::<model::NotificationPayload>(jws, NOW)
        .unwrap_err();
    assert_eq!(err.code(), "untrusted_chain");
}

#[test]
fn warm_verification_uses_the_chain_cache() {
    let endpoint = apple_endpoint();
    assert_eq!(endpoint.verifier().cached_chains(), 0);
    let f = fixture("apple_001_DID_RENEW.json");
    endpoint.process(&body_of(&f), NOW).unwrap();
    // One leaf signs the notification and both nested JWS: one chain cached.
    assert_eq!(endpoint.verifier().cached_chains(), 1);
    endpoint
        .process(&body_of(&fixture("apple_009_EXPIRED_VOLUNTARY.json")), NOW)
        .unwrap();
    assert_eq!(endpoint.verifier().cached_chains(), 1);
}

// ------------------------------------------------------ generated PKI: types

struct Case {
    ntype: &'static str,
    subtype: Option<&'static str>,
    want: EventType,
}

const fn case(ntype: &'static str, subtype: Option<&'static str>, want: EventType) -> Case {
    Case {
        ntype,
        subtype,
        want,
    }
}

#[test]
fn every_notification_type_and_subtype_translates() {
    use EventType as T;
    let cases = [
        case("SUBSCRIBED", Some("INITIAL_BUY"), T::SubscriptionStarted),
        case(
            "SUBSCRIBED",
            Some("RESUBSCRIBE"),
            T::SubscriptionResubscribed,
        ),
        case("DID_RENEW", None, T::SubscriptionRenewed),
        case(
            "DID_RENEW",
            Some("BILLING_RECOVERY"),
            T::SubscriptionRecovered,
        ),
        case(
            "DID_CHANGE_RENEWAL_PREF",
            Some("UPGRADE"),
            T::ProductChanged,
        ),
        case(
            "DID_CHANGE_RENEWAL_PREF",
            Some("DOWNGRADE"),
            T::ProductChanged,
        ),
        case("DID_CHANGE_RENEWAL_PREF", None, T::ProductChanged),
        case(
            "DID_CHANGE_RENEWAL_STATUS",
            Some("AUTO_RENEW_ENABLED"),
            T::RenewalEnabled,
        ),
        case(
            "DID_CHANGE_RENEWAL_STATUS",
            Some("AUTO_RENEW_DISABLED"),
            T::RenewalDisabled,
        ),
        case(
            "OFFER_REDEEMED",
            Some("INITIAL_BUY"),
            T::SubscriptionStarted,
        ),
        case(
            "OFFER_REDEEMED",
            Some("RESUBSCRIBE"),
            T::SubscriptionResubscribed,
        ),
        case("OFFER_REDEEMED", Some("UPGRADE"), T::ProductChanged),
        case("OFFER_REDEEMED", Some("DOWNGRADE"), T::ProductChanged),
        case("OFFER_REDEEMED", None, T::OfferRedeemed),
        case("DID_FAIL_TO_RENEW", None, T::BillingRetryStarted),
        case(
            "DID_FAIL_TO_RENEW",
            Some("GRACE_PERIOD"),
            T::GracePeriodStarted,
        ),
        case("GRACE_PERIOD_EXPIRED", None, T::BillingRetryStarted),
        case("EXPIRED", Some("VOLUNTARY"), T::SubscriptionExpired),
        case("EXPIRED", Some("BILLING_RETRY"), T::SubscriptionExpired),
        case("EXPIRED", Some("PRICE_INCREASE"), T::SubscriptionExpired),
        case(
            "EXPIRED",
            Some("PRODUCT_NOT_FOR_SALE"),
            T::SubscriptionExpired,
        ),
        case("EXPIRED", None, T::SubscriptionExpired),
        case("PRICE_INCREASE", Some("PENDING"), T::PriceIncrease),
        case("PRICE_INCREASE", Some("ACCEPTED"), T::PriceIncrease),
        case("REFUND", None, T::SubscriptionRefunded),
        case("REFUND_DECLINED", None, T::RefundDeclined),
        case("REFUND_REVERSED", None, T::RefundReversed),
        case("CONSUMPTION_REQUEST", None, T::RefundRequested),
        case("RENEWAL_EXTENDED", None, T::RenewalExtended),
        case("RENEWAL_EXTENSION", Some("FAILURE"), T::RenewalExtended),
        case("REVOKE", None, T::SubscriptionRevoked),
        case("TEST", None, T::Test),
        case("METADATA_UPDATE", None, T::StoreNotification),
        case("MIGRATION", None, T::StoreNotification),
        case("PRICE_CHANGE", None, T::StoreNotification),
        case(
            "SOMETHING_APPLE_INVENTS_IN_2027",
            Some("NEW_SUBTYPE"),
            T::StoreNotification,
        ),
    ];
    for curve in [Curve::P256, Curve::P384] {
        let pki = TestPki::with(PkiOptions {
            curve,
            ..PkiOptions::default()
        });
        let endpoint = strict(&pki);
        for (i, c) in cases.iter().enumerate() {
            let signed = T0 + 40 * DAY;
            let uuid = format!("00000000-0000-4000-8000-{i:012}");
            let p = notification(c.ntype, c.subtype, &uuid, signed, "Production", Some(1));
            let (tx, rn) = if c.ntype == "TEST" {
                (None, None)
            } else {
                (
                    Some(transaction(
                        "1000",
                        "1001",
                        "pro.monthly",
                        signed - DAY,
                        30,
                        "Production",
                    )),
                    Some(renewal("1000", "pro.monthly", true, signed, "Production")),
                )
            };
            let body = pki.notification_body(p, tx.as_ref(), rn.as_ref());
            let events = endpoint
                .process(&body, NOW)
                .unwrap_or_else(|e| panic!("{}/{:?} {curve:?}: {e}", c.ntype, c.subtype));
            assert_eq!(events.len(), 1);
            let e = &events[0];
            assert_eq!(e.kind, c.want, "{}/{:?}", c.ntype, c.subtype);
            assert_eq!(e.store_notification.kind, c.ntype);
            assert_eq!(e.store_notification.subtype.as_deref(), c.subtype);
            assert_eq!(
                e.id,
                storehook_shared::event::EventId::derive(&["APP_STORE", &uuid])
            );
            assert_eq!(
                e.environment,
                storehook_shared::event::Environment::Production
            );
            if c.ntype != "TEST" {
                let s = e.subscription.as_ref().unwrap();
                assert_eq!(s.store_subscription_id, "1000");
                assert_eq!(s.country.as_deref(), Some("FR"));
                assert_eq!(s.price.as_ref().unwrap().amount_micros, 4_990_000);
                assert_eq!(
                    e.app_user_id.as_deref(),
                    Some("7e3fb20b-4cdb-47cc-936d-99d65f608138")
                );
            } else {
                assert!(e.subscription.is_none() && e.product.is_none());
            }
        }
    }
}

fn process_one(
    pki: &TestPki,
    p: Value,
    tx: Option<Value>,
    rn: Option<Value>,
) -> storehook_shared::event::Event {
    strict(pki)
        .process(&pki.notification_body(p, tx.as_ref(), rn.as_ref()), NOW)
        .unwrap()
        .remove(0)
}

#[test]
fn details_carry_what_each_type_promises() {
    let pki = TestPki::new();
    let signed = T0 + 40 * DAY;
    let env = "Production";

    // GIVEN a free-trial start
    let mut tx = transaction("2000", "2001", "pro.yearly", signed, 7, env);
    tx["offerType"] = json!(1);
    tx["offerDiscountType"] = json!("FREE_TRIAL");
    tx["offerIdentifier"] = json!("trial7");
    let e = process_one(
        &pki,
        notification(
            "SUBSCRIBED",
            Some("INITIAL_BUY"),
            "u1",
            signed,
            env,
            Some(1),
        ),
        Some(tx),
        Some(renewal("2000", "pro.yearly", true, signed, env)),
    );
    let s = e.subscription.as_ref().unwrap();
    assert_eq!(s.period_type, PeriodType::Trial);
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert_eq!(e.details.offer.as_ref().unwrap().kind, OfferType::FreeTrial);
    assert_eq!(
        e.details.offer.as_ref().unwrap().id.as_deref(),
        Some("trial7")
    );
    assert!(e.entitlement.active);

    // GIVEN a grace period
    let mut rn = renewal("2000", "pro.yearly", true, signed, env);
    rn["gracePeriodExpiresDate"] = json!(signed + 16 * DAY);
    rn["isInBillingRetryPeriod"] = json!(true);
    let tx = transaction("2000", "2002", "pro.yearly", signed - 365 * DAY, 365, env);
    let e = process_one(
        &pki,
        notification(
            "DID_FAIL_TO_RENEW",
            Some("GRACE_PERIOD"),
            "u2",
            signed,
            env,
            Some(4),
        ),
        Some(tx.clone()),
        Some(rn),
    );
    assert_eq!(
        e.details.grace_period_expires_at.unwrap().millis(),
        signed + 16 * DAY
    );
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::InGracePeriod
    );
    assert!(e.entitlement.active, "grace keeps access");
    assert_eq!(
        e.entitlement.expires_at.unwrap().millis(),
        signed + 16 * DAY
    );

    // GIVEN billing retry without grace
    let e = process_one(
        &pki,
        notification("DID_FAIL_TO_RENEW", None, "u3", signed, env, Some(3)),
        Some(tx.clone()),
        Some(renewal("2000", "pro.yearly", true, signed, env)),
    );
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::InBillingRetry
    );
    assert!(!e.entitlement.active);

    // GIVEN a downgrade at next renewal
    let mut rn = renewal("2000", "pro.yearly", true, signed, env);
    rn["autoRenewProductId"] = json!("basic.yearly");
    let e = process_one(
        &pki,
        notification(
            "DID_CHANGE_RENEWAL_PREF",
            Some("DOWNGRADE"),
            "u4",
            signed,
            env,
            Some(1),
        ),
        Some(tx.clone()),
        Some(rn),
    );
    assert_eq!(e.details.from_product_id.as_deref(), Some("pro.yearly"));
    assert_eq!(e.details.to_product_id.as_deref(), Some("basic.yearly"));
    assert_eq!(e.details.effective, Some(ChangeEffective::NextRenewal));
    assert_eq!(e.details.direction, Some(ChangeDirection::Downgrade));
    assert_eq!(
        e.subscription
            .as_ref()
            .unwrap()
            .renewal_product_id
            .as_deref(),
        Some("basic.yearly")
    );

    // GIVEN expiry after a declined price increase (no subtype: from expirationIntent)
    let mut rn = renewal("2000", "pro.yearly", false, signed, env);
    rn["expirationIntent"] = json!(3);
    let e = process_one(
        &pki,
        notification("EXPIRED", None, "u5", signed, env, Some(2)),
        Some(tx.clone()),
        Some(rn),
    );
    assert_eq!(e.details.reason.as_deref(), Some("PRICE_INCREASE_DECLINED"));
    let e = process_one(
        &pki,
        notification(
            "EXPIRED",
            Some("BILLING_RETRY"),
            "u5b",
            signed,
            env,
            Some(2),
        ),
        Some(tx.clone()),
        Some(renewal("2000", "pro.yearly", false, signed, env)),
    );
    assert_eq!(e.details.reason.as_deref(), Some("BILLING_ERROR"));

    // GIVEN a price increase awaiting consent
    let mut rn = renewal("2000", "pro.yearly", true, signed, env);
    rn["renewalPrice"] = json!(59990);
    let e = process_one(
        &pki,
        notification(
            "PRICE_INCREASE",
            Some("PENDING"),
            "u6",
            signed,
            env,
            Some(1),
        ),
        Some(tx.clone()),
        Some(rn),
    );
    assert_eq!(
        e.details.status.as_ref().map(|s| s.as_str()),
        Some("PENDING")
    );
    assert_eq!(
        e.details.new_price.as_ref().unwrap().amount_micros,
        59_990_000
    );

    // GIVEN a renewal extension
    let e = process_one(
        &pki,
        notification("RENEWAL_EXTENDED", None, "u7", signed, env, Some(1)),
        Some(tx.clone()),
        Some(renewal("2000", "pro.yearly", true, signed, env)),
    );
    assert_eq!(
        e.details.new_expires_at,
        e.subscription.as_ref().unwrap().expires_at
    );

    // GIVEN a yearly plan refunded 3 days after purchase: the fraud pattern
    let purchase = signed - 3 * DAY;
    let mut tx = transaction("3000", "3001", "pro.yearly", purchase, 365, env);
    tx["revocationDate"] = json!(signed);
    tx["revocationReason"] = json!(1);
    let e = process_one(
        &pki,
        notification("REFUND", None, "u8", signed, env, Some(5)),
        Some(tx),
        Some(renewal("3000", "pro.yearly", false, signed, env)),
    );
    assert_eq!(e.kind, EventType::SubscriptionRefunded);
    let r = e.details.refund.as_ref().unwrap();
    assert_eq!(r.days_since_purchase, Some(3));
    assert_eq!(r.reason.as_deref(), Some("APP_ISSUE"));
    assert_eq!(e.details.suspicious_refund, Some(true));
    assert_eq!(
        e.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Revoked
    );
    assert!(!e.entitlement.active);

    // GIVEN a prorated partial refund of a monthly plan after 20 days
    let purchase = signed - 20 * DAY;
    let mut tx = transaction("4000", "4001", "pro.monthly", purchase, 30, env);
    tx["revocationDate"] = json!(signed);
    tx["revocationReason"] = json!(0);
    tx["revocationType"] = json!("REFUND_PRORATED");
    tx["revocationPercentage"] = json!(33_333);
    let e = process_one(
        &pki,
        notification("REFUND", None, "u9", signed, env, Some(5)),
        Some(tx),
        Some(renewal("4000", "pro.monthly", false, signed, env)),
    );
    let r = e.details.refund.as_ref().unwrap();
    assert_eq!(r.kind, Some(RefundKind::Partial));
    assert_eq!(
        r.amount.as_ref().unwrap().amount_micros,
        4_990_000 * 33_333 / 100_000
    );
    assert_eq!(e.details.suspicious_refund, Some(false));

    // GIVEN a one-time purchase of a non-consumable
    let mut tx = transaction("5000", "5000", "lifetime", signed, 0, env);
    tx["type"] = json!("Non-Consumable");
    tx.as_object_mut().unwrap().remove("expiresDate");
    let e = process_one(
        &pki,
        notification("ONE_TIME_CHARGE", None, "u10", signed, env, None),
        Some(tx),
        None,
    );
    assert_eq!(e.kind, EventType::OneTimePurchase);
    assert!(e.subscription.is_none());
    assert_eq!(e.product.as_ref().unwrap().kind, ProductKind::NonConsumable);
    assert!(e.entitlement.active);
    assert!(e.group_key().starts_with("txn_"));
}

#[test]
fn summary_and_external_token_notifications_are_kept_as_store_notifications() {
    let pki = TestPki::new();
    let e = endpoint_for(
        &pki,
        Some(BUNDLE_ID),
        Some(APP_APPLE_ID),
        &[AppleEnvironment::Production, AppleEnvironment::Sandbox],
    );
    let summary = json!({
        "notificationType": "RENEWAL_EXTENSION", "subtype": "SUMMARY",
        "notificationUUID": "s-1", "signedDate": T0,
        "summary": {"environment": "Production", "appAppleId": APP_APPLE_ID, "bundleId": BUNDLE_ID,
                    "productId": "pro.monthly", "requestIdentifier": "r", "succeededCount": 5, "failedCount": 1}
    });
    let out = e
        .process(&pki.notification_body(summary, None, None), NOW)
        .unwrap();
    assert_eq!(out[0].kind, EventType::StoreNotification);
    assert_eq!(
        out[0].store_notification.subtype.as_deref(),
        Some("SUMMARY")
    );
    let ext = json!({
        "notificationType": "EXTERNAL_PURCHASE_TOKEN", "subtype": "UNREPORTED",
        "notificationUUID": "x-1", "signedDate": T0,
        "externalPurchaseToken": {"externalPurchaseId": "SANDBOX_abc", "appAppleId": APP_APPLE_ID, "bundleId": BUNDLE_ID, "tokenCreationDate": T0}
    });
    let out = e
        .process(&pki.notification_body(ext, None, None), NOW)
        .unwrap();
    assert_eq!(out[0].kind, EventType::StoreNotification);
    assert_eq!(
        out[0].environment,
        storehook_shared::event::Environment::Sandbox
    );
}

#[test]
fn raw_payloads_are_included_only_when_configured() {
    let pki = TestPki::new();
    let p = notification("DID_RENEW", None, "raw-1", T0 + DAY, "Sandbox", Some(1));
    let tx = transaction("1", "2", "pro.monthly", T0, 30, "Sandbox");
    let body = pki.notification_body(p, Some(&tx), None);
    let off = strict(&pki).process(&body, NOW).unwrap().remove(0);
    assert!(off.raw.is_none());
    let on = AppStore::new(AppStoreConfig {
        include_raw: true,
        extra_roots: vec![pki.root_der.clone()],
        ..AppStoreConfig::default()
    })
    .unwrap()
    .process(&body, NOW)
    .unwrap()
    .remove(0);
    let raw = on.raw.unwrap();
    assert_eq!(raw["notificationType"], "DID_RENEW");
    assert_eq!(raw["data"]["transactionInfo"]["transactionId"], "2");
}

// ------------------------------------------------------------ negative matrix

fn valid_parts(_pki: &TestPki) -> (Value, Value, Value) {
    let signed = T0 + 40 * DAY;
    (
        notification("DID_RENEW", None, "neg-1", signed, "Production", Some(1)),
        transaction(
            "9000",
            "9001",
            "pro.monthly",
            signed - DAY,
            30,
            "Production",
        ),
        renewal("9000", "pro.monthly", true, signed, "Production"),
    )
}

/// A test endpoint sharing one `AppStore` (so its chain cache stays warm).
#[derive(Debug)]
struct Shared(Arc<AppStore>);

#[async_trait::async_trait]
impl StoreEndpoint for Shared {
    fn route(&self) -> &'static str {
        "appstore"
    }
    async fn events(
        &self,
        req: &StoreRequest,
        received_at_ms: i64,
    ) -> Result<Vec<storehook_shared::event::Event>, storehook_shared::error::Rejection> {
        self.0
            .process(&req.body, received_at_ms)
            .map_err(|e| e.rejection())
    }
}

/// Posts `body` through the whole ingest pipeline; asserts it was refused with
/// a JSON error body and that NOTHING was queued; returns (status, code).
fn rejected(endpoint: &Arc<AppStore>, body: &[u8]) -> (u16, &'static str) {
    let direct = endpoint.process(body, NOW).unwrap_err().rejection();
    let queue = Arc::new(MemoryQueue::new());
    let ingest = Ingest::new(
        Arc::new(Shared(endpoint.clone())),
        queue.clone(),
        Arc::new(ManualClock::new(
            chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, NOW).unwrap(),
        )),
    );
    let resp = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(ingest.handle(StoreRequest {
            method: "POST".into(),
            query: None,
            headers: http::HeaderMap::new(),
            body: body.to_vec().into(),
        }));
    assert_eq!(resp.status, direct.status);
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(v["error"]["code"], direct.code);
    assert!(queue.sent().is_empty(), "a refused notification was queued");
    (direct.status, direct.code)
}

fn jws_body(jws: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "signedPayload": jws })).unwrap()
}

#[test]
fn the_valid_baseline_of_the_negative_matrix_is_accepted() {
    let pki = TestPki::new();
    let (p, t, r) = valid_parts(&pki);
    assert!(
        strict(&pki)
            .process(&pki.notification_body(p, Some(&t), Some(&r)), NOW)
            .is_ok()
    );
}

#[test]
fn chains_that_must_not_verify() {
    let (p, t, r) = valid_parts(&TestPki::new());
    let trusted = TestPki::new();
    let check = |opts: PkiOptions, want: &str| {
        let pki = TestPki::with(opts.clone());
        // the endpoint trusts the generated root (so only the defect is wrong)
        let body = pki.notification_body(p.clone(), Some(&t), Some(&r));
        let got = rejected(&strict(&pki), &body);
        assert_eq!(got, (401, want), "{opts:?}");
    };
    check(
        PkiOptions {
            leaf_oid: false,
            ..PkiOptions::default()
        },
        "untrusted_chain",
    );
    check(
        PkiOptions {
            intermediate_oid: false,
            ..PkiOptions::default()
        },
        "untrusted_chain",
    );
    check(
        PkiOptions {
            intermediate_is_ca: false,
            ..PkiOptions::default()
        },
        "untrusted_chain",
    );
    check(
        PkiOptions {
            self_signed_leaf: true,
            ..PkiOptions::default()
        },
        "untrusted_chain",
    );
    check(
        PkiOptions {
            leaf_validity: ((2020, 1, 1), (2025, 1, 1)),
            curve: Curve::P256,
            ..PkiOptions::default()
        },
        "certificate_expired",
    );
    check(
        PkiOptions {
            leaf_validity: ((2026, 1, 1), (2030, 1, 1)),
            ..PkiOptions::default()
        },
        "certificate_expired",
    );
    // a perfectly formed chain to a root the endpoint does not trust
    let stranger = TestPki::new();
    let body = stranger.notification_body(p.clone(), Some(&t), Some(&r));
    assert_eq!(rejected(&strict(&trusted), &body), (401, "untrusted_chain"));
}

#[test]
fn headers_that_must_not_verify() {
    let pki = TestPki::new();
    let endpoint = strict(&pki);
    let (p, _, _) = valid_parts(&pki);
    let x5c = pki.x5c();
    let sign = |h: Value| jws_body(&pki.sign_with_header(&h, &p));
    // two certificates only
    assert_eq!(
        rejected(&endpoint, &sign(json!({"alg":"ES256","x5c":&x5c[..2]}))),
        (401, "invalid_chain_length")
    );
    assert_eq!(
        rejected(
            &endpoint,
            &sign(json!({"alg":"ES256","x5c":[&x5c[0],&x5c[1],&x5c[2],&x5c[2]]}))
        ),
        (401, "invalid_chain_length")
    );
    // no x5c
    assert_eq!(
        rejected(&endpoint, &sign(json!({"alg":"ES256","x5cwrong":x5c}))),
        (401, "missing_certificate_chain")
    );
    // algorithms other than ES256
    for alg in ["none", "HS256", "RS256", "ES384"] {
        assert_eq!(
            rejected(&endpoint, &sign(json!({"alg":alg,"x5c":x5c}))),
            (401, "unsupported_algorithm"),
            "{alg}"
        );
    }
    assert_eq!(
        rejected(&endpoint, &sign(json!({"x5c":x5c}))),
        (401, "unsupported_algorithm")
    );
    // certificates that are not base64 DER
    assert_eq!(
        rejected(
            &endpoint,
            &sign(json!({"alg":"ES256","x5c":["!!!", &x5c[1], &x5c[2]]}))
        ),
        (401, "invalid_certificate")
    );
    assert_eq!(
        rejected(
            &endpoint,
            &sign(json!({"alg":"ES256","x5c":["AAAA", &x5c[1], &x5c[2]]}))
        ),
        (401, "invalid_certificate")
    );
    // base64url instead of standard base64 in x5c is not Apple's format
    let url = x5c[0].replace('+', "-").replace('/', "_");
    if url != x5c[0] {
        assert_eq!(
            rejected(
                &endpoint,
                &sign(json!({"alg":"ES256","x5c":[url, &x5c[1], &x5c[2]]}))
            ),
            (401, "invalid_certificate")
        );
    }
}

#[test]
fn hs256_keyed_with_the_public_key_is_refused() {
    // The classic algorithm-confusion attack: an HMAC "signature" keyed with the
    // leaf's public key, under a header claiming HS256.
    let pki = TestPki::new();
    let endpoint = strict(&pki);
    let (p, _, _) = valid_parts(&pki);
    let leaf = {
        use x509_parser::prelude::FromDer;
        let (_, c) = x509_parser::prelude::X509Certificate::from_der(&pki.leaf_der).unwrap();
        c.public_key().raw.to_vec()
    };
    let h = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"alg":"HS256","x5c":pki.x5c()})).unwrap());
    let b = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&p).unwrap());
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &leaf);
    let tag = aws_lc_rs::hmac::sign(&key, format!("{h}.{b}").as_bytes());
    let jws = format!("{h}.{b}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(
        rejected(&endpoint, &jws_body(&jws)),
        (401, "unsupported_algorithm")
    );
    // and the same MAC under an ES256 header is just a bad signature
    let h2 = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"alg":"ES256","x5c":pki.x5c()})).unwrap());
    let tag2 = aws_lc_rs::hmac::sign(&key, format!("{h2}.{b}").as_bytes());
    let jws2 = format!("{h2}.{b}.{}", URL_SAFE_NO_PAD.encode(tag2.as_ref()));
    assert_eq!(
        rejected(&endpoint, &jws_body(&jws2)),
        (401, "invalid_signature")
    );
}

fn tamper_segment(jws: &str, index: usize, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let bytes = URL_SAFE_NO_PAD.decode(&parts[index]).unwrap();
    parts[index] = URL_SAFE_NO_PAD.encode(f(bytes));
    parts.join(".")
}

#[test]
fn tampering_is_detected() {
    let pki = TestPki::new();
    let endpoint = strict(&pki);
    let (p, t, r) = valid_parts(&pki);
    let mut outer = p.clone();
    outer["data"]["signedTransactionInfo"] = json!(pki.sign(&t));
    outer["data"]["signedRenewalInfo"] = json!(pki.sign(&r));
    let jws = pki.sign(&outer);

    // header: re-encoded with an extra member
    let h = tamper_segment(&jws, 0, |b| {
        let mut v: Value = serde_json::from_slice(&b).unwrap();
        v["kid"] = json!("x");
        serde_json::to_vec(&v).unwrap()
    });
    assert_eq!(
        rejected(&endpoint, &jws_body(&h)),
        (401, "invalid_signature")
    );
    // payload: one field changed
    let pl = tamper_segment(&jws, 1, |b| {
        let mut v: Value = serde_json::from_slice(&b).unwrap();
        v["notificationType"] = json!("REFUND");
        serde_json::to_vec(&v).unwrap()
    });
    assert_eq!(
        rejected(&endpoint, &jws_body(&pl)),
        (401, "invalid_signature")
    );
    // signature: one bit flipped
    let sg = tamper_segment(&jws, 2, |mut b| {
        b[10] ^= 1;
        b
    });
    assert_eq!(
        rejected(&endpoint, &jws_body(&sg)),
        (401, "invalid_signature")
    );
    // signature of the wrong length
    let short = tamper_segment(&jws, 2, |b| b[..40].to_vec());
    assert_eq!(
        rejected(&endpoint, &jws_body(&short)),
        (401, "invalid_signature")
    );

    // embedded transaction: tampered, outer re-signed by the genuine key
    let mut outer2 = p.clone();
    let bad_tx = tamper_segment(&pki.sign(&t), 1, |b| {
        let mut v: Value = serde_json::from_slice(&b).unwrap();
        v["expiresDate"] = json!(4_102_444_800_000i64);
        serde_json::to_vec(&v).unwrap()
    });
    outer2["data"]["signedTransactionInfo"] = json!(bad_tx);
    let err = endpoint
        .process(&jws_body(&pki.sign(&outer2)), NOW)
        .unwrap_err();
    assert_eq!(err.rejection().code, "invalid_signature");
    assert!(err.to_string().contains("signedTransactionInfo"));
    // embedded renewal info: tampered
    let mut outer3 = p.clone();
    outer3["data"]["signedTransactionInfo"] = json!(pki.sign(&t));
    outer3["data"]["signedRenewalInfo"] = json!(tamper_segment(&pki.sign(&r), 1, |b| {
        let mut v: Value = serde_json::from_slice(&b).unwrap();
        v["autoRenewStatus"] = json!(0);
        serde_json::to_vec(&v).unwrap()
    }));
    let err = endpoint
        .process(&jws_body(&pki.sign(&outer3)), NOW)
        .unwrap_err();
    assert_eq!(err.rejection().code, "invalid_signature");
    assert!(err.to_string().contains("signedRenewalInfo"));
    // embedded transaction signed by a stranger's chain
    let stranger = TestPki::new();
    let mut outer4 = p.clone();
    outer4["data"]["signedTransactionInfo"] = json!(stranger.sign(&t));
    assert_eq!(
        rejected(&endpoint, &jws_body(&pki.sign(&outer4))),
        (401, "untrusted_chain")
    );
}

#[test]
fn wrong_app_and_environment_are_forbidden() {
    let pki = TestPki::new();
    let (p, t, r) = valid_parts(&pki);
    let body = |p: &Value, t: &Value, r: &Value| pki.notification_body(p.clone(), Some(t), Some(r));
    let endpoint = strict(&pki);

    let mut wrong_bundle = p.clone();
    wrong_bundle["data"]["bundleId"] = json!("com.example.wrong");
    assert_eq!(
        rejected(&endpoint, &body(&wrong_bundle, &t, &r)),
        (403, "wrong_app")
    );

    let mut wrong_app_id = p.clone();
    wrong_app_id["data"]["appAppleId"] = json!(1_234_567_891i64);
    assert_eq!(
        rejected(&endpoint, &body(&wrong_app_id, &t, &r)),
        (403, "wrong_app")
    );

    // a sandbox notification is not checked for appAppleId (it may be absent)
    let mut sandbox = p.clone();
    sandbox["data"]["environment"] = json!("Sandbox");
    sandbox["data"]
        .as_object_mut()
        .unwrap()
        .remove("appAppleId");
    let mut ts = t.clone();
    ts["environment"] = json!("Sandbox");
    let mut rs = r.clone();
    rs["environment"] = json!("Sandbox");
    assert!(endpoint.process(&body(&sandbox, &ts, &rs), NOW).is_ok());
    // … but refused by a production-only endpoint
    let prod_only = endpoint_for(
        &pki,
        Some(BUNDLE_ID),
        Some(APP_APPLE_ID),
        &[AppleEnvironment::Production],
    );
    assert_eq!(
        rejected(&prod_only, &body(&sandbox, &ts, &rs)),
        (403, "wrong_environment")
    );

    // Xcode-signed environments are never accepted
    let mut xcode = p.clone();
    xcode["data"]["environment"] = json!("Xcode");
    assert_eq!(
        rejected(&endpoint, &body(&xcode, &t, &r)),
        (403, "wrong_environment")
    );

    // nested transaction for another bundle
    let mut tb = t.clone();
    tb["bundleId"] = json!("com.example.wrong");
    assert_eq!(rejected(&endpoint, &body(&p, &tb, &r)), (403, "wrong_app"));
    // nested transaction / renewal from another environment than the notification
    assert_eq!(
        rejected(&endpoint, &body(&p, &ts, &r)),
        (403, "wrong_environment")
    );
    assert_eq!(
        rejected(&endpoint, &body(&p, &t, &rs)),
        (403, "wrong_environment")
    );

    // identifier is checked before environment (Apple's order)
    let mut both = wrong_bundle.clone();
    both["data"]["environment"] = json!("Sandbox");
    assert_eq!(
        rejected(&prod_only, &body(&both, &ts, &rs)),
        (403, "wrong_app")
    );
}

#[test]
fn environments_not_spelled_as_apple_does_are_forbidden() {
    // Apple spells them `Production` and `Sandbox`; anything else (another case,
    // padding) used to pass the Production checks while the event said SANDBOX.
    let pki = TestPki::new();
    let (p, t, r) = valid_parts(&pki);
    let body = |p: &Value, t: &Value, r: &Value| pki.notification_body(p.clone(), Some(t), Some(r));
    let endpoint = strict(&pki);
    let prod_only = endpoint_for(
        &pki,
        Some(BUNDLE_ID),
        Some(APP_APPLE_ID),
        &[AppleEnvironment::Production],
    );
    // the baseline, all three `Production`, is accepted and says PRODUCTION
    let ok = prod_only.process(&body(&p, &t, &r), NOW).unwrap();
    assert_eq!(
        ok[0].environment,
        storehook_shared::event::Environment::Production
    );

    for bad in [
        "production",
        " Production ",
        "Production ",
        "PRODUCTION",
        "sandbox",
        " Sandbox",
        "",
    ] {
        // in the notification payload, with transaction and renewal info saying the same
        let mut pb = p.clone();
        pb["data"]["environment"] = json!(bad);
        let mut tb = t.clone();
        tb["environment"] = json!(bad);
        let mut rb = r.clone();
        rb["environment"] = json!(bad);
        for e in [&endpoint, &prod_only] {
            assert_eq!(
                rejected(e, &body(&pb, &tb, &rb)),
                (403, "wrong_environment"),
                "payload {bad:?}"
            );
        }
        // in the signed transaction info only
        assert_eq!(
            rejected(&prod_only, &body(&p, &tb, &r)),
            (403, "wrong_environment"),
            "signedTransactionInfo {bad:?}"
        );
        // in the signed renewal info only
        assert_eq!(
            rejected(&prod_only, &body(&p, &t, &rb)),
            (403, "wrong_environment"),
            "signedRenewalInfo {bad:?}"
        );
    }
    // a summary notification (no data) is checked the same way
    let summary = |env: &str| {
        json!({
            "notificationType": "RENEWAL_EXTENDED", "subtype": "SUMMARY",
            "notificationUUID": format!("sum-{env}"), "version": "2.0",
            "signedDate": T0 + 40 * DAY,
            "summary": {"environment": env, "appAppleId": APP_APPLE_ID, "bundleId": BUNDLE_ID,
                        "productId": "pro.monthly", "requestIdentifier": "req-1",
                        "storefrontCountryCodes": ["USA"], "succeededCount": 1, "failedCount": 0}
        })
    };
    assert!(
        prod_only
            .process(
                &pki.notification_body(summary("Production"), None, None),
                NOW
            )
            .is_ok()
    );
    assert_eq!(
        rejected(
            &prod_only,
            &pki.notification_body(summary("production"), None, None)
        ),
        (403, "wrong_environment")
    );
}

#[test]
fn malformed_bodies_are_bad_requests() {
    let pki = TestPki::new();
    let endpoint = strict(&pki);
    let cases: Vec<(&[u8], &str)> = vec![
        (b"not json", "malformed_body"),
        (b"", "malformed_body"),
        (b"[]", "malformed_body"),
        (br#"{"payload":"x"}"#, "malformed_body"),
        (br#"{"signedPayload":42}"#, "malformed_body"),
        (br#"{"signedPayload":"a.b"}"#, "malformed_jws"),
        (br#"{"signedPayload":"a.b.c.d"}"#, "malformed_jws"),
        (br#"{"signedPayload":"***.***.***"}"#, "malformed_jws"),
        (
            br#"{"signedPayload":"eyJhbGciOiJFUzI1NiJ9.e30"}"#,
            "malformed_jws",
        ),
    ];
    for (body, code) in cases {
        assert_eq!(
            rejected(&endpoint, body),
            (400, code),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // header that is base64url but not JSON
    let not_json = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode("nope"),
        URL_SAFE_NO_PAD.encode("{}"),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    assert_eq!(
        rejected(&endpoint, &jws_body(&not_json)),
        (400, "malformed_jws")
    );
    // payload that is not JSON (under a valid signature)
    let (_, _, _) = valid_parts(&pki);
    let h = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"alg":"ES256","x5c":pki.x5c()})).unwrap());
    let garbage = format!(
        "{h}.{}.{}",
        URL_SAFE_NO_PAD.encode("\u{1}garbage"),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    assert_eq!(
        rejected(&endpoint, &jws_body(&garbage)),
        (400, "malformed_jws")
    );
}

#[test]
fn extra_trusted_roots_are_announced_loudly() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let pki = TestPki::new();
    tracing::subscriber::with_default(subscriber, || {
        // Apple's root only: nothing to announce
        AppStore::new(AppStoreConfig::default()).unwrap();
        assert!(buf.0.lock().unwrap().is_empty());
        // an extra root: a warning
        AppStore::new(AppStoreConfig {
            extra_roots: vec![pki.root_der.clone()],
            ..AppStoreConfig::default()
        })
        .unwrap();
    });
    let logged = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains("TRUSTING EXTRA ROOT"), "{logged}");
}

// ------------------------------------------------- found by fuzz/ (appstore)

/// A compact ES256 JWS over the exact `payload` bytes, under `pki`'s chain.
fn sign_raw_payload(pki: &TestPki, payload: &[u8]) -> String {
    let header = serde_json::to_vec(&json!({"alg": "ES256", "x5c": pki.x5c()})).unwrap();
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pki.leaf_key_pem.as_bytes()).unwrap();
    let sig =
        jsonwebtoken::crypto::sign(msg.as_bytes(), &key, jsonwebtoken::Algorithm::ES256).unwrap();
    format!("{msg}.{sig}")
}

#[test]
fn signed_payloads_are_read_strictly_even_in_ignored_fields() {
    let pki = TestPki::new();
    let endpoint = strict(&pki);
    let good = serde_json::to_vec(&notification(
        "TEST",
        None,
        "uuid-strict",
        T0,
        "Production",
        None,
    ))
    .unwrap();
    assert!(
        endpoint
            .process(&jws_body(&sign_raw_payload(&pki, &good)), NOW)
            .is_ok()
    );
    // Invalid UTF-8 inside a field the model does not read.
    let mut bad_utf8 = b"{\"unknownField\":\"\xce\xcc\",".to_vec();
    bad_utf8.extend_from_slice(&good[1..]);
    // The same unknown key twice.
    let mut repeated = b"{\"unknownField\":1,\"unknownField\":2,".to_vec();
    repeated.extend_from_slice(&good[1..]);
    for payload in [bad_utf8, repeated] {
        let body = jws_body(&sign_raw_payload(&pki, &payload));
        assert_eq!(rejected(&endpoint, &body), (400, "malformed_jws"));
    }
}

/// Apple signs more than notifications with the same chain: a StoreKit 2
/// transaction or renewal JWS reaches the user's own device. Posted as a
/// notification it must be refused (nothing queued), whichever app settings
/// the deployment has.
#[test]
fn signed_transactions_and_renewals_posted_as_notifications_are_refused() {
    let pki = TestPki::new();
    let tx = pki.sign(&transaction(
        "77",
        "78",
        "pro.monthly",
        T0,
        30,
        "Production",
    ));
    let rn = pki.sign(&renewal("77", "pro.monthly", true, T0, "Production"));
    let any_app = endpoint_for(
        &pki,
        None,
        None,
        &[AppleEnvironment::Production, AppleEnvironment::Sandbox],
    );
    for jws in [&tx, &rn] {
        assert_eq!(rejected(&strict(&pki), &jws_body(jws)), (403, "wrong_app"));
        assert_eq!(
            rejected(&any_app, &jws_body(jws)),
            (403, "wrong_environment")
        );
    }
}
