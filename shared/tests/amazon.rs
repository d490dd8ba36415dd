//! Amazon Appstore RTN tests: a generated SNS PKI whose signing certificate is
//! served over loopback HTTPS, messages signed with SignatureVersion 1 and 2
//! over SNS's canonical string, a fake Receipt Verification Service on
//! loopback, the negative matrix through `Ingest` (nothing queued), and every
//! notification type.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeZone;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use storehook_shared::clock::ManualClock;
use storehook_shared::event::{
    ChangeEffective, Environment, Event, EventType, PeriodType, ProductKind, SubscriptionStatus,
};
use storehook_shared::ingest::{Ingest, StoreRequest};
use storehook_shared::queue::MemoryQueue;
use storehook_shared::stores::amazon::*;
use storehook_testkit::amazon::*;
use storehook_testkit::loopback::{Seen, Server, response};

const DAY: i64 = 86_400_000;
/// "Now": the SNS messages' time.
const NOW: i64 = 1_796_040_000_000; // 2026-11-30T12:00:00Z
const PURCHASE: i64 = NOW - 10 * DAY;
const RENEWAL: i64 = NOW + 20 * DAY;

fn pki() -> &'static SnsPki {
    static P: OnceLock<SnsPki> = OnceLock::new();
    P.get_or_init(SnsPki::new)
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        chrono::Utc.timestamp_millis_opt(NOW).unwrap(),
    ))
}

/// The loopback world of one test: the certificate server and RVS.
struct World {
    certs: Server,
    rvs: FakeRvs,
}

impl World {
    async fn start() -> Self {
        Self {
            certs: pki().serve().await,
            rvs: FakeRvs::start().await,
        }
    }

    fn host(&self) -> String {
        self.certs.url.trim_start_matches("https://").to_owned()
    }

    fn cert_url(&self) -> String {
        format!("{}/cert.pem", self.certs.url)
    }

    fn settings(&self) -> HashMap<&'static str, String> {
        HashMap::from([
            ("AMAZON_APP_PACKAGES", PACKAGE.to_owned()),
            ("AMAZON_TOPIC_ARNS", TOPIC_ARN.to_owned()),
            ("AMAZON_RVS_SHARED_SECRET", SHARED_SECRET.to_owned()),
            ("AMAZON_RVS_URL", self.rvs.server.url.clone()),
            ("AMAZON_SNS_CERT_HOSTS", self.host()),
            ("AMAZON_SNS_TRUST_ROOTS", pki().root_pem.clone()),
        ])
    }

    /// [`World::settings`] with the signing certificate served by `server`
    /// (its `https://host:port`) and `extra_root_pem` trusted beside the test PKI's root.
    fn settings_served_by(
        &self,
        server: &str,
        extra_root_pem: &str,
    ) -> HashMap<&'static str, String> {
        let mut s = self.settings();
        s.insert(
            "AMAZON_SNS_CERT_HOSTS",
            server.trim_start_matches("https://").to_owned(),
        );
        s.insert(
            "AMAZON_SNS_TRUST_ROOTS",
            format!("{}{extra_root_pem}", pki().root_pem),
        );
        s
    }

    fn amazon_with(
        &self,
        settings: &HashMap<&'static str, String>,
        clock: Arc<ManualClock>,
    ) -> Amazon {
        let lookup = |k: &str| settings.get(k).cloned();
        Amazon::new(amazon_config(&lookup, true).unwrap(), clock).unwrap()
    }

    fn amazon(&self) -> Amazon {
        self.amazon_with(&self.settings(), clock())
    }

    fn notification(&self, rtn: &Value, id: &str) -> SnsMessage {
        SnsMessage::notification(&rtn.to_string(), id, &self.cert_url())
    }

    fn active(&self, receipt: &str) {
        self.rvs.answer(
            receipt,
            200,
            &subscription_receipt(receipt, PURCHASE, RENEWAL),
        );
    }
}

fn post(body: String) -> StoreRequest {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "text/plain; charset=UTF-8".parse().unwrap());
    StoreRequest {
        method: "POST".into(),
        query: None,
        headers,
        body: body.into(),
    }
}

async fn events(a: &Amazon, body: &str) -> Vec<Event> {
    a.process(body.as_bytes(), None, NOW)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn one(a: &Amazon, body: &str) -> Event {
    let mut e = events(a, body).await;
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0)
}

#[tokio::test]
async fn a_signed_purchase_becomes_subscription_started_with_the_rvs_state() {
    let w = World::start().await;
    let a = w.amazon();
    w.active("R-1:3:11/+=");
    for (version, id) in [("2", "m-v2"), ("1", "m-v1")] {
        let mut m = w.notification(
            &rtn("SUBSCRIPTION_PURCHASED", "R-1:3:11/+=", NOW - 1000),
            id,
        );
        m.signature_version = version.into();
        let e = one(&a, &m.signed(pki())).await;
        assert_eq!(e.kind, EventType::SubscriptionStarted, "v{version}");
        assert_eq!(e.store_notification.kind, "SUBSCRIPTION_PURCHASED");
        assert_eq!(e.store_notification.id, id);
        assert_eq!(e.app_id, PACKAGE);
        assert_eq!(e.app_user_id.as_deref(), Some(USER));
        assert_eq!(e.environment, Environment::Production);
        assert_eq!(e.occurred_at.0.timestamp_millis(), NOW - 1000);
        let p = e.product.as_ref().unwrap();
        assert_eq!(p.id, "com.example.fire.premium");
        assert_eq!(
            p.plan_id.as_deref(),
            Some("com.example.fire.premium.monthly")
        );
        assert_eq!(p.kind, ProductKind::AutoRenewable);
        let s = e.subscription.as_ref().unwrap();
        assert_eq!(s.store_subscription_id, "R-1:3:11/+=");
        assert_eq!(s.status, SubscriptionStatus::Active);
        assert!(s.auto_renew);
        assert_eq!(s.expires_at.unwrap().0.timestamp_millis(), RENEWAL);
        assert_eq!(s.started_at.unwrap().0.timestamp_millis(), PURCHASE);
        assert_eq!(s.country.as_deref(), Some("DE"));
        assert!(e.entitlement.active);
    }
    // One certificate download for both messages (the cache), one RVS call each.
    assert_eq!(a.certs().fetches(), 1);
    assert_eq!(w.certs.seen().len(), 1);
    assert_eq!(w.rvs.asked(), vec!["R-1:3:11/+=", "R-1:3:11/+="]);
    // The same message again (an SNS retry) is the same event.
    let m = w.notification(
        &rtn("SUBSCRIPTION_PURCHASED", "R-1:3:11/+=", NOW - 1000),
        "m-v2",
    );
    let again = one(&a, &m.signed(pki())).await;
    let first = {
        let m = w.notification(
            &rtn("SUBSCRIPTION_PURCHASED", "R-1:3:11/+=", NOW - 1000),
            "m-v2",
        );
        one(&a, &m.signed(pki())).await
    };
    assert_eq!(again.id, first.id);
}

#[tokio::test]
async fn a_cached_certificate_is_checked_again_at_every_use() {
    let w = World::start().await;
    let c = clock();
    let a = w.amazon_with(&w.settings(), c.clone());
    w.active("R-2");
    let body = w
        .notification(&rtn("SUBSCRIPTION_RENEWED", "R-2", NOW), "m1")
        .signed(pki());
    one(&a, &body).await;
    c.set(chrono::Utc.with_ymd_and_hms(2041, 1, 1, 0, 0, 0).unwrap());
    let e = a.process(body.as_bytes(), None, NOW).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "untrusted_certificate"));
    assert_eq!(
        w.certs.seen().len(),
        1,
        "the cached certificate, not a new download"
    );
}

/// Every way a message can be wrong is refused with its status and code, and
/// nothing is queued.
#[tokio::test]
async fn the_negative_matrix_queues_nothing() {
    let w = World::start().await;
    w.active("R-3");
    let good = w.notification(&rtn("SUBSCRIPTION_RENEWED", "R-3", NOW), "neg");
    let signed: Value = serde_json::from_str(&good.signed(pki())).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = signed.clone();
        f(&mut v);
        v.to_string()
    };
    let resigned = |f: &dyn Fn(&mut SnsMessage)| {
        let mut m = good.clone();
        f(&mut m);
        m.signed(pki())
    };
    let stranger = SnsPki::new();
    let stranger_server = stranger.serve().await;
    let expired = SnsPki::with(PkiOptions {
        leaf_validity: ((2020, 1, 1), (2021, 1, 1)),
        ..PkiOptions::default()
    });
    let other_name = SnsPki::with(PkiOptions {
        leaf_name: "evil.example.com".into(),
        ..PkiOptions::default()
    });
    let not_tls = SnsPki::with(PkiOptions {
        server_auth: false,
        ..PkiOptions::default()
    });
    let foreign_signer = |p: &SnsPki| {
        // Signed by `p`'s key, its certificate served from the trusted test host.
        let mut m = good.clone();
        m.signing_cert_url = format!("{}/cert.pem", w.certs.url);
        m.body_with(&p.sign("2", &m.string_to_sign())).to_string()
    };
    let rvs_down = Server::start(|_: &Seen| Some(response(500, &[], "{}"))).await;

    let mut cases: Vec<(&str, String, u16, &str)> = vec![
        ("not JSON", "{not json".into(), 400, "malformed_body"),
        (
            "no Signature",
            with(&|v| {
                v.as_object_mut().unwrap().remove("Signature");
            }),
            400,
            "malformed_body",
        ),
        (
            "unknown Type",
            resigned(&|m| m.kind = "Telegram".into()),
            400,
            "unsupported_message_type",
        ),
        (
            "tampered Message",
            with(&|v| {
                v["Message"] = json!(rtn("SUBSCRIPTION_RENEWED", "R-OTHER", NOW).to_string())
            }),
            401,
            "signature_invalid",
        ),
        (
            "tampered MessageId",
            with(&|v| v["MessageId"] = json!("other")),
            401,
            "signature_invalid",
        ),
        (
            "added Subject",
            with(&|v| v["Subject"] = json!("hi")),
            401,
            "signature_invalid",
        ),
        (
            "empty signature",
            with(&|v| v["Signature"] = json!("")),
            401,
            "signature_invalid",
        ),
        (
            "signature not base64",
            with(&|v| v["Signature"] = json!("@@@")),
            401,
            "signature_invalid",
        ),
        (
            "version 1 label on a v2 signature",
            with(&|v| v["SignatureVersion"] = json!("1")),
            401,
            "signature_invalid",
        ),
        (
            "SignatureVersion 3",
            with(&|v| v["SignatureVersion"] = json!("3")),
            401,
            "unsupported_signature_version",
        ),
        (
            "wrong topic",
            resigned(&|m| m.topic_arn = "arn:aws:sns:us-east-1:111111111111:other".into()),
            403,
            "wrong_topic",
        ),
        (
            "wrong app",
            resigned(&|m| {
                m.message = rtn("SUBSCRIPTION_RENEWED", "R-3", NOW)
                    .to_string()
                    .replace(PACKAGE, "com.evil")
            }),
            403,
            "wrong_app",
        ),
        (
            "http certificate URL",
            resigned(&|m| m.signing_cert_url = m.signing_cert_url.replace("https://", "http://")),
            401,
            "untrusted_certificate_url",
        ),
        (
            "foreign host",
            resigned(&|m| {
                m.signing_cert_url = "https://sns.us-east-1.amazonaws.com.evil.com/cert.pem".into()
            }),
            401,
            "untrusted_certificate_url",
        ),
        (
            "not a .pem",
            resigned(&|m| m.signing_cert_url = m.signing_cert_url.replace("cert.pem", "cert.txt")),
            401,
            "untrusted_certificate_url",
        ),
        (
            "signed by a stranger's key",
            foreign_signer(&stranger),
            401,
            "signature_invalid",
        ),
        (
            "stranger's chain",
            resigned(&|m| m.signing_cert_url = format!("{}/cert.pem", stranger_server.url)),
            401,
            "untrusted_certificate_url",
        ),
        (
            "certificate file missing",
            resigned(&|m| m.signing_cert_url = m.signing_cert_url.replace("cert.pem", "gone.pem")),
            503,
            "certificate_unavailable",
        ),
    ];
    let mut keep = Vec::new();
    for (name, p, code) in [
        ("untrusted root", &stranger, "untrusted_certificate"),
        ("expired certificate", &expired, "untrusted_certificate"),
        (
            "certificate for another name",
            &other_name,
            "untrusted_certificate",
        ),
        (
            "not a TLS server certificate",
            &not_tls,
            "untrusted_certificate",
        ),
    ] {
        // Its chain served from a trusted test host.
        let s = pki().serve_file(p.chain_pem()).await;
        let mut m = good.clone();
        m.signing_cert_url = format!("{}/c.pem", s.url);
        let body = m.body_with(&p.sign("2", &m.string_to_sign())).to_string();
        cases.push((name, body, 401, code));
        keep.push((s.url.trim_start_matches("https://").to_owned(), s));
    }
    let mut settings = w.settings();
    let hosts: Vec<String> = std::iter::once(w.host())
        .chain(keep.iter().map(|(h, _)| h.clone()))
        .collect();
    settings.insert("AMAZON_SNS_CERT_HOSTS", hosts.join(","));
    for (name, body, status, code) in &cases {
        let queue = Arc::new(MemoryQueue::new());
        let amazon = w.amazon_with(&settings, clock());
        let ingest = Ingest::new(Arc::new(AmazonEndpoint(amazon)), queue.clone(), clock());
        let r = ingest.handle(post(body.clone())).await;
        let answer: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (r.status, answer["error"]["code"].as_str().unwrap_or("")),
            (*status, *code),
            "{name}: {}",
            r.body
        );
        assert!(queue.sent().is_empty(), "{name}");
    }

    // Header and body disagree on the type.
    let queue = Arc::new(MemoryQueue::new());
    let ingest = Ingest::new(Arc::new(AmazonEndpoint(w.amazon())), queue.clone(), clock());
    let mut req = post(good.signed(pki()));
    req.headers.insert(
        "x-amz-sns-message-type",
        "SubscriptionConfirmation".parse().unwrap(),
    );
    let r = ingest.handle(req).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(queue.sent().is_empty());

    // RVS failures are 503 (Amazon resends), nothing queued.
    for (name, url, secret, code) in [
        (
            "RVS 500",
            rvs_down.url.clone(),
            SHARED_SECRET,
            "rvs_unavailable",
        ),
        (
            "RVS refuses the secret",
            w.rvs.server.url.clone(),
            "wrong",
            "rvs_invalid_shared_secret",
        ),
        (
            "RVS unreachable",
            "http://127.0.0.1:9".to_owned(),
            SHARED_SECRET,
            "rvs_unavailable",
        ),
    ] {
        let mut s = w.settings();
        s.insert("AMAZON_RVS_URL", url);
        s.insert("AMAZON_RVS_SHARED_SECRET", secret.to_owned());
        let queue = Arc::new(MemoryQueue::new());
        let ingest = Ingest::new(
            Arc::new(AmazonEndpoint(w.amazon_with(&s, clock()))),
            queue.clone(),
            clock(),
        );
        let r = ingest.handle(post(good.signed(pki()))).await;
        let answer: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (r.status, answer["error"]["code"].as_str().unwrap()),
            (503, code),
            "{name}"
        );
        assert!(queue.sent().is_empty(), "{name}");
    }
    // No RVS configured (local use): 503, nothing queued.
    let mut s = w.settings();
    s.remove("AMAZON_RVS_SHARED_SECRET");
    let lookup = |k: &str| s.get(k).cloned();
    assert!(
        amazon_config(&lookup, true).is_err(),
        "a deployment needs RVS"
    );
    let local = Amazon::new(amazon_config(&lookup, false).unwrap(), clock()).unwrap();
    let e = local
        .process(good.signed(pki()).as_bytes(), None, NOW)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (503, "rvs_unavailable"));
}

fn rvs_receipt(receipt: &str, f: impl Fn(&mut Value)) -> Value {
    let mut r = subscription_receipt(receipt, PURCHASE, RENEWAL);
    f(&mut r);
    r
}

#[tokio::test]
async fn every_subscription_type_translates_with_the_rvs_state() {
    use EventType as T;
    use SubscriptionStatus as S;
    let w = World::start().await;
    let a = w.amazon();
    let grace_end = NOW + 3 * DAY;
    // (notificationType, RVS answer tweak, event type, status, entitled)
    type Tweak = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tweak, T, S, bool)> = vec![
        (
            "SUBSCRIPTION_RENEWED",
            Box::new(|_| {}),
            T::SubscriptionRenewed,
            S::Active,
            true,
        ),
        (
            "SUBSCRIPTION_CONVERTED_FREE_TRIAL_TO_PAID",
            Box::new(|_| {}),
            T::SubscriptionRenewed,
            S::Active,
            true,
        ),
        (
            "SUBSCRIPTION_AUTO_RENEWAL_ON",
            Box::new(|_| {}),
            T::RenewalEnabled,
            S::Active,
            true,
        ),
        (
            "SUBSCRIPTION_AUTO_RENEWAL_OFF",
            Box::new(|r| {
                r["autoRenewing"] = json!(false);
                r["cancelDate"] = json!(RENEWAL);
                r["renewalDate"] = Value::Null;
            }),
            T::RenewalDisabled,
            S::CanceledActive,
            true,
        ),
        (
            "SUBSCRIPTION_SCHEDULED_TO_END",
            Box::new(|r| {
                r["autoRenewing"] = json!(false);
                r["cancelDate"] = json!(RENEWAL);
            }),
            T::StoreNotification,
            S::CanceledActive,
            true,
        ),
        (
            "SUBSCRIPTION_IN_GRACE_PERIOD",
            Box::new(move |r| {
                r["renewalDate"] = json!(NOW - DAY);
                r["gracePeriodEndDate"] = json!(grace_end);
            }),
            T::GracePeriodStarted,
            S::InGracePeriod,
            true,
        ),
        (
            "SUBSCRIPTION_OUT_OF_GRACE_PERIOD",
            Box::new(|_| {}),
            T::SubscriptionRecovered,
            S::Active,
            true,
        ),
        (
            "SUBSCRIPTION_EXPIRED",
            Box::new(|r| {
                r["autoRenewing"] = json!(false);
                r["cancelDate"] = json!(NOW - DAY);
                r["cancelReason"] = json!(1);
            }),
            T::SubscriptionExpired,
            S::Expired,
            false,
        ),
        (
            "SUBSCRIPTION_MODIFIED_DEFERRED",
            Box::new(|r| {
                r["deferredSku"] = json!("com.example.fire.premium.yearly");
                r["deferredDate"] = json!(RENEWAL);
            }),
            T::ProductChanged,
            S::Active,
            true,
        ),
        (
            "SUBSCRIPTION_SOMETHING_NEW",
            Box::new(|_| {}),
            T::StoreNotification,
            S::Active,
            true,
        ),
    ];
    for (i, (t, tweak, kind, status, entitled)) in cases.into_iter().enumerate() {
        let receipt = format!("R-T{i}");
        w.rvs
            .answer(&receipt, 200, &rvs_receipt(&receipt, |r| tweak(r)));
        let e = one(
            &a,
            &w.notification(&rtn(t, &receipt, NOW), &format!("t{i}"))
                .signed(pki()),
        )
        .await;
        assert_eq!(e.kind, kind, "{t}");
        assert_eq!(e.store_notification.kind, t);
        let s = e
            .subscription
            .as_ref()
            .unwrap_or_else(|| panic!("{t}: a snapshot"));
        assert_eq!(s.status, status, "{t}");
        assert_eq!(e.entitlement.active, entitled, "{t}");
        match t {
            "SUBSCRIPTION_CONVERTED_FREE_TRIAL_TO_PAID" => {
                assert_eq!(e.details.trial_converted, Some(true))
            }
            "SUBSCRIPTION_AUTO_RENEWAL_OFF" => {
                assert_eq!(e.details.reason.as_deref(), Some("USER"));
                assert!(!s.auto_renew);
                assert_eq!(s.expires_at.unwrap().0.timestamp_millis(), RENEWAL);
            }
            "SUBSCRIPTION_IN_GRACE_PERIOD" => {
                assert_eq!(
                    e.details
                        .grace_period_expires_at
                        .unwrap()
                        .0
                        .timestamp_millis(),
                    grace_end
                );
            }
            "SUBSCRIPTION_EXPIRED" => assert_eq!(e.details.reason.as_deref(), Some("VOLUNTARY")),
            "SUBSCRIPTION_MODIFIED_DEFERRED" => {
                assert_eq!(e.details.effective, Some(ChangeEffective::NextRenewal));
                assert_eq!(
                    e.details.to_product_id.as_deref(),
                    Some("com.example.fire.premium.yearly")
                );
                assert_eq!(
                    s.renewal_product_id.as_deref(),
                    Some("com.example.fire.premium.yearly")
                );
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_free_trial_purchase_says_so() {
    let w = World::start().await;
    let a = w.amazon();
    w.rvs.answer(
        "R-TRIAL",
        200,
        &rvs_receipt("R-TRIAL", |r| r["freeTrialEndDate"] = json!(NOW + 6 * DAY)),
    );
    let e = one(
        &a,
        &w.notification(&rtn("SUBSCRIPTION_PURCHASED", "R-TRIAL", NOW), "trial")
            .signed(pki()),
    )
    .await;
    assert_eq!(
        e.subscription.as_ref().unwrap().period_type,
        PeriodType::Trial
    );
    assert_eq!(
        e.details.offer.as_ref().unwrap().kind,
        storehook_shared::event::OfferType::FreeTrial
    );
}

#[tokio::test]
async fn cancellations_follow_what_rvs_says() {
    use EventType as T;
    use SubscriptionStatus as S;
    let w = World::start().await;
    let a = w.amazon();
    let cancelled = |reason: i64, at: i64| {
        move |r: &mut Value| {
            r["autoRenewing"] = json!(false);
            r["cancelDate"] = json!(at);
            r["cancelReason"] = json!(reason);
        }
    };
    // Still inside the period: auto-renew turned off.
    w.rvs.answer(
        "C-FUTURE",
        200,
        &rvs_receipt("C-FUTURE", cancelled(1, RENEWAL)),
    );
    // Ended now by the customer: a refund (a monthly period: not suspicious).
    w.rvs.answer(
        "C-REFUND",
        200,
        &rvs_receipt("C-REFUND", cancelled(1, NOW - 60_000)),
    );
    // Ended by Amazon.
    w.rvs.answer(
        "C-AMAZON",
        200,
        &rvs_receipt("C-AMAZON", cancelled(2, NOW - 60_000)),
    );
    // Replaced by a tier change.
    w.rvs.answer(
        "C-REPLACED",
        200,
        &rvs_receipt("C-REPLACED", cancelled(4, NOW - 60_000)),
    );
    // No longer valid at all.
    w.rvs.answer("C-GONE", 410, &json!({}));
    for (receipt, kind, status, reason) in [
        (
            "C-FUTURE",
            T::RenewalDisabled,
            S::CanceledActive,
            Some("USER"),
        ),
        ("C-REFUND", T::SubscriptionRefunded, S::Revoked, None),
        (
            "C-AMAZON",
            T::SubscriptionRevoked,
            S::Revoked,
            Some("AMAZON_CANCELLED"),
        ),
        (
            "C-REPLACED",
            T::SubscriptionExpired,
            S::Expired,
            Some("REPLACED"),
        ),
        (
            "C-GONE",
            T::SubscriptionRevoked,
            S::Revoked,
            Some("RECEIPT_NO_LONGER_VALID"),
        ),
    ] {
        let e = one(
            &a,
            &w.notification(&rtn("SUBSCRIPTION_CANCELLED", receipt, NOW), receipt)
                .signed(pki()),
        )
        .await;
        assert_eq!(e.kind, kind, "{receipt}");
        let s = e.subscription.as_ref().unwrap();
        assert_eq!(s.status, status, "{receipt}");
        assert_eq!(e.entitlement.active, receipt == "C-FUTURE", "{receipt}");
        assert_eq!(e.details.reason.as_deref(), reason, "{receipt}");
        if receipt == "C-REFUND" {
            let r = e.details.refund.as_ref().unwrap();
            assert_eq!(r.days_since_purchase, Some(9));
            assert_eq!(r.refunded_at.unwrap().0.timestamp_millis(), NOW - 60_000);
            assert_eq!(e.details.suspicious_refund, Some(false));
        }
    }
}

#[tokio::test]
async fn an_immediate_tier_change_changes_the_product_and_ends_the_replaced_receipt() {
    let w = World::start().await;
    let a = w.amazon();
    w.rvs.answer(
        "NEW",
        200,
        &rvs_receipt("NEW", |r| {
            r["termSku"] = json!("com.example.fire.premium.yearly");
            r["purchaseDate"] = json!(NOW - 1000);
            r["renewalDate"] = json!(NOW + 365 * DAY);
        }),
    );
    w.rvs.answer(
        "OLD",
        200,
        &rvs_receipt("OLD", |r| {
            r["autoRenewing"] = json!(false);
            r["cancelDate"] = json!(NOW - 1000);
            r["cancelReason"] = json!(4);
        }),
    );
    let mut payload = rtn("SUBSCRIPTION_MODIFIED_IMMEDIATE", "NEW", NOW);
    payload["relatedReceipts"] = json!({"cancelledReceiptId": "OLD"});
    let ev = events(&a, &w.notification(&payload, "mod").signed(pki())).await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    let (new, old) = (&ev[0], &ev[1]);
    assert_eq!(new.kind, EventType::ProductChanged);
    assert_eq!(new.details.effective, Some(ChangeEffective::Immediate));
    assert_eq!(
        new.details.from_product_id.as_deref(),
        Some("com.example.fire.premium.monthly")
    );
    assert_eq!(
        new.details.to_product_id.as_deref(),
        Some("com.example.fire.premium.yearly")
    );
    assert_eq!(
        new.subscription.as_ref().unwrap().store_subscription_id,
        "NEW"
    );
    assert!(new.entitlement.active);
    assert_eq!(old.kind, EventType::SubscriptionExpired);
    assert_eq!(old.details.reason.as_deref(), Some("REPLACED"));
    assert_eq!(
        old.subscription.as_ref().unwrap().store_subscription_id,
        "OLD"
    );
    assert_eq!(
        old.subscription.as_ref().unwrap().status,
        SubscriptionStatus::Expired
    );
    assert!(!old.entitlement.active);
    assert_ne!(new.id, old.id);
    assert_ne!(new.group_key(), old.group_key());
    assert_eq!(w.rvs.asked(), vec!["NEW", "OLD"]);
}

#[tokio::test]
async fn one_time_purchases_and_their_cancellations() {
    use EventType as T;
    let w = World::start().await;
    let a = w.amazon();
    w.rvs.answer(
        "CONS",
        200,
        &one_time_receipt("CONS", "CONSUMABLE", NOW - 1000),
    );
    w.rvs
        .answer("ENT", 200, &one_time_receipt("ENT", "ENTITLED", NOW - 1000));
    let mut cancelled = one_time_receipt("ENT-X", "ENTITLED", NOW - 3 * DAY);
    cancelled["cancelDate"] = json!(NOW - 1000);
    cancelled["cancelReason"] = json!(1);
    w.rvs.answer("ENT-X", 200, &cancelled);
    for (t, receipt, kind, pkind, active) in [
        (
            "CONSUMABLE_PURCHASED",
            "CONS",
            T::OneTimePurchase,
            ProductKind::Consumable,
            false,
        ),
        (
            "ENTITLEMENT_PURCHASED",
            "ENT",
            T::OneTimePurchase,
            ProductKind::NonConsumable,
            true,
        ),
        (
            "ENTITLEMENT_CANCELLED",
            "ENT-X",
            T::OneTimePurchaseRefunded,
            ProductKind::NonConsumable,
            false,
        ),
    ] {
        let e = one(&a, &w.notification(&rtn(t, receipt, NOW), t).signed(pki())).await;
        assert_eq!(e.kind, kind, "{t}");
        assert!(e.subscription.is_none(), "{t}");
        assert_eq!(e.product.as_ref().unwrap().kind, pkind, "{t}");
        assert_eq!(e.entitlement.active, active, "{t}");
        assert_eq!(e.transaction.as_ref().unwrap().id, receipt);
        if kind == T::OneTimePurchaseRefunded {
            assert_eq!(
                e.details.refund.as_ref().unwrap().days_since_purchase,
                Some(2)
            );
        }
    }
}

/// Authentic but unconfirmed or unreadable: forwarded as STORE_NOTIFICATION
/// with the reason, carrying no state (it can neither grant nor revoke).
#[tokio::test]
async fn authentic_notifications_that_cannot_be_confirmed_are_forwarded_not_dropped() {
    let w = World::start().await;
    let a = w.amazon();
    // RVS does not know the receipt (400).
    let e = one(
        &a,
        &w.notification(&rtn("SUBSCRIPTION_PURCHASED", "UNKNOWN", NOW), "u1")
            .signed(pki()),
    )
    .await;
    assert_eq!(e.kind, EventType::StoreNotification);
    assert!(e.details.error.as_deref().unwrap().contains("HTTP 400"));
    assert!(e.subscription.is_none() && !e.entitlement.active);
    // The Message is not an RTN payload.
    let m = SnsMessage::notification("not json at all", "u2", &w.cert_url());
    let e = one(&a, &m.signed(pki())).await;
    assert_eq!(e.kind, EventType::StoreNotification);
    assert_eq!(e.store_notification.id, "u2");
    assert!(
        e.details
            .error
            .as_deref()
            .unwrap()
            .contains("not an RTN payload")
    );
    // No receipt named.
    let mut p = rtn("SUBSCRIPTION_PURCHASED", "", NOW);
    p.as_object_mut().unwrap().remove("receiptId");
    let e = one(&a, &w.notification(&p, "u3").signed(pki())).await;
    assert_eq!(e.kind, EventType::StoreNotification);
    assert!(e.details.error.is_some());
}

#[tokio::test]
async fn live_app_testing_and_the_rvs_sandbox_are_sandbox_events() {
    let w = World::start().await;
    w.active("LAT");
    let a = w.amazon();
    let mut p = rtn("SUBSCRIPTION_PURCHASED", "LAT", NOW);
    p["betaProductTransaction"] = json!(true);
    let e = one(&a, &w.notification(&p, "lat").signed(pki())).await;
    assert_eq!(e.environment, Environment::Sandbox);
    let mut s = w.settings();
    s.insert("AMAZON_RVS_SANDBOX", "true".into());
    let a = w.amazon_with(&s, clock());
    let e = one(
        &a,
        &w.notification(&rtn("SUBSCRIPTION_RENEWED", "LAT", NOW), "sb")
            .signed(pki()),
    )
    .await;
    assert_eq!(e.environment, Environment::Sandbox);
    assert!(
        w.rvs
            .server
            .seen()
            .last()
            .unwrap()
            .target
            .starts_with("/sandbox/version/1.0/")
    );
}

#[tokio::test]
async fn subscription_confirmations_are_logged_or_confirmed_and_queue_nothing() {
    let w = World::start().await;
    let confirm = format!(
        "{}/confirm?Action=ConfirmSubscription&Token=abc",
        w.certs.url
    );
    let m = SnsMessage::confirmation("c1", &w.cert_url(), &confirm);
    // Default: logged for the console step, nothing fetched but the certificate.
    let queue = Arc::new(MemoryQueue::new());
    let ingest = Ingest::new(Arc::new(AmazonEndpoint(w.amazon())), queue.clone(), clock());
    let r = ingest.handle(post(m.signed(pki()))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(queue.sent().is_empty());
    assert!(
        !w.certs
            .seen()
            .iter()
            .any(|s| s.target.starts_with("/confirm"))
    );
    // Auto confirmation: SubscribeURL fetched.
    let mut s = w.settings();
    s.insert("AMAZON_SNS_AUTO_CONFIRM", "true".into());
    let auto = w.amazon_with(&s, clock());
    assert!(events(&auto, &m.signed(pki())).await.is_empty());
    assert!(
        w.certs
            .seen()
            .iter()
            .any(|s| s.target.starts_with("/confirm?Action=ConfirmSubscription"))
    );
    // A SubscribeURL elsewhere is never fetched.
    let evil = SnsMessage::confirmation("c2", &w.cert_url(), "https://evil.example.com/confirm");
    let e = auto
        .process(evil.signed(pki()).as_bytes(), None, NOW)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "untrusted_certificate_url"));
    // A forged confirmation (bad signature) is refused before anything.
    let mut forged: Value = serde_json::from_str(&m.signed(pki())).unwrap();
    forged["SubscribeURL"] = json!(format!("{}/confirm?other", w.certs.url));
    let e = auto
        .process(forged.to_string().as_bytes(), None, NOW)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "signature_invalid");
    // Unsubscribe confirmations are authenticated too, and queue nothing.
    let mut u = SnsMessage::confirmation("c3", &w.cert_url(), &confirm);
    u.kind = "UnsubscribeConfirmation".into();
    assert!(events(&auto, &u.signed(pki())).await.is_empty());
}

/// A certificate file with the leaf only is completed from the leaf's
/// Authority Information Access URL (an allowed host), then verified as usual.
#[tokio::test]
async fn a_leaf_only_certificate_file_is_completed_through_aia() {
    let inter: Arc<Mutex<String>> = Arc::default();
    let i = inter.clone();
    let aia = Server::start(move |_: &Seen| Some(response(200, &[], &i.lock().unwrap()))).await;
    let p = SnsPki::with(PkiOptions {
        aia_url: Some(format!("{}/inter.pem", aia.url)),
        ..PkiOptions::default()
    });
    *inter.lock().unwrap() = p.intermediate_pem.clone();
    let certs = p.serve().await;
    let rvs = FakeRvs::start().await;
    rvs.answer("AIA", 200, &subscription_receipt("AIA", PURCHASE, RENEWAL));
    let host = certs.url.trim_start_matches("https://").to_owned();
    let aia_host = aia.url.trim_start_matches("http://").to_owned();
    let settings = HashMap::from([
        ("AMAZON_SNS_CERT_HOSTS", format!("{host},{aia_host}")),
        ("AMAZON_SNS_TRUST_ROOTS", p.root_pem.clone()),
        ("AMAZON_RVS_SHARED_SECRET", SHARED_SECRET.to_owned()),
        ("AMAZON_RVS_URL", rvs.server.url.clone()),
    ]);
    let lookup = |k: &str| settings.get(k).cloned();
    let a = Amazon::new(amazon_config(&lookup, false).unwrap(), clock()).unwrap();
    let m = SnsMessage::notification(
        &rtn("SUBSCRIPTION_RENEWED", "AIA", NOW).to_string(),
        "aia",
        &format!("{}/leaf-only.pem", certs.url),
    );
    let e = one(&a, &m.signed(&p)).await;
    assert_eq!(e.kind, EventType::SubscriptionRenewed);
    assert_eq!(aia.seen().len(), 1, "the intermediate fetched once");
    // Without the AIA host allowed the chain cannot be completed.
    let mut s2 = settings.clone();
    s2.insert("AMAZON_SNS_CERT_HOSTS", host);
    let lookup = |k: &str| s2.get(k).cloned();
    let b = Amazon::new(amazon_config(&lookup, false).unwrap(), clock()).unwrap();
    let e = b
        .process(m.signed(&p).as_bytes(), None, NOW)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "untrusted_certificate"));
    assert_eq!(aia.seen().len(), 1, "a host not allowed is never fetched");
}

/// What the certificate must be issued for: `sns.amazonaws.com` (or a
/// regional SNS name) in a DNS name, or in the common name of a certificate
/// without subject alternative names; anything else is refused.
#[tokio::test]
async fn the_signing_certificate_must_name_sns() {
    let w = World::start().await;
    w.active("NAME");
    for (name, san, ok) in [
        ("sns.amazonaws.com", false, true),
        ("sns.eu-west-1.amazonaws.com", true, true),
        ("sns.amazonaws.com.evil.com", true, false),
        ("evil.example.com", false, false),
    ] {
        let p = SnsPki::with(PkiOptions {
            leaf_name: name.into(),
            san,
            ..PkiOptions::default()
        });
        let server = pki().serve_file(p.chain_pem()).await;
        let s = w.settings_served_by(&server.url, &p.root_pem);
        let a = w.amazon_with(&s, clock());
        let m = SnsMessage::notification(
            &rtn("SUBSCRIPTION_RENEWED", "NAME", NOW).to_string(),
            "name",
            &format!("{}/c.pem", server.url),
        );
        let r = a.process(m.signed(&p).as_bytes(), None, NOW).await;
        match (ok, r) {
            (true, Ok(e)) => assert_eq!(e.len(), 1, "{name}"),
            (false, Err(e)) => assert_eq!(e.code(), "untrusted_certificate", "{name}"),
            (ok, r) => panic!("{name} (san {san}): expected ok={ok}, got {r:?}"),
        }
    }
}

/// A self-signed test certificate (CA:TRUE, as `openssl req -x509` makes it)
/// given itself in `AMAZON_SNS_TRUST_ROOTS` is trusted as pinned; not given,
/// it is refused; its validity period still applies.
#[tokio::test]
async fn a_pinned_self_signed_test_certificate_is_trusted_only_when_given() {
    let w = World::start().await;
    w.active("PIN");
    let p = SnsPki::with(PkiOptions {
        self_signed: true,
        ..PkiOptions::default()
    });
    let server = pki().serve_file(p.leaf_pem.clone()).await;
    let m = SnsMessage::notification(
        &rtn("SUBSCRIPTION_RENEWED", "PIN", NOW).to_string(),
        "pin",
        &format!("{}/c.pem", server.url),
    );
    let mut s = w.settings_served_by(&server.url, &p.leaf_pem);
    let a = w.amazon_with(&s, clock());
    assert_eq!(
        one(&a, &m.signed(&p)).await.kind,
        EventType::SubscriptionRenewed
    );
    let late = Arc::new(ManualClock::new(
        chrono::Utc.with_ymd_and_hms(2041, 1, 1, 0, 0, 0).unwrap(),
    ));
    let expired = w.amazon_with(&s, late);
    let e = expired
        .process(m.signed(&p).as_bytes(), None, NOW)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "untrusted_certificate");
    s.insert("AMAZON_SNS_TRUST_ROOTS", pki().root_pem.clone());
    let b = w.amazon_with(&s, clock());
    let e = b
        .process(m.signed(&p).as_bytes(), None, NOW)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "untrusted_certificate"));
}

/// RVS's answer decides state only for the receipt it was asked about: a 200
/// answer naming another receipt is refused (503), nothing translated.
#[tokio::test]
async fn an_rvs_answer_about_another_receipt_is_refused() {
    let w = World::start().await;
    w.rvs.answer(
        "ASKED",
        200,
        &subscription_receipt("SOMEONE-ELSE", PURCHASE, RENEWAL),
    );
    let a = w.amazon();
    let body = w
        .notification(&rtn("SUBSCRIPTION_PURCHASED", "ASKED", NOW), "other")
        .signed(pki());
    let e = a.process(body.as_bytes(), None, NOW).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (503, "rvs_unavailable"));
    assert!(e.to_string().contains("another receipt"), "{e}");
}

#[test]
fn deployments_refuse_to_start_without_their_allowlists() {
    let base = HashMap::from([
        ("AMAZON_APP_PACKAGES", PACKAGE.to_owned()),
        ("AMAZON_TOPIC_ARNS", TOPIC_ARN.to_owned()),
        ("AMAZON_RVS_SHARED_SECRET", SHARED_SECRET.to_owned()),
    ]);
    let ok = |k: &str| base.get(k).cloned();
    assert!(amazon_config(&ok, true).is_ok());
    for missing in [
        "AMAZON_APP_PACKAGES",
        "AMAZON_TOPIC_ARNS",
        "AMAZON_RVS_SHARED_SECRET",
    ] {
        let mut s = base.clone();
        s.remove(missing);
        let l = |k: &str| s.get(k).cloned();
        let err = amazon_config(&l, true).unwrap_err().to_string();
        assert!(err.contains(missing), "{missing}: {err}");
    }
    let mut s = base.clone();
    s.insert("AMAZON_TOPIC_ARNS", "not-an-arn".into());
    let l = |k: &str| s.get(k).cloned();
    assert!(amazon_config(&l, true).is_err());
    let mut s = base.clone();
    s.insert("AMAZON_RVS_URL", "http://example.com".into());
    let l = |k: &str| s.get(k).cloned();
    assert!(amazon_config(&l, true).is_err(), "http only to loopback");
}

// ------------------------------------------------------- committed sample events

/// (file, SNS Type, RTN notificationType, receipt)
const SAMPLES: [(&str, &str, &str, &str); 3] = [
    (
        "amazon-subscription-purchased.json",
        "Notification",
        "SUBSCRIPTION_PURCHASED",
        "q1YqVbJSKkktLlGyUkopSi0uyc9LTSxKLEpNUbJSSs4vyi8uSUxOzcsHyVkpVQMA",
    ),
    (
        "amazon-subscription-cancelled.json",
        "Notification",
        "SUBSCRIPTION_CANCELLED",
        "q1YqVbJSKkktLlGyUkopSi0uyc9LTSxKLEpNUbJSSs4vyi8uSUxOzcsHyVkpVQMA",
    ),
    (
        "amazon-subscription-confirmation.json",
        "SubscriptionConfirmation",
        "",
        "",
    ),
];
const SAMPLE_TIME: i64 = 1_795_996_800_000; // 2026-11-30T00:00:00Z

fn repo_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// The committed samples (API Gateway events, as `sam local invoke` takes
/// them) are SNS messages signed by the committed test PKI
/// (`tests/fixtures/amazon/`). `SigningCertURL` is not part of what SNS signs,
/// so the test serves the committed chain on loopback and points the URL
/// there: the committed signatures verify unchanged.
/// `STOREHOOK_BLESS=1 cargo test -p storehook-shared --test amazon committed`
/// regenerates the PKI and the samples (commit them together).
#[tokio::test]
async fn committed_samples_verify_with_the_committed_test_pki() {
    if std::env::var_os("STOREHOOK_BLESS").is_some() {
        bless_samples();
    }
    let root = std::fs::read_to_string(repo_path("tests/fixtures/amazon/root.pem")).unwrap();
    let chain = std::fs::read_to_string(repo_path("tests/fixtures/amazon/chain.pem")).unwrap();
    let tls = SnsPki::new();
    let server = tls.serve_file(chain).await;
    let rvs = FakeRvs::start().await;
    let settings = HashMap::from([
        ("AMAZON_APP_PACKAGES", PACKAGE.to_owned()),
        ("AMAZON_TOPIC_ARNS", TOPIC_ARN.to_owned()),
        ("AMAZON_RVS_SHARED_SECRET", SHARED_SECRET.to_owned()),
        ("AMAZON_RVS_URL", rvs.server.url.clone()),
        (
            "AMAZON_SNS_CERT_HOSTS",
            server.url.trim_start_matches("https://").to_owned(),
        ),
        ("AMAZON_SNS_TRUST_ROOTS", format!("{}{root}", tls.root_pem)),
    ]);
    let lookup = |k: &str| settings.get(k).cloned();
    let config = amazon_config(&lookup, true).unwrap();
    let clock = Arc::new(ManualClock::new(
        chrono::Utc
            .timestamp_millis_opt(SAMPLE_TIME + 60_000)
            .unwrap(),
    ));
    for (file, kind, rtn_type, receipt) in SAMPLES {
        let text = std::fs::read_to_string(repo_path(&format!("events/{file}"))).unwrap();
        let mut event: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event["rawPath"], "/amazon", "{file}");
        assert!(
            event["headers"]["content-type"]
                .as_str()
                .unwrap()
                .starts_with("text/plain"),
            "{file}: SNS posts text/plain"
        );
        let mut body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["Type"], kind);
        assert!(
            body["SigningCertURL"]
                .as_str()
                .unwrap()
                .starts_with("https://sns.us-east-1.amazonaws.com/"),
            "{file}"
        );
        body["SigningCertURL"] = json!(format!(
            "{}/SimpleNotificationService-sample.pem",
            server.url
        ));
        event["body"] = json!(body.to_string());
        if !receipt.is_empty() {
            let r = if rtn_type == "SUBSCRIPTION_CANCELLED" {
                rvs_receipt(receipt, |r| {
                    r["autoRenewing"] = json!(false);
                    r["cancelDate"] = json!(SAMPLE_TIME + 20 * DAY);
                    r["cancelReason"] = json!(1);
                })
            } else {
                subscription_receipt(receipt, SAMPLE_TIME - 1000, SAMPLE_TIME + 30 * DAY)
            };
            rvs.answer(receipt, 200, &r);
        }
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        let queue = Arc::new(MemoryQueue::new());
        let amazon = Amazon::new(config.clone(), clock.clone()).unwrap();
        let ingest = Ingest::new(
            Arc::new(AmazonEndpoint(amazon)),
            queue.clone(),
            clock.clone(),
        );
        let resp = ingest.lambda(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{file}: {:?}", resp.body());
        let sent = queue.sent();
        if rtn_type.is_empty() {
            assert!(sent.is_empty(), "{file}");
        } else {
            assert_eq!(sent.len(), 1, "{file}");
            let e: Event = serde_json::from_str(&sent[0].body).unwrap();
            assert_eq!(e.store_notification.kind, rtn_type, "{file}");
        }
    }
}

fn bless_samples() {
    let p = SnsPki::new();
    std::fs::create_dir_all(repo_path("tests/fixtures/amazon")).unwrap();
    std::fs::write(repo_path("tests/fixtures/amazon/root.pem"), &p.root_pem).unwrap();
    std::fs::write(repo_path("tests/fixtures/amazon/chain.pem"), p.chain_pem()).unwrap();
    let url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-storehook-sample.pem";
    let stamp = "2026-11-30T00:00:00.000Z";
    for (i, (file, kind, rtn_type, receipt)) in SAMPLES.iter().enumerate() {
        let id = format!("5a6c2f3e-8b1d-4c7e-9f00-00000000000{i}");
        let mut m = if *kind == "Notification" {
            SnsMessage::notification(&rtn(rtn_type, receipt, SAMPLE_TIME).to_string(), &id, url)
        } else {
            SnsMessage::confirmation(
                &id,
                url,
                &format!(
                    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC_ARN}&Token=2336412f37fb687f5d51e6e2425ba1f3"
                ),
            )
        };
        m.timestamp = stamp.into();
        m.signature_version = if i == 1 { "1".into() } else { "2".into() };
        let event = json!({
            "version": "2.0",
            "routeKey": "POST /amazon",
            "rawPath": "/amazon",
            "rawQueryString": "",
            "headers": {
                "content-type": "text/plain; charset=UTF-8",
                "host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
                "user-agent": "Amazon Simple Notification Service Agent",
                "x-amz-sns-message-type": kind,
                "x-amz-sns-message-id": id,
                "x-amz-sns-topic-arn": TOPIC_ARN
            },
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abcdef1234",
                "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abcdef1234",
                "http": {"method": "POST", "path": "/amazon", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.20", "userAgent": "Amazon Simple Notification Service Agent"},
                "requestId": "amazon-sample",
                "routeKey": "POST /amazon",
                "stage": "$default",
                "time": "30/Nov/2026:00:00:01 +0000",
                "timeEpoch": SAMPLE_TIME + 1000
            },
            "body": m.signed(&p),
            "isBase64Encoded": false
        });
        std::fs::write(
            repo_path(&format!("events/{file}")),
            serde_json::to_string_pretty(&event).unwrap() + "\n",
        )
        .unwrap();
    }
}

// ------------------------------------------------------- the sweeper's Amazon source

mod sweeper {
    use super::*;
    use storehook_shared::event::Timestamp;
    use storehook_shared::state::transition;
    use storehook_shared::stores::amazon::sweep::AmazonStatusSource;
    use storehook_shared::sweep::{SourceError, StatusSource};

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    /// A lapsed subscription: bought (period ending RENEWAL), applied; then
    /// RVS is asked after its end, and what it says decides.
    #[tokio::test]
    async fn a_lapsed_subscription_is_asked_about_and_rvs_decides() {
        let w = World::start().await;
        let a = Arc::new(w.amazon());
        w.active("SW-1");
        let e = one(
            &a,
            &w.notification(&rtn("SUBSCRIPTION_PURCHASED", "SW-1", NOW), "sw")
                .signed(pki()),
        )
        .await;
        let group = e.group_key();
        let state = transition(None, e.clone(), e.received_at).next;
        let src = AmazonStatusSource::new(a.clone()).unwrap();
        let after = RENEWAL + DAY;

        // Renewed meanwhile (the notification lost): SUBSCRIPTION_RENEWED at the old end.
        w.rvs.answer(
            "SW-1",
            200,
            &subscription_receipt("SW-1", PURCHASE, RENEWAL + 30 * DAY),
        );
        let ev = src.refresh(&group, &state, ts(after)).await.unwrap();
        assert_eq!(ev.len(), 1);
        let r = &ev[0];
        assert_eq!(r.kind, EventType::SubscriptionRenewed);
        assert_eq!(r.group_key(), group);
        assert_eq!(r.occurred_at.millis(), RENEWAL);
        assert_eq!(r.details.source.as_deref(), Some("sweeper"));
        assert_eq!(
            r.subscription
                .as_ref()
                .unwrap()
                .expires_at
                .unwrap()
                .millis(),
            RENEWAL + 30 * DAY
        );
        assert!(r.entitlement.active);
        assert_eq!(
            src.refresh(&group, &state, ts(after + 1000)).await.unwrap()[0].id,
            r.id,
            "deterministic id"
        );
        let renewed = transition(Some(&state), r.clone(), r.received_at).next;
        assert!(
            src.refresh(&group, &renewed, ts(after))
                .await
                .unwrap()
                .is_empty(),
            "nothing new once applied"
        );

        // In grace.
        w.rvs.answer(
            "SW-1",
            200,
            &rvs_receipt("SW-1", |r| r["gracePeriodEndDate"] = json!(after + 2 * DAY)),
        );
        let g = &src.refresh(&group, &state, ts(after)).await.unwrap()[0];
        assert_eq!(g.kind, EventType::GracePeriodStarted);
        assert_eq!(
            g.subscription.as_ref().unwrap().status,
            SubscriptionStatus::InGracePeriod
        );
        assert!(g.entitlement.active);

        // Ended: SUBSCRIPTION_EXPIRED at the end, not entitled; then nothing more.
        w.rvs.answer(
            "SW-1",
            200,
            &rvs_receipt("SW-1", |r| {
                r["autoRenewing"] = json!(false);
                r["cancelDate"] = json!(RENEWAL);
            }),
        );
        let x = &src.refresh(&group, &state, ts(after)).await.unwrap()[0];
        assert_eq!(x.kind, EventType::SubscriptionExpired);
        assert_eq!(x.occurred_at.millis(), RENEWAL);
        assert_eq!(
            x.subscription.as_ref().unwrap().status,
            SubscriptionStatus::Expired
        );
        assert!(!x.entitlement.active);
        let expired = transition(Some(&state), x.clone(), x.received_at).next;
        assert!(
            src.refresh(&group, &expired, ts(after))
                .await
                .unwrap()
                .is_empty()
        );

        // No longer valid: revoked.
        w.rvs.answer("SW-1", 410, &json!({}));
        let v = &src.refresh(&group, &state, ts(after)).await.unwrap()[0];
        assert_eq!(v.kind, EventType::SubscriptionRevoked);
        assert_eq!(v.group_key(), group);

        // RVS does not know it, or is down: errors, nothing invented.
        w.rvs.answer("SW-1", 400, &json!({}));
        assert!(matches!(
            src.refresh(&group, &state, ts(after)).await,
            Err(SourceError::Refused(_))
        ));
        w.rvs.answer("SW-1", 503, &json!({}));
        assert!(matches!(
            src.refresh(&group, &state, ts(after)).await,
            Err(SourceError::Unavailable(_))
        ));
        // Every call asked about the group's receipt.
        assert!(w.rvs.asked().iter().all(|r| r == "SW-1"));
    }
}
