//! `storehook translate`: store HTTP bodies in, their events out (JSON lines),
//! through the same endpoint code as the Lambdas — full verification included.
//!
//! Many inputs in one process (the endpoint and its caches are built once):
//! several files, and/or `-` for JSON lines on standard input (one store body
//! per line, blank lines skipped). `--with-source` wraps every output line as
//! `{"source": "<file>" | "stdin:<line>", "event": …}` (a refusal:
//! `{"source", "error": {"code", "status", "message"}}`). A refused input does
//! not stop the run: it is reported on standard error, and the exit status is
//! 1 if any input was refused (2: the configuration or the process could not
//! start). With more than one body, a JSON summary ends standard error:
//! `{"inputs", "translated", "events", "refused", "refused_by_code"}`.
//!
//! Configuration comes from the same environment variables as the Lambdas
//! (`APPLE_*`, `HUAWEI_*`, `PLAY_*`, `AMAZON_*`), with flags for the common ones; the app
//! identity is optional here (absent: not checked).

use clap::{Args as ClapArgs, ValueEnum};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use storehook_shared::clock::{Clock, SystemClock};
use storehook_shared::config::{ConfigError, Lookup};
use storehook_shared::error::Rejection;
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
    /// Amazon Appstore RTN, the SNS message as posted (needs AMAZON_RVS_SHARED_SECRET: the
    /// signing certificate is downloaded and the Receipt Verification Service is called).
    Amazon,
}

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Which store sent the body.
    #[arg(long, value_enum)]
    store: StoreName,
    /// Files holding one HTTP body each, and/or `-` for JSON lines on standard input (one body
    /// per line).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Wrap each output line with the input it came from: `{"source": …, "event": …}`, and
    /// print refusals as `{"source": …, "error": …}` lines too.
    #[arg(long)]
    with_source: bool,
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
        StoreName::Amazon => Arc::new(endpoints.amazon().map_err(bad_configuration)?),
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

/// One store body and where it came from.
struct Input {
    source: String,
    body: Result<Vec<u8>, String>,
}

/// The bodies of `inputs`, in order: a file is one body; `-` is one body per
/// non-blank line of standard input (read once).
fn bodies(inputs: &[String]) -> Vec<Input> {
    let mut out = Vec::new();
    let mut stdin_read = false;
    for input in inputs {
        if input == "-" {
            if stdin_read {
                continue;
            }
            stdin_read = true;
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                out.push(Input {
                    source: "stdin".into(),
                    body: Err(format!("cannot read standard input: {e}")),
                });
                continue;
            }
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                out.push(Input {
                    source: format!("stdin:{}", i + 1),
                    body: Ok(line.as_bytes().to_vec()),
                });
            }
        } else {
            out.push(Input {
                source: input.clone(),
                body: std::fs::read(input).map_err(|e| format!("cannot read {input}: {e}")),
            });
        }
    }
    out
}

/// What a run did (the summary).
#[derive(Debug, Default)]
struct Summary {
    inputs: usize,
    translated: usize,
    events: usize,
    refused: std::collections::BTreeMap<String, usize>,
}

pub fn run(args: Args) -> ExitCode {
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
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let endpoint = match endpoint(&args, clock.clone()) {
        Ok(e) => e,
        Err(r) => {
            eprintln!("{}", r.body());
            eprintln!("error: {} ({}): {}", r.code, r.status, r.message);
            return ExitCode::from(2);
        }
    };
    // Bad `--header`s are the run's configuration, not an input's fault.
    if let Err(r) = request(&args, Vec::new()) {
        eprintln!("error: {} ({}): {}", r.code, r.status, r.message);
        return ExitCode::from(2);
    }
    let inputs = bodies(&args.inputs);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut summary = Summary {
        inputs: inputs.len(),
        ..Summary::default()
    };
    for input in inputs {
        let result = match input.body {
            Err(why) => Err(Rejection::new(2, "unreadable_input", why)),
            Ok(body) => match request(&args, body) {
                Err(r) => Err(r),
                Ok(req) => runtime.block_on(endpoint.events(&req, clock.now().timestamp_millis())),
            },
        };
        let written = match result {
            Ok(events) => {
                summary.translated += 1;
                summary.events += events.len();
                events.iter().try_for_each(|e| {
                    let line = if args.with_source {
                        serde_json::json!({"source": input.source, "event": e}).to_string()
                    } else {
                        serde_json::to_string(e).unwrap_or_default()
                    };
                    writeln!(out, "{line}")
                })
            }
            Err(r) => {
                *summary.refused.entry(r.code.to_owned()).or_default() += 1;
                if summary.inputs == 1 {
                    eprintln!("{}", r.body());
                }
                eprintln!(
                    "error: {}: {} ({}): {}",
                    input.source, r.code, r.status, r.message
                );
                if args.with_source {
                    let line = serde_json::json!({
                        "source": input.source,
                        "error": {"code": r.code, "status": r.status, "message": r.message},
                    });
                    writeln!(out, "{line}")
                } else {
                    Ok(())
                }
            }
        };
        if written.is_err() {
            // standard output is gone (a closed pipe): nothing more can be reported
            return ExitCode::from(2);
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    let refused: usize = summary.refused.values().sum();
    if summary.inputs != 1 {
        eprintln!(
            "{}",
            serde_json::json!({
                "inputs": summary.inputs,
                "translated": summary.translated,
                "events": summary.events,
                "refused": refused,
                "refused_by_code": summary.refused,
            })
        );
    }
    if refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
