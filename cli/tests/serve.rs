#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `storehook serve` end to end, driving the real binary: genuine (generated-PKI)
//! App Store notifications in over HTTP, signed events out to a loopback
//! receiver, state kept across a restart, a dead letter replayed with
//! `storehook replay`, and `storehook translate` on a real Apple notification.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use storehook_shared::webhook::{WebhookSecret, WebhookSecrets, verify};
use storehook_testkit::appstore::{TestPki, payloads::*};
use storehook_testkit::receiver::{Reply, TestReceiver, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_storehook");

struct Serve {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(
    data: &std::path::Path,
    root_pem: &std::path::Path,
    hook: &str,
    secret: &str,
) -> Serve {
    serve_with(data, root_pem, hook, secret, &[]).await
}

/// [`serve`] with extra flags.
async fn serve_with(
    data: &std::path::Path,
    root_pem: &std::path::Path,
    hook: &str,
    secret: &str,
    extra: &[&str],
) -> Serve {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--webhook-url", hook, "--webhook-secret", secret])
        .arg("--trust-root")
        .arg(root_pem)
        .args([
            "--apple-bundle-id",
            BUNDLE_ID,
            "--apple-app-apple-id",
            &APP_APPLE_ID.to_string(),
        ])
        .args(["--retry-schedule", "1s,1s,1s"])
        .args(extra);
    start(cmd, port, data, Stdio::null()).await
}

/// Starts `cmd` (a `storehook serve` listening on `port`) and waits until it answers.
async fn start(mut cmd: Command, port: u16, data: &std::path::Path, stderr: Stdio) -> Serve {
    // Never an emulator the caller did not name (the `--aws` test names one).
    if !cmd.get_envs().any(|(k, _)| k == "AWS_ENDPOINT_URL") {
        cmd.env_remove("AWS_ENDPOINT_URL");
    }
    let child = cmd
        .env_remove("STOREHOOK_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "storehook serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap_or_default();
    Serve { child, base, token }
}

/// GETs `url` with the admin token and parses the answer as JSON.
async fn get_json(client: &reqwest::Client, token: &str, url: &str) -> serde_json::Value {
    let text = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Waits until the embedded queue is empty (every message acknowledged).
async fn wait_drained(s: &Serve) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get_json(&client, &s.token, &format!("{}/_storehook/queue", s.base)).await;
        if v["depth"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "queue did not drain: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn body(
    pki: &TestPki,
    ntype: &str,
    subtype: Option<&str>,
    uuid: &str,
    day: i64,
    status: i64,
    auto_renew: bool,
) -> Vec<u8> {
    // Signed in the recent past (`day` ≤ 45) with 90-day periods, so every
    // period is still running when `serve` applies it, as for a live store
    // notification (an entitlement whose end has passed is delivered inactive).
    let signed = now_ms() - 45 * DAY + day * DAY;
    let p = notification(ntype, subtype, uuid, signed, "Production", Some(status));
    let t = transaction(
        "555",
        &format!("555-{day}"),
        "pro.monthly",
        signed,
        90,
        "Production",
    );
    let r = renewal("555", "pro.monthly", auto_renew, signed, "Production");
    pki.notification_body(p, Some(&t), Some(&r))
}

async fn post(base: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/appstore"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn a_lapsed_subscription_is_delivered_inactive_then_expired_by_the_sweeper_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let data = dir.path().join("data");
    let secret = WebhookSecret::generate().unwrap();
    let hook = TestReceiver::start().await.unwrap();
    let hook_url = format!("{}/hooks/storehook", hook.url());
    // GIVEN a server sweeping every second, without leeway
    let s = serve_with(
        &data,
        &root_pem,
        &hook_url,
        &secret,
        &["--sweep-interval", "1s", "--sweep-leeway", "0"],
    )
    .await;
    // WHEN a genuine DID_RENEW arrives whose period ended ten days ago
    let signed = now_ms() - 40 * DAY;
    let p = notification("DID_RENEW", None, "lapsed-1", signed, "Production", Some(1));
    let t = transaction("777", "777-1", "pro.monthly", signed, 30, "Production");
    let r = renewal("777", "pro.monthly", true, signed, "Production");
    let (status, answer) = post(&s.base, pki.notification_body(p, Some(&t), Some(&r))).await;
    assert_eq!(status, 200, "{answer}");
    // THEN its event is delivered inactive, status as Apple said, no ACCESS_GRANTED
    let got = hook.wait_for_requests(2, Duration::from_secs(20)).await;
    let events: Vec<serde_json::Value> = got.iter().map(|r| r.json().unwrap()).collect();
    assert_eq!(events[0]["type"], "SUBSCRIPTION_RENEWED");
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["entitlement"]["active"], false);
    assert_eq!(events[0]["subscription"]["status"], "ACTIVE");
    // AND the sweeper closes it: SUBSCRIPTION_EXPIRED, same subscription, next sequence,
    // at the signed expiry
    let x = &events[1];
    assert_eq!(x["type"], "SUBSCRIPTION_EXPIRED", "{x}");
    assert_eq!(x["sequence"], 2);
    assert_eq!(x["details"]["source"], "sweeper");
    assert_eq!(x["subscription"]["id"], events[0]["subscription"]["id"]);
    assert_eq!(x["subscription"]["status"], "EXPIRED");
    assert_eq!(x["entitlement"]["active"], false);
    assert_eq!(x["occurred_at"], events[0]["entitlement"]["expires_at"]);
    assert_eq!(x["store_notification"]["type"], "STOREHOOK_SWEEP");
    // AND exactly once, however many sweeps follow
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(hook.count(), 2);
}

/// The same with `serve --aws` (SQS + DynamoDB on the emulator named by
/// `STOREHOOK_TEST_AWS_ENDPOINT`; skipped without it): the sweeper finds the
/// lapsed subscription in the table's due index.
#[tokio::test]
async fn serve_aws_expires_a_lapsed_subscription_once() {
    let Some(sdk) = storehook_testkit::emulator::test_sdk_config().await else {
        eprintln!(
            "SKIP serve_aws_expires_a_lapsed_subscription_once: STOREHOOK_TEST_AWS_ENDPOINT is not set"
        );
        return;
    };
    let endpoint = std::env::var(storehook_testkit::emulator::TEST_ENDPOINT_ENV).unwrap();
    let (sqs, ddb) = (
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_dynamodb::Client::new(&sdk),
    );
    let name = format!("serve-sweep-{}", fastrand::u32(..));
    let resources = storehook_testkit::provision::provision(&sqs, &ddb, &name)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let secret = WebhookSecret::generate().unwrap();
    let hook = TestReceiver::start().await.unwrap();
    // GIVEN serve --aws sweeping every second without leeway
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--webhook-url", &hook.url(), "--webhook-secret", &secret])
        .arg("--trust-root")
        .arg(&root_pem)
        .args(["--apple-bundle-id", BUNDLE_ID])
        .args(["--apple-app-apple-id", &APP_APPLE_ID.to_string()])
        .args(["--aws", "--queue-url", &resources.queues.queue_url])
        .args(["--dlq-url", &resources.queues.dlq_url])
        .args(["--table-name", &resources.table_name])
        .args(["--sweep-interval", "1s", "--sweep-leeway", "0"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    let s = start(cmd, port, dir.path(), Stdio::null()).await;
    // WHEN a genuine DID_RENEW arrives whose period ended ten days ago
    let signed = now_ms() - 40 * DAY;
    let p = notification(
        "DID_RENEW",
        None,
        "lapsed-aws",
        signed,
        "Production",
        Some(1),
    );
    let t = transaction("888", "888-1", "pro.monthly", signed, 30, "Production");
    let r = renewal("888", "pro.monthly", true, signed, "Production");
    let (status, answer) = post(&s.base, pki.notification_body(p, Some(&t), Some(&r))).await;
    assert_eq!(status, 200, "{answer}");
    // THEN it is delivered inactive, then the sweeper's SUBSCRIPTION_EXPIRED follows, once
    let got = hook.wait_for_requests(2, Duration::from_secs(60)).await;
    let events: Vec<serde_json::Value> = got.iter().map(|r| r.json().unwrap()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["type"], "SUBSCRIPTION_RENEWED");
    assert_eq!(events[0]["entitlement"]["active"], false);
    assert_eq!(events[1]["type"], "SUBSCRIPTION_EXPIRED");
    assert_eq!(events[1]["sequence"], 2);
    assert_eq!(events[1]["details"]["source"], "sweeper");
    assert_eq!(
        events[1]["subscription"]["id"],
        events[0]["subscription"]["id"]
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(hook.count(), 2);
    drop(s);
    let _ = storehook_testkit::provision::destroy(&sqs, &ddb, &resources).await;
}

#[tokio::test]
async fn serve_delivers_signed_ordered_events_keeps_state_and_replays_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let data = dir.path().join("data");
    let secret = WebhookSecret::generate().unwrap();
    let secrets = WebhookSecrets::parse(&secret).unwrap();
    let hook = TestReceiver::start().await.unwrap();
    let hook_url = format!("{}/hooks/storehook", hook.url());

    // GIVEN a running server
    let s = serve(&data, &root_pem, &hook_url, &secret).await;
    // WHEN a subscription starts
    let (status, answer) = post(
        &s.base,
        body(&pki, "SUBSCRIBED", Some("INITIAL_BUY"), "e2e-1", 1, 1, true),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // THEN the event and the derived ACCESS_GRANTED arrive, signed, in order
    let got = hook.wait_for_requests(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2);
    let events: Vec<serde_json::Value> = got.iter().map(|r| r.json().unwrap()).collect();
    assert_eq!(events[0]["type"], "SUBSCRIPTION_STARTED");
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[1]["type"], "ACCESS_GRANTED");
    assert_eq!(events[1]["sequence"], 2);
    for r in &got {
        verify(
            &r.headers,
            &r.body,
            &secrets,
            chrono::Utc::now(),
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!(
            r.webhook_id().unwrap(),
            r.json().unwrap()["id"].as_str().unwrap()
        );
        assert!(r.header("user-agent").unwrap().starts_with("storehook/"));
    }

    // a notification for another app is refused and nothing is delivered
    let mut other = notification(
        "DID_RENEW",
        None,
        "e2e-x",
        T0 + 2 * DAY,
        "Production",
        Some(1),
    );
    other["data"]["bundleId"] = serde_json::json!("com.other.app");
    let (status, answer) = post(&s.base, pki.notification_body(other, None, None)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("wrong_app"))
    );

    // GIVEN the server is killed once everything was acknowledged, and restarts on the same data dir
    wait_drained(&s).await;
    drop(s);
    let s = serve(&data, &root_pem, &hook_url, &secret).await;
    // WHEN the subscription renews THEN its sequence continues: state survived
    let (status, _) = post(&s.base, body(&pki, "DID_RENEW", None, "e2e-2", 31, 1, true)).await;
    assert_eq!(status, 200);
    let got = hook.wait_for_requests(3, Duration::from_secs(20)).await;
    let renewed = got[2].json().unwrap();
    assert_eq!(
        (renewed["type"].as_str(), renewed["sequence"].as_u64()),
        (Some("SUBSCRIPTION_RENEWED"), Some(3))
    );
    assert_eq!(renewed["details"]["renewal_number"], 1);

    // GIVEN the backend answers 410 Gone once
    hook.push(Reply::status(410));
    let (status, _) = post(
        &s.base,
        body(
            &pki,
            "DID_CHANGE_RENEWAL_STATUS",
            Some("AUTO_RENEW_DISABLED"),
            "e2e-3",
            40,
            1,
            false,
        ),
    )
    .await;
    assert_eq!(status, 200);
    // THEN it is dead-lettered at once (one attempt), and listed
    hook.wait_for_requests(4, Duration::from_secs(20)).await;
    let client = reqwest::Client::new();
    let mut listed = serde_json::Value::Null;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        listed = get_json(
            &client,
            &s.token,
            &format!("{}/_storehook/dead-letters", s.base),
        )
        .await;
        if listed["dead_letters"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        listed["dead_letters"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(hook.count(), 4, "410 is not retried");
    // an empty selection never means "all": nothing is replayed
    for body in ["", "{}", r#"{"event_ids":[]}"#, r#"{"all":false}"#] {
        let r = client
            .post(format!("{}/_storehook/replay", s.base))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body:?}");
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["error"]["code"], "empty_selection", "{body:?}");
    }
    let out = Command::new(BIN)
        .args(["replay", "--server", &s.base, "--server-data-dir"])
        .arg(&data)
        .env_remove("STOREHOOK_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success(), "replay without a selection");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.count(), 4, "nothing was replayed");
    let listed = get_json(
        &client,
        &s.token,
        &format!("{}/_storehook/dead-letters", s.base),
    )
    .await;
    assert_eq!(listed["dead_letters"].as_array().unwrap().len(), 1);
    // WHEN it is replayed with `storehook replay --all` (the token read from the server's data
    // dir) THEN it is delivered with the same id and sequence
    let out = Command::new(BIN)
        .args(["replay", "--all", "--server", &s.base, "--server-data-dir"])
        .arg(&data)
        .env_remove("STOREHOOK_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"replayed\":1"));
    let got = hook.wait_for_requests(5, Duration::from_secs(20)).await;
    let (first, again) = (got[3].json().unwrap(), got[4].json().unwrap());
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["type"], "RENEWAL_DISABLED");
    assert_eq!(again["sequence"], 4);
    assert_eq!(again["subscription"]["status"], "CANCELED_ACTIVE");
    verify(
        &got[4].headers,
        &got[4].body,
        &secrets,
        chrono::Utc::now(),
        Duration::from_secs(300),
    )
    .unwrap();
}

#[test]
fn translate_prints_the_events_of_a_real_apple_notification_and_refuses_forgeries() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/appstore/apple_009_EXPIRED_VOLUNTARY.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    std::fs::write(&file, serde_json::to_vec(&fixture["body"]).unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["translate", "--store", "appstore"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(event["type"], "SUBSCRIPTION_EXPIRED");
    assert_eq!(event["details"]["reason"], "VOLUNTARY");
    assert_eq!(
        event["subscription"]["store_subscription_id"],
        "2000000970472825"
    );

    // the same body for another bundle id: refused, non-zero, with the code
    let out = Command::new(BIN)
        .args([
            "translate",
            "--store",
            "appstore",
            "--bundle-id",
            "com.other",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong_app"));

    // a generated-PKI notification verifies only with --trust-root
    let pki = TestPki::new();
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, body(&pki, "DID_RENEW", None, "t-1", 3, 1, true)).unwrap();
    let out = Command::new(BIN)
        .args(["translate", "--store", "appstore", "-"])
        .stdin(std::fs::File::open(&forged).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("untrusted_chain"));
    let root = dir.path().join("root.pem");
    std::fs::write(&root, pki.root_pem()).unwrap();
    let out = Command::new(BIN)
        .args(["translate", "--store", "appstore", "--trust-root"])
        .arg(&root)
        .arg(&forged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --help lists the stores
    let out = Command::new(BIN)
        .args(["translate", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for store in ["appstore", "playstore", "huawei"] {
        assert!(help.contains(store), "{help}");
    }
}

/// `storehook translate` over many inputs in one process (issue #15): every
/// real Apple fixture as a file and again as JSON lines on standard input, a
/// forgery and an unreadable file among them; the refused ones do not stop the
/// run, `--with-source` names each line's input, the summary counts refusals
/// by code, and the exit status says that some were refused.
#[test]
fn translate_takes_many_inputs_and_reports_each_refusal() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/appstore");
    let mut files = Vec::new();
    let mut lines = String::new();
    let mut names: Vec<_> = std::fs::read_dir(fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in &names {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let body = serde_json::to_string(&v["body"]).unwrap();
        let file = dir.path().join(path.file_name().unwrap());
        std::fs::write(&file, &body).unwrap();
        files.push(file);
        lines.push_str(&body);
        lines.push_str("\n\n");
    }
    let n = files.len();
    let pki = TestPki::new();
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, body(&pki, "DID_RENEW", None, "t-9", 3, 1, true)).unwrap();
    let missing = dir.path().join("missing.json");

    let mut child = Command::new(BIN)
        .args(["translate", "--store", "appstore", "--with-source"])
        .args(&files)
        .arg(&forged)
        .arg(&missing)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "some inputs were refused");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sources = |pred: &dyn Fn(&serde_json::Value) -> bool| -> Vec<String> {
        rows.iter()
            .filter(|r| pred(r))
            .map(|r| r["source"].as_str().unwrap().to_owned())
            .collect()
    };
    // every fixture translated twice (as a file and as a stdin line), with its source
    let from_files = sources(&|r| {
        r["event"].is_object() && !r["source"].as_str().unwrap().starts_with("stdin:")
    });
    let from_stdin =
        sources(&|r| r["event"].is_object() && r["source"].as_str().unwrap().starts_with("stdin:"));
    assert_eq!(from_files.len(), n, "{stdout}");
    assert_eq!(from_stdin.len(), n, "{stdout}");
    assert_eq!(from_files[0], files[0].display().to_string());
    // stdin lines are numbered as read (blank lines skipped but counted)
    assert_eq!(from_stdin[0], "stdin:1");
    assert_eq!(from_stdin[1], "stdin:3");
    let file_events: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["event"].is_object())
        .map(|r| &r["event"])
        .collect();
    for i in 0..n {
        assert_eq!(
            file_events[i]["id"],
            file_events[n + i]["id"],
            "same body, same event"
        );
    }
    // the refusals are reported, in place, and do not stop the run
    let errors: Vec<&serde_json::Value> = rows.iter().filter(|r| r["error"].is_object()).collect();
    assert_eq!(errors.len(), 2, "{stdout}");
    assert_eq!(errors[0]["source"], forged.display().to_string());
    assert_eq!(errors[0]["error"]["code"], "untrusted_chain");
    assert_eq!(errors[1]["error"]["code"], "unreadable_input");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(summary["inputs"], 2 * n + 2, "{stderr}");
    assert_eq!(summary["translated"], 2 * n);
    assert_eq!(summary["refused"], 2);
    assert_eq!(summary["refused_by_code"]["untrusted_chain"], 1);
    assert_eq!(summary["refused_by_code"]["unreadable_input"], 1);

    // all accepted: exit 0; without --with-source the lines are bare events
    let out = Command::new(BIN)
        .args(["translate", "--store", "appstore"])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(first["type"].is_string() && first.get("source").is_none());
}

/// A bare `storehook serve` (embedded mode, no App Store checks) with `extra` flags; its
/// standard error goes to `<data>/../stderr-<n>.log`.
async fn bare_serve(data: &std::path::Path, extra: &[&str], log: &std::path::Path) -> Serve {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--webhook-url", "http://127.0.0.1:9/unused"])
        .args(extra);
    let stderr = std::fs::File::create(log).unwrap();
    start(cmd, port, data, Stdio::from(stderr)).await
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn admin(
    s: &Serve,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", s.base))
        .body(body.to_owned());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(c) = content_type {
        r = r.header("content-type", c);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[cfg(unix)]
#[tokio::test]
async fn admin_routes_need_the_token_json_and_an_explicit_selection_and_files_are_private() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first_log = dir.path().join("first.log");
    let s = bare_serve(&data, &[], &first_log).await;
    let token = s.token.clone();
    assert_eq!(token.len(), 43, "a generated token is in the data dir");

    // secrets and state are owner-only
    assert_eq!(mode(&data), 0o700);
    for f in [
        "admin-token",
        "webhook-secret",
        "queue.redb",
        "state.redb",
        "links.redb",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }

    // /healthz stays open
    let r = reqwest::get(format!("{}/healthz", s.base)).await.unwrap();
    assert_eq!(r.status(), 200);

    // no token, a wrong one, another scheme: the same 401, nothing leaked
    let wrong = format!("{}x", &token[..42]);
    for (path, method) in [
        ("/_storehook/queue", Method::GET),
        ("/_storehook/dead-letters", Method::GET),
        ("/_storehook/replay", Method::POST),
    ] {
        for t in [None, Some(wrong.as_str()), Some(&token[..42]), Some("")] {
            let (status, v) = admin(
                &s,
                method.clone(),
                path,
                t,
                Some("application/json"),
                r#"{"all":true}"#,
            )
            .await;
            assert_eq!(status, 401, "{path} {t:?}");
            assert_eq!(v["error"]["code"], "unauthorized", "{path}");
            assert!(!v.to_string().contains(&token[..8]));
        }
        let r = reqwest::Client::new()
            .request(method.clone(), format!("{}{path}", s.base))
            .header("authorization", format!("Basic {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    let (status, v) = admin(&s, Method::GET, "/_storehook/queue", Some(&token), None, "").await;
    assert_eq!((status, v["depth"].as_u64()), (200, Some(0)));

    // POST: JSON only (a cross-site "simple" POST cannot be JSON)
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, v) = admin(
            &s,
            Method::POST,
            "/_storehook/replay",
            Some(&token),
            ct,
            r#"{"all":true}"#,
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{ct:?}"
        );
    }
    // an explicit selection
    for (body, code) in [
        ("", "empty_selection"),
        ("  ", "empty_selection"),
        ("{}", "empty_selection"),
        (r#"{"event_ids":[]}"#, "empty_selection"),
        (r#"{"all":false}"#, "empty_selection"),
        (r#"{"all":true,"event_ids":["a"]}"#, "ambiguous_selection"),
        (r#"{"ids":["a"]}"#, "malformed_body"),
        (r#"{"all":true,"all":false}"#, "malformed_body"),
        ("all", "malformed_body"),
    ] {
        let (status, v) = admin(
            &s,
            Method::POST,
            "/_storehook/replay",
            Some(&token),
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{body:?}: {v}"
        );
    }
    for body in [r#"{"all":true}"#, r#"{"event_ids":["nope"]}"#] {
        let (status, v) = admin(
            &s,
            Method::POST,
            "/_storehook/replay",
            Some(&token),
            Some("application/json"),
            body,
        )
        .await;
        assert_eq!((status, v["replayed"].as_u64()), (200, Some(0)), "{body}");
    }
    // `storehook replay` with a wrong token is refused
    let out = Command::new(BIN)
        .args([
            "replay",
            "--all",
            "--server",
            &s.base,
            "--admin-token",
            &wrong,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // standard error is collected here (a file, not a terminal): the generated
    // token is never printed into it, only where it is kept (a person at a
    // terminal sees it once, at the start that creates it)
    drop(s);
    let first = std::fs::read_to_string(&first_log).unwrap();
    assert!(!first.contains(&token), "{first}");
    assert!(first.contains("generated the admin token"), "{first}");
    assert!(first.contains("admin-token"), "{first}");
    let second_log = dir.path().join("second.log");
    let s = bare_serve(&data, &[], &second_log).await;
    assert_eq!(s.token, token);
    let (status, _) = admin(&s, Method::GET, "/_storehook/queue", Some(&token), None, "").await;
    assert_eq!(status, 200);
    drop(s);
    assert!(
        !std::fs::read_to_string(&second_log)
            .unwrap()
            .contains(&token)
    );

    // --admin-token replaces the data dir's token
    let chosen = "a-token-chosen-by-the-operator";
    let s = bare_serve(&data, &["--admin-token", chosen], &second_log).await;
    let (status, _) = admin(&s, Method::GET, "/_storehook/queue", Some(chosen), None, "").await;
    assert_eq!(status, 200);
    let (status, _) = admin(&s, Method::GET, "/_storehook/queue", Some(&token), None, "").await;
    assert_eq!(status, 401);
    let out = Command::new(BIN)
        .args(["replay", "--all", "--server", &s.base])
        .env("STOREHOOK_ADMIN_TOKEN", chosen)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(s);
    // a short one is refused at start
    let out = Command::new(BIN)
        .args(["serve", "--admin-token", "short", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Reads from `stream` until the server closes it (or `limit` passes); returns what was read
/// and when the connection closed (None: still open at `limit`).
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    use tokio::io::AsyncReadExt;
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0) | Err(_)) => return (got, Some(t.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

const IDLE_MS: u64 = 800;

#[tokio::test]
async fn slow_and_idle_connections_are_closed_and_connections_are_capped() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let idle = IDLE_MS.to_string();
    let s = bare_serve(
        &data,
        &[
            "--idle-timeout-ms",
            &idle,
            // longer than the idle timeout: the idle deadline is what is tested here
            "--header-timeout-ms",
            "1500",
            "--body-timeout-ms",
            "600",
            "--max-connections",
            "2",
        ],
        &dir.path().join("serve.log"),
    )
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let limit = Duration::from_secs(4);
    let idle = Duration::from_millis(IDLE_MS);
    // (the readiness poll's connection was dropped with its client; let it go)
    tokio::time::sleep(Duration::from_millis(100)).await;

    // a client that connects and sends nothing is disconnected after the idle timeout
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (got, closed) = read_until_closed(&mut silent, limit).await;
    let closed = closed.expect("a silent connection is closed");
    assert!(got.is_empty());
    assert!(
        closed >= idle - Duration::from_millis(150),
        "closed after {closed:?}"
    );

    // one that sends half its headers and stalls is disconnected
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /appstore HTTP/1.1\r\nHost: x\r\nContent-")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut half, limit).await;
    let closed = closed.expect("half headers: still open");
    assert!(closed < Duration::from_millis(1400), "{closed:?}");

    // an idle HTTP/1 keep-alive connection is closed after its answer
    let mut keep = tokio::net::TcpStream::connect(&addr).await.unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut keep, limit).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let closed = closed.expect("an idle keep-alive connection is closed");
    assert!(closed >= idle - Duration::from_millis(150), "{closed:?}");

    // a body that does not arrive in time: 408 with the JSON error, and the connection closes
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /appstore HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"signed")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut slow, limit).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"body_timeout""#), "{text}");
    assert!(closed.is_some(), "the slow body's connection is closed");

    // a body over the limit is refused as soon as the limit is passed, not buffered to its end
    let mut big = tokio::net::TcpStream::connect(&addr).await.unwrap();
    big.write_all(b"POST /appstore HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .unwrap();
    big.write_all(&[b' '; 70_000]).await.unwrap();
    let (got, _) = read_until_closed(&mut big, Duration::from_millis(400)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#""code":"body_too_large""#), "{text}");

    // h2c (prior knowledge): a request is answered over HTTP/2, then the idle connection is closed
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let resp = send
        .send_request(
            http::Request::get(format!("{}/healthz", s.base))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, http::Version::HTTP_2)
    );
    drop(resp);
    let t = Instant::now();
    tokio::time::timeout(limit, conn)
        .await
        .expect("an idle h2c connection is closed")
        .unwrap()
        .ok();
    assert!(t.elapsed() >= idle - Duration::from_millis(150));
    assert!(send.is_closed());

    // the cap: with 2 connections held, a third waits until a slot frees, then is served
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/healthz", s.base))
        .timeout(limit)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let waited = t.elapsed();
    assert!(
        waited >= idle - Duration::from_millis(350),
        "the third connection was served before a slot freed: {waited:?}"
    );
    // the held ones were the ones let go
    for mut h in held {
        let (_, closed) = read_until_closed(&mut h, Duration::from_millis(100)).await;
        assert!(closed.is_some());
    }
    // and once slots are free, requests are served at once
    let t = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

/// Several endpoints (`--endpoints`, issue #13): "all" gets every event at
/// once while "renewals" (filtered to SUBSCRIPTION_RENEWED) is down; "raw"
/// gets the store's own bodies byte for byte, signed, with `storehook-store`;
/// "renewals" gets its events in order, with `previous_sequence` chaining
/// them, once it is back. State is applied once.
#[tokio::test]
async fn several_endpoints_are_filtered_independent_and_store_copies_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let (all, renewals, raw) = (
        TestReceiver::start().await.unwrap(),
        TestReceiver::start().await.unwrap(),
        TestReceiver::start().await.unwrap(),
    );
    // "renewals" is down for its first four attempts (about 4 s of retries).
    for _ in 0..4 {
        renewals.push(Reply::status(503));
    }
    let secrets: Vec<String> = (0..3).map(|_| WebhookSecret::generate().unwrap()).collect();
    let config = serde_json::json!([
        {"name": "all", "url": all.url(), "secret": secrets[0]},
        {"name": "renewals", "url": renewals.url(), "secret": secrets[1],
         "filter": {"types": ["SUBSCRIPTION_RENEWED"], "stores": ["APP_STORE"]}},
        {"name": "raw", "url": raw.url(), "secret": secrets[2], "format": "store",
         "filter": {"environments": ["PRODUCTION"]}},
    ]);
    let file = dir.path().join("endpoints.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .arg("--endpoints")
        .arg(&file)
        .arg("--trust-root")
        .arg(&root_pem)
        .args(["--apple-bundle-id", BUNDLE_ID])
        .args(["--apple-app-apple-id", &APP_APPLE_ID.to_string()])
        .args(["--retry-schedule", "1s,1s,1s,1s,1s,1s,1s,1s"])
        .args(["--sweep-interval", "0"]);
    let s = start(cmd, port, &data, Stdio::null()).await;

    // GIVEN a subscription: bought, renewed twice
    let bodies = [
        body(&pki, "SUBSCRIBED", Some("INITIAL_BUY"), "e-1", 0, 1, true),
        body(&pki, "DID_RENEW", None, "e-2", 1, 1, true),
        body(&pki, "DID_RENEW", None, "e-3", 2, 1, true),
    ];
    for b in &bodies {
        assert_eq!(post(&s.base, b.clone()).await.0, 200);
    }

    // THEN "all" gets everything while "renewals" is still failing
    let got = all.wait_for_requests(4, Duration::from_secs(20)).await;
    let verify_all = |r: &storehook_testkit::receiver::ReceivedRequest, secret: &str| {
        let secrets = WebhookSecrets::parse(secret).unwrap();
        verify(
            &r.headers,
            &r.body,
            &secrets,
            chrono::Utc::now(),
            storehook_shared::webhook::DEFAULT_TOLERANCE,
        )
        .unwrap()
    };
    let events: Vec<serde_json::Value> = got.iter().map(|r| r.json().unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "SUBSCRIPTION_STARTED",
            "ACCESS_GRANTED",
            "SUBSCRIPTION_RENEWED",
            "SUBSCRIPTION_RENEWED"
        ]
    );
    for (i, (r, e)) in got.iter().zip(&events).enumerate() {
        let v = verify_all(r, &secrets[0]);
        assert_eq!(
            v.id,
            e["id"].as_str().unwrap(),
            "webhook-id is the event id"
        );
        assert_eq!(e["sequence"], i + 1);
        let previous = (i > 0).then_some(i);
        assert_eq!(e["previous_sequence"].as_u64(), previous.map(|p| p as u64));
    }
    let all_done = got.last().unwrap().at;
    assert!(
        renewals.requests().iter().all(|r| r.answered == 503),
        "\"renewals\" has not been served yet when \"all\" has everything"
    );

    // AND "raw" gets the three store bodies, byte for byte, signed with its secret
    let copies = raw.wait_for_requests(3, Duration::from_secs(20)).await;
    for (r, b) in copies.iter().zip(&bodies) {
        assert_eq!(&r.body[..], &b[..], "byte-identical store body");
        assert_eq!(r.header("storehook-store"), Some("appstore"));
        verify_all(r, &secrets[2]);
    }

    // AND "renewals", once back, gets the two renewals in order, chained
    let got = renewals.wait_for_requests(6, Duration::from_secs(30)).await;
    let ok: Vec<_> = got.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(
        ok.len(),
        2,
        "{:?}",
        got.iter().map(|r| r.answered).collect::<Vec<_>>()
    );
    assert!(ok[0].at > all_done, "served after its outage");
    let first: serde_json::Value = ok[0].json().unwrap();
    let second: serde_json::Value = ok[1].json().unwrap();
    verify_all(ok[0], &secrets[1]);
    assert_eq!(
        (
            first["type"].as_str(),
            first["sequence"].as_u64(),
            first["previous_sequence"].as_u64()
        ),
        (Some("SUBSCRIPTION_RENEWED"), Some(3), None)
    );
    assert_eq!(
        (
            second["sequence"].as_u64(),
            second["previous_sequence"].as_u64()
        ),
        (Some(4), Some(3))
    );
    wait_drained(&s).await;
    // nothing more anywhere (state applied once: no duplicate events)
    assert_eq!(all.count(), 4);
    assert_eq!(raw.count(), 3);
}

/// An endpoint's dead letters are its own: "gone" answers 410 (dead-lettered
/// at once) while "ok" gets everything; `storehook replay --endpoint ok`
/// replays nothing, `--endpoint gone` replays exactly its deliveries, which
/// then arrive with their original ids and sequences.
#[tokio::test]
async fn an_endpoints_dead_letters_are_replayed_with_replay_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let (ok, gone) = (
        TestReceiver::start().await.unwrap(),
        TestReceiver::start().await.unwrap(),
    );
    gone.set_default(Reply::status(410));
    let secret = WebhookSecret::generate().unwrap();
    let config = serde_json::json!([
        {"name": "ok", "url": ok.url(), "secret": secret},
        {"name": "gone", "url": gone.url(), "secret": secret},
    ]);
    let file = dir.path().join("endpoints.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .arg("--endpoints")
        .arg(&file)
        .arg("--trust-root")
        .arg(&root_pem)
        .args(["--apple-bundle-id", BUNDLE_ID])
        .args(["--apple-app-apple-id", &APP_APPLE_ID.to_string()])
        .args(["--sweep-interval", "0"]);
    let s = start(cmd, port, &data, Stdio::null()).await;
    let b = body(&pki, "SUBSCRIBED", Some("INITIAL_BUY"), "r-1", 0, 1, true);
    assert_eq!(post(&s.base, b).await.0, 200);
    let delivered = ok.wait_for_requests(2, Duration::from_secs(20)).await;
    wait_drained(&s).await;
    let client = reqwest::Client::new();
    let dead = get_json(
        &client,
        &s.token,
        &format!("{}/_storehook/dead-letters", s.base),
    )
    .await;
    assert_eq!(
        dead["dead_letters"].as_array().map(Vec::len),
        Some(2),
        "{dead}"
    );

    let replay = |endpoint: &str| {
        Command::new(BIN)
            .args(["replay", "--endpoint", endpoint, "--server", &s.base])
            .args(["--admin-token", &s.token])
            .output()
            .unwrap()
    };
    let out = replay("ok");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "{\"replayed\":0}"
    );
    gone.set_default(Reply::status(200));
    let out = replay("gone");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"replayed\":2"));
    let got = gone.wait_for_requests(4, Duration::from_secs(20)).await;
    let replayed: Vec<&storehook_testkit::receiver::ReceivedRequest> =
        got.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(replayed.len(), 2);
    for (r, d) in replayed.iter().zip(&delivered) {
        assert_eq!(r.webhook_id(), d.webhook_id(), "same id, same order");
        assert_eq!(r.body, d.body, "same event, same sequence");
    }
    wait_drained(&s).await;
    assert_eq!(ok.count(), 2, "the other endpoint got nothing again");
}
