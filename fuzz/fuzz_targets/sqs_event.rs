//! Dispatcher: an SQS FIFO batch whose message bodies are the input →
//! `Event` decode → state apply (in memory) → signed delivery → ack / retry /
//! dead letter. Bodies that are not events must be dead-lettered, never crash
//! the batch.
//!
//! Input: `status byte, body (0x00 body)*` — up to 4 messages of one group;
//! the status byte picks the webhook's answer (200, 500, 410, 429). Fresh
//! state per input.
#![no_main]

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storehook_fuzz::{clock, runtime};
use storehook_shared::dispatch::Dispatcher;
use storehook_shared::dispatch::sqs_batch::{ATTR_GROUP_ID, ATTR_RECEIVE_COUNT, handle_sqs_batch};
use storehook_shared::queue::message_control::MemoryMessageControl;
use storehook_shared::event::{Event, EventId};
use storehook_shared::retry::RetrySchedule;
use storehook_shared::state::MemoryState;
use storehook_shared::webhook::{DeliveryAttempt, WebhookSender};

/// The webhook: answers `status`, records what was POSTed.
#[derive(Debug)]
struct Recorder {
    status: u16,
    posts: Mutex<Vec<(String, Vec<u8>)>>,
}

#[async_trait]
impl WebhookSender for Recorder {
    async fn post(&self, id: &EventId, body: &[u8]) -> DeliveryAttempt {
        self.posts
            .lock()
            .expect("lock")
            .push((id.as_str().to_owned(), body.to_vec()));
        DeliveryAttempt {
            status: Some(self.status),
            retry_after: None,
            latency: Duration::ZERO,
            error: None,
            body: Vec::new(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((status, rest)) = data.split_first() else {
        return;
    };
    let status = [200, 500, 410, 429][usize::from(*status % 4)];
    let mut batch = SqsEvent::default();
    for (n, body) in rest.split(|b| *b == 0).take(4).enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("m{n}"));
        m.receipt_handle = Some(format!("rh{n}"));
        m.body = Some(String::from_utf8_lossy(body).into_owned());
        m.attributes = HashMap::from([
            (ATTR_GROUP_ID.to_owned(), "g".to_owned()),
            (ATTR_RECEIVE_COUNT.to_owned(), (n + 1).to_string()),
        ]);
        batch.records.push(m);
    }
    let n = batch.records.len();
    let bodies: Vec<String> = batch
        .records
        .iter()
        .filter_map(|m| m.body.clone())
        .collect();
    let sender = Arc::new(Recorder {
        status,
        posts: Mutex::new(Vec::new()),
    });
    let control = Arc::new(MemoryMessageControl::new());
    let dispatcher = Arc::new(Dispatcher::new(
        Arc::new(MemoryState::new()),
        sender.clone(),
        RetrySchedule::default(),
        clock(),
    ));
    let resp = runtime().block_on(handle_sqs_batch(batch, dispatcher, control.clone(), None));

    assert!(
        resp.batch_item_failures.len() <= n,
        "more failures than messages"
    );
    let posts = sender.posts.lock().expect("lock").clone();
    let mut delivered = HashSet::new();
    for (id, body) in &posts {
        let e: Event = serde_json::from_slice(body).expect("a delivered body is an event");
        assert_eq!(e.id.as_str(), id, "webhook-id is the event id");
        if (200..300).contains(&status) {
            // One event = its id at its sequence. The id alone is not enough
            // here: the fuzzer writes the bodies, so it can give one event the
            // id storehook derives for another's ACCESS_* event (it found
            // that); in production ids are digests of store data and derived
            // ids cannot be chosen.
            assert!(
                delivered.insert((id.clone(), e.sequence)),
                "one event delivered twice in a batch"
            );
        }
    }
    // A dead letter carries its message's body unchanged.
    for d in control.dead_letters() {
        assert!(bodies.contains(&d.body), "a dead letter's body was changed");
    }
});
