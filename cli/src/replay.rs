//! `storehook replay`: move dead letters back to the queue (`--all`, by
//! `--event-id`, or with several endpoints by `--endpoint NAME`: an explicit
//! selection is required).
//!
//! Talking to a running `storehook serve`, it sends the admin token:
//! `--admin-token` / `STOREHOOK_ADMIN_TOKEN`, else the one `serve` generated
//! into its data dir (`--server-data-dir`, default `./.storehook`).

use crate::admin::{AdminToken, read_token, token_path};
use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
use storehook_shared::queue::redb::RedbQueue;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Replay these events (repeatable).
    #[arg(long = "event-id", value_name = "ID", conflicts_with = "all")]
    event_ids: Vec<String>,
    /// Several endpoints: replay the dead letters of endpoint NAME (all of them, or with
    /// `--event-id` those of these events).
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    endpoint: Option<String>,
    /// Replay every dead letter.
    #[arg(long)]
    all: bool,
    /// The running server's admin token (default: read from its data dir).
    #[arg(long, env = "STOREHOOK_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The running server's data dir, to read its admin token from.
    #[arg(long, default_value = "./.storehook", env = "STOREHOOK_DATA_DIR")]
    server_data_dir: PathBuf,
    /// Embedded mode: a running `storehook serve` to ask (its dead letters live in its data dir).
    #[arg(
        long,
        default_value = "http://127.0.0.1:3000",
        env = "STOREHOOK_SERVER"
    )]
    server: String,
    /// Embedded mode without a running server: open this data dir directly.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only list the dead letters, replay nothing.
    #[arg(long)]
    list: bool,
    /// Use the SQS dead-letter queue (standard AWS configuration).
    #[arg(long)]
    aws: bool,
    /// `--aws`: the FIFO queue to move messages back to.
    #[arg(long, env = "QUEUE_URL")]
    queue_url: Option<String>,
    /// `--aws`: the FIFO dead-letter queue.
    #[arg(long, env = "DLQ_URL")]
    dlq_url: Option<String>,
}

/// Where the dead letters are: chosen once, from the flags.
#[derive(Debug)]
enum Target {
    /// The SQS dead-letter queue (`--aws`), replayed into `queue_url`.
    Sqs { queue_url: String, dlq_url: String },
    /// The embedded queue of a stopped server (`--data-dir`).
    DataDir(PathBuf),
    /// A running `storehook serve`, through its admin routes.
    Server { base: String, token: AdminToken },
}

impl Target {
    fn from_args(args: &Args) -> anyhow::Result<Self> {
        if args.aws {
            let (Some(queue_url), Some(dlq_url)) = (&args.queue_url, &args.dlq_url) else {
                bail!("--aws needs --queue-url and --dlq-url (or QUEUE_URL, DLQ_URL)");
            };
            if args.list {
                bail!("--list is for the embedded queue; use the SQS console or CLI for the DLQ");
            }
            return Ok(Target::Sqs {
                queue_url: queue_url.clone(),
                dlq_url: dlq_url.clone(),
            });
        }
        if let Some(dir) = &args.data_dir {
            return Ok(Target::DataDir(dir.clone()));
        }
        let token = match &args.admin_token {
            Some(t) => AdminToken::new(t).context("--admin-token / STOREHOOK_ADMIN_TOKEN")?,
            None => {
                let path = token_path(&args.server_data_dir);
                read_token(&path).with_context(|| {
                    format!(
                        "reading the admin token from {} (pass --admin-token, or --server-data-dir \
                         with the server's --data-dir)",
                        path.display()
                    )
                })?
            }
        };
        Ok(Target::Server {
            base: args.server.trim_end_matches('/').to_owned(),
            token,
        })
    }
}

/// What to replay: the event ids; with `--endpoint NAME`, that endpoint's
/// deliveries of those events (`dlv:NAME:ID`, `store:NAME:ID`), or all of its
/// dead letters (`endpoint:NAME`, see `storehook_shared::fanout::selects`).
fn selectors(args: &Args) -> Vec<String> {
    match &args.endpoint {
        None => args.event_ids.clone(),
        Some(name) if args.event_ids.is_empty() => vec![format!("endpoint:{name}")],
        Some(name) => args
            .event_ids
            .iter()
            .flat_map(|id| [format!("dlv:{name}:{id}"), format!("store:{name}:{id}")])
            .collect(),
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if !args.list && !args.all && args.event_ids.is_empty() && args.endpoint.is_none() {
        bail!(
            "say what to replay: --all, --event-id ID (repeatable), or --endpoint NAME; --list shows them"
        );
    }
    let selectors = selectors(&args);
    let only = (!args.all).then_some(selectors.as_slice());
    match Target::from_args(&args)? {
        Target::Sqs { queue_url, dlq_url } => {
            let sdk = storehook_shared::aws_sdk::sdk_config().await;
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let n = storehook_shared::dispatch::sqs_poller::replay_dead_letters(
                &sqs, &dlq_url, &queue_url, only,
            )
            .await?;
            println!("{{\"replayed\":{n}}}");
        }
        Target::DataDir(dir) => {
            let q = open_queue(&dir)?;
            if args.list {
                for (_, s) in q.dead_letters()? {
                    println!(
                        "{}",
                        serde_json::json!({"event_id": s.dedup_id, "group": s.group_id, "attempts": s.receive_count, "reason": s.dead_reason})
                    );
                }
                return Ok(());
            }
            let n = q
                .replay(only, chrono::Utc::now().timestamp_millis())
                .await?;
            println!("{{\"replayed\":{n}}}");
        }
        Target::Server { base, token } => ask_server(&args, &base, &token).await?,
    }
    Ok(())
}

/// Opens the embedded queue of `dir`, which no running server may hold.
fn open_queue(dir: &Path) -> anyhow::Result<RedbQueue> {
    RedbQueue::open(dir).with_context(|| {
        format!(
            "opening the embedded queue in {} (is `storehook serve` running on it? stop it first)",
            dir.display()
        )
    })
}

/// Lists or replays through a running server's admin routes.
async fn ask_server(args: &Args, base: &str, token: &AdminToken) -> anyhow::Result<()> {
    let client = storehook_shared::http::client(storehook_shared::http::Timeouts::both(
        std::time::Duration::from_secs(30),
    ))
    .map_err(anyhow::Error::msg)?;
    let selection = if args.all {
        serde_json::json!({ "all": true })
    } else {
        serde_json::json!({ "event_ids": selectors(args) })
    };
    let resp = if args.list {
        client
            .get(format!("{base}/_storehook/dead-letters"))
            .bearer_auth(token.expose())
            .send()
            .await
    } else {
        client
            .post(format!("{base}/_storehook/replay"))
            .bearer_auth(token.expose())
            .header("content-type", "application/json")
            .body(selection.to_string())
            .send()
            .await
    }
    .with_context(|| format!("asking {base} (is `storehook serve` running? or pass --data-dir)"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    println!("{text}");
    Ok(())
}
