//! `storehook replay`: move dead letters back to the queue (all, or by event id).

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use std::path::PathBuf;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Replay only these events (repeatable). Absent: every dead letter.
    #[arg(long = "event-id", value_name = "ID")]
    event_ids: Vec<String>,
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

pub async fn run(args: Args) -> anyhow::Result<()> {
    let only = (!args.event_ids.is_empty()).then_some(args.event_ids.as_slice());
    if args.aws {
        let (Some(queue_url), Some(dlq_url)) = (&args.queue_url, &args.dlq_url) else {
            bail!("--aws needs --queue-url and --dlq-url (or QUEUE_URL, DLQ_URL)");
        };
        if args.list {
            bail!("--list is for the embedded queue; use the SQS console or CLI for the DLQ");
        }
        let sdk = storehook_shared::aws::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let n =
            storehook_shared::poller::replay_dead_letters(&sqs, dlq_url, queue_url, only).await?;
        println!("{{\"replayed\":{n}}}");
        return Ok(());
    }
    if let Some(dir) = &args.data_dir {
        let q = crate::serve::open_queue(dir)?;
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
        return Ok(());
    }
    let client = reqwest::Client::new();
    let base = args.server.trim_end_matches('/');
    let resp = if args.list {
        client
            .get(format!("{base}/_storehook/dead-letters"))
            .send()
            .await
    } else {
        client
            .post(format!("{base}/_storehook/replay"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "event_ids": args.event_ids }).to_string())
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
