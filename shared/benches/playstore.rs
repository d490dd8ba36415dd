//! Google Play per-notification cost, with Google's JWKS and the OAuth access
//! token cached and the Play Developer API on 127.0.0.1 (the fake of
//! `storehook_testkit::playstore`):
//!
//! - `auth_decode`: OIDC push token verification (RS256 against the cached
//!   JWKS key, claims) + Pub/Sub body parse + base64 + DeveloperNotification;
//! - `parse_api_translate`: `SubscriptionPurchaseV2` JSON parse + translation;
//! - `cpu_per_notification`: both, plus the event's queue message JSON — the
//!   whole CPU path of one push except the API round trip (target ≤ 100 µs);
//! - `process_loopback_api`: `PlayStoreEndpoint::process` end to end, including
//!   the `subscriptionsv2.get` round trip to the loopback fake.
//!
//! Run: `cargo bench -p storehook-shared --no-default-features --bench playstore`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use storehook_shared::queue::QueueMessage;
use storehook_shared::stores::playstore::links::Lineage;
use storehook_shared::stores::playstore::model::{PurchaseToken, SubscriptionPurchaseV2};
use storehook_shared::stores::playstore::translate::{PlayState, SubscriptionState, translate};
use storehook_testkit::playstore::PlayTestEnv;
use storehook_testkit::playstore::payloads::*;

const TOKEN: &str = "nmehidagchkodknabhpinckd.AO-J1OyEVS_-ZsLI5oaR1ZllDWajOria6YMhv12XWpA-8Z_kfUCMkFM1B4Q7k_ETe2wZ826mfzDPu-sFTkioxB7vf5qumS3i-w";
const NOW: i64 = T0 + 40 * DAY;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let env = rt.block_on(PlayTestEnv::start());
    let endpoint = env.endpoint();
    let sub = Sub {
        offer_id: Some("intro-50".into()),
        offer_phase: Some("introductoryPrice".into()),
        ..Sub::active()
            .expiry(NOW + 20 * DAY)
            .order("GPA.3301-2241-6549-81234..3")
    };
    env.google.set_subscription(PACKAGE, TOKEN, sub.json());
    let req = env.request(push_body(
        "7541642979606340",
        &subscription_notification(2, TOKEN, NOW - 500),
        NOW - 400,
    ));
    // Warm: JWKS fetched, access token issued, lineage linked.
    let warm = rt.block_on(endpoint.process(&req, NOW)).unwrap();
    assert_eq!(warm.len(), 1);
    assert_eq!(env.google.jwks_fetches(), 1);

    let api_bytes = sub.json().to_string().into_bytes();
    let lineage = Lineage::rooted_at(&PurchaseToken::new(TOKEN));
    let push = endpoint.decode(&req.body).unwrap();
    let config = endpoint.config().clone();

    let mut g = c.benchmark_group("playstore");
    g.bench_function("auth_decode", |b| {
        b.iter(|| {
            rt.block_on(endpoint.authenticator().authenticate(black_box(&req)))
                .unwrap();
            black_box(endpoint.decode(black_box(&req.body)).unwrap())
        })
    });
    g.bench_function("parse_api_translate", |b| {
        b.iter(|| {
            let purchase: SubscriptionPurchaseV2 =
                serde_json::from_slice(black_box(&api_bytes)).unwrap();
            let state = PlayState::Subscription(Box::new(SubscriptionState {
                purchase,
                json: None,
                lineage: lineage.clone(),
                previous: None,
            }));
            black_box(translate(
                &push,
                &state,
                &config,
                storehook_shared::event::Timestamp::from_millis_clamped(NOW),
            ))
        })
    });
    g.bench_function("cpu_per_notification", |b| {
        b.iter(|| {
            rt.block_on(endpoint.authenticator().authenticate(black_box(&req)))
                .unwrap();
            let push = endpoint.decode(black_box(&req.body)).unwrap();
            let purchase: SubscriptionPurchaseV2 =
                serde_json::from_slice(black_box(&api_bytes)).unwrap();
            let state = PlayState::Subscription(Box::new(SubscriptionState {
                purchase,
                json: None,
                lineage: lineage.clone(),
                previous: None,
            }));
            let events = translate(
                &push,
                &state,
                &config,
                storehook_shared::event::Timestamp::from_millis_clamped(NOW),
            );
            black_box(QueueMessage::for_event(&events[0]).unwrap())
        })
    });
    g.bench_function("process_loopback_api", |b| {
        b.iter(|| black_box(rt.block_on(endpoint.process(black_box(&req), NOW)).unwrap()))
    });
    g.finish();
    assert_eq!(env.google.jwks_fetches(), 1, "the JWKS stayed cached");
    assert_eq!(
        env.google.token_requests(),
        1,
        "the access token stayed cached"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
