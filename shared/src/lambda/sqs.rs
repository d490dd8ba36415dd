//! SQS FIFO batches in (the event source mapping, `ReportBatchItemFailures`),
//! [`handle_sqs_batch`] through, the batch's failures out.

use super::{Error, start};
use crate::dispatch::Dispatcher;
use crate::dispatch::sqs_batch::handle_sqs_batch;
use crate::queue::message_control::MessageControl;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What the dispatcher function handles every batch with.
#[derive(Debug, Clone)]
pub struct SqsConsumer {
    dispatcher: Arc<Dispatcher>,
    control: Arc<dyn MessageControl>,
    reserve: Duration,
}

impl SqsConsumer {
    /// `webhook_timeout` bounds one delivery attempt: a message is started
    /// only while the invocation has time left for it (the event and a derived
    /// event, plus state writes: twice the timeout and 5 s).
    pub fn new(
        dispatcher: Dispatcher,
        control: impl MessageControl + 'static,
        webhook_timeout: Duration,
    ) -> Self {
        Self {
            dispatcher: Arc::new(dispatcher),
            control: Arc::new(control),
            reserve: webhook_timeout * 2 + Duration::from_secs(5),
        }
    }

    /// One batch: no message is started after the invocation's deadline less
    /// the reserve (see [`handle_sqs_batch`]).
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        let remaining = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let start_by = Instant::now() + remaining.saturating_sub(self.reserve);
        handle_sqs_batch(
            event.payload,
            self.dispatcher.clone(),
            self.control.clone(),
            Some(start_by),
        )
        .await
    }
}

/// The whole life of the dispatcher function: tracing, the cold start (read
/// once), then every SQS batch through [`SqsConsumer::handle`].
pub async fn run_dispatcher<E>(
    cold_start: impl Future<Output = Result<SqsConsumer, E>>,
) -> Result<(), Error>
where
    E: std::fmt::Display + Into<Error>,
{
    let consumer = start(cold_start).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let consumer = consumer.clone();
        async move {
            let answer = consumer.handle(event).await;
            crate::metrics::flush_emf();
            Ok::<_, Error>(answer)
        }
    }))
    .await
}
