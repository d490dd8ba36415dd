//! storehook Google Play ingest Lambda (`POST /playstore`, API Gateway HTTP
//! API): the endpoint of a Cloud Pub/Sub push subscription on the topic that
//! Google Play's real-time developer notifications are published to.
//!
//! Cold start, once: tracing; the environment, with the Play Developer API
//! service-account key read from Secrets Manager
//! (`PLAY_SERVICE_ACCOUNT_SECRET_ARN`, else the inline
//! `PLAY_SERVICE_ACCOUNT_JSON` for local runs); the purchase-token links in the
//! DynamoDB table (`TABLE_NAME`, `LINK#GOOGLE_PLAY#<token>` items, shared by all
//! instances); the endpoint (refuses to start without `PLAY_PACKAGE_NAMES`,
//! push authentication and the key, see
//! `storehook_shared::stores::playstore::config`); the SQS FIFO queue
//! (`QUEUE_URL`). Then every push goes through `Ingest::lambda`: authenticate,
//! decode, read the state from Google, translate, queue, answer.

use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::{ConfigError, Env, WithSecrets, required};
use storehook_shared::ingest::Ingest;
use storehook_shared::lambda::{Error, run_ingest};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::stores::Endpoints;
use storehook_shared::stores::playstore::{self, links::dynamo::DynamoLinkStore};

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
            playstore::SERVICE_ACCOUNT,
            storehook_shared::fanout::ENDPOINTS,
        ],
    )
    .await?;
    let clock = Arc::new(SystemClock);
    let links = DynamoLinkStore::from_sdk(&sdk, required(&settings, "TABLE_NAME")?);
    let endpoint = Endpoints::deployment(&settings, clock.clone()).playstore(Arc::new(links))?;
    let queue = SqsQueue::from_sdk(&sdk, required(&settings, "QUEUE_URL")?);
    // `store`-format endpoints get the verified original body (WEBHOOK_ENDPOINTS).
    let copies = storehook_shared::fanout::store_copies_setting(&settings)?;
    Ok(Ingest::new(Arc::new(endpoint), Arc::new(queue), clock).with_store_copies(copies))
}
