//! App Store: HTTP body → `{"signedPayload"}` → JWS + x5c chain → app and
//! environment checks → translation.
//!
//! Input, by its first byte:
//! - `S`: structure-aware: the rest is `outer payload [0xFF transaction [0xFF renewal]]`,
//!   each signed here as an ES256 JWS under a chain of a root generated at start
//!   (trusted by this target's second verifier), so mutations reach past the
//!   signature and chain checks into the payload models and the translation;
//!   `"$TX"` / `"$RN"` in the outer payload are replaced by the signed
//!   transaction / renewal JWS;
//! - anything else: the raw HTTP body, verified against the bundled Apple
//!   Root CA - G3 only (seeds: the real Apple-signed notifications).
#![no_main]

use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use storehook_fuzz::{NOW_MS, replace, sign_raw};
use storehook_testkit::appstore::TestPki;
use storehook_shared::stores::appstore::{AppStore, AppStoreConfig};

struct Setup {
    apple_only: AppStore,
    test_root: AppStore,
    header: serde_json::Value,
    key: EncodingKey,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let pki = TestPki::new();
        let test_root = AppStore::new(AppStoreConfig {
            extra_roots: vec![pki.root_der.clone()],
            include_raw: true,
            ..AppStoreConfig::default()
        })
        .expect("test root");
        Setup {
            apple_only: AppStore::new(AppStoreConfig::default()).expect("apple root"),
            test_root,
            header: serde_json::json!({"alg": "ES256", "x5c": pki.x5c()}),
            key: EncodingKey::from_ec_pem(pki.leaf_key_pem.as_bytes()).expect("leaf key"),
        }
    })
}

fn run(store: &AppStore, body: &[u8]) {
    storehook_fuzz::check_outcome(
        store.process(body, NOW_MS),
        |e| e.rejection(),
        &[400, 401, 403],
    );
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    match data.split_first() {
        Some((b'S', rest)) => {
            let mut parts = rest.splitn(3, |b| *b == 0xFF);
            let outer = parts.next().unwrap_or_default();
            let sign = |p: &[u8]| sign_raw(&s.header, p, &s.key, Algorithm::ES256);
            let mut payload = outer.to_vec();
            if let Some(tx) = parts.next() {
                payload = replace(&payload, b"$TX", sign(tx).as_bytes());
            }
            if let Some(rn) = parts.next() {
                payload = replace(&payload, b"$RN", sign(rn).as_bytes());
            }
            let body = serde_json::to_vec(&serde_json::json!({"signedPayload": sign(&payload)}))
                .expect("body");
            run(&s.test_root, &body);
        }
        _ => run(&s.apple_only, data),
    }
});
