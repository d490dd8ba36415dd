//! verify + translate of one real App Store notification (3 JWS: signedPayload,
//! signedTransactionInfo, signedRenewalInfo), warm (chain cached) and cold.
//!
//! cargo bench -p storehook-shared --bench appstore
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use storehook_shared::stores::appstore::{AppStore, AppStoreConfig};

fn body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/appstore/apple_001_DID_RENEW.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::to_vec(&v["body"]).unwrap()
}

fn bench(c: &mut Criterion) {
    let body = body();
    let now = 1_800_000_000_000;
    let app = AppStore::new(AppStoreConfig::default()).unwrap();
    assert_eq!(app.process(&body, now).unwrap().len(), 1);

    let mut g = c.benchmark_group("appstore_verify_translate");
    g.bench_function("warm_chain_cached", |b| {
        b.iter(|| black_box(app.process(black_box(&body), now).unwrap()))
    });
    g.bench_function("cold_chain_verified", |b| {
        b.iter(|| {
            app.verifier().clear_cache();
            black_box(app.process(black_box(&body), now).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
