//! Amazon: everything after SNS authentication that reads sender- or
//! store-controlled bytes, without the network: the SNS envelope reader and
//! its canonical string (must never panic), the RTN payload reader, and the
//! translation of any payload with any RVS answer (200 with any JSON body, 410,
//! 400), replaced receipt included. Events must round-trip through JSON
//! (`check_events`).
//!
//! Input: `envelope 0xFF message 0xFF rvs-answer 0xFF replaced-answer`; the
//! first byte of each answer picks its status (`4` → 410, `0` → 400, else 200
//! with the rest as the body). Seeds: the committed sample bodies in `events/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storehook_fuzz::{NOW_MS, check_events, split_once};
use storehook_shared::event::Timestamp;
use storehook_shared::stores::amazon::rvs::{Answer, Receipt};
use storehook_shared::stores::amazon::sns::{SnsMessage, string_to_sign};
use storehook_shared::stores::amazon::translate::notification;
use storehook_shared::stores::amazon::{
    AmazonConfig, Confirmed, Rtn, VerifiedNotification, amazon_config,
};
use std::sync::OnceLock;

fn config() -> &'static AmazonConfig {
    static C: OnceLock<AmazonConfig> = OnceLock::new();
    C.get_or_init(|| {
        let l = |k: &str| match k {
            "INCLUDE_RAW" => Some("true".to_owned()),
            _ => None,
        };
        amazon_config(&l, false).expect("config")
    })
}

fn answer(data: &[u8]) -> Option<Answer> {
    let (first, rest) = data.split_first()?;
    Some(match first {
        b'4' => Answer::NoLongerValid,
        b'0' => Answer::NotConfirmed(400),
        _ => Answer::Valid(Box::new(
            storehook_shared::json::from_slice::<Receipt>(rest).ok()?,
        )),
    })
}

fuzz_target!(|data: &[u8]| {
    let (envelope, rest) = split_once(data, 0xFF);
    let (message, rest) = split_once(rest, 0xFF);
    let (rvs, replaced) = split_once(rest, 0xFF);
    if let Ok(m) = storehook_shared::json::from_slice::<SnsMessage>(envelope) {
        let _ = string_to_sign(&m);
    }
    let message = String::from_utf8_lossy(message).into_owned();
    let rtn = storehook_shared::json::from_str::<Rtn>(&message).map_err(|e| e.to_string());
    let cancelled = rtn
        .as_ref()
        .ok()
        .and_then(|r| r.cancelled_receipt_id().map(str::to_owned));
    let v = VerifiedNotification {
        message_id: "fuzz-message".into(),
        topic_arn: "arn:aws:sns:us-east-1:000000000000:fuzz".into(),
        sns_timestamp_ms: Some(NOW_MS - 1000),
        message,
        rtn,
    };
    let confirmed = Confirmed {
        receipt: answer(rvs),
        replaced: cancelled.and_then(|id| answer(replaced).map(|a| (id, a))),
    };
    let events = notification(&v, &confirmed, config(), Timestamp::from_millis_clamped(NOW_MS));
    assert!(!events.is_empty() && events.len() <= 2);
    check_events(&events);
});
