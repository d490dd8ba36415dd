#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The web console (`/_storehook/`) end to end in a real browser: the built
//! `storehook serve` binary, App Store notifications signed by a test PKI,
//! a loopback webhook that first answers 410 (a dead letter) and then 200,
//! and `tests/browser/console.mjs` driving headless Chromium (Debian's
//! `chromium`, through playwright-core): sign in, the live feed, a
//! subscription's timeline, replaying the dead letter by clicking, the
//! translate playground. Screenshots land in `target/console-screenshots/`.
//!
//! Needs `chromium` (or `STOREHOOK_CHROMIUM`), `node` and
//! `tests/browser/node_modules` (`npm ci` there); `scripts/test.sh` installs
//! them. Without them the test fails under CI (`CI` set) and is skipped,
//! saying so, elsewhere.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use storehook_testkit::appstore::{TestPki, payloads as apple};
use storehook_testkit::receiver::{Reply, TestReceiver, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_storehook");
const TOKEN: &str = "console-test-admin-token-0123456789";
const SECRET: &str = "whsec_Y29uc29sZS10ZXN0LXdlYmhvb2sta2V5";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Chromium, node and the browser test's script, or why not.
fn tools() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let which = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    };
    let chromium = std::env::var_os("STOREHOOK_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| which("chromium"))
        .ok_or("no chromium (apt-get install chromium, or set STOREHOOK_CHROMIUM)")?;
    let node = which("node").ok_or("no node")?;
    let dir = repo().join("tests/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err("no tests/browser/node_modules (run npm ci there)".into());
    }
    Ok((chromium, node, dir.join("console.mjs")))
}

fn apple_body(
    pki: &TestPki,
    ntype: &str,
    sub: Option<&str>,
    original: &str,
    tx: &str,
    at: i64,
) -> Vec<u8> {
    let p = apple::notification(ntype, sub, &format!("uuid-{tx}"), at, "Production", Some(1));
    let t = apple::transaction(original, tx, "pro.monthly", at, 30, "Production");
    let r = apple::renewal(original, "pro.monthly", true, at, "Production");
    pki.notification_body(p, Some(&t), Some(&r))
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_feed_a_timeline_and_replays_a_dead_letter_in_a_real_browser() {
    let (chromium, node, script) = match tools() {
        Ok(t) => t,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("the browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("SKIP the console browser test: {why}");
            return;
        }
    };
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, pki.root_pem()).unwrap();
    let rx = TestReceiver::start().await.unwrap();
    rx.set_default(Reply::status(410));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--webhook-url", &rx.url(), "--webhook-secret", SECRET])
        .args(["--admin-token", TOKEN])
        .arg("--trust-root")
        .arg(&root)
        .args(["--apple-bundle-id", apple::BUNDLE_ID])
        .args(["--apple-app-apple-id", &apple::APP_APPLE_ID.to_string()])
        .args(["--retry-schedule", "1s,1s,1s"])
        .env_remove("AWS_ENDPOINT_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let http = reqwest::Client::new();
    wait_for("the server", || {
        let h = http.clone();
        let u = format!("{base}/healthz");
        async move { h.get(u).send().await.is_ok() }
    })
    .await;
    let post = |body: Vec<u8>| {
        let h = http.clone();
        let u = format!("{base}/appstore");
        async move {
            let r = h.post(u).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
    };
    let now = chrono::Utc::now().timestamp_millis();

    // A subscription whose first delivery the webhook answers 410: a dead letter.
    post(apple_body(
        &pki,
        "SUBSCRIBED",
        Some("INITIAL_BUY"),
        "dead-1",
        "dead-1",
        now - 1000,
    ))
    .await;
    let dead_letters = || {
        let h = http.clone();
        let u = format!("{base}/_storehook/dead-letters");
        async move {
            let text = h
                .get(u)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<Value>(&text).unwrap()["dead_letters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    wait_for("the dead letter", || async {
        dead_letters().await.len() == 1
    })
    .await;
    let dead = dead_letters().await[0]["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead_event = dead.clone();

    // Then the webhook is back; another subscription is bought and renewed.
    rx.set_default(Reply::status(200));
    post(apple_body(
        &pki,
        "SUBSCRIBED",
        Some("INITIAL_BUY"),
        "live-1",
        "live-1",
        now - apple::DAY,
    ))
    .await;
    post(apple_body(&pki, "DID_RENEW", None, "live-1", "live-2", now)).await;
    wait_for("the renewal's delivery", || async {
        rx.requests().iter().any(|r| {
            r.json()
                .is_some_and(|v| v["type"] == "SUBSCRIPTION_RENEWED")
        })
    })
    .await;

    let shots = repo().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for f in ["feed", "timeline", "dead-letters", "replayed", "translate"] {
        let _ = std::fs::remove_file(shots.join(format!("{f}.png")));
    }
    let translate = String::from_utf8(apple_body(
        &pki,
        "DID_RENEW",
        None,
        "other-1",
        "other-2",
        now,
    ))
    .unwrap();
    let node_base = base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg(&script)
            .current_dir(script.parent().unwrap())
            .env("STOREHOOK_URL", &node_base)
            .env("STOREHOOK_ADMIN_TOKEN", TOKEN)
            .env("STOREHOOK_CHROMIUM", &chromium)
            .env("STOREHOOK_SCREENSHOTS", &shots)
            .env("STOREHOOK_DEAD_EVENT", &dead_event)
            .env("STOREHOOK_TRANSLATE_BODY", &translate)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser test failed:\n{text}");
    assert!(text.contains("every step passed"), "{text}");

    // What the clicks did, seen from outside the browser: the replayed dead
    // letter reached the webhook (200), and the screenshots exist.
    let dead_id = dead_letters().await;
    assert!(dead_id.is_empty(), "the dead letter is gone: {dead_id:?}");
    let replayed_ok = rx.requests().iter().any(|r| {
        r.json().is_some_and(|v| {
            v["type"] == "SUBSCRIPTION_STARTED"
                && v["subscription"]["store_subscription_id"] == "dead-1"
        }) && r.answered == 200
    });
    assert!(replayed_ok, "the replayed event was delivered with 200");
    let shots = repo().join("target/console-screenshots");
    for f in ["feed", "timeline", "dead-letters", "replayed", "translate"] {
        let len = std::fs::metadata(shots.join(format!("{f}.png")))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{f}.png missing or empty ({len} bytes)");
    }
}
