#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `storehook backfill --store playstore` end to end with the real binary:
//! Google Play voided purchases read from the loopback fake Google (OAuth
//! validated by it), enqueued into the embedded queue, delivered by
//! `storehook serve`; a second run enqueues nothing and nothing is delivered
//! twice.

use serde_json::{Value, json};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use storehook_shared::webhook::WebhookSecret;
use storehook_testkit::playstore::PlayTestEnv;
use storehook_testkit::playstore::payloads::*;
use storehook_testkit::receiver::{TestReceiver, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_storehook");
const NOW: i64 = T0 + 40 * DAY;

fn voided(token: &str, order: &str, voided_ms: i64) -> Value {
    json!({
        "kind": "androidpublisher#voidedPurchase",
        "purchaseToken": token,
        "orderId": order,
        "purchaseTimeMillis": (voided_ms - DAY).to_string(),
        "voidedTimeMillis": voided_ms.to_string(),
        "voidedSource": 0,
        "voidedReason": 1,
    })
}

fn backfill(env: &PlayTestEnv, data: &std::path::Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["backfill", "--store", "playstore"]);
    if !extra.contains(&"--since") {
        cmd.args(["--since", &rfc3339(NOW - 10 * DAY)])
            .args(["--until", &rfc3339(NOW)]);
    }
    cmd.arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("STOREHOOK_DATA_DIR")
        .env("RUST_LOG", "warn");
    for (k, v) in env.env_vars() {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve(data: &std::path::Path, hook: &str, secret: &str) -> Serve {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--webhook-url", hook, "--webhook-secret", secret])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            && r.status().is_success()
        {
            return s;
        }
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_voids_are_delivered_once_and_a_second_run_enqueues_nothing() {
    // GIVEN Google listing two voids (a subscription, a one-time product) on
    // pages of one, and an empty data dir
    let env = PlayTestEnv::start().await;
    let g = &env.google;
    g.set_voided_page_size(Some(1));
    g.set_subscription(
        PACKAGE,
        "tok-sub",
        Sub::active()
            .start(NOW - 3 * DAY)
            .expiry(NOW + 27 * DAY)
            .order("GPA.1111-0000-0000-00000")
            .json(),
    );
    g.add_voided(
        PACKAGE,
        voided("tok-sub", "GPA.1111-0000-0000-00000", NOW - 2 * DAY),
    );
    g.add_voided(
        PACKAGE,
        voided("tok-otp", "GPA.2222-0000-0000-00000", NOW - DAY),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // WHEN backfilled
    let first = report(&backfill(&env, &data, &[]));
    // THEN both voids were read (two pages, OAuth accepted) and enqueued
    assert_eq!(first["store"], "playstore");
    assert_eq!(first["fetched"], 2);
    assert_eq!(first["enqueued"], 2);
    assert_eq!(first["already_delivered"], 0);
    assert_eq!(g.voided_queries().len(), 2);
    assert!(
        g.assertion_errors().is_empty(),
        "{:?}",
        g.assertion_errors()
    );

    // AND `storehook serve` on that data dir delivers them, signed
    let secret = WebhookSecret::generate().unwrap();
    let hook = TestReceiver::start().await.unwrap();
    let hook_url = format!("{}/hooks", hook.url());
    let s = serve(&data, &hook_url, &secret).await;
    let got = hook.wait_for_requests(2, Duration::from_secs(20)).await;
    let events: Vec<Value> = got.iter().map(|r| r.json().unwrap()).collect();
    let mut kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["ONE_TIME_PURCHASE_REFUNDED", "SUBSCRIPTION_REFUNDED"]
    );
    for e in &events {
        assert_eq!(e["details"]["source"], "backfill");
        assert_eq!(e["details"]["refund"]["reason"], "REMORSE");
    }
    let sub = events
        .iter()
        .find(|e| e["type"] == "SUBSCRIPTION_REFUNDED")
        .unwrap();
    assert_eq!(sub["subscription"]["store_subscription_id"], "tok-sub");
    assert_eq!(sub["subscription"]["status"], "REVOKED");
    assert_eq!(sub["occurred_at"], rfc3339(NOW - 2 * DAY));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = hook.count();
    drop(s);

    // WHEN the same window is backfilled again
    let second = report(&backfill(&env, &data, &[]));
    // THEN nothing new is enqueued: both are known as delivered
    assert_eq!(second["fetched"], 2);
    assert_eq!(second["enqueued"], 0);
    assert_eq!(second["already_delivered"], 2);
    // AND a restarted server delivers nothing more
    let _s = serve(&data, &hook_url, &secret).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.count(), delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_refuses_what_it_cannot_do_and_reports_google_failures() {
    let env = PlayTestEnv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // no destination
    let out = Command::new(BIN)
        .args([
            "backfill",
            "--store",
            "playstore",
            "--since",
            "2026-01-01T00:00:00Z",
        ])
        .env_remove("STOREHOOK_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data-dir"));
    // a window that is not RFC 3339, or backwards
    let later = rfc3339(NOW + DAY);
    let until = rfc3339(NOW);
    for (args, why) in [
        (vec!["--since", "yesterday"], "RFC 3339"),
        (vec!["--since", &later, "--until", &until], "before"),
    ] {
        let out = backfill(&env, &data, &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    }
    // Google failing: non-zero exit, nothing enqueued, no token in the message
    env.google
        .add_voided(PACKAGE, voided("tok-secret", "GPA.9", NOW - DAY));
    env.google.set_api_failure(Some(500));
    let out = backfill(&env, &data, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("voided purchases"), "{err}");
    assert!(!err.contains("tok-secret"), "{err}");
    let q = storehook_shared::queue::redb::RedbQueue::open(&data).unwrap();
    assert_eq!(q.depth(), 0);
}
