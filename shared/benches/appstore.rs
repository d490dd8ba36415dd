//! verify + translate of one real App Store notification (3 JWS: signedPayload,
//! signedTransactionInfo, signedRenewalInfo), warm (chain cached) and cold.
//!
//! cargo bench -p storehook-shared --bench appstore
//!
//! With `STOREHOOK_PROFILE=warm|cold|floor` and `STOREHOOK_ITERS=N` the binary
//! runs that path N times and exits (no criterion): what
//! `scripts/profile_warm_path.sh` runs under callgrind and DHAT, where
//! instruction and allocation counts are repeatable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, criterion_group};
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
    // The floor, measured in the same run: the three ES256 signature checks alone
    // (aws-lc-rs, keys already parsed out of the leaf certificate).
    let jws: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = floor_inputs(&body);
    g.bench_function("floor_3x_p256_verify", |b| b.iter(|| floor(&jws)));
    g.finish();
}

/// The floor: the three ES256 signature checks alone.
fn floor(jws: &[(Vec<u8>, Vec<u8>, Vec<u8>)]) {
    for (key, msg, sig) in jws {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            key,
        )
        .verify(black_box(msg), black_box(sig))
        .unwrap();
    }
}

/// (leaf public key, signed message, raw signature) of the notification and its two nested JWS.
fn floor_inputs(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use x509_parser::prelude::FromDer;
    let outer: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut all = vec![outer["signedPayload"].as_str().unwrap().to_owned()];
    let payload: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(all[0].split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    for k in ["signedTransactionInfo", "signedRenewalInfo"] {
        all.push(payload["data"][k].as_str().unwrap().to_owned());
    }
    all.iter()
        .map(|jws| {
            let parts: Vec<&str> = jws.split('.').collect();
            let header: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
            let leaf = STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap();
            let (_, cert) = x509_parser::prelude::X509Certificate::from_der(&leaf).unwrap();
            (
                cert.public_key().subject_public_key.data.to_vec(),
                format!("{}.{}", parts[0], parts[1]).into_bytes(),
                URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            )
        })
        .collect()
}

criterion_group!(benches, bench);

/// `mode` N times, nothing else (see the module docs).
fn profile(mode: &str, iters: usize) {
    let body = body();
    let now = 1_800_000_000_000;
    let app = AppStore::new(AppStoreConfig::default()).unwrap();
    // The chain cache is warm and every lazy initialisation done before the loop.
    assert_eq!(app.process(&body, now).unwrap().len(), 1);
    let jws = floor_inputs(&body);
    for _ in 0..iters {
        match mode {
            "warm" => {
                black_box(app.process(black_box(&body), now).unwrap());
            }
            "cold" => {
                app.verifier().clear_cache();
                black_box(app.process(black_box(&body), now).unwrap());
            }
            "floor" => floor(&jws),
            other => panic!("STOREHOOK_PROFILE={other}: warm, cold or floor"),
        }
    }
}

fn main() {
    if let Ok(mode) = std::env::var("STOREHOOK_PROFILE") {
        let iters = std::env::var("STOREHOOK_ITERS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100);
        profile(&mode, iters);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
