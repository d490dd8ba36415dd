//! storehook sweeper Lambda: on a schedule, finds the subscriptions whose
//! entitlement ended by time without a closing event (the table's `due`
//! index) and queues their closing events (SUBSCRIPTION_EXPIRED after the
//! leeway) for the dispatcher. All logic lives in `storehook_shared::sweep`;
//! this is wiring only.

use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::sweeper::SweeperConfig;
use storehook_shared::lambda::{Error, run_sweeper};
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::state::DynamoState;
use storehook_shared::sweep::Sweeper;

#[tokio::main]
async fn main() -> Result<(), Error> {
    Box::pin(run_sweeper(cold_start())).await
}

async fn cold_start() -> anyhow::Result<Sweeper> {
    let config = SweeperConfig::from_env()?;
    let sdk = sdk_config().await;
    let clock = Arc::new(SystemClock);
    let state = DynamoState::from_sdk(&sdk, &config.table_name, clock.clone());
    let queue = SqsQueue::from_sdk(&sdk, &config.queue_url);
    tracing::info!(config = ?config, "sweeper ready");
    Ok(Sweeper::new(Arc::new(state), Arc::new(queue), clock).with_leeway(config.leeway))
}
