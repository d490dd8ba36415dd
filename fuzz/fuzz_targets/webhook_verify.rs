//! Standard Webhooks verification (`webhook::verify`), as a receiver runs it.
//!
//! Input: `id \n timestamp \n signature header \n body`. Checked:
//! - never a panic, whatever the headers;
//! - acceptance implies one `v1,` entry is the real HMAC of one configured
//!   secret over (id, timestamp, body): nothing else is ever accepted;
//! - what storehook signs (`WebhookSecrets::headers`) always verifies at its
//!   own timestamp, and fails for a body changed by one byte.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use storehook_fuzz::split_once;
use storehook_shared::webhook::{
    DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookSecret,
    WebhookSecrets, verify,
};

const KEYS: [&[u8]; 2] = [
    b"fuzz-webhook-key-0123456789abcdef",
    b"an-older-rotated-key-0123456789",
];

fn secrets() -> WebhookSecrets {
    WebhookSecrets::new(KEYS.iter().map(|k| WebhookSecret::from_key(k)).collect()).expect("secrets")
}

fuzz_target!(|data: &[u8]| {
    let secrets = secrets();
    let now = storehook_fuzz::now();
    let (id, rest) = split_once(data, b'\n');
    let (ts, rest) = split_once(rest, b'\n');
    let (sig, body) = split_once(rest, b'\n');

    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        (HEADER_ID, id),
        (HEADER_TIMESTAMP, ts),
        (HEADER_SIGNATURE, sig),
    ] {
        if let Ok(v) = http::HeaderValue::from_bytes(value) {
            headers.insert(name, v);
        }
    }
    if let Ok(v) = verify(&headers, body, &secrets, now, DEFAULT_TOLERANCE) {
        let expected: Vec<Vec<u8>> = KEYS
            .iter()
            .map(|k| {
                let s = WebhookSecret::from_key(k).sign(&v.id, v.timestamp, body);
                STANDARD.decode(&s[3..]).expect("own signature")
            })
            .collect();
        let sig = std::str::from_utf8(sig).expect("an accepted header is text");
        assert!(
            sig.split(' ')
                .filter_map(|e| e.strip_prefix("v1,"))
                .filter_map(|b| STANDARD.decode(b).ok())
                .any(|raw| expected.contains(&raw)),
            "accepted without a valid signature"
        );
        assert!(
            (v.timestamp - now.timestamp()).abs() <= 300,
            "accepted outside the tolerance"
        );
    }

    // Round trip of what storehook itself sends.
    let Ok(id) = std::str::from_utf8(id) else {
        return;
    };
    // storehook's ids are `evt_<hex>`: printable ASCII without surrounding blanks.
    if id.trim() != id || id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return;
    }
    let ts = now.timestamp();
    let signed = secrets.headers(id, ts, body);
    let ok =
        verify(&signed, body, &secrets, now, DEFAULT_TOLERANCE).expect("own signature verifies");
    assert_eq!((ok.id.as_str(), ok.timestamp), (id, ts));
    let mut tampered = body.to_vec();
    match tampered.first_mut() {
        Some(b) => *b ^= 1,
        None => tampered.push(b'x'),
    }
    assert!(
        verify(&signed, &tampered, &secrets, now, DEFAULT_TOLERANCE).is_err(),
        "a changed body verified"
    );
});
