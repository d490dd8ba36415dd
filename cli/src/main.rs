//! `storehook`: the developer CLI.
//!
//! - `storehook translate --store appstore FILE|-`: verify a store HTTP body and print its events.

mod translate;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "storehook",
    version,
    about = "storehook: app store subscription notifications → one signed, ordered event stream",
    long_about = "storehook verifies app store server notifications, translates them into one event \
language and delivers them, signed and in order, to your webhook.\n\n\
Supported stores: appstore (App Store Server Notifications V2)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a store notification (the HTTP body the store POSTs) and print its events as JSON lines.
    Translate(translate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Translate(args) => translate::run(args),
    }
}
