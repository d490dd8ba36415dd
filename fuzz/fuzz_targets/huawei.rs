//! Huawei: HTTP body (legacy v1 or v2 SUBSCRIPTION / ORDER) → signature
//! (SHA256WithRSA, PKCS#1 or PSS) over `statusUpdateNotification` → app and
//! environment checks → translation. No API credentials (no network): ORDER
//! notifications are refused with 503 and the notification's own receipt is
//! the snapshot.
//!
//! Input, by its first byte:
//! - `S` / `P` / `V`: structure-aware: the rest is the `statusUpdateNotification`
//!   content, signed here with a key generated at start (configured beside the
//!   fixtures' key) into a v2 PKCS#1 / v2 PSS / legacy v1 body, so mutations
//!   reach the signed models and the translation;
//! - anything else: the raw HTTP body (seeds: the signed samples in `events/`,
//!   verified by `tests/fixtures/huawei/public_key.txt`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use storehook_fuzz::{NOW_MS, clock, runtime};
use storehook_testkit::huawei::{
    HuaweiTestKey, SignAs, payloads, v2_subscription_body,
};
use storehook_shared::stores::huawei::verify::IapPublicKey;
use storehook_shared::stores::huawei::{Huawei, HuaweiConfig};

const FIXTURE_KEY: &str = include_str!("../../tests/fixtures/huawei/public_key.txt");

struct Setup {
    huawei: Huawei,
    key: HuaweiTestKey,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let key = HuaweiTestKey::generate();
        let fixture = IapPublicKey::from_base64(FIXTURE_KEY.trim()).expect("fixture key");
        let mut config = HuaweiConfig::new(
            vec![payloads::APP_ID.to_owned()],
            vec![fixture, key.public_key()],
        );
        config.include_raw = true;
        Setup {
            huawei: Huawei::new(config, clock()).expect("huawei"),
            key,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let body = match data.split_first() {
        Some((b'S' | b'P', rest)) => {
            let how = if data[0] == b'S' {
                SignAs::Pkcs1
            } else {
                SignAs::Pss
            };
            let signed = String::from_utf8_lossy(rest);
            let sig = s.key.sign(how, &signed);
            v2_subscription_body(&signed, &sig, Some(how.algorithm()), NOW_MS)
        }
        Some((b'V', rest)) => {
            let signed = String::from_utf8_lossy(rest);
            serde_json::to_vec(&serde_json::json!({
                "statusUpdateNotification": signed,
                "notifycationSignature": s.key.sign(SignAs::Pkcs1, &signed),
            }))
            .expect("body")
        }
        _ => data.to_vec(),
    };
    storehook_fuzz::check_outcome(
        runtime().block_on(s.huawei.process(&body, NOW_MS)),
        |e| e.rejection(),
        &[],
    );
});
