//! `storehook translate`.

use clap::{Args as ClapArgs, ValueEnum};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use storehook_shared::error::Rejection;
use storehook_shared::event::Event;
use storehook_shared::stores::appstore::{AppStore, AppStoreConfig, verify::parse_roots};

/// Stores `translate` understands.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StoreName {
    /// App Store Server Notifications V2: body `{"signedPayload": "<JWS>"}`.
    Appstore,
}

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Which store sent the body.
    #[arg(long, value_enum)]
    store: StoreName,
    /// File holding the HTTP body, or `-` for standard input.
    input: String,
    /// Add a trusted root certificate (PEM or DER file), beside the bundled Apple Root CA - G3.
    #[arg(long = "trust-root", value_name = "PEM")]
    trust_roots: Vec<PathBuf>,
    /// Expected bundle id (absent: any app is accepted).
    #[arg(long)]
    bundle_id: Option<String>,
    /// Expected App Store app id, checked on Production notifications (absent: not checked).
    #[arg(long)]
    app_apple_id: Option<i64>,
    /// Include the decoded store payloads as `raw`.
    #[arg(long)]
    include_raw: bool,
}

fn read_input(input: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if input == "-" {
        std::io::stdin().read_to_end(&mut buf)?;
    } else {
        buf = std::fs::read(input)?;
    }
    Ok(buf)
}

fn events(args: &Args, body: &[u8]) -> Result<Vec<Event>, Rejection> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    match args.store {
        StoreName::Appstore => {
            let mut extra_roots = Vec::new();
            for path in &args.trust_roots {
                let bytes = std::fs::read(path).map_err(|e| {
                    Rejection::new(2, "bad_trust_root", format!("{}: {e}", path.display()))
                })?;
                extra_roots.extend(parse_roots(&bytes).map_err(|e| {
                    Rejection::new(2, "bad_trust_root", format!("{}: {e}", path.display()))
                })?);
            }
            let app = AppStore::new(AppStoreConfig {
                bundle_id: args.bundle_id.clone(),
                app_apple_id: args.app_apple_id,
                extra_roots,
                include_raw: args.include_raw,
                ..AppStoreConfig::default()
            })
            .map_err(|e| Rejection::new(2, "bad_trust_root", e.to_string()))?;
            app.process(body, now_ms).map_err(|e| e.rejection())
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    let body = match read_input(&args.input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.input);
            return ExitCode::from(2);
        }
    };
    match events(&args, &body) {
        Ok(events) => {
            let mut out = std::io::stdout().lock();
            for e in events {
                let line = serde_json::to_string(&e).unwrap_or_default();
                if writeln!(out, "{line}").is_err() {
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Err(r) => {
            eprintln!("{}", r.body());
            eprintln!("error: {} ({}): {}", r.code, r.status, r.message);
            ExitCode::from(1)
        }
    }
}
