//! storehook Huawei AppGallery ingest Lambda (`POST /huawei`, API Gateway HTTP API).
//!
//! Cold start, once: tracing; the configuration (refuses to start without
//! `HUAWEI_APP_IDS` and `HUAWEI_PUBLIC_KEY`, see
//! `storehook_shared::stores::huawei::huawei_config`); the optional OAuth
//! client secret from Secrets Manager (`HUAWEI_CLIENT_SECRET_ARN`, else
//! `HUAWEI_CLIENT_SECRET`); the SQS FIFO queue (`QUEUE_URL`). Then every
//! request goes through `Ingest::lambda`: verify, translate, queue, answer.

use anyhow::Context as _;
use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::{Env, Lookup, required};
use storehook_shared::ingest::{Ingest, run_lambda};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::stores::huawei::{HuaweiEndpoint, huawei_config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    Box::pin(run_lambda(cold_start())).await
}

async fn cold_start() -> anyhow::Result<Ingest> {
    let sdk = sdk_config().await;
    let secret = match Env.get("HUAWEI_CLIENT_SECRET_ARN") {
        Some(id) => Some(
            storehook_shared::secrets::secret_string(&sdk, &id)
                .await
                .with_context(|| "reading HUAWEI_CLIENT_SECRET_ARN")?,
        ),
        None => None,
    };
    let lookup = |name: &str| -> Option<String> {
        match (name, &secret) {
            ("HUAWEI_CLIENT_SECRET", Some(s)) => Some(s.clone()),
            _ => Env.get(name),
        }
    };
    let config = huawei_config(&lookup, true)?;
    tracing::info!(
        apps = config.app_ids.len(),
        keys = config.public_keys.len(),
        store_api = config.api.is_some(),
        include_raw = config.include_raw,
        "Huawei endpoint configured"
    );
    let queue = SqsQueue::from_sdk(&sdk, required(&Env, "QUEUE_URL")?);
    let clock = Arc::new(SystemClock);
    let endpoint = HuaweiEndpoint::new(config, clock.clone())?;
    Ok(Ingest::new(Arc::new(endpoint), Arc::new(queue), clock))
}
