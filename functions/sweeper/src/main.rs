//! storehook sweeper Lambda: on a schedule, finds the subscriptions whose
//! entitlement ended by time without a closing event (the table's `due`
//! index), asks the store's API about each where the deployment has API
//! credentials (App Store Server API key, Play service account, Huawei OAuth
//! client, Amazon RVS shared key), and queues the closing events for the dispatcher
//! (SUBSCRIPTION_EXPIRED after the leeway without credentials). With Google
//! Play configured, a daily schedule also reads Play's voided purchases. All
//! logic lives in `storehook_shared::sweep`, `lambda::schedule` and the
//! stores; this is wiring only.

use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::sweeper::SweeperConfig;
use storehook_shared::config::{Env, Lookup, WithSecrets};
use storehook_shared::lambda::{Error, ScheduledJobs, VoidedJob, run_sweeper};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::state::DynamoState;
use storehook_shared::stores::playstore::links::dynamo::DynamoLinkStore;
use storehook_shared::stores::{Endpoints, amazon, appstore, huawei, playstore};
use storehook_shared::sweep::Sweeper;

#[tokio::main]
async fn main() -> Result<(), Error> {
    Box::pin(run_sweeper(cold_start())).await
}

async fn cold_start() -> anyhow::Result<ScheduledJobs> {
    let config = SweeperConfig::from_env()?;
    let sdk = sdk_config().await;
    let clock = Arc::new(SystemClock);
    let settings = WithSecrets::resolve(
        Env,
        &sdk,
        &[
            appstore::api::PRIVATE_KEY,
            playstore::SERVICE_ACCOUNT,
            huawei::CLIENT_SECRET,
            amazon::RVS_SHARED_SECRET,
        ],
    )
    .await?;
    let state = Arc::new(DynamoState::from_sdk(
        &sdk,
        &config.table_name,
        clock.clone(),
    ));
    let queue = Arc::new(SqsQueue::from_sdk(&sdk, &config.queue_url));
    let links = Arc::new(DynamoLinkStore::from_sdk(&sdk, &config.table_name));
    // `local`: what is set is checked, but the sweeper does not receive
    // notifications, so Play's push authentication is not required here.
    let endpoints = Endpoints::local(&settings, clock.clone());
    let mut sweeper =
        Sweeper::new(state.clone(), queue.clone(), clock.clone()).with_leeway(config.leeway);
    for source in endpoints.status_sources(links.clone())? {
        sweeper = sweeper.with_source(source);
    }
    let voided = match settings.get("PLAY_PACKAGE_NAMES") {
        Some(_) => Some(VoidedJob {
            endpoint: Arc::new(endpoints.playstore(links)?),
            queue,
            state,
            clock,
        }),
        None => None,
    };
    tracing::info!(config = ?config, voided = voided.is_some(), "sweeper ready");
    Ok(ScheduledJobs { sweeper, voided })
}
