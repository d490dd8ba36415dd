//! `storehook translate`: one store HTTP body in, its events out (JSON lines),
//! through the same endpoint code as the Lambdas — full verification included.
//!
//! Configuration comes from the same environment variables as the Lambdas
//! (`APPLE_*`, `HUAWEI_*`, `PLAY_*`), with flags for the common ones; the app
//! identity is optional here (absent: not checked).

use clap::{Args as ClapArgs, ValueEnum};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use storehook_shared::clock::{Clock, SystemClock};
use storehook_shared::config::{ConfigError, Lookup};
use storehook_shared::error::Rejection;
use storehook_shared::event::Event;
use storehook_shared::ingest::{StoreEndpoint, StoreRequest};
use storehook_shared::stores::Endpoints;
use storehook_shared::stores::appstore::config::read_trust_roots;
use storehook_shared::stores::playstore::links::MemoryLinkStore;

/// Stores `translate` understands.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StoreName {
    /// App Store Server Notifications V2: body `{"signedPayload": "<JWS>"}`.
    Appstore,
    /// Google Play RTDN Pub/Sub push (needs PLAY_* settings; the Play Developer API is called).
    Playstore,
    /// Huawei AppGallery subscription/order notification (needs HUAWEI_PUBLIC_KEY).
    Huawei,
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
    /// App Store: expected bundle id (absent: any app is accepted).
    #[arg(long, env = "APPLE_BUNDLE_ID")]
    bundle_id: Option<String>,
    /// App Store: expected app id, checked on Production notifications (absent: not checked).
    #[arg(long, env = "APPLE_APP_APPLE_ID")]
    app_apple_id: Option<i64>,
    /// Huawei: the app's IAP public key (base64 X.509 SubjectPublicKeyInfo).
    #[arg(long, env = "HUAWEI_PUBLIC_KEY", hide_env_values = true)]
    huawei_public_key: Option<String>,
    /// A request header as the store sent it, e.g. `Authorization: Bearer <token>` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The request's query string, e.g. `token=...` (Play push-URL token).
    #[arg(long)]
    query: Option<String>,
    /// Include the decoded store payloads as `raw`.
    #[arg(long)]
    include_raw: bool,
}

impl Args {
    fn lookup(&self) -> impl Lookup + '_ {
        move |name: &str| -> Option<String> {
            match name {
                "APPLE_BUNDLE_ID" => self.bundle_id.clone(),
                "APPLE_APP_APPLE_ID" => self.app_apple_id.map(|v| v.to_string()),
                "HUAWEI_PUBLIC_KEY" => self.huawei_public_key.clone(),
                "INCLUDE_RAW" => Some(self.include_raw.to_string()),
                other => std::env::var(other).ok(),
            }
        }
    }
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

fn setup(code: &'static str, e: impl std::fmt::Display) -> Rejection {
    Rejection::new(2, code, e.to_string())
}

/// A configuration the store cannot be checked with: exit code 2.
fn bad_configuration(e: ConfigError) -> Rejection {
    let code = match e {
        ConfigError::TrustRoot(_) => "bad_trust_root",
        _ => "bad_configuration",
    };
    setup(code, e)
}

fn endpoint(args: &Args, clock: Arc<dyn Clock>) -> Result<Arc<dyn StoreEndpoint>, Rejection> {
    let settings = args.lookup();
    let endpoints = Endpoints::local(&settings, clock);
    Ok(match args.store {
        StoreName::Appstore => {
            let roots = read_trust_roots(&args.trust_roots).map_err(bad_configuration)?;
            Arc::new(
                endpoints
                    .trusting(roots)
                    .appstore()
                    .map_err(bad_configuration)?,
            )
        }
        StoreName::Huawei => Arc::new(endpoints.huawei().map_err(bad_configuration)?),
        StoreName::Playstore => Arc::new(
            endpoints
                .playstore(Arc::new(MemoryLinkStore::new()))
                .map_err(bad_configuration)?,
        ),
    })
}

fn request(args: &Args, body: Vec<u8>) -> Result<StoreRequest, Rejection> {
    let mut headers = http::HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| setup("bad_header", format!("{h:?} is not `Name: value`")))?;
        let name = http::HeaderName::try_from(name.trim()).map_err(|e| setup("bad_header", e))?;
        let value =
            http::HeaderValue::try_from(value.trim()).map_err(|e| setup("bad_header", e))?;
        headers.append(name, value);
    }
    Ok(StoreRequest {
        method: "POST".into(),
        query: args.query.clone(),
        headers,
        body: body.into(),
    })
}

async fn events(args: &Args, body: Vec<u8>) -> Result<Vec<Event>, Rejection> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let endpoint = endpoint(args, clock.clone())?;
    let req = request(args, body)?;
    endpoint.events(&req, clock.now().timestamp_millis()).await
}

pub fn run(args: Args) -> ExitCode {
    let body = match read_input(&args.input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.input);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(events(&args, body)) {
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
            ExitCode::from(if r.status == 2 { 2 } else { 1 })
        }
    }
}
