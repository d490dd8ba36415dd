//! storehook dispatcher Lambda: SQS FIFO batches in; per event: claim + apply
//! state (DynamoDB), POST signed to the webhook, record; retries via
//! ChangeMessageVisibility, dead letters via the DLQ. All logic lives in
//! `storehook_shared::dispatch`; this is wiring only.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::dispatcher::DispatcherConfig;
use storehook_shared::dispatch::Dispatcher;
use storehook_shared::dispatch::sqs_batch::{MessageControl, handle_sqs_batch};
use storehook_shared::queue::sqs::SqsMessageControl;
use storehook_shared::secrets::load_webhook_secrets;
use storehook_shared::state::DynamoState;
use storehook_shared::webhook::HttpWebhookSender;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Lambda's log level/format controls, with the HTTP and SDK internals capped at WARN.
fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let mut filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .parse_lossy("");
    for quiet in [
        "aws_smithy_runtime=warn",
        "aws_smithy_runtime_api=warn",
        "aws_config=warn",
        "hyper=warn",
        "hyper_util=warn",
        "h2=warn",
        "reqwest=warn",
        "rustls=warn",
    ] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    // Cold start: config, secrets and clients once.
    let config = DispatcherConfig::from_env()?;
    let sdk = sdk_config().await;
    let secrets = load_webhook_secrets(&sdk, &config.webhook_secret).await?;
    let clock = Arc::new(SystemClock);
    let state = DynamoState::from_sdk(&sdk, &config.table_name, clock.clone())
        .with_retention(config.history_ttl);
    let sender = HttpWebhookSender::new(
        &config.webhook_url,
        secrets,
        config.webhook_timeout,
        clock.clone(),
    )?;
    let dispatcher = Arc::new(Dispatcher::new(
        Arc::new(state),
        Arc::new(sender),
        config.retry_schedule.clone(),
        clock,
    ));
    let control: Arc<dyn MessageControl> = Arc::new(SqsMessageControl::from_sdk(
        &sdk,
        &config.queue_url,
        &config.dlq_url,
    ));
    // Time one message may need: the event and a derived event, plus state writes.
    let reserve = config.webhook_timeout * 2 + Duration::from_secs(5);
    tracing::info!(config = ?config, "dispatcher ready");

    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| {
        let dispatcher = dispatcher.clone();
        let control = control.clone();
        async move {
            let remaining = ev
                .context
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let start_by = Instant::now() + remaining.saturating_sub(reserve);
            Ok::<SqsBatchResponse, Error>(
                handle_sqs_batch(ev.payload, dispatcher, control, Some(start_by)).await,
            )
        }
    }))
    .await
}
