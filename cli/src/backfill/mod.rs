//! `storehook backfill --store <store> --since <RFC 3339> [--until <RFC 3339>]`:
//! what the store says happened in a window, through the normal ingest path.
//!
//! - `--store appstore` ([`appstore`]): pages through Apple's Get Notification
//!   History and POSTs each `signedPayload` to `--ingest-url` (the
//!   deployment's `/appstore` endpoint or a local `storehook serve`).

pub mod appstore;

use chrono::{DateTime, Utc};
use clap::{Args as ClapArgs, ValueEnum};

/// The store to backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackfillStore {
    /// App Store: Get Notification History → `--ingest-url`.
    Appstore,
}

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The store.
    #[arg(long, value_enum)]
    pub store: BackfillStore,
    /// Start of the window (RFC 3339, e.g. `2026-11-01T00:00:00Z`).
    #[arg(long, value_parser = parse_time)]
    pub since: DateTime<Utc>,
    /// End of the window (RFC 3339; default: now).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub appstore: appstore::AppStoreArgs,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-11-01T00:00:00Z"))
}

/// Runs the backfill; an error (exit 1) when anything was refused or could not be fetched.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.store {
        BackfillStore::Appstore => appstore::run(&args.appstore, args.since, args.until).await,
    }
}
