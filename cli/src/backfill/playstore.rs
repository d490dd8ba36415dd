//! `storehook backfill --store playstore`: Google Play voided purchases
//! (`voidedpurchases.list`, `type=1`, every page) → `SUBSCRIPTION_REFUNDED` /
//! `ONE_TIME_PURCHASE_REFUNDED` events with `details.source: "backfill"`,
//! enqueued through the queue `storehook serve` (or the dispatcher Lambda)
//! reads.
//!
//! Idempotent: an event's id derives from the void's purchase token and order
//! id, as the live `voidedPurchaseNotification`'s does. A void whose event was
//! already delivered (a delivery record in the state) is not enqueued again;
//! one still queued is dropped by the queue's deduplication; and the
//! dispatcher applies an id once. Settings: `PLAY_PACKAGE_NAMES`,
//! `PLAY_SERVICE_ACCOUNT_JSON` (or `--service-account-file`), optional
//! `PLAY_API_BASE_URL` / `PLAY_OAUTH_TOKEN_URL`.

use super::{Args as BackfillArgs, window};
use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use std::path::PathBuf;
use std::sync::Arc;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::{Clock, SystemClock};
use storehook_shared::config::Lookup;
use storehook_shared::event::Timestamp;
use storehook_shared::queue::EventQueue;
use storehook_shared::queue::redb::RedbQueue;
use storehook_shared::queue::sqs::SqsQueue;
use storehook_shared::state::{DynamoState, RedbState, StateStore};
use storehook_shared::stores::Endpoints;
use storehook_shared::stores::playstore::PlayStoreEndpoint;
use storehook_shared::stores::playstore::links::LinkStore;
use storehook_shared::stores::playstore::links::dynamo::DynamoLinkStore;
use storehook_shared::stores::playstore::links::redb::RedbLinkStore;
use storehook_shared::stores::playstore::voided::{VoidedReport, enqueue_voided};

#[derive(Debug, Default, ClapArgs)]
#[group(id = "playstore_args")]
pub struct PlayStoreArgs {
    /// Google Play: the app (default: every app of PLAY_PACKAGE_NAMES).
    #[arg(long = "package")]
    pub packages: Vec<String>,
    /// Google Play: read the service-account JSON key from this file
    /// (instead of PLAY_SERVICE_ACCOUNT_JSON).
    #[arg(long, value_name = "PATH")]
    pub service_account_file: Option<PathBuf>,
    /// The embedded queue, state and links of a stopped `storehook serve`
    /// (its --data-dir): the events are delivered when it starts.
    #[arg(long, env = "STOREHOOK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use SQS and DynamoDB (standard AWS configuration; AWS_ENDPOINT_URL for an emulator).
    #[arg(long)]
    pub aws: bool,
    /// `--aws`: the FIFO queue the dispatcher reads.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,
    /// `--aws`: the table (state and purchase-token lineages).
    #[arg(long, env = "TABLE_NAME")]
    pub table_name: Option<String>,
}

/// What a run did (printed as one JSON line).
pub type Report = VoidedReport;

/// The queue, state and link store a backfill writes through.
#[derive(Debug, Clone)]
pub struct Sink {
    pub queue: Arc<dyn EventQueue>,
    pub state: Arc<dyn StateStore>,
    pub links: Arc<dyn LinkStore>,
}

impl Sink {
    /// `--data-dir` (the embedded files; no `serve` may hold them) or `--aws`.
    pub async fn open(args: &PlayStoreArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        if args.aws {
            let (Some(queue_url), Some(table)) = (&args.queue_url, &args.table_name) else {
                bail!("--aws needs --queue-url and --table-name (or QUEUE_URL, TABLE_NAME)");
            };
            let sdk = sdk_config().await;
            return Ok(Self {
                queue: Arc::new(SqsQueue::from_sdk(&sdk, queue_url)),
                state: Arc::new(DynamoState::from_sdk(&sdk, table, clock)),
                links: Arc::new(DynamoLinkStore::from_sdk(&sdk, table)),
            });
        }
        let Some(dir) = &args.data_dir else {
            bail!(
                "say where to enqueue: --data-dir DIR (the data dir of a stopped `storehook serve`), \
                 or --aws --queue-url URL --table-name NAME"
            );
        };
        let busy = || {
            format!(
                "opening the embedded files in {} (is `storehook serve` running on it? stop it first)",
                dir.display()
            )
        };
        Ok(Self {
            links: Arc::new(RedbLinkStore::open(dir).with_context(busy)?),
            queue: Arc::new(RedbQueue::open(dir).with_context(busy)?),
            state: Arc::new(RedbState::open(dir).with_context(busy)?),
        })
    }
}

/// The Play endpoint of `settings`, the key file of `--service-account-file` over them.
pub fn endpoint(
    args: &PlayStoreArgs,
    settings: &impl Lookup,
    links: Arc<dyn LinkStore>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<PlayStoreEndpoint> {
    let key = match &args.service_account_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading --service-account-file {}", p.display()))?,
        ),
        None => None,
    };
    let lookup = |name: &str| -> Option<String> {
        match name {
            "PLAY_SERVICE_ACCOUNT_JSON" if key.is_some() => key.clone(),
            other => settings.get(other),
        }
    };
    if lookup.get("PLAY_PACKAGE_NAMES").is_none() && args.packages.is_empty() {
        bail!("no app: set PLAY_PACKAGE_NAMES (or pass --package)");
    }
    let lookup_with_packages = |name: &str| -> Option<String> {
        match name {
            "PLAY_PACKAGE_NAMES" if lookup.get(name).is_none() => Some(args.packages.join(",")),
            other => lookup.get(other),
        }
    };
    let ep = Endpoints::local(&lookup_with_packages, clock).playstore(links)?;
    if ep.api().is_none() {
        bail!(
            "the Play Developer API is not configured: set PLAY_SERVICE_ACCOUNT_JSON (or pass --service-account-file)"
        );
    }
    Ok(ep)
}

/// Reads every configured (or `--package`) app's voids in the window and
/// enqueues the events not delivered yet ([`enqueue_voided`]).
pub async fn backfill(
    ep: &PlayStoreEndpoint,
    packages: &[String],
    since: Timestamp,
    until: Timestamp,
    now: Timestamp,
    sink: &Sink,
) -> anyhow::Result<Report> {
    Ok(enqueue_voided(
        ep,
        packages,
        since,
        until,
        now,
        sink.queue.as_ref(),
        sink.state.as_ref(),
    )
    .await?)
}

/// `storehook backfill --store playstore …` with the process environment.
pub async fn run(args: &BackfillArgs) -> anyhow::Result<Report> {
    run_with(args, &storehook_shared::config::Env).await
}

/// Same, with these settings.
pub async fn run_with(args: &BackfillArgs, settings: &impl Lookup) -> anyhow::Result<Report> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = Timestamp::from_datetime(clock.now()).context("the clock is out of range")?;
    let (since, until) = window(args, now)?;
    let sink = Sink::open(&args.playstore, clock.clone()).await?;
    let ep = endpoint(&args.playstore, settings, sink.links.clone(), clock)?;
    backfill(&ep, &args.playstore.packages, since, until, now, &sink).await
}
