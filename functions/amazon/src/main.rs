//! storehook Amazon Appstore ingest Lambda (`POST /amazon`, API Gateway HTTP API):
//! Amazon's Real-Time Notifications, delivered by Amazon SNS.
//!
//! Cold start, once: tracing; the environment, with the Receipt Verification
//! Service shared secret read from Secrets Manager
//! (`AMAZON_RVS_SHARED_SECRET_ARN`, else `AMAZON_RVS_SHARED_SECRET`); the
//! endpoint (refuses to start without `AMAZON_APP_PACKAGES`,
//! `AMAZON_TOPIC_ARNS` and the shared secret, see
//! `storehook_shared::stores::amazon::config`); the SQS FIFO queue
//! (`QUEUE_URL`). Then every request goes through `Ingest::lambda`:
//! authenticate the SNS message, ask RVS, translate, queue, answer.

use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::{ConfigError, Env, WithSecrets, required};
use storehook_shared::ingest::Ingest;
use storehook_shared::lambda::{Error, run_ingest};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::stores::{Endpoints, amazon};

#[tokio::main]
async fn main() -> Result<(), Error> {
    Box::pin(run_ingest(cold_start())).await
}

async fn cold_start() -> Result<Ingest, ConfigError> {
    let sdk = sdk_config().await;
    let settings = WithSecrets::resolve(
        Env,
        &sdk,
        &[
            amazon::RVS_SHARED_SECRET,
            storehook_shared::fanout::ENDPOINTS,
        ],
    )
    .await?;
    let clock = Arc::new(SystemClock);
    let endpoint = Endpoints::deployment(&settings, clock.clone()).amazon()?;
    let queue = SqsQueue::from_sdk(&sdk, required(&settings, "QUEUE_URL")?);
    // `store`-format endpoints get the verified original body (WEBHOOK_ENDPOINTS).
    let copies = storehook_shared::fanout::store_copies_setting(&settings)?;
    Ok(Ingest::new(Arc::new(endpoint), Arc::new(queue), clock).with_store_copies(copies))
}
