//! The dispatcher Lambda's batch logic: an SQS FIFO batch in, a partial batch
//! response out (`ReportBatchItemFailures`).
//!
//! Per message group, in batch order:
//! - every message is settled by [`Dispatcher::settle`], the rule every queue
//!   shares, as a [`Received`] message whose actions fit the batch response:
//!   `ack` is "not reported as failed" (Lambda then deletes it); `retry(delay)`
//!   sets its visibility timeout to the delay (ChangeMessageVisibility) and
//!   reports it failed; `dead_letter(reason)` sends it to the DLQ explicitly
//!   (body unchanged, reason as a message attribute) and does not report it, so
//!   later events of the group proceed; if the DLQ send fails, it is reported
//!   failed instead;
//! - after the first failed message of a group, it AND every later message of
//!   that group in the batch are reported as failures without being processed
//!   (FIFO: event N+1 waits for N); the unprocessed ones are made visible again
//!   at once (visibility 0) so they do not hold the group for the queue's
//!   visibility timeout — FIFO keeps them behind the failed message anyway;
//! - `ApproximateReceiveCount` is the attempt number.
//!
//! Different groups are processed concurrently. Messages not started by the
//! `start_by` instant (the Lambda deadline minus the time one message may
//! take) are reported failed without processing, so the function does not
//! time out mid-delivery; the first message of each group always runs.

use super::Dispatcher;
use super::settle::Settled;
use crate::queue::message_control::{DeadLetterMessage, MessageControl};
use crate::queue::{QueueError, Received};
use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SQS system attribute: the FIFO message group.
pub const ATTR_GROUP_ID: &str = "MessageGroupId";
/// SQS system attribute: how often the message was received (the attempt number).
pub const ATTR_RECEIVE_COUNT: &str = "ApproximateReceiveCount";
/// Handles one SQS batch: see the module docs. Never fails as a whole.
/// `start_by`: no message is started after this instant (None: no limit).
pub async fn handle_sqs_batch(
    batch: SqsEvent,
    dispatcher: Arc<Dispatcher>,
    control: Arc<dyn MessageControl>,
    start_by: Option<Instant>,
) -> SqsBatchResponse {
    // Group messages (with their batch position), groups in first-seen order.
    let mut groups: Vec<(String, Vec<(usize, SqsMessage)>)> = Vec::new();
    for (i, m) in batch.records.into_iter().enumerate() {
        let g = m.attributes.get(ATTR_GROUP_ID).cloned().unwrap_or_default();
        match groups.iter_mut().find(|(k, _)| *k == g) {
            Some((_, v)) => v.push((i, m)),
            None => groups.push((g, vec![(i, m)])),
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    let mut owned: std::collections::HashMap<tokio::task::Id, Vec<(usize, String)>> =
        std::collections::HashMap::new();
    for (group, messages) in groups {
        let ids: Vec<(usize, String)> = messages
            .iter()
            .map(|(i, m)| (*i, m.message_id.clone().unwrap_or_default()))
            .collect();
        let handle = tasks.spawn(process_group(
            group,
            messages,
            dispatcher.clone(),
            control.clone(),
            start_by,
        ));
        owned.insert(handle.id(), ids);
    }

    let mut failed: Vec<(usize, String)> = Vec::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        match joined {
            Ok((_, f)) => failed.extend(f),
            Err(e) => {
                // A crashed group task (unreachable in release builds, where
                // panic = abort): report all its messages so none is lost.
                tracing::error!(error = %e, "group task failed");
                failed.extend(owned.remove(&e.id()).unwrap_or_default());
            }
        }
    }
    failed.sort_by_key(|(i, _)| *i);
    let mut resp = SqsBatchResponse::default();
    resp.set_failures(failed.into_iter().map(|(_, id)| id));
    resp
}

/// Processes one group's messages in order; returns the failed ones.
async fn process_group(
    group: String,
    messages: Vec<(usize, SqsMessage)>,
    dispatcher: Arc<Dispatcher>,
    control: Arc<dyn MessageControl>,
    start_by: Option<Instant>,
) -> Vec<(usize, String)> {
    let mut failed = Vec::new();
    let mut unprocessed = Vec::new();
    let mut blocked = false;
    let mut started_any = false;
    for (i, m) in messages {
        let id = m.message_id.clone().unwrap_or_default();
        // The first message of every group always runs (progress even with a
        // too-short function timeout); later ones only while time remains.
        if !blocked && started_any && start_by.is_some_and(|t| Instant::now() >= t) {
            tracing::warn!(message_id = %id, "out of time: returning the rest of the group unprocessed");
            blocked = true;
        }
        if blocked {
            failed.push((i, id));
            unprocessed.extend(m.receipt_handle.clone());
            continue;
        }
        started_any = true;
        let message = BatchMessage::new(&group, &m, control.as_ref());
        if dispatcher.settle(&message).await != Settled::Acked {
            blocked = true;
            failed.push((i, id));
        }
    }
    // Release the messages returned unprocessed: left in flight they would hold
    // the whole group for the queue's visibility timeout, overriding a shorter
    // retry delay. Visible again, FIFO still keeps them behind the failed one.
    for rh in unprocessed {
        if let Err(e) = control.delay(&rh, Duration::ZERO).await {
            tracing::warn!(error = %e, "could not release an unprocessed message");
        }
    }
    failed
}

/// An SQS message of a batch as a [`Received`] message. Lambda (and
/// `sqs_poller`) deletes every message the batch response does not
/// report as failed, so: `ack` does nothing here (the message is not
/// reported); `retry` sets its visibility timeout (it is reported failed);
/// `dead_letter` sends it to the DLQ (then it is not reported either).
struct BatchMessage<'a> {
    message: &'a SqsMessage,
    id: String,
    group: &'a str,
    body: &'a str,
    receive_count: u32,
    control: &'a dyn MessageControl,
}

impl<'a> BatchMessage<'a> {
    fn new(group: &'a str, message: &'a SqsMessage, control: &'a dyn MessageControl) -> Self {
        Self {
            message,
            id: message.message_id.clone().unwrap_or_default(),
            group,
            body: message.body.as_deref().unwrap_or_default(),
            receive_count: message
                .attributes
                .get(ATTR_RECEIVE_COUNT)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1),
            control,
        }
    }
}

#[async_trait]
impl Received for BatchMessage<'_> {
    fn id(&self) -> &str {
        &self.id
    }

    fn group_id(&self) -> &str {
        self.group
    }

    fn body(&self) -> &str {
        self.body
    }

    fn receive_count(&self) -> u32 {
        self.receive_count
    }

    async fn ack(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn retry(&self, delay: Duration) -> Result<(), QueueError> {
        let rh =
            self.message.receipt_handle.as_deref().ok_or_else(|| {
                QueueError::Permanent("message without receipt handle".to_owned())
            })?;
        self.control.delay(rh, delay).await
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), QueueError> {
        self.control
            .dead_letter(&DeadLetterMessage {
                body: self.body.to_owned(),
                group_id: if self.group.is_empty() {
                    "unknown".to_owned()
                } else {
                    self.group.to_owned()
                },
                dedup_id: self.id.clone(),
                reason: reason.to_owned(),
                receive_count: self.receive_count,
            })
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::{Event, EventType};
    use crate::queue::message_control::MemoryMessageControl;
    use crate::retry::RetrySchedule;
    use crate::state::MemoryState;
    use crate::state::fixtures::*;
    use crate::webhook::{HttpWebhookSender, WebhookSecret, WebhookSecrets};
    use std::collections::HashMap;
    use storehook_testkit::receiver::{Reply, TestReceiver};

    fn message(n: usize, group: &str, body: &str, receive_count: u32) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("m{n}"));
        m.receipt_handle = Some(format!("rh{n}"));
        m.body = Some(body.to_owned());
        m.attributes = HashMap::from([
            (ATTR_GROUP_ID.to_owned(), group.to_owned()),
            (ATTR_RECEIVE_COUNT.to_owned(), receive_count.to_string()),
        ]);
        m
    }

    fn event_message(n: usize, e: &Event, receive_count: u32) -> SqsMessage {
        message(
            n,
            &e.group_key(),
            &serde_json::to_string(e).unwrap(),
            receive_count,
        )
    }

    fn batch(records: Vec<SqsMessage>) -> SqsEvent {
        let mut b = SqsEvent::default();
        b.records = records;
        b
    }

    fn failures(r: &SqsBatchResponse) -> Vec<String> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    async fn rig() -> (TestReceiver, Arc<Dispatcher>, Arc<MemoryMessageControl>) {
        let rx = TestReceiver::start().await.unwrap();
        let secrets = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
        let clock = Arc::new(ManualClock::new(t(0).0));
        let sender =
            HttpWebhookSender::new(&rx.url(), secrets, Duration::from_secs(5), clock.clone())
                .unwrap();
        let d = Dispatcher::new(
            Arc::new(MemoryState::new()),
            Arc::new(sender),
            RetrySchedule::default().with_jitter(0.0),
            clock,
        );
        (rx, Arc::new(d), Arc::new(MemoryMessageControl::new()))
    }

    #[tokio::test]
    async fn a_failure_blocks_the_rest_of_its_group_only() {
        // GIVEN group A: a1, a2, a3 and group B: b1, b2, interleaved in one batch;
        // the endpoint rejects a2 (503) only
        let (rx, d, c) = rig().await;
        let a: Vec<Event> = (1..=3)
            .map(|i| {
                sub_event(
                    &format!("a{i}"),
                    EventType::SubscriptionRenewed,
                    "A",
                    i,
                    false,
                )
            })
            .collect();
        let b: Vec<Event> = (1..=2)
            .map(|i| {
                sub_event(
                    &format!("b{i}"),
                    EventType::SubscriptionRenewed,
                    "B",
                    i,
                    false,
                )
            })
            .collect();
        // The endpoint answers 200, but a2's delivery is turned into a 503.
        let d = Arc::new(Dispatcher {
            sender: Arc::new(FailFor {
                inner: d.sender.clone(),
                id: a[1].id.0.clone(),
            }),
            ..(*d).clone()
        });
        // a2 is on its 3rd receive.
        let records = vec![
            event_message(0, &a[0], 1),
            event_message(1, &b[0], 1),
            event_message(2, &a[1], 3),
            event_message(3, &b[1], 1),
            event_message(4, &a[2], 1),
        ];
        // WHEN the batch is handled
        let resp = handle_sqs_batch(batch(records), d, c.clone(), None).await;
        // THEN a2 and a3 are reported failed; a1, b1, b2 are acknowledged
        assert_eq!(failures(&resp), vec!["m2", "m4"]);
        // AND a2 got the visibility delay of its attempt (3rd → 30 min); a3 was not
        // processed and was released at once
        assert_eq!(
            c.delays(),
            vec![
                ("rh2".to_owned(), Duration::from_secs(1_800)),
                ("rh4".to_owned(), Duration::ZERO)
            ]
        );
        let sent: Vec<String> = rx
            .requests()
            .iter()
            .map(|r| r.webhook_id().unwrap().to_owned())
            .collect();
        assert!(
            sent.contains(&a[0].id.0) && sent.contains(&b[0].id.0) && sent.contains(&b[1].id.0)
        );
        assert!(!sent.contains(&a[2].id.0));
        // AND group B was delivered in order
        let bpos: Vec<usize> = b
            .iter()
            .map(|e| sent.iter().position(|s| *s == e.id.0).unwrap())
            .collect();
        assert!(bpos[0] < bpos[1]);
    }

    /// A sender answering 503 for one event id, delegating otherwise.
    #[derive(Debug)]
    struct FailFor {
        inner: Arc<dyn crate::webhook::WebhookSender>,
        id: String,
    }

    #[async_trait]
    impl crate::webhook::WebhookSender for FailFor {
        async fn post(
            &self,
            id: &crate::event::EventId,
            body: &[u8],
        ) -> crate::webhook::DeliveryAttempt {
            let mut a = self.inner.post(id, body).await;
            if id.0 == self.id {
                a.status = Some(503);
            }
            a
        }
    }

    #[tokio::test]
    async fn dead_letters_are_sent_and_acknowledged_so_the_group_proceeds() {
        // GIVEN e1 answered 410, then e2 answered 200, same group
        let (rx, d, c) = rig().await;
        rx.push(Reply::status(410));
        let e1 = sub_event("g1", EventType::SubscriptionRenewed, "G", 1, false);
        let e2 = sub_event("g2", EventType::SubscriptionRenewed, "G", 2, false);
        // WHEN the batch is handled
        let resp = handle_sqs_batch(
            batch(vec![event_message(0, &e1, 1), event_message(1, &e2, 1)]),
            d,
            c.clone(),
            None,
        )
        .await;
        // THEN nothing is reported failed: e1 went to the DLQ, e2 was delivered
        assert!(failures(&resp).is_empty());
        let dl = c.dead_letters();
        assert_eq!(dl.len(), 1);
        assert_eq!(dl[0].dedup_id, "m0");
        assert_eq!(dl[0].group_id, e1.group_key());
        assert_eq!(dl[0].body, serde_json::to_string(&e1).unwrap());
        assert!(dl[0].reason.contains("410"));
        assert_eq!(rx.count(), 2);
    }

    #[tokio::test]
    async fn unparseable_bodies_are_dead_lettered_without_their_content() {
        // GIVEN a body that is not an event and contains a token-like value
        let (_rx, d, c) = rig().await;
        let m = message(
            0,
            "g",
            r#"{"purchase_token":"SECRET-TOKEN-123","api_version":"x"}"#,
            1,
        );
        // WHEN handled
        let resp = handle_sqs_batch(batch(vec![m]), d, c.clone(), None).await;
        // THEN it is acknowledged and dead-lettered with a content-free reason
        assert!(failures(&resp).is_empty());
        let dl = c.dead_letters();
        assert_eq!(dl.len(), 1);
        assert!(
            dl[0].reason.starts_with("body is not a storehook event"),
            "{}",
            dl[0].reason
        );
        assert!(!dl[0].reason.contains("SECRET-TOKEN"));
    }

    #[tokio::test]
    async fn a_failing_dlq_send_blocks_the_group() {
        // GIVEN a DLQ that cannot be reached and two bad messages of one group, one of another
        let (_rx, d, c) = rig().await;
        c.fail_with(Some(QueueError::Unavailable("sqs down".into())));
        let resp = handle_sqs_batch(
            batch(vec![
                message(0, "g", "nope", 1),
                message(1, "g", "nope", 1),
                message(2, "h", "nope", 1),
            ]),
            d,
            c.clone(),
            None,
        )
        .await;
        // THEN all are reported failed (nothing lost)
        assert_eq!(failures(&resp), vec!["m0", "m1", "m2"]);
    }

    #[tokio::test]
    async fn receive_count_drives_the_schedule_and_exhaustion() {
        // GIVEN an endpoint failing with 500
        let (rx, d, c) = rig().await;
        rx.set_default(Reply::status(500));
        let e = sub_event("x1", EventType::SubscriptionRenewed, "X", 1, false);
        // WHEN received the 6th time THEN it waits 10 h
        let r = handle_sqs_batch(
            batch(vec![event_message(0, &e, 6)]),
            d.clone(),
            c.clone(),
            None,
        )
        .await;
        assert_eq!(failures(&r), vec!["m0"]);
        assert_eq!(
            c.delays(),
            vec![("rh0".to_owned(), Duration::from_secs(36_000))]
        );
        // WHEN received the 14th (last) time THEN it is dead-lettered and acknowledged
        let r = handle_sqs_batch(batch(vec![event_message(1, &e, 14)]), d, c.clone(), None).await;
        assert!(failures(&r).is_empty());
        assert_eq!(c.dead_letters().len(), 1);
        assert_eq!(c.dead_letters()[0].receive_count, 14);
        assert!(c.dead_letters()[0].reason.contains("exhausted"));
    }

    #[tokio::test]
    async fn messages_not_started_in_time_are_returned_unprocessed() {
        // GIVEN a batch of two groups (2 + 1 messages) whose start-by instant has already passed
        let (rx, d, c) = rig().await;
        let s1 = sub_event("s1", EventType::SubscriptionRenewed, "S", 1, false);
        let s2 = sub_event("s2", EventType::SubscriptionRenewed, "S", 2, false);
        let t1 = sub_event("t1", EventType::SubscriptionRenewed, "T", 1, false);
        let past = Instant::now();
        // WHEN handled
        let r = handle_sqs_batch(
            batch(vec![
                event_message(0, &s1, 1),
                event_message(1, &s2, 1),
                event_message(2, &t1, 1),
            ]),
            d,
            c.clone(),
            Some(past),
        )
        .await;
        // THEN the first message of each group still ran (progress), the rest is
        // returned unprocessed and released: no POST, no DLQ for it
        assert_eq!(failures(&r), vec!["m1"]);
        assert_eq!(rx.count(), 2);
        assert_eq!(c.delays(), vec![("rh1".to_owned(), Duration::ZERO)]);
        assert!(c.dead_letters().is_empty());
    }

    #[tokio::test]
    async fn redelivered_messages_are_acknowledged_without_resending() {
        // GIVEN a delivered event
        let (rx, d, c) = rig().await;
        let e = sub_event("r1", EventType::SubscriptionStarted, "R", 1, true);
        let first = handle_sqs_batch(
            batch(vec![event_message(0, &e, 1)]),
            d.clone(),
            c.clone(),
            None,
        )
        .await;
        assert!(failures(&first).is_empty());
        assert_eq!(rx.count(), 2);
        // WHEN SQS delivers it again
        let again = handle_sqs_batch(batch(vec![event_message(0, &e, 2)]), d, c, None).await;
        // THEN it is acknowledged and nothing is sent
        assert!(failures(&again).is_empty());
        assert_eq!(rx.count(), 2);
    }
}
