//! storehook App Store ingest Lambda (`POST /appstore`, API Gateway HTTP API).
//!
//! Cold start, once: tracing; the configuration (refuses to start without
//! `APPLE_BUNDLE_ID`, and without `APPLE_APP_APPLE_ID` when Production is
//! accepted — see `storehook_shared::config::appstore`); the verifier (Apple
//! Root CA - G3 parsed once, chain cache warm across invocations); the SQS FIFO
//! queue (`QUEUE_URL`). Then every request goes through `Ingest::lambda`:
//! verify, translate, queue, answer.

use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::{Env, required};
use storehook_shared::ingest::{AppStoreEndpoint, Ingest, run_lambda};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::stores::appstore::{AppStore, appstore_config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    Box::pin(run_lambda(cold_start())).await
}

async fn cold_start() -> anyhow::Result<Ingest> {
    let config = appstore_config(&Env, true)?;
    tracing::info!(
        bundle_id = config.bundle_id.as_deref().unwrap_or(""),
        environments = ?config.environments,
        include_raw = config.include_raw,
        "App Store endpoint configured"
    );
    let queue_url = required(&Env, "QUEUE_URL")?;
    let sdk = sdk_config().await;
    let queue = SqsQueue::from_sdk(&sdk, queue_url);
    let endpoint = AppStoreEndpoint(AppStore::new(config)?);
    Ok(Ingest::new(
        Arc::new(endpoint),
        Arc::new(queue),
        Arc::new(SystemClock),
    ))
}
