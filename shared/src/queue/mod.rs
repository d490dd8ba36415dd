//! The queue port: ingest functions put events on it ([`EventQueue`]); the
//! dispatcher takes them off, one [`Received`] message at a time, and settles
//! each with `ack`, `retry` or `dead_letter`
//! ([`Dispatcher::settle`](crate::dispatch::Dispatcher::settle)).
//!
//! In AWS this is an SQS FIFO queue (message group = [`Event::group_key`],
//! deduplication id = event id): an SQS message of a Lambda batch is a
//! [`Received`] in [`crate::dispatch::sqs_batch`]. Locally it is the redb queue
//! of `storehook serve`, whose lease is a [`Received`] in [`redb`].
//! [`MemoryQueue`] records what was sent (tests).

mod memory;
pub use memory::MemoryQueue;
pub mod message_control;
pub mod redb;
#[cfg(feature = "aws")]
pub mod sqs;

use crate::event::Event;
use async_trait::async_trait;
use std::fmt::Debug;
use std::time::Duration;

/// SQS allows at most 10 messages per `SendMessageBatch`.
pub const MAX_BATCH: usize = 10;

/// One message for the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// FIFO message group: events of one group are delivered in order.
    pub group_id: String,
    /// FIFO deduplication id: the event id.
    pub dedup_id: String,
    /// The event as JSON.
    pub body: String,
}

impl QueueMessage {
    /// The message carrying `event`.
    pub fn for_event(event: &Event) -> Result<Self, QueueError> {
        Ok(Self {
            group_id: event.group_key(),
            dedup_id: event.id.0.clone(),
            body: serde_json::to_string(event)
                .map_err(|e| QueueError::Permanent(format!("event does not serialize: {e}")))?,
        })
    }
}

/// Why a send or a settle failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The queue could not be reached or refused for now; the store should retry.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The message can never be sent (a bug, not a transient failure).
    #[error("queue rejected the message: {0}")]
    Permanent(String),
}

/// Where ingest functions put events.
#[async_trait]
pub trait EventQueue: Send + Sync + Debug {
    /// Sends all messages, in order, or fails as a whole (a partial send is
    /// retried whole by the store; the dispatcher deduplicates on event id).
    async fn send(&self, messages: &[QueueMessage]) -> Result<(), QueueError>;
}

/// The consumer side of the queue: one received message, settled once with
/// [`ack`](Received::ack), [`retry`](Received::retry) or
/// [`dead_letter`](Received::dead_letter). Until it is settled, later messages
/// of its group wait (FIFO).
#[async_trait]
pub trait Received: Send + Sync {
    /// The queue's id of the message (logs).
    fn id(&self) -> &str;

    /// Its FIFO group.
    fn group_id(&self) -> &str;

    /// The body: an event as JSON, unless something else was queued.
    fn body(&self) -> &str;

    /// How often it was received, this time included: the attempt number.
    fn receive_count(&self) -> u32;

    /// Done with it: it is never handed out again; its group proceeds.
    async fn ack(&self) -> Result<(), QueueError>;

    /// Hand it out again after `delay`; its group waits until then.
    async fn retry(&self, delay: Duration) -> Result<(), QueueError>;

    /// Keep it aside as a dead letter with `reason` (replayable) and
    /// acknowledge it: its group proceeds.
    async fn dead_letter(&self, reason: &str) -> Result<(), QueueError>;
}
