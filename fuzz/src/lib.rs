//! Shared set-up of storehook's fuzz targets: one runtime, a fixed clock, keys
//! generated once per process, a loopback JWKS server, and the checks every
//! target applies to what it produced (events must round-trip through JSON).
//!
//! A target never panics on any input: a panic (or a failed check here) is a
//! crash that libFuzzer records in `fuzz/artifacts/<target>/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, EncodingKey};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use storehook_shared::clock::ManualClock;
use storehook_shared::event::Event;

/// The fixed "now" of every target (2025-03-01T00:00:00Z, the test kit's payloads' T0).
pub const NOW_MS: i64 = 1_740_787_200_000;

/// `NOW_MS` as a time.
pub fn now() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(NOW_MS).single().expect("valid")
}

/// A clock that stays at [`NOW_MS`].
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(now()))
}

/// One current-thread runtime for the whole process (clients keep pooled
/// connections bound to it).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Splits `data` at the first `sep` (the rest is empty when there is none).
pub fn split_once(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Every produced event must serialize, parse back equal (through the same
/// strict reader the consumers use), and have a group key.
pub fn check_events(events: &[Event]) {
    for e in events {
        let _ = e.group_key();
        let text = serde_json::to_vec(e).expect("an event always serializes");
        let back: Event = storehook_shared::json::from_slice(&text)
            .unwrap_or_else(|err| panic!("a produced event does not parse back: {err}"));
        assert_eq!(&back, e, "a produced event does not round-trip");
    }
}

/// The judgement of a store endpoint's answer, common to the store targets:
/// printed with `STOREHOOK_FUZZ_DEBUG=1`; an accepted input yields at least one
/// event and every event round-trips ([`check_events`]); a refusal is a
/// well-formed JSON refusal ([`check_rejection`]) and, when `statuses` is not
/// empty, has one of them.
pub fn check_outcome<E: std::fmt::Debug>(
    result: Result<Vec<Event>, E>,
    rejection: impl Fn(&E) -> storehook_shared::error::Rejection,
    statuses: &[u16],
) {
    debug(&result.as_ref().map(|e| {
        e.iter()
            .map(|e| e.kind.as_str().to_owned())
            .collect::<Vec<_>>()
    }));
    match result {
        Ok(events) => {
            assert!(!events.is_empty(), "an accepted input produced no event");
            check_events(&events);
        }
        Err(e) => {
            let r = rejection(&e);
            check_rejection(&r);
            assert!(
                statuses.is_empty() || statuses.contains(&r.status),
                "unexpected refusal status {}",
                r.status
            );
        }
    }
}

/// Compact JWS over the exact `payload` bytes (not re-serialized, so the
/// fuzzer's duplicate keys, odd numbers and escapes reach the verifier as
/// they are), signed with `key` under `header`.
pub fn sign_raw(
    header: &serde_json::Value,
    payload: &[u8],
    key: &EncodingKey,
    alg: Algorithm,
) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("header")),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).expect("sign");
    format!("{msg}.{sig}")
}

/// Serves `body` as `application/json` (cacheable for a day) to every
/// request on a loopback port, from a plain thread; returns the URL.
pub fn serve_static(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: public, max-age=86400\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    format!("http://{addr}/jwks")
}

/// A refusal must be a 4xx/5xx with a `{"error":{"code","message"}}` body
/// whose code is the rejection's.
pub fn check_rejection(r: &storehook_shared::error::Rejection) {
    assert!(
        (400..600).contains(&r.status),
        "refusal with status {}",
        r.status
    );
    assert!(!r.code.is_empty(), "refusal without a code");
    let body: serde_json::Value = serde_json::from_str(&r.body()).expect("a refusal body is JSON");
    assert_eq!(
        body["error"]["code"].as_str(),
        Some(r.code),
        "refusal body code"
    );
    assert!(body["error"]["message"].is_string(), "refusal body message");
}

/// `haystack` with every `needle` replaced by `with`.
pub fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if !needle.is_empty() && haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// With `STOREHOOK_FUZZ_DEBUG=1`, prints each input's outcome to stderr (to
/// check that seeds reach where they should: `cargo fuzz run <t> <seed>`).
pub fn debug(outcome: &dyn std::fmt::Debug) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("STOREHOOK_FUZZ_DEBUG").is_some()) {
        eprintln!("outcome: {outcome:?}");
    }
}
