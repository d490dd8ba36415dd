//! The SQS adapters (feature `aws`): the SQS FIFO [`EventQueue`] ingest sends
//! to, and the SQS [`MessageControl`] the dispatcher settles messages with.

use crate::dispatch::sqs_batch::{
    DLQ_ATTR_REASON, DLQ_ATTR_RECEIVE_COUNT, DLQ_ATTR_SOURCE_MESSAGE_ID, DeadLetterMessage,
    MessageControl,
};
use crate::queue::{EventQueue, MAX_BATCH, QueueError, QueueMessage};
use crate::retry::MAX_STEP;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use std::fmt;
use std::time::Duration;

fn unavailable<E, R>(op: &str, e: SdkError<E, R>) -> QueueError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    QueueError::Unavailable(format!("{op}: {}", DisplayErrorContext(&e)))
}

/// SQS allows at most 256 KiB per `SendMessageBatch` request (sum of bodies).
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Splits messages into `SendMessageBatch` calls: ≤ [`MAX_BATCH`] (10) messages and ≤ 256 KiB each, order kept.
fn chunks(messages: &[QueueMessage]) -> Vec<&[QueueMessage]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let len = m.body.len();
        if i > start && (i - start == MAX_BATCH || bytes + len > MAX_BATCH_BYTES) {
            out.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

/// [`EventQueue`] on an SQS FIFO queue (`SendMessageBatch`, group = message
/// group, dedup = event id).
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsQueue")
            .field("queue_url", &self.queue_url)
            .finish_non_exhaustive()
    }
}

impl SqsQueue {
    /// A queue adapter for `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Same, building the client from `sdk`.
    pub fn from_sdk(sdk: &SdkConfig, queue_url: impl Into<String>) -> Self {
        Self::new(aws_sdk_sqs::Client::new(sdk), queue_url)
    }
}

#[async_trait]
impl EventQueue for SqsQueue {
    async fn send(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        for chunk in chunks(messages) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&m.body)
                        .message_group_id(&m.group_id)
                        .message_deduplication_id(&m.dedup_id)
                        .build()
                        .map_err(|e| QueueError::Permanent(format!("batch entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| unavailable("SendMessageBatch", e))?;
            if !out.failed().is_empty() {
                let codes: Vec<String> = out
                    .failed()
                    .iter()
                    .map(|f| format!("{}:{}", f.id(), f.code()))
                    .collect();
                return Err(QueueError::Unavailable(format!(
                    "SendMessageBatch: {} of {} entries failed ({})",
                    codes.len(),
                    chunk.len(),
                    codes.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// [`MessageControl`] on SQS: ChangeMessageVisibility on the source queue,
/// SendMessage to the FIFO dead-letter queue.
#[derive(Clone)]
pub struct SqsMessageControl {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
}

impl fmt::Debug for SqsMessageControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsMessageControl")
            .field("queue_url", &self.queue_url)
            .field("dlq_url", &self.dlq_url)
            .finish_non_exhaustive()
    }
}

impl SqsMessageControl {
    /// Controls messages of `queue_url`, dead-lettering to `dlq_url`.
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        dlq_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
        }
    }

    /// Same, building the client from `sdk`.
    pub fn from_sdk(
        sdk: &SdkConfig,
        queue_url: impl Into<String>,
        dlq_url: impl Into<String>,
    ) -> Self {
        Self::new(aws_sdk_sqs::Client::new(sdk), queue_url, dlq_url)
    }
}

/// Longest visibility timeout the adapter sets. SQS counts its 12 h limit
/// from the message's receive, not from the ChangeMessageVisibility call
/// (AWS and moto reject `43200` once any time has passed since the receive),
/// so a 12 h step leaves room for the longest Lambda run (15 min). Without
/// this, the call fails and the message returns after the queue's default
/// visibility timeout, silently shortening the schedule.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(MAX_STEP.as_secs() - 900);

/// Whole seconds for a visibility timeout: rounded up, at most [`MAX_VISIBILITY`].
pub fn visibility_seconds(delay: Duration) -> i32 {
    let d = delay.min(MAX_VISIBILITY);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(42_300)
}

fn string_attr(v: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| QueueError::Permanent(format!("message attribute: {e}")))
}

#[async_trait]
impl MessageControl for SqsMessageControl {
    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(visibility_seconds(delay))
            .send()
            .await
            .map_err(|e| unavailable("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn dead_letter(&self, message: &DeadLetterMessage) -> Result<(), QueueError> {
        let body = if message.body.is_empty() {
            // SQS rejects empty bodies; keep the message visible in the DLQ.
            "(empty body)".to_owned()
        } else {
            message.body.clone()
        };
        let dedup = if message.dedup_id.is_empty() {
            crate::event::EventId::derive(&["dlq", &body]).0
        } else {
            message.dedup_id.clone()
        };
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(body)
            .message_group_id(&message.group_id)
            .message_deduplication_id(dedup)
            .message_attributes(DLQ_ATTR_REASON, string_attr(&message.reason)?)
            .message_attributes(
                DLQ_ATTR_SOURCE_MESSAGE_ID,
                string_attr(if message.dedup_id.is_empty() {
                    "unknown"
                } else {
                    &message.dedup_id
                })?,
            )
            .message_attributes(
                DLQ_ATTR_RECEIVE_COUNT,
                string_attr(&message.receive_count.to_string())?,
            )
            .send()
            .await
            .map_err(|e| unavailable("SendMessage (DLQ)", e))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::aws_sdk::{TEST_ENDPOINT_ENV, test_sdk_config};
    use crate::webhook::{WebhookSecret, WebhookSecrets};
    use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

    fn msg(i: usize, len: usize) -> QueueMessage {
        QueueMessage {
            group_id: format!("g{}", i % 3),
            dedup_id: format!("d{i}"),
            body: "x".repeat(len),
        }
    }

    #[test]
    fn batches_hold_at_most_ten_messages_and_256_kib() {
        // GIVEN 23 small messages THEN 10 + 10 + 3, in order
        let m: Vec<_> = (0..23).map(|i| msg(i, 10)).collect();
        let c = chunks(&m);
        assert_eq!(
            c.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![10, 10, 3]
        );
        assert_eq!(c[1][0].dedup_id, "d10");
        // GIVEN 5 messages of 100 KiB THEN 2 + 2 + 1
        let m: Vec<_> = (0..5).map(|i| msg(i, 100 * 1024)).collect();
        assert_eq!(
            chunks(&m).iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        // GIVEN one oversized message THEN it goes alone (SQS decides)
        let m = vec![msg(0, 300 * 1024), msg(1, 1)];
        assert_eq!(
            chunks(&m).iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![1, 1]
        );
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn visibility_rounds_up_and_caps() {
        assert_eq!(visibility_seconds(Duration::from_millis(4_200)), 5);
        assert_eq!(visibility_seconds(Duration::from_secs(5)), 5);
        assert_eq!(visibility_seconds(MAX_STEP), 42_300);
        assert_eq!(visibility_seconds(Duration::from_secs(100_000)), 42_300);
        assert_eq!(visibility_seconds(Duration::ZERO), 0);
    }

    async fn fifo_queue(client: &aws_sdk_sqs::Client, name: &str) -> String {
        client
            .create_queue()
            .queue_name(format!("{name}-{}.fifo", fastrand::u32(..)))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    #[tokio::test]
    async fn sqs_queue_and_message_control_against_the_emulator() {
        let Some(sdk) = test_sdk_config().await else {
            eprintln!(
                "SKIP sqs_queue_and_message_control_against_the_emulator: {TEST_ENDPOINT_ENV} is not set"
            );
            return;
        };
        let client = aws_sdk_sqs::Client::new(&sdk);
        let q = fifo_queue(&client, "events").await;
        let dlq = fifo_queue(&client, "dlq").await;
        // GIVEN 12 messages of one group sent through the queue port (two batch calls)
        let queue = SqsQueue::new(client.clone(), q.clone());
        let messages: Vec<QueueMessage> = (0..12)
            .map(|i| QueueMessage {
                group_id: "sub_1".into(),
                dedup_id: format!("evt_{i}"),
                body: format!("{{\"n\":{i}}}"),
            })
            .collect();
        queue.send(&messages).await.unwrap();
        // WHEN received
        let mut got = Vec::new();
        let mut handles = Vec::new();
        while got.len() < 12 {
            let out = client
                .receive_message()
                .queue_url(&q)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let ms = out.messages.unwrap_or_default();
            assert!(!ms.is_empty(), "queue ran dry after {}", got.len());
            for m in ms {
                let attrs = m.attributes.clone().unwrap_or_default();
                assert_eq!(
                    attrs
                        .get(&MessageSystemAttributeName::MessageGroupId)
                        .unwrap(),
                    "sub_1"
                );
                got.push(m.body.clone().unwrap());
                handles.push(m.receipt_handle.clone().unwrap());
                client
                    .delete_message()
                    .queue_url(&q)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        // THEN all arrived in order
        assert_eq!(
            got,
            (0..12)
                .map(|i| format!("{{\"n\":{i}}}"))
                .collect::<Vec<_>>()
        );

        // GIVEN a received message WHEN delayed THEN it stays invisible
        queue
            .send(&[QueueMessage {
                group_id: "sub_2".into(),
                dedup_id: "evt_delay".into(),
                body: "{}".into(),
            }])
            .await
            .unwrap();
        let ctl = SqsMessageControl::new(client.clone(), q.clone(), dlq.clone());
        let m = client
            .receive_message()
            .queue_url(&q)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let rh = m.messages.unwrap()[0].receipt_handle.clone().unwrap();
        ctl.delay(&rh, Duration::from_secs(600)).await.unwrap();
        // A 12 h step a few seconds after the receive is accepted (capped below SQS's limit).
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        ctl.delay(&rh, MAX_STEP).await.unwrap();
        let again = client.receive_message().queue_url(&q).send().await.unwrap();
        assert!(again.messages.unwrap_or_default().is_empty());

        // WHEN a message is dead-lettered THEN the DLQ holds the body and the reason
        ctl.dead_letter(&DeadLetterMessage {
            body: "{\"id\":\"evt_x\"}".into(),
            group_id: "sub_3".into(),
            dedup_id: "msg-123".into(),
            reason: "webhook answered 410 Gone".into(),
            receive_count: 3,
        })
        .await
        .unwrap();
        let d = client
            .receive_message()
            .queue_url(&dlq)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let d = &d.messages.unwrap()[0];
        assert_eq!(d.body.as_deref(), Some("{\"id\":\"evt_x\"}"));
        let attrs = d.message_attributes.clone().unwrap();
        assert_eq!(
            attrs[DLQ_ATTR_REASON].string_value(),
            Some("webhook answered 410 Gone")
        );
        assert_eq!(attrs[DLQ_ATTR_RECEIVE_COUNT].string_value(), Some("3"));
        assert_eq!(
            attrs[DLQ_ATTR_SOURCE_MESSAGE_ID].string_value(),
            Some("msg-123")
        );

        // AND a send to a missing queue is a retryable error
        let gone = SqsQueue::new(client, format!("{q}-missing"));
        assert!(matches!(
            gone.send(&messages[..1]).await,
            Err(QueueError::Unavailable(_))
        ));
    }

    /// Receives up to 10 messages as the Lambda SQS poller would hand them over.
    async fn receive_as_lambda_event(
        client: &aws_sdk_sqs::Client,
        q: &str,
    ) -> aws_lambda_events::sqs::SqsEvent {
        let out = client
            .receive_message()
            .queue_url(q)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let mut ev = aws_lambda_events::sqs::SqsEvent::default();
        for m in out.messages.unwrap_or_default() {
            let mut lm = aws_lambda_events::sqs::SqsMessage::default();
            lm.message_id = m.message_id.clone();
            lm.receipt_handle = m.receipt_handle.clone();
            lm.body = m.body.clone();
            lm.attributes = m
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            ev.records.push(lm);
        }
        ev
    }

    #[tokio::test]
    async fn lambda_batch_path_against_the_emulator() {
        use crate::clock::ManualClock;
        use crate::dispatch::Dispatcher;
        use crate::dispatch::sqs_batch::handle_sqs_batch;
        use crate::event::EventType;
        use crate::retry::RetrySchedule;
        use crate::state::fixtures::*;
        use crate::state::{DynamoState, StateStore};
        use crate::webhook::HttpWebhookSender;
        use std::sync::Arc;
        use storehook_testkit::receiver::{Reply, TestReceiver};

        let Some(sdk) = test_sdk_config().await else {
            eprintln!(
                "SKIP lambda_batch_path_against_the_emulator: {TEST_ENDPOINT_ENV} is not set"
            );
            return;
        };
        // GIVEN a FIFO queue + DLQ, a table, and a receiver answering 500 then 200
        let client = aws_sdk_sqs::Client::new(&sdk);
        let q = fifo_queue(&client, "lambda").await;
        let dlq = fifo_queue(&client, "lambda-dlq").await;
        let clock = Arc::new(ManualClock::new(t(0).0));
        let state = DynamoState::from_sdk(
            &sdk,
            format!("storehook-lambda-{}", fastrand::u64(..)),
            clock.clone(),
        );
        state.create_table().await.unwrap();
        let state = Arc::new(state);
        let rx = TestReceiver::start().await.unwrap();
        rx.push(Reply::status(500));
        let secrets = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
        let sender =
            HttpWebhookSender::new(&rx.url(), secrets, Duration::from_secs(5), clock.clone())
                .unwrap();
        let d = Arc::new(Dispatcher::new(
            state.clone(),
            Arc::new(sender),
            RetrySchedule::parse("1s,1s").unwrap().with_jitter(0.0),
            clock,
        ));
        let ctl: Arc<dyn MessageControl> = Arc::new(SqsMessageControl::new(
            client.clone(),
            q.clone(),
            dlq.clone(),
        ));
        // AND two events of one subscription on the queue
        let e1 = sub_event("q1", EventType::SubscriptionStarted, "QQ", 1, true);
        let e2 = sub_event("q2", EventType::SubscriptionRenewed, "QQ", 2, true);
        let msgs = [
            QueueMessage::for_event(&e1).unwrap(),
            QueueMessage::for_event(&e2).unwrap(),
        ];
        SqsQueue::new(client.clone(), q.clone())
            .send(&msgs)
            .await
            .unwrap();

        // WHEN the first batch is handled (e1 gets the 500)
        let batch = receive_as_lambda_event(&client, &q).await;
        assert_eq!(batch.records.len(), 2);
        let resp = handle_sqs_batch(batch, d.clone(), ctl.clone(), None).await;
        // THEN both are reported failed (e2 unprocessed behind e1), e1 was applied once
        assert_eq!(resp.batch_item_failures.len(), 2);
        assert_eq!(rx.count(), 1);
        assert_eq!(state.history(&e1.group_key()).await.unwrap().len(), 2); // e1 + ACCESS_GRANTED

        // WHEN the messages come back (e1's visibility was set to 1 s; e2 returned at once
        // but FIFO holds it behind e1) and are handled again
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let batch = receive_as_lambda_event(&client, &q).await;
        let counts: Vec<String> = batch
            .records
            .iter()
            .map(|m| m.attributes["ApproximateReceiveCount"].clone())
            .collect();
        assert_eq!(
            batch.records[0].body.as_deref(),
            Some(msgs[0].body.as_str())
        );
        assert_eq!(counts[0], "2");
        let resp = handle_sqs_batch(batch, d, ctl, None).await;
        // THEN everything is delivered, in order, e1 with the same webhook-id as before
        assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
        let ids: Vec<String> = rx
            .requests()
            .iter()
            .map(|r| r.webhook_id().unwrap().to_owned())
            .collect();
        let granted = crate::event::EventId::derive(&[e1.id.as_str(), "ACCESS_GRANTED"]);
        assert_eq!(
            ids,
            vec![e1.id.0.clone(), e1.id.0.clone(), granted.0, e2.id.0.clone()]
        );
        let seqs: Vec<u64> = rx
            .requests()
            .iter()
            .map(|r| r.json().unwrap()["sequence"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, vec![1, 1, 2, 3]);
        assert_eq!(state.delivery(&e1.id).await.unwrap().unwrap().attempts, 2);
    }
}
