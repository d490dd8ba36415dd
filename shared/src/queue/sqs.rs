//! The SQS adapters (feature `aws`): the SQS FIFO [`EventQueue`] ingest sends
//! to, and the SQS [`MessageControl`] the dispatcher settles messages with.

use crate::queue::message_control::{
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
}
