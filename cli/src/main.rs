//! `storehook`: the developer CLI.
//!
//! - `storehook serve`: the local all-in-one server (every store route, the dispatcher,
//!   an embedded queue and state; or SQS + DynamoDB with `--aws`).
//! - `storehook translate --store <store> FILE|-`: verify a store HTTP body and print its events.
//! - `storehook replay`: move dead letters back to the queue.
//! - `storehook test-notification --store appstore`: Apple sends a TEST notification; did it arrive?
//! - `storehook backfill --store appstore|playstore --since …`: App Store: re-post Apple's notification
//!   history to ingest; Google Play: enqueue the voided purchases storehook may have missed.

/// mimalloc: `storehook serve` allocates per request (HTTP, JSON, redb pages)
/// on many threads; see BENCHMARKS.md for the measured difference.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use storehook_cli::{backfill, replay, serve, test_notification, translate};

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "storehook",
    version,
    about = "storehook: app store subscription notifications → one signed, ordered event stream",
    long_about = "storehook verifies app store server notifications, translates them into one event \
language and delivers them, signed and in order, to your webhook.\n\n\
Supported stores: appstore (App Store Server Notifications V2), playstore (Google Play RTDN), huawei (AppGallery IAP), amazon (Amazon Appstore RTN over SNS)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every store route with the dispatcher in-process (the local all-in-one server).
    Serve(Box<serve::Args>),
    /// Verify a store notification (the HTTP body the store POSTs) and print its events as JSON lines.
    Translate(translate::Args),
    /// Move dead letters back to the queue (all, or by event id).
    Replay(replay::Args),
    /// Ask the store to send a test notification and report whether it arrived (exit 0 only on SUCCESS).
    TestNotification(Box<test_notification::Args>),
    /// Recover what the store knows and storehook may have missed (App Store: notification
    /// history through ingest; Google Play: voided purchases onto the queue).
    Backfill(Box<backfill::Args>),
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("STOREHOOK_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Translate(args) = cli.command {
        return translate::run(args);
    }
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Replay(args) => replay::run(args).await,
            Command::TestNotification(args) => test_notification::run(*args).await,
            Command::Backfill(args) => backfill::run(*args).await,
            Command::Translate(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
