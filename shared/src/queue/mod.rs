//! The queue port: ingest functions put events on it; the dispatcher takes them off.
//!
//! In AWS this is an SQS FIFO queue (message group = [`Event::group_key`],
//! deduplication id = event id). Locally it is the in-process queue of
//! `storehook serve`. [`MemoryQueue`] records what was sent (tests).

mod memory;
pub use memory::MemoryQueue;
pub mod redb;
#[cfg(feature = "aws")]
pub mod sqs;

use crate::event::Event;
use async_trait::async_trait;
use std::fmt::Debug;

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

/// Why a send failed.
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
