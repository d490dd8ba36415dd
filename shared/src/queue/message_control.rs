//! The SQS consumer side of the queue port: what one received SQS message can
//! be told besides its acknowledgement (ChangeMessageVisibility, a send to the
//! dead-letter queue). The dispatcher's batch handler (`dispatch::sqs_batch`)
//! uses it; `queue::sqs` implements it against SQS; [`MemoryMessageControl`]
//! records the calls (tests).

use super::QueueError;
use async_trait::async_trait;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

/// Message attribute on dead-lettered messages: why.
pub const DLQ_ATTR_REASON: &str = "storehook-reason";
/// Message attribute on dead-lettered messages: the original message id.
pub const DLQ_ATTR_SOURCE_MESSAGE_ID: &str = "storehook-source-message-id";
/// Message attribute on dead-lettered messages: attempts made.
pub const DLQ_ATTR_RECEIVE_COUNT: &str = "storehook-receive-count";

/// A message to move to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterMessage {
    /// The original body, unchanged (so a replay is a plain re-send).
    pub body: String,
    /// The original message group.
    pub group_id: String,
    /// Deduplication id on the DLQ: the original SQS message id (a crash after
    /// the send and before the acknowledgement does not duplicate it).
    pub dedup_id: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Attempts made (`ApproximateReceiveCount`).
    pub receive_count: u32,
}

/// What the batch handler needs from the queue besides acknowledgements.
#[async_trait]
pub trait MessageControl: Send + Sync + Debug {
    /// Hides a received message for `delay` (ChangeMessageVisibility; whole seconds, ≤ 12 h).
    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError>;

    /// Sends a message to the dead-letter queue.
    async fn dead_letter(&self, message: &DeadLetterMessage) -> Result<(), QueueError>;
}

/// In-memory [`MessageControl`] recording calls; can be told to fail (tests, local server).
#[derive(Debug, Default)]
pub struct MemoryMessageControl {
    delays: Mutex<Vec<(String, Duration)>>,
    dead: Mutex<Vec<DeadLetterMessage>>,
    fail: Mutex<Option<QueueError>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryMessageControl {
    /// Records nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// (receipt handle, delay) of every `delay` call.
    pub fn delays(&self) -> Vec<(String, Duration)> {
        lock(&self.delays).clone()
    }

    /// Every dead-lettered message.
    pub fn dead_letters(&self) -> Vec<DeadLetterMessage> {
        lock(&self.dead).clone()
    }

    /// Makes every following call fail with `err` (None: succeed again).
    pub fn fail_with(&self, err: Option<QueueError>) {
        *lock(&self.fail) = err;
    }
}

#[async_trait]
impl MessageControl for MemoryMessageControl {
    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        if let Some(e) = lock(&self.fail).clone() {
            return Err(e);
        }
        lock(&self.delays).push((receipt_handle.to_owned(), delay));
        Ok(())
    }

    async fn dead_letter(&self, message: &DeadLetterMessage) -> Result<(), QueueError> {
        if let Some(e) = lock(&self.fail).clone() {
            return Err(e);
        }
        lock(&self.dead).push(message.clone());
        Ok(())
    }
}
