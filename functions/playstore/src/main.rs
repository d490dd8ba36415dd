//! storehook Google Play ingest Lambda (`POST /playstore`, API Gateway HTTP
//! API): the endpoint of a Cloud Pub/Sub push subscription on the topic that
//! Google Play's real-time developer notifications are published to.
//!
//! Cold start, once: tracing; the Play Developer API service-account key from
//! Secrets Manager (`PLAY_SERVICE_ACCOUNT_SECRET_ARN`, else the inline
//! `PLAY_SERVICE_ACCOUNT_JSON` for local runs); the configuration (refuses to
//! start without `PLAY_PACKAGE_NAMES`, push authentication and the key, see
//! `storehook_shared::stores::playstore::playstore_config`); the SQS FIFO
//! queue (`QUEUE_URL`); the purchase-token links in the DynamoDB table
//! (`TABLE_NAME`, `LINK#GOOGLE_PLAY#<token>` items, shared by all instances).
//! Then every push goes through `Ingest::lambda`:
//! authenticate, decode, read the state from Google, translate, queue, answer.

use anyhow::Context as _;
use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::{Env, Lookup, required};
use storehook_shared::ingest::{Ingest, run_lambda};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::stores::playstore::links::dynamo::DynamoLinkStore;
use storehook_shared::stores::playstore::{PlayStoreEndpoint, playstore_config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    Box::pin(run_lambda(cold_start())).await
}

async fn cold_start() -> anyhow::Result<Ingest> {
    let sdk = sdk_config().await;
    let key = match Env.get("PLAY_SERVICE_ACCOUNT_SECRET_ARN") {
        Some(id) => Some(
            storehook_shared::secrets::secret_string(&sdk, &id)
                .await
                .with_context(|| "reading PLAY_SERVICE_ACCOUNT_SECRET_ARN")?,
        ),
        None => None,
    };
    let lookup = |name: &str| -> Option<String> {
        match (name, &key) {
            ("PLAY_SERVICE_ACCOUNT_JSON", Some(k)) => Some(k.clone()),
            _ => Env.get(name),
        }
    };
    let config = playstore_config(&lookup, true)?;
    tracing::info!(
        packages = %config.package_names.join(","),
        oidc = config.push_auth.oidc.is_some(),
        url_token = config.push_auth.query_token.is_some(),
        api_account = %config.service_account.as_ref().map(|k| k.client_email.as_str()).unwrap_or(""),
        include_raw = config.include_raw,
        "Google Play endpoint configured"
    );
    let queue = SqsQueue::from_sdk(&sdk, required(&Env, "QUEUE_URL")?);
    let clock = Arc::new(SystemClock);
    // Purchase-token lineages, shared by every instance (`LINK#GOOGLE_PLAY#<token>` items).
    let links = Arc::new(DynamoLinkStore::from_sdk(
        &sdk,
        required(&Env, "TABLE_NAME")?,
    ));
    let endpoint = PlayStoreEndpoint::new(config, links, clock.clone())?;
    Ok(Ingest::new(Arc::new(endpoint), Arc::new(queue), clock))
}
