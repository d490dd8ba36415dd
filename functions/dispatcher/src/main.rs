//! storehook dispatcher Lambda: SQS FIFO batches in; per event: claim + apply
//! state (DynamoDB), POST signed to the webhook, record; retries via
//! ChangeMessageVisibility, dead letters via the DLQ; with the App Store
//! Server API configured, answers Apple's refund requests
//! (`storehook_shared::consumption`). All logic lives in
//! `storehook_shared::dispatch`; this is wiring only.

use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::{Clock, SystemClock};
use storehook_shared::config::dispatcher::DispatcherConfig;
use storehook_shared::config::{Env, WithSecrets};
use storehook_shared::dispatch::Dispatcher;
use storehook_shared::fanout;
use storehook_shared::lambda::{Error, SqsConsumer, run_dispatcher};
use storehook_shared::queue::EventQueue;
use storehook_shared::queue::sqs::{SqsMessageControl, SqsQueue};
use storehook_shared::secrets::load_webhook_secrets;
use storehook_shared::state::DynamoState;
use storehook_shared::stores::{Endpoints, appstore};
use storehook_shared::webhook::{HttpWebhookSender, WebhookSender};

#[tokio::main]
async fn main() -> Result<(), Error> {
    Box::pin(run_dispatcher(cold_start())).await
}

async fn cold_start() -> anyhow::Result<SqsConsumer> {
    let config = DispatcherConfig::from_env()?;
    let sdk = sdk_config().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = DynamoState::from_sdk(&sdk, &config.table_name, clock.clone())
        .with_retention(config.history_ttl);
    let timeout = config.webhook_timeout;
    let schedule = config.retry_schedule.clone();
    let settings =
        WithSecrets::resolve(Env, &sdk, &[appstore::api::PRIVATE_KEY, fanout::ENDPOINTS]).await?;
    // The refund defence's jobs and outcome events, and the delivery jobs of
    // several endpoints, go on the queue this function consumes.
    let queue: Arc<dyn EventQueue> = Arc::new(SqsQueue::from_sdk(&sdk, &config.queue_url));
    let mut destinations = Vec::new();
    for spec in fanout::endpoints_setting(&settings)?.unwrap_or_default() {
        let secrets = load_webhook_secrets(&sdk, &spec.secret).await?;
        let sender = HttpWebhookSender::new(&spec.url, secrets, timeout, clock.clone())?;
        tracing::info!(endpoint = %spec.name, format = ?spec.format, filter = ?spec.filter, "endpoint configured");
        destinations.push(fanout::Destination {
            name: spec.name,
            filter: spec.filter,
            format: spec.format,
            sender: Arc::new(sender),
        });
    }
    let sender: Arc<dyn WebhookSender> = match destinations.first() {
        // Unused with several endpoints: each job posts through its own.
        Some(d) => d.sender.clone(),
        None => {
            let secrets = load_webhook_secrets(&sdk, &config.webhook_secret).await?;
            Arc::new(HttpWebhookSender::new(
                &config.webhook_url,
                secrets,
                timeout,
                clock.clone(),
            )?)
        }
    };
    let fanout = (!destinations.is_empty())
        .then(|| Arc::new(fanout::Fanout::new(destinations, queue.clone())));
    let refund = Endpoints::local(&settings, clock.clone()).refund_defence(queue)?;
    let dispatcher = Dispatcher::new(Arc::new(state), sender, schedule, clock)
        .with_refund_defence(refund)
        .with_fanout(fanout);
    let control = SqsMessageControl::from_sdk(&sdk, &config.queue_url, &config.dlq_url);
    tracing::info!(config = ?config, "dispatcher ready");
    Ok(SqsConsumer::new(dispatcher, control, timeout))
}
