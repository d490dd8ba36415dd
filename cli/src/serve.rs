//! `storehook serve`: every store route, the dispatcher in-process, and either
//! the embedded queue + state (default) or SQS + DynamoDB (`--aws`).
//!
//! The store routes run the same `Ingest` code as the Lambdas; the workers run
//! the same `Dispatcher` as the dispatcher Lambda.

use crate::admin::AdminToken;
use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use clap::Args as ClapArgs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use storehook_shared::aws_sdk::sdk_config;
use storehook_shared::clock::{Clock, SystemClock};
use storehook_shared::config::Lookup;
use storehook_shared::dispatch::Dispatcher;
use storehook_shared::dispatch::worker::Consumer;
use storehook_shared::fanout::{
    Destination, EndpointSpec, Fanout, StoreCopy, parse_endpoints, store_copies,
};
use storehook_shared::ingest::{Ingest, StoreEndpoint, StoreRequest};
use storehook_shared::queue::EventQueue;
use storehook_shared::queue::redb::RedbQueue;
use storehook_shared::queue::sqs::{SqsMessageControl, SqsQueue};
use storehook_shared::redb_file::Health;
use storehook_shared::redb_file::{create_private_dir, ensure_private_file, write_private_new};
use storehook_shared::retry::RetrySchedule;
use storehook_shared::secrets::SecretSource;
use storehook_shared::state::{DynamoState, RedbState, StateStore};
use storehook_shared::stores::Endpoints;
use storehook_shared::stores::appstore::config::read_trust_roots;
use storehook_shared::stores::playstore::links::LinkStore;
use storehook_shared::stores::playstore::links::dynamo::DynamoLinkStore;
use storehook_shared::stores::playstore::links::redb::RedbLinkStore;
use storehook_shared::sweep::{StatusSource, Sweeper, parse_duration};
use storehook_shared::webhook::{HttpWebhookSender, WebhookSecret, WebhookSecrets, WebhookSender};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "STOREHOOK_LISTEN")]
    pub listen: SocketAddr,
    /// Where the embedded queue, state and generated webhook secret live.
    #[arg(long, default_value = "./.storehook", env = "STOREHOOK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Your webhook. Absent: a built-in receiver verifies each delivery and prints the events.
    #[arg(long, env = "WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Standard Webhooks secret(s) (`whsec_…`, space-separated for rotation). Absent: one is
    /// generated once and kept in the data dir.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Several endpoints: a JSON file with the array of `WEBHOOK_ENDPOINTS` (name, url, secret,
    /// filter, format "event" | "store"; see README "Several endpoints"). Replaces
    /// `--webhook-url` / `--webhook-secret`.
    #[arg(long, env = "STOREHOOK_ENDPOINTS", conflicts_with_all = ["webhook_url", "webhook_secret"])]
    pub endpoints: Option<PathBuf>,
    /// Per-attempt webhook timeout in milliseconds.
    #[arg(long, default_value_t = 10_000, env = "WEBHOOK_TIMEOUT_MS")]
    pub webhook_timeout_ms: u64,
    /// Retry schedule, e.g. `5s,5m,30m,2h,5h,10h,12h` (default: about 3 days and a half).
    #[arg(long, env = "RETRY_SCHEDULE")]
    pub retry_schedule: Option<String>,
    /// Concurrent deliveries (different subscriptions; one subscription is always sequential).
    /// This is also the most webhook requests in flight at once.
    #[arg(long, default_value_t = 32, env = "STOREHOOK_WORKERS")]
    pub workers: usize,
    /// App Store: expected bundle id (absent: any app is accepted).
    #[arg(long, env = "APPLE_BUNDLE_ID")]
    pub apple_bundle_id: Option<String>,
    /// App Store: expected app id, checked on Production notifications.
    #[arg(long, env = "APPLE_APP_APPLE_ID")]
    pub apple_app_apple_id: Option<String>,
    /// App Store: accepted environments (`Production,Sandbox`).
    #[arg(long, env = "APPLE_ENVIRONMENTS")]
    pub apple_environments: Option<String>,
    /// App Store: add a trusted root (PEM file), beside Apple Root CA - G3 (tests).
    #[arg(long = "trust-root", value_name = "PEM")]
    pub trust_roots: Vec<PathBuf>,
    /// Put the decoded store payloads in `event.raw`.
    #[arg(long, env = "INCLUDE_RAW")]
    pub include_raw: bool,
    /// Use SQS and DynamoDB (standard AWS configuration; AWS_ENDPOINT_URL for an emulator)
    /// instead of the embedded queue and state.
    #[arg(long)]
    pub aws: bool,
    /// `--aws`: the FIFO queue.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,
    /// `--aws`: the FIFO dead-letter queue.
    #[arg(long, env = "DLQ_URL")]
    pub dlq_url: Option<String>,
    /// `--aws`: the table.
    #[arg(long, env = "TABLE_NAME")]
    pub table_name: Option<String>,
    /// Bearer token of the admin routes (`/_storehook/*`, ≥ 16 characters). Absent: one is
    /// generated into the data dir (`admin-token`, 0600) and printed once, at that first start.
    #[arg(long, env = "STOREHOOK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Most HTTP connections open at once; more wait until one closes.
    #[arg(long, default_value_t = 1024, env = "STOREHOOK_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// HTTP/1: a request's headers must arrive within this (milliseconds).
    #[arg(long, default_value_t = 10_000, env = "STOREHOOK_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: u64,
    /// A request body must arrive whole within this (milliseconds; 408 otherwise).
    #[arg(long, default_value_t = 30_000, env = "STOREHOOK_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (milliseconds): one that
    /// never sends a byte, an idle keep-alive or h2c connection.
    #[arg(long, default_value_t = 30_000, env = "STOREHOOK_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: u64,
    /// h2c: concurrent streams per connection.
    #[arg(long, default_value_t = 100, env = "STOREHOOK_MAX_H2_STREAMS")]
    pub max_h2_streams: u32,
    /// How often the expiry sweeper looks for subscriptions whose entitlement ended without a
    /// closing event (`60s`, `5m`, …; `0` disables it).
    #[arg(long, default_value = "60s", env = "SWEEP_INTERVAL", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// How long after an entitlement's end the sweeper, without a store API to ask, emits
    /// SUBSCRIPTION_EXPIRED (stores deliver late notifications for hours to days; the
    /// entitlement is already inactive by time).
    #[arg(long, default_value = "24h", env = "SWEEP_LEEWAY", value_parser = parse_duration)]
    pub sweep_leeway: Duration,
}

impl Args {
    /// The listener's limits.
    pub fn limits(&self) -> crate::listener::Limits {
        crate::listener::Limits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(self.body_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_h2_streams: self.max_h2_streams.max(1),
        }
    }

    /// The App Store settings as the Lambda reads them, flags first.
    fn lookup(&self) -> impl Lookup + '_ {
        move |name: &str| -> Option<String> {
            match name {
                "APPLE_BUNDLE_ID" => self.apple_bundle_id.clone(),
                "APPLE_APP_APPLE_ID" => self.apple_app_apple_id.clone(),
                "APPLE_ENVIRONMENTS" => self.apple_environments.clone(),
                "INCLUDE_RAW" => Some(self.include_raw.to_string()),
                other => std::env::var(other).ok(),
            }
        }
    }
}

/// Every store endpoint the configuration enables (the flags over the
/// environment, see [`Endpoints::configured`]), trusting `--trust-root`.
pub fn endpoints(
    args: &Args,
    clock: Arc<dyn Clock>,
    links: Arc<dyn LinkStore>,
) -> anyhow::Result<Vec<Arc<dyn StoreEndpoint>>> {
    let settings = args.lookup();
    let roots = read_trust_roots(&args.trust_roots)?;
    Ok(Endpoints::local(&settings, clock)
        .trusting(roots)
        .configured(links)?)
}

/// The expiry sweeper's store API sources the configuration enables (see
/// [`Endpoints::status_sources`]), trusting `--trust-root`.
pub fn status_sources(
    args: &Args,
    clock: Arc<dyn Clock>,
    links: Arc<dyn LinkStore>,
) -> anyhow::Result<Vec<Arc<dyn StatusSource>>> {
    let settings = args.lookup();
    let roots = read_trust_roots(&args.trust_roots)?;
    Ok(Endpoints::local(&settings, clock)
        .trusting(roots)
        .status_sources(links)?)
}

fn secrets(args: &Args) -> anyhow::Result<WebhookSecrets> {
    if let Some(s) = &args.webhook_secret {
        return Ok(WebhookSecrets::parse(s)?);
    }
    create_private_dir(&args.data_dir)?;
    let path = args.data_dir.join("webhook-secret");
    let secret = match std::fs::read_to_string(&path) {
        Ok(s) => {
            // an older version wrote it with the default mode
            ensure_private_file(&path)
                .with_context(|| format!("restricting {} to its owner", path.display()))?;
            s.trim().to_owned()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = WebhookSecret::generate()?;
            write_private_new(&path, s.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a webhook secret");
            s
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(WebhookSecrets::parse(&secret)?)
}

fn schedule(args: &Args) -> anyhow::Result<RetrySchedule> {
    Ok(match &args.retry_schedule {
        Some(s) => RetrySchedule::parse(s)?,
        None => RetrySchedule::default(),
    })
}

/// The endpoints of `--endpoints FILE` (secrets inline), checked.
pub fn read_endpoints(path: &Path) -> anyhow::Result<Vec<EndpointSpec>> {
    let json = std::fs::read_to_string(path)
        .with_context(|| format!("reading --endpoints {}", path.display()))?;
    parse_endpoints(&json, false)
        .map_err(|e| anyhow::anyhow!("--endpoints {}: {e}", path.display()))
}

/// The senders of `specs` (inline secrets), for a [`Fanout`].
pub fn destinations(
    specs: &[EndpointSpec],
    timeout: Duration,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Vec<Destination>> {
    specs
        .iter()
        .map(|spec| {
            let SecretSource::Inline(secrets) = &spec.secret else {
                bail!("endpoint {:?}: secret_arn needs AWS", spec.name);
            };
            let sender = HttpWebhookSender::new(&spec.url, secrets.clone(), timeout, clock.clone())
                .with_context(|| format!("endpoint {:?}", spec.name))?;
            Ok(Destination {
                name: spec.name.clone(),
                filter: spec.filter.clone(),
                format: spec.format,
                sender: Arc::new(sender),
            })
        })
        .collect()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let specs = args.endpoints.as_deref().map(read_endpoints).transpose()?;
    let backend = Backend::from_args(&args)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let timeout = Duration::from_millis(args.webhook_timeout_ms);
    let mut _receiver = None;
    let (sender, dests): (Arc<dyn WebhookSender>, Option<Vec<Destination>>) = match &specs {
        Some(specs) => {
            let d = destinations(specs, timeout, clock.clone())?;
            for x in &d {
                tracing::info!(endpoint = %x.name, format = ?x.format, filter = ?x.filter, "endpoint configured");
            }
            // Unused with several endpoints: each job posts through its own.
            (d[0].sender.clone(), Some(d))
        }
        None => {
            let secrets = secrets(&args)?;
            let webhook_url = match &args.webhook_url {
                Some(u) => u.clone(),
                None => {
                    let r = crate::receiver::start(secrets.clone()).await?;
                    tracing::warn!(url = %r.url, "no --webhook-url: delivering to the built-in receiver, which prints every event");
                    let url = r.url.clone();
                    _receiver = Some(r);
                    url
                }
            };
            let sender = HttpWebhookSender::new(&webhook_url, secrets, timeout, clock.clone())?;
            (Arc::new(sender), None)
        }
    };
    let schedule = schedule(&args)?;
    let ports = backend.open(clock.clone()).await?;
    let endpoints = endpoints(&args, clock.clone(), ports.links.clone())?;

    let mut sweeper = Sweeper::new(ports.state.clone(), ports.queue.clone(), clock.clone())
        .with_leeway(args.sweep_leeway);
    for source in status_sources(&args, clock.clone(), ports.links)? {
        sweeper = sweeper.with_source(source);
    }
    let sweeper = spawn_sweeper(&args, sweeper);
    let refund = Endpoints::local(&args.lookup(), clock.clone())
        .trusting(read_trust_roots(&args.trust_roots)?)
        .refund_defence(ports.queue.clone())?;
    let fanout = dests.map(|d| Arc::new(Fanout::new(d, ports.queue.clone())));
    let console_state = ports.state.clone();
    let dispatcher = Arc::new(
        Dispatcher::new(ports.state, sender, schedule, clock.clone())
            .with_refund_defence(refund)
            .with_fanout(fanout),
    );
    let workers = ports.consumer.spawn(dispatcher, clock.clone());
    let admin = match ports.admin_queue {
        Some(queue) => {
            let token = admin_token(&args)?;
            // The console's feed: the last notifications and deliveries, in memory.
            storehook_shared::activity::enable(1000);
            Some(Admin {
                queue,
                console: Some(crate::console::Console {
                    state: console_state,
                    endpoints: endpoints.clone(),
                    clock: clock.clone(),
                    token: token.clone(),
                }),
                token,
            })
        }
        None => None,
    };

    let copies = specs.as_deref().map(store_copies).unwrap_or_default();
    let app = router(endpoints, copies, ports.queue, clock, admin, ports.health);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, mode = backend.name(), "storehook serving");
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!(
            "storehook listening on http://{0} (console: http://{0}/_storehook/)",
            listener.local_addr()?
        );
    }
    crate::listener::serve(listener, app, args.limits(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    for w in workers {
        w.abort();
    }
    if let Some(s) = sweeper {
        s.abort();
    }
    Ok(())
}

/// Runs `sweeper` every `--sweep-interval` in the background (None: disabled by `0`).
fn spawn_sweeper(args: &Args, sweeper: Sweeper) -> Option<tokio::task::JoinHandle<()>> {
    let every = args.sweep_interval;
    if every.is_zero() {
        tracing::info!("expiry sweeper disabled (--sweep-interval 0)");
        return None;
    }
    tracing::info!(interval = ?every, leeway = ?sweeper.leeway(), "expiry sweeper started");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sweeper.sweep_once().await {
                tracing::warn!(error = %e, "expiry sweep failed; trying again at the next interval");
            }
        }
    }))
}

/// Where the queue, the state and the Play purchase-token lineages live:
/// chosen once, from the flags.
#[derive(Debug)]
enum Backend {
    /// redb files in the data dir (the default), `workers` concurrent deliveries.
    Embedded { data_dir: PathBuf, workers: usize },
    /// SQS and DynamoDB (`--aws`), the queue polled like Lambda's event source mapping.
    Aws {
        queue_url: String,
        dlq_url: String,
        table: String,
    },
}

/// A [`Backend`]'s ports, opened.
struct Ports {
    /// Where ingest queues events.
    queue: Arc<dyn EventQueue>,
    /// Where the dispatcher takes them from.
    consumer: Consumer,
    state: Arc<dyn StateStore>,
    links: Arc<dyn LinkStore>,
    /// The queue the admin routes inspect and replay (embedded only).
    admin_queue: Option<RedbQueue>,
    /// The files `/healthz` checks (embedded only).
    health: StorageHealth,
}

impl Backend {
    fn from_args(args: &Args) -> anyhow::Result<Self> {
        if !args.aws {
            return Ok(Backend::Embedded {
                data_dir: args.data_dir.clone(),
                workers: args.workers,
            });
        }
        let (Some(queue_url), Some(dlq_url), Some(table)) =
            (&args.queue_url, &args.dlq_url, &args.table_name)
        else {
            bail!(
                "--aws needs --queue-url, --dlq-url and --table-name (or QUEUE_URL, DLQ_URL, TABLE_NAME)"
            );
        };
        Ok(Backend::Aws {
            queue_url: queue_url.clone(),
            dlq_url: dlq_url.clone(),
            table: table.clone(),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded { .. } => "embedded",
            Backend::Aws { .. } => "aws",
        }
    }

    async fn open(&self, clock: Arc<dyn Clock>) -> anyhow::Result<Ports> {
        match self {
            Backend::Embedded { data_dir, workers } => {
                let links = RedbLinkStore::open(data_dir)?;
                let queue = RedbQueue::open(data_dir)?;
                let state = RedbState::open(data_dir)?;
                let mut health = StorageHealth::default();
                let (l, q, s) = (links.clone(), queue.clone(), state.clone());
                health.watch(move || l.health());
                health.watch(move || q.health());
                health.watch(move || s.health());
                tracing::info!(data_dir = %data_dir.display(), depth = queue.depth(), "embedded queue and state opened");
                Ok(Ports {
                    queue: Arc::new(queue.clone()),
                    consumer: Consumer::Redb {
                        queue: queue.clone(),
                        workers: *workers,
                    },
                    state: Arc::new(state),
                    links: Arc::new(links),
                    admin_queue: Some(queue),
                    health,
                })
            }
            Backend::Aws {
                queue_url,
                dlq_url,
                table,
            } => {
                let sdk = sdk_config().await;
                Ok(Ports {
                    queue: Arc::new(SqsQueue::from_sdk(&sdk, queue_url)),
                    consumer: Consumer::Sqs {
                        client: aws_sdk_sqs::Client::new(&sdk),
                        queue_url: queue_url.clone(),
                        control: Arc::new(SqsMessageControl::from_sdk(&sdk, queue_url, dlq_url)),
                    },
                    state: Arc::new(DynamoState::from_sdk(&sdk, table, clock)),
                    links: Arc::new(DynamoLinkStore::from_sdk(&sdk, table)),
                    admin_queue: None,
                    health: StorageHealth::default(),
                })
            }
        }
    }
}

/// The admin routes' queue and token (embedded mode).
#[derive(Debug, Clone)]
pub struct Admin {
    /// The embedded queue they inspect and replay.
    pub queue: RedbQueue,
    /// Their bearer token.
    pub token: AdminToken,
    /// The web console (`/_storehook/`).
    pub console: Option<crate::console::Console>,
}

/// The admin token: `--admin-token` / `STOREHOOK_ADMIN_TOKEN`, else the data
/// dir's, generated and printed (once: on the start that creates it).
fn admin_token(args: &Args) -> anyhow::Result<AdminToken> {
    if let Some(t) = &args.admin_token {
        return AdminToken::new(t).context("--admin-token / STOREHOOK_ADMIN_TOKEN");
    }
    let (token, generated) = crate::admin::load_or_create_token(&args.data_dir)?;
    if let Some(path) = generated {
        // Shown this once, and only to a person at a terminal: when standard
        // error is collected (a file, a log pipeline) it would be a secret in
        // the logs, so only its file is named. `storehook replay` reads the file.
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            eprintln!(
                "storehook: generated the admin token for /_storehook/* (kept in {}, shown only now): {}",
                path.display(),
                token.expose()
            );
        } else {
            tracing::warn!(
                file = %path.display(),
                console = %format!("http://{}/_storehook/", args.listen),
                "generated the admin token for /_storehook/* and /metrics (read it from the file)"
            );
        }
    }
    Ok(token)
}

/// What `GET /healthz` checks: the embedded redb files (none with `--aws`).
/// A file closed after an I/O failure (a full disk) makes it answer 503 with
/// the failure until the file has reopened itself.
#[derive(Clone, Default)]
pub struct StorageHealth(Vec<Arc<dyn Fn() -> Health + Send + Sync>>);

impl std::fmt::Debug for StorageHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StorageHealth({} files)", self.0.len())
    }
}

impl StorageHealth {
    /// Adds a file's health check.
    pub fn watch(&mut self, check: impl Fn() -> Health + Send + Sync + 'static) {
        self.0.push(Arc::new(check));
    }

    async fn answer(self) -> axum::response::Response {
        let failed: Vec<serde_json::Value> = self
            .0
            .iter()
            .filter_map(|check| match check() {
                Health::Ok => None,
                Health::Failed {
                    path,
                    error,
                    attempts,
                    for_ms,
                } => Some(serde_json::json!({
                    "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "error": error,
                    "reopen_attempts": attempts,
                    "failing_for_ms": u64::try_from(for_ms).unwrap_or(u64::MAX),
                })),
            })
            .collect();
        if failed.is_empty() {
            "ok".into_response()
        } else {
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "error": {
                        "code": "storage_unavailable",
                        "message": "a storage file failed and is being reopened; intake answers 503 meanwhile",
                    },
                    "storage": failed,
                })),
            )
                .into_response()
        }
    }
}

/// The HTTP routes: `POST /<store>` per endpoint, `GET /healthz` (open), and,
/// in embedded mode, the admin routes behind their bearer token (see
/// [`crate::admin`]): `GET /_storehook/queue` (`{"depth": n}`),
/// `GET /_storehook/dead-letters`, `POST /_storehook/replay`
/// (`{"event_ids": [...]}` or `{"all": true}`).
pub fn router(
    endpoints: Vec<Arc<dyn StoreEndpoint>>,
    store_copies: Vec<StoreCopy>,
    queue: Arc<dyn EventQueue>,
    clock: Arc<dyn Clock>,
    admin: Option<Admin>,
    health: StorageHealth,
) -> Router {
    let mut app = Router::new().route("/healthz", get(move || health.clone().answer()));
    for e in endpoints {
        let ingest = Arc::new(
            Ingest::new(e.clone(), queue.clone(), clock.clone())
                .with_store_copies(store_copies.clone()),
        );
        // Every method reaches `Ingest`, which answers anything but POST with
        // 405 `method_not_allowed` as JSON (axum's own 405 has an empty body).
        app = app.route(&format!("/{}", e.route()), any(handle).with_state(ingest));
    }
    if let Some(a) = admin {
        app = app.merge(crate::admin::routes(a.queue, a.token, a.console));
    }
    app
}

async fn handle(
    State(ingest): State<Arc<Ingest>>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> axum::response::Response {
    let resp = ingest
        .handle(StoreRequest {
            method: method.as_str().to_owned(),
            query: uri.query().map(str::to_owned),
            headers,
            body,
        })
        .await;
    let status =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        resp.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn healthz_reports_a_failed_storage_file_until_it_has_reopened() {
        // GIVEN a server whose one storage file can be made to fail
        let failed = Arc::new(AtomicBool::new(false));
        let mut health = StorageHealth::default();
        let f = failed.clone();
        health.watch(move || {
            if f.load(Ordering::SeqCst) {
                Health::Failed {
                    path: PathBuf::from("/data/queue.redb"),
                    error: "No space left on device (os error 28)".into(),
                    attempts: 3,
                    for_ms: 1500,
                }
            } else {
                Health::Ok
            }
        });
        let app = router(
            Vec::new(),
            Vec::new(),
            Arc::new(storehook_shared::queue::MemoryQueue::new()),
            Arc::new(SystemClock),
            None,
            health,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        // WHEN it is healthy THEN 200 ok
        let ok = client.get(&url).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        // WHEN the file failed THEN 503 with the file, the error and the attempts
        failed.store(true, Ordering::SeqCst);
        let bad = client.get(&url).send().await.unwrap();
        assert_eq!(bad.status(), 503);
        let v: serde_json::Value = serde_json::from_str(&bad.text().await.unwrap()).unwrap();
        assert_eq!(v["error"]["code"], "storage_unavailable");
        assert_eq!(v["storage"][0]["file"], "queue.redb");
        assert_eq!(v["storage"][0]["reopen_attempts"], 3);
        assert!(
            v["storage"][0]["error"]
                .as_str()
                .unwrap()
                .contains("No space")
        );
        // WHEN it has reopened THEN 200 again
        failed.store(false, Ordering::SeqCst);
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
}
