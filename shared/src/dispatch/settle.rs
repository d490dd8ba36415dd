//! The one rule from a received message to a queue action, for every queue
//! (the SQS messages of a Lambda batch, the redb leases of `storehook serve`):
//!
//! - a job (its body starts with `{"storehook_job":`) is run: a delivery to
//!   one endpoint ([`DeliveryJob`], [`Dispatcher::process_delivery`]) or an
//!   answer to an App Store refund request ([`ConsumptionJob`],
//!   [`Dispatcher::process_job`]);
//! - a body that is not an [`Event`] is dead-lettered with a reason that
//!   names the parse error's kind and position only (bodies may carry tokens,
//!   and serde's own text can quote them);
//! - an event is [`Dispatcher::process`]ed with the message's receive count
//!   as its attempt, and its [`Outcome`] becomes `ack` (delivered now or
//!   before), `retry(delay)` or `dead_letter(reason)`.

use super::{Dispatcher, Outcome};
use crate::consumption::ConsumptionJob;
use crate::event::Event;
use crate::fanout::{DeliveryJob, Job};
use crate::queue::{QueueError, Received};

/// Where a message stands after [`Dispatcher::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Acknowledged (delivered, or dead-lettered): later messages of its group proceed.
    Acked,
    /// It comes back after its retry delay; its group waits.
    Retrying,
    /// The queue action failed: the message comes back (at least once),
    /// possibly before its retry delay; its group waits.
    Unsettled(QueueError),
}

/// A body's parse error without any of its content (bodies may carry tokens).
fn describe_parse_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data",
        serde_json::error::Category::Eof => "truncated",
    };
    format!(
        "body is not a storehook event ({kind} error at line {} column {})",
        e.line(),
        e.column()
    )
}

impl Dispatcher {
    /// Processes one received message and settles it on its queue: see the module docs.
    pub async fn settle(&self, message: &dyn Received) -> Settled {
        let (id, receive_count) = (message.id(), message.receive_count());
        let body = message.body();
        let outcome = match DeliveryJob::parse(body).or_else(|| {
            ConsumptionJob::parse(body).map(|r| r.map(|j| Job::Consumption(Box::new(j))))
        }) {
            Some(Ok(Job::Delivery(job))) => self.process_delivery(&job, receive_count).await,
            Some(Ok(Job::Consumption(job))) => self.process_job(&job, receive_count).await,
            Some(Err(e)) => Outcome::DeadLetter {
                reason: describe_parse_error(&e),
            },
            None => match serde_json::from_str::<Event>(message.body()) {
                Ok(event) => self.process(event, receive_count).await,
                Err(e) => Outcome::DeadLetter {
                    reason: describe_parse_error(&e),
                },
            },
        };
        match outcome {
            Outcome::Delivered | Outcome::AlreadyDelivered => match message.ack().await {
                Ok(()) => Settled::Acked,
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "acknowledgement failed; the message will be handed out again");
                    Settled::Unsettled(e)
                }
            },
            Outcome::Retry { delay } => match message.retry(delay).await {
                Ok(()) => {
                    tracing::info!(message_id = %id, delay_s = delay.as_secs(), receive_count, "retry scheduled");
                    Settled::Retrying
                }
                Err(e) => {
                    // It still comes back: after the queue's default visibility
                    // timeout (SQS), at once (redb).
                    tracing::warn!(message_id = %id, error = %e, "could not set the retry delay");
                    Settled::Unsettled(e)
                }
            },
            Outcome::DeadLetter { reason } => match message.dead_letter(&reason).await {
                Ok(()) => {
                    crate::metrics::dead_letter(&reason);
                    tracing::error!(message_id = %id, group = %message.group_id(), %reason, receive_count, "dead-lettered");
                    Settled::Acked
                }
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "dead-letter send failed; will retry");
                    Settled::Unsettled(e)
                }
            },
        }
    }
}
