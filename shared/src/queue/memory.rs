//! The in-memory queue (tests).

use super::{EventQueue, QueueError, QueueMessage};
use async_trait::async_trait;
use std::sync::Mutex;

/// In-memory queue that records messages; can be told to fail (tests).
#[derive(Debug, Default)]
pub struct MemoryQueue {
    sent: Mutex<Vec<QueueMessage>>,
    fail: Mutex<Option<QueueError>>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything sent so far.
    pub fn sent(&self) -> Vec<QueueMessage> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes every following send fail with `err` (None: succeed again).
    pub fn fail_with(&self, err: Option<QueueError>) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = err;
    }
}

#[async_trait]
impl EventQueue for MemoryQueue {
    async fn send(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        if let Some(e) = self.fail.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(e);
        }
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(messages);
        Ok(())
    }
}
