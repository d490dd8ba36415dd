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
use storehook_shared::aws::{SqsQueue, sdk_config};
use storehook_shared::clock::SystemClock;
use storehook_shared::config::{Env, Lookup, required};
use storehook_shared::ingest::Ingest;
use storehook_shared::stores::huawei::{HuaweiEndpoint, huawei_config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let ingest = match cold_start().await {
        Ok(ingest) => ingest,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "refusing to start");
            return Err(e.into());
        }
    };
    lambda_http::run(lambda_http::service_fn(move |req| {
        let ingest = ingest.clone();
        async move { ingest.lambda(req).await }
    }))
    .await
}

async fn cold_start() -> anyhow::Result<Ingest> {
    let sdk = sdk_config().await;
    let secret = match Env.get("HUAWEI_CLIENT_SECRET_ARN") {
        Some(id) => Some(client_secret(&sdk, &id).await?),
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

/// The OAuth client secret stored in Secrets Manager (the plain secret string).
async fn client_secret(sdk: &aws_config::SdkConfig, id: &str) -> anyhow::Result<String> {
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e)))
        .with_context(|| format!("reading HUAWEI_CLIENT_SECRET_ARN {id}"))?;
    out.secret_string()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("secret {id} holds no string"))
}
