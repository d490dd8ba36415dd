//! `storehook backfill --store appstore`: pages through Get Notification
//! History (`POST /inApps/v1/notifications/history`, `paginationToken`,
//! `hasMore`) for the window, as given (Apple enforces its own history limit
//! and its error is reported), verifies each `signedPayload` like a live
//! notification, and POSTs it as `{"signedPayload": "…"}` to `--ingest-url`
//! with bounded concurrency, retrying 5xx, 429 and transport errors.
//!
//! Idempotent: the events of a notification have the ids of the original
//! notification, so the ones already delivered are not delivered again.

use crate::apple_api::AppleApiArgs;
use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::Args as ClapArgs;
use std::sync::Arc;
use std::time::Duration;
use storehook_shared::stores::appstore::AppleEnvironment;
use storehook_shared::stores::appstore::api::{ApiError, AppleApi, HistoryRequest};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, ClapArgs)]
pub struct AppStoreArgs {
    /// Where to POST each notification: the deployment's `/appstore` endpoint
    /// or a local `storehook serve` (`http://127.0.0.1:3000/appstore`).
    #[arg(long, value_name = "URL")]
    pub ingest_url: Option<String>,
    /// Notifications POSTed at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Attempts per POST (and per history page) on 5xx, 429 or transport errors.
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
    #[command(flatten)]
    pub api: AppleApiArgs,
}

/// What a backfill did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Notifications in Apple's history for the window.
    pub fetched: usize,
    /// Accepted by the ingest URL (2xx).
    pub accepted: usize,
    /// Refused: failed verification here, refused (4xx) by the ingest URL, or
    /// still failing after every attempt.
    pub refused: usize,
}

pub async fn run(
    args: &AppStoreArgs,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let Some(ingest_url) = args.ingest_url.clone() else {
        bail!(
            "--store appstore needs --ingest-url (the deployment's /appstore endpoint or a local serve)"
        );
    };
    let api = args.api.client().await?;
    let env: AppleEnvironment = args.api.environment.into();
    let request = HistoryRequest {
        start_date: since.timestamp_millis(),
        end_date: until.unwrap_or_else(Utc::now).timestamp_millis(),
    };
    let (counts, fetch_error) = backfill(
        &api,
        env,
        request,
        &ingest_url,
        args.concurrency,
        args.attempts,
    )
    .await?;
    println!(
        "fetched: {}, accepted: {}, refused: {}",
        counts.fetched, counts.accepted, counts.refused
    );
    if let Some(e) = fetch_error {
        return Err(e);
    }
    if counts.refused > 0 {
        bail!("{} notification(s) refused", counts.refused);
    }
    Ok(())
}

/// Pages through the history and POSTs every verified notification. A page
/// that cannot be fetched ends the paging; what was already fetched is still
/// posted and counted, and the error is returned beside the counts.
pub async fn backfill(
    api: &AppleApi,
    env: AppleEnvironment,
    request: HistoryRequest,
    ingest_url: &str,
    concurrency: usize,
    attempts: u32,
) -> anyhow::Result<(Counts, Option<anyhow::Error>)> {
    let http = storehook_shared::http::client(storehook_shared::http::Timeouts::new(
        Duration::from_secs(5),
        Duration::from_secs(30),
    ))
    .map_err(anyhow::Error::msg)?;
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut counts = Counts::default();
    let mut token: Option<String> = None;
    let mut page_number = 0usize;
    let mut fetch_error = None;
    loop {
        page_number += 1;
        let page = match with_retries(attempts, || {
            api.notification_history(env, request, token.as_deref())
        })
        .await
        {
            Ok(page) => page,
            Err(e) => {
                fetch_error = Some(
                    anyhow::Error::new(e)
                        .context(format!("Get Notification History (page {page_number})")),
                );
                break;
            }
        };
        for item in page.items {
            counts.fetched += 1;
            let uuid = match &item.verified {
                Ok(p) => p.notification_uuid.clone().unwrap_or_default(),
                Err(why) => {
                    eprintln!("refused (not verified, not posted): {why}");
                    counts.refused += 1;
                    continue;
                }
            };
            let permit = permits.clone().acquire_owned().await?;
            let http = http.clone();
            let url = ingest_url.to_owned();
            let body = serde_json::json!({"signedPayload": item.signed_payload}).to_string();
            tasks.spawn(async move {
                let outcome = post(&http, &url, body, attempts).await;
                drop(permit);
                (uuid, outcome)
            });
        }
        if !page.has_more {
            break;
        }
        token = page.pagination_token;
    }
    while let Some(done) = tasks.join_next().await {
        let (uuid, outcome) = done?;
        match outcome {
            Ok(()) => counts.accepted += 1,
            Err(why) => {
                eprintln!("refused: notification {uuid}: {why}");
                counts.refused += 1;
            }
        }
    }
    Ok((counts, fetch_error))
}

/// Calls `f` until it succeeds, fails for good, or `attempts` are spent.
async fn with_retries<T, F, Fut>(attempts: u32, mut f: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match f().await {
            Err(e) if e.retryable() && n < attempts.max(1) => {
                tokio::time::sleep(backoff(n)).await;
            }
            other => return other,
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6)))
}

/// POSTs one body: 2xx accepted; 4xx (but 429) refused; 5xx, 429 and
/// transport errors retried.
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: String,
    attempts: u32,
) -> Result<(), String> {
    let mut n = 0;
    loop {
        n += 1;
        let last = n >= attempts.max(1);
        let result = http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = storehook_shared::http::read_limited(resp, 16 * 1024)
                    .await
                    .unwrap_or_default();
                let why = error_text(status, &text);
                if (status == 429 || status >= 500) && !last {
                    tokio::time::sleep(backoff(n)).await;
                    continue;
                }
                return Err(why);
            }
            Err(e) if !last => {
                let _ = e;
                tokio::time::sleep(backoff(n)).await;
            }
            Err(e) => return Err(storehook_shared::http::describe(&e)),
        }
    }
}

/// `HTTP 403 wrong_app: …` from storehook's `{"error":{"code","message"}}`.
fn error_text(status: u16, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
        (Some(code), Some(message)) => format!(
            "{} {code}: {}",
            storehook_shared::http::status_text(status),
            storehook_shared::http::sanitize(message)
        ),
        _ => storehook_shared::http::status_text(status),
    }
}
