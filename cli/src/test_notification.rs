//! `storehook test-notification --store appstore [--environment …]`: asks
//! Apple to send a TEST notification to the URL configured for the
//! environment (`POST /inApps/v1/notifications/test`), polls its status
//! (`GET /inApps/v1/notifications/test/{token}`) until Apple reports a send
//! attempt, prints the result; succeeds only on `SUCCESS`. The operator's
//! "is my setup right?".

use crate::apple_api::AppleApiArgs;
use anyhow::{Context, bail};
use clap::{Args as ClapArgs, ValueEnum};
use std::time::Duration;
use storehook_shared::stores::appstore::AppleEnvironment;

/// The store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestStore {
    /// App Store Server Notifications.
    Appstore,
}

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The store.
    #[arg(long, value_enum)]
    pub store: TestStore,
    /// Status polls before giving up.
    #[arg(long, default_value_t = 30)]
    pub poll_attempts: u32,
    /// Between polls (milliseconds).
    #[arg(long, default_value_t = 2000)]
    pub poll_interval_ms: u64,
    #[command(flatten)]
    pub api: AppleApiArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let TestStore::Appstore = args.store;
    let api = args.api.client().await?;
    let env: AppleEnvironment = args.api.environment.into();
    let token = api
        .request_test_notification(env)
        .await
        .context("Request a Test Notification")?;
    println!(
        "requested a test notification ({}): token {token}",
        env.as_str()
    );
    for poll in 1..=args.poll_attempts.max(1) {
        tokio::time::sleep(Duration::from_millis(args.poll_interval_ms)).await;
        let status = match api.test_notification_status(env, &token).await {
            Ok(s) => s,
            Err(e) if e.retryable() => {
                eprintln!("poll {poll}: {e}");
                continue;
            }
            Err(e) => return Err(e).context("Get Test Notification Status"),
        };
        if status.send_attempts.is_empty() {
            continue;
        }
        let uuid = match &status.payload {
            Ok(p) => p
                .notification_uuid
                .clone()
                .unwrap_or_else(|| "(no uuid)".into()),
            Err(why) => {
                eprintln!("warning: the test notification in Apple's answer did not verify: {why}");
                "(unverified)".into()
            }
        };
        let mut success = false;
        for a in &status.send_attempts {
            let result = a.send_attempt_result.as_deref().unwrap_or("(none)");
            let at = a
                .attempt_date
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "(no date)".into());
            println!("send attempt at {at}: {result}");
            success |= result == "SUCCESS";
        }
        println!(
            "notification {uuid}: {}",
            if success { "SUCCESS" } else { "FAILED" }
        );
        if success {
            return Ok(());
        }
        bail!(
            "Apple could not deliver the test notification to the URL configured for {} \
             (App Store Connect › App Information › App Store Server Notifications)",
            env.as_str()
        );
    }
    bail!(
        "Apple reported no send attempt after {} polls",
        args.poll_attempts.max(1)
    )
}
