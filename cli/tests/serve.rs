#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `storehook serve` end to end, driving the real binary: genuine (generated-PKI)
//! App Store notifications in over HTTP, signed events out to a loopback
//! receiver, state kept across a restart, a dead letter replayed with
//! `storehook replay`, and `storehook translate` on a real Apple notification.

use base64::Engine;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use storehook_shared::stores::appstore::testing::{TestPki, payloads::*};
use storehook_shared::testing::{Reply, TestReceiver};
use storehook_shared::webhook::{WebhookSecret, WebhookSecrets, verify};

const BIN: &str = env!("CARGO_BIN_EXE_storehook");

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serve {
    child: Child,
    base: String,
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
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
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
        .env_remove("AWS_ENDPOINT_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
    Serve { child, base }
}

/// GETs `url` and parses the answer as JSON.
async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Waits until the embedded queue is empty (every message acknowledged).
async fn wait_drained(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get_json(&client, &format!("{base}/_storehook/queue")).await;
        if v["depth"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "queue did not drain: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let signed = T0 + day * DAY;
    let p = notification(ntype, subtype, uuid, signed, "Production", Some(status));
    let t = transaction(
        "555",
        &format!("555-{day}"),
        "pro.monthly",
        signed,
        30,
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
async fn serve_delivers_signed_ordered_events_keeps_state_and_replays_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, pem(&pki.root_der)).unwrap();
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
    wait_drained(&s.base).await;
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
        listed = get_json(&client, &format!("{}/_storehook/dead-letters", s.base)).await;
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
    // WHEN it is replayed with `storehook replay` THEN it is delivered with the same id and sequence
    let out = Command::new(BIN)
        .args(["replay", "--server", &s.base])
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
    std::fs::write(&root, pem(&pki.root_der)).unwrap();
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
