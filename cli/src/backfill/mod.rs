//! `storehook backfill --store <store> --since <RFC 3339> [--until <RFC 3339>]`:
//! what the store knows and storehook may have missed.
//!
//! - `--store appstore` ([`appstore`]): pages through Apple's Get Notification
//!   History and POSTs each `signedPayload` to `--ingest-url` (the
//!   deployment's `/appstore` endpoint or a local `storehook serve`): the
//!   events are those of the original notifications, so ones already
//!   delivered are not delivered again.
//! - `--store playstore` ([`playstore`]): Google Play voided purchases
//!   (`voidedpurchases.list`) → refund / revocation events, enqueued locally
//!   (`--data-dir`, the embedded queue `storehook serve` reads) or in AWS
//!   (`--aws --queue-url … --table-name …`).

pub mod appstore;
pub mod playstore;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use storehook_shared::event::Timestamp;

/// The store to backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackfillStore {
    /// App Store: Get Notification History → `--ingest-url`.
    Appstore,
    /// Google Play voided purchases → the queue.
    Playstore,
}

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The store to read.
    #[arg(long, value_enum)]
    pub store: BackfillStore,
    /// Start of the window (RFC 3339), e.g. `2026-11-01T00:00:00Z`.
    #[arg(long)]
    pub since: String,
    /// End of the window (RFC 3339; default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// App Store options.
    #[command(flatten)]
    pub appstore: appstore::AppStoreArgs,
    /// Google Play options.
    #[command(flatten)]
    pub playstore: playstore::PlayStoreArgs,
}

/// Parses an RFC 3339 instant of a flag.
pub fn instant(flag: &str, value: &str) -> anyhow::Result<Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(value.trim()).with_context(|| {
        format!("{flag} {value:?} is not an RFC 3339 time (e.g. 2026-11-01T00:00:00Z)")
    })?;
    Timestamp::from_datetime(t.with_timezone(&chrono::Utc))
        .with_context(|| format!("{flag} {value:?} is out of range"))
}

/// The window `--since` .. `--until` (default now), checked.
pub fn window(args: &Args, now: Timestamp) -> anyhow::Result<(Timestamp, Timestamp)> {
    let since = instant("--since", &args.since)?;
    let until = match &args.until {
        Some(u) => instant("--until", u)?,
        None => now,
    };
    if since >= until {
        bail!("--since must be before --until (or now)");
    }
    Ok((since, until))
}

/// Runs the backfill; an error (exit 1) when anything was refused or could not be fetched.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.store {
        BackfillStore::Appstore => {
            // The window goes to Apple as given: Apple checks it and its answer is reported.
            let since = instant("--since", &args.since)?.0;
            let until = match &args.until {
                Some(u) => Some(instant("--until", u)?.0),
                None => None,
            };
            appstore::run(&args.appstore, since, until).await
        }
        BackfillStore::Playstore => {
            let report = playstore::run(&args).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
