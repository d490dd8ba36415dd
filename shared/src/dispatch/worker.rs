//! The dispatcher's consuming loops outside Lambda (`storehook serve`): take
//! messages off a queue and [`Dispatcher::settle`] each, forever.
//!
//! - the redb queue: `workers` loops, each leasing one message at a time (the
//!   queue hands out one message per group at once, so different
//!   subscriptions are delivered concurrently, one subscription in order);
//! - SQS (feature `aws`): one loop long-polling batches like Lambda's event
//!   source mapping (`sqs_poller::poll_once`, the dispatcher Lambda's
//!   batch handler).

use super::Dispatcher;
use super::settle::Settled;
use crate::clock::Clock;
use crate::queue::redb::{Leased, RedbQueue};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Where the dispatcher takes its messages from.
#[derive(Debug)]
pub enum Consumer {
    /// The redb queue, with `workers` messages in flight at most (at least one).
    Redb {
        /// The queue.
        queue: RedbQueue,
        /// Concurrent deliveries.
        workers: usize,
    },
    /// An SQS FIFO queue, polled by one loop.
    #[cfg(feature = "aws")]
    Sqs {
        /// The SQS client.
        client: aws_sdk_sqs::Client,
        /// The queue.
        queue_url: String,
        /// Visibility and dead-lettering on that queue.
        control: Arc<dyn crate::queue::message_control::MessageControl>,
    },
}

impl Consumer {
    /// Starts the loops; they run until aborted.
    pub fn spawn(self, dispatcher: Arc<Dispatcher>, clock: Arc<dyn Clock>) -> Vec<JoinHandle<()>> {
        match self {
            Consumer::Redb { queue, workers } => (0..workers.max(1))
                .map(|_| {
                    tokio::spawn(redb_worker(
                        queue.clone(),
                        dispatcher.clone(),
                        clock.clone(),
                    ))
                })
                .collect(),
            #[cfg(feature = "aws")]
            Consumer::Sqs {
                client,
                queue_url,
                control,
            } => vec![tokio::spawn(sqs_worker(
                client, queue_url, dispatcher, control,
            ))],
        }
    }
}

/// Takes messages off the redb queue, in per-group order, forever. After a
/// failed queue read or settle (a failing file) it waits a second.
async fn redb_worker(queue: RedbQueue, dispatcher: Arc<Dispatcher>, clock: Arc<dyn Clock>) {
    loop {
        let lease = match queue.next(clock.as_ref(), Duration::from_secs(1)).await {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "embedded queue read failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let leased = Leased {
            queue: &queue,
            lease,
            clock: clock.as_ref(),
        };
        if let Settled::Unsettled(_) = dispatcher.settle(&leased).await {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Polls `queue_url` and dispatches its batches, forever. After a failed poll
/// it waits two seconds.
#[cfg(feature = "aws")]
async fn sqs_worker(
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dispatcher: Arc<Dispatcher>,
    control: Arc<dyn crate::queue::message_control::MessageControl>,
) {
    loop {
        if let Err(e) = super::sqs_poller::poll_once(
            &client,
            &queue_url,
            Duration::from_secs(10),
            dispatcher.clone(),
            control.clone(),
        )
        .await
        {
            tracing::error!(error = %e, "polling SQS failed");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::queue::QueueMessage;
    use crate::retry::RetrySchedule;
    use crate::state::MemoryState;
    use crate::webhook::{HttpWebhookSender, WebhookSecret, WebhookSecrets};
    use storehook_testkit::receiver::TestReceiver;

    #[tokio::test]
    async fn the_redb_worker_dead_letters_an_unparseable_body_without_its_content() {
        // GIVEN a redb queue holding a body that is not an event, whose parse error
        // (serde's text: `invalid type: string "SECRET-…"`) would quote a token-like value
        let dir = tempfile::tempdir().unwrap();
        let queue = RedbQueue::open(dir.path()).unwrap();
        queue
            .append(
                &[QueueMessage {
                    group_id: "g".into(),
                    dedup_id: "bad".into(),
                    body: r#"{"api_version":"SECRET-TOKEN-123"}"#.into(),
                }],
                0,
            )
            .await
            .unwrap();
        let rx = TestReceiver::start().await.unwrap();
        let secrets = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let sender =
            HttpWebhookSender::new(&rx.url(), secrets, Duration::from_secs(5), clock.clone())
                .unwrap();
        let dispatcher = Arc::new(Dispatcher::new(
            Arc::new(MemoryState::new()),
            Arc::new(sender),
            RetrySchedule::default(),
            clock.clone(),
        ));
        // WHEN a worker runs
        let workers = Consumer::Redb {
            queue: queue.clone(),
            workers: 1,
        }
        .spawn(dispatcher, clock);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while queue.dead_letters().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "not dead-lettered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for w in workers {
            w.abort();
        }
        // THEN it is dead-lettered, with the reason the SQS path gives (no body content),
        // the queue is empty and nothing was POSTed
        let dead = queue.dead_letters().unwrap();
        let reason = dead[0].1.dead_reason.clone().unwrap();
        assert!(
            reason.starts_with("body is not a storehook event"),
            "{reason}"
        );
        assert!(!reason.contains("SECRET-TOKEN"));
        assert_eq!(queue.depth(), 0);
        assert_eq!(rx.count(), 0);
    }
}
