//! storehook App Store ingest Lambda (`POST /appstore`, API Gateway HTTP API).
//!
//! Cold start, once: tracing; the endpoint from the environment (refuses to
//! start without `APPLE_BUNDLE_ID`, and without `APPLE_APP_APPLE_ID` when
//! Production is accepted — see `storehook_shared::stores::appstore::config`;
//! Apple Root CA - G3 parsed once, chain cache warm across invocations); the
//! SQS FIFO queue (`QUEUE_URL`). Then every request goes through
//! `Ingest::lambda`: verify, translate, queue, answer.

use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::{ConfigError, Env, WithSecrets, required};
use storehook_shared::ingest::Ingest;
use storehook_shared::lambda::{Error, run_ingest};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::stores::Endpoints;

#[tokio::main]
async fn main() -> Result<(), Error> {
    Box::pin(run_ingest(cold_start())).await
}

async fn cold_start() -> Result<Ingest, ConfigError> {
    let clock = Arc::new(SystemClock);
    let endpoint = Endpoints::deployment(&Env, clock.clone()).appstore()?;
    let sdk = sdk_config().await;
    let queue = SqsQueue::from_sdk(&sdk, required(&Env, "QUEUE_URL")?);
    // `store`-format endpoints get the verified original body (WEBHOOK_ENDPOINTS,
    // or the secret WEBHOOK_ENDPOINTS_SECRET_ARN names).
    let settings = WithSecrets::resolve(Env, &sdk, &[storehook_shared::fanout::ENDPOINTS]).await?;
    let copies = storehook_shared::fanout::store_copies_setting(&settings)?;
    Ok(Ingest::new(Arc::new(endpoint), Arc::new(queue), clock).with_store_copies(copies))
}
