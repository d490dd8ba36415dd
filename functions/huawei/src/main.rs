//! storehook Huawei AppGallery ingest Lambda (`POST /huawei`, API Gateway HTTP API).
//!
//! Cold start, once: tracing; the environment, with the optional OAuth client
//! secret read from Secrets Manager (`HUAWEI_CLIENT_SECRET_ARN`, else
//! `HUAWEI_CLIENT_SECRET`); the endpoint (refuses to start without
//! `HUAWEI_APP_IDS` and `HUAWEI_PUBLIC_KEY`, see
//! `storehook_shared::stores::huawei::config`); the SQS FIFO queue
//! (`QUEUE_URL`); with `TABLE_NAME`, each subscription's purchase token is
//! recorded in the table for the expiry sweeper (only
//! `LINK#GOOGLE_PLAY#LATEST#<subscription id>` items, see
//! `storehook_shared::stores::playstore::links::dynamo`). Then every request goes through `Ingest::lambda`: verify,
//! translate, queue, answer.

use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::{ConfigError, Env, Lookup, WithSecrets, required};
use storehook_shared::ingest::Ingest;
use storehook_shared::lambda::{Error, run_ingest};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::stores::playstore::links::dynamo::DynamoLinkStore;
use storehook_shared::stores::{Endpoints, huawei};

#[tokio::main]
async fn main() -> Result<(), Error> {
    Box::pin(run_ingest(cold_start())).await
}

async fn cold_start() -> Result<Ingest, ConfigError> {
    let sdk = sdk_config().await;
    let settings = WithSecrets::resolve(
        Env,
        &sdk,
        &[huawei::CLIENT_SECRET, storehook_shared::fanout::ENDPOINTS],
    )
    .await?;
    let clock = Arc::new(SystemClock);
    let mut endpoint = Endpoints::deployment(&settings, clock.clone()).huawei()?;
    if let Some(table) = settings.get("TABLE_NAME") {
        endpoint = endpoint.with_token_store(Arc::new(DynamoLinkStore::from_sdk(&sdk, table)));
    }
    let queue = SqsQueue::from_sdk(&sdk, required(&settings, "QUEUE_URL")?);
    // `store`-format endpoints get the verified original body (WEBHOOK_ENDPOINTS).
    let copies = storehook_shared::fanout::store_copies_setting(&settings)?;
    Ok(Ingest::new(Arc::new(endpoint), Arc::new(queue), clock).with_store_copies(copies))
}
