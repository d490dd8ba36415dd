#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `storehook backfill --store appstore` and `storehook test-notification
//! --store appstore`, driving the real binary against a loopback fake of
//! Apple's App Store Server API (which checks every JWT) and a real
//! `storehook serve` delivering to a loopback receiver.

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use storehook_shared::event::{EventId, Store};
use storehook_testkit::apple_api::{ApiKey, FakeAppleApi};
use storehook_testkit::appstore::{TestPki, payloads::*};
use storehook_testkit::receiver::{TestReceiver, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_storehook");

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

fn clone_pki(p: &TestPki) -> TestPki {
    TestPki {
        root_der: p.root_der.clone(),
        intermediate_der: p.intermediate_der.clone(),
        leaf_der: p.leaf_der.clone(),
        leaf_key_pem: p.leaf_key_pem.clone(),
    }
}

async fn serve(data: &Path, root_pem: &Path, hook: &str, environments: &str) -> Serve {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--webhook-url", hook])
        .arg("--trust-root")
        .arg(root_pem)
        .args(["--apple-bundle-id", BUNDLE_ID])
        .args(["--apple-app-apple-id", &APP_APPLE_ID.to_string()])
        .args(["--apple-environments", environments])
        .args(["--retry-schedule", "1s,1s,1s"])
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("STOREHOOK_ADMIN_TOKEN")
        .env_remove("WEBHOOK_SECRET")
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

/// The test's world: Apple's PKI, an API key, the fake API, the files the CLI reads.
struct World {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    pki: TestPki,
    fake: FakeAppleApi,
    key_file: std::path::PathBuf,
    root_pem: std::path::PathBuf,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let key = ApiKey::generate();
    let key_file = dir.path().join("AuthKey.p8");
    std::fs::write(&key_file, &key.private_key_pem).unwrap();
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let fake = FakeAppleApi::start(key, BUNDLE_ID, clone_pki(&pki)).await;
    World {
        dir: dir.path().to_owned(),
        _dir: dir,
        pki,
        fake,
        key_file,
        root_pem,
    }
}

impl World {
    /// `storehook serve` with the API settings of the fake (`APPLE_API_*` in
    /// its environment), delivering to `hook`, data in `data` under the world's dir.
    async fn serve_with_api(&self, data: &str, hook: &str, extra: &[&str]) -> Serve {
        let port = free_port();
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(self.dir.join(data))
            .args(["--webhook-url", hook])
            .arg("--trust-root")
            .arg(&self.root_pem)
            .args(["--apple-bundle-id", BUNDLE_ID])
            .args(["--apple-app-apple-id", &APP_APPLE_ID.to_string()])
            .args(extra)
            .env("APPLE_API_KEY_ID", storehook_testkit::apple_api::KEY_ID)
            .env(
                "APPLE_API_ISSUER_ID",
                storehook_testkit::apple_api::ISSUER_ID,
            )
            .env(
                "APPLE_API_PRIVATE_KEY",
                std::fs::read_to_string(&self.key_file).unwrap(),
            )
            .env("APPLE_API_BASE_URL", self.fake.url())
            .env_remove("APPLE_API_PRIVATE_KEY_SECRET_ARN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("STOREHOOK_ADMIN_TOKEN")
            .env_remove("WEBHOOK_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        while !matches!(client.get(format!("{base}/healthz")).send().await, Ok(r) if r.status() == 200)
        {
            assert!(Instant::now() < deadline, "storehook serve did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Serve { child, base }
    }

    /// Runs `storehook <args>` with the API settings of the fake (off the runtime's threads).
    async fn run(&self, args: &[&str]) -> Output {
        self.run_with_key(args, &self.key_file).await
    }

    async fn run_with_key(&self, args: &[&str], key_file: &Path) -> Output {
        self.run_cmd(args, key_file, true).await
    }

    async fn run_cmd(&self, args: &[&str], key_file: &Path, trust_root: bool) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--apple-api-private-key-file")
            .arg(key_file);
        if trust_root {
            cmd.arg("--trust-root").arg(&self.root_pem);
        }
        cmd.env("APPLE_API_KEY_ID", storehook_testkit::apple_api::KEY_ID)
            .env(
                "APPLE_API_ISSUER_ID",
                storehook_testkit::apple_api::ISSUER_ID,
            )
            .env("APPLE_BUNDLE_ID", BUNDLE_ID)
            .env("APPLE_API_BASE_URL", self.fake.url())
            .env_remove("APPLE_API_PRIVATE_KEY")
            .env_remove("APPLE_API_PRIVATE_KEY_SECRET_ARN")
            .env("RUST_LOG", "warn");
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// A signed Sandbox notification of subscription 777, in the fake's history.
    fn add(&self, ntype: &str, subtype: Option<&str>, uuid: &str, at: i64, status: i64) {
        let p = notification(ntype, subtype, uuid, at, "Sandbox", Some(status));
        let t = transaction(
            "777",
            &format!("777-{uuid}"),
            "pro.monthly",
            at,
            30,
            "Sandbox",
        );
        let r = renewal("777", "pro.monthly", true, at, "Sandbox");
        let body: Value =
            serde_json::from_slice(&self.pki.notification_body(p, Some(&t), Some(&r))).unwrap();
        self.fake
            .add_history(at, body["signedPayload"].as_str().unwrap(), "SUCCESS");
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_delivers_the_history_once_with_the_original_ids_and_refuses_forgeries() {
    let w = world().await;
    w.fake.set_page_size(2);
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let uuids = ["bf-1", "bf-2", "bf-3"];
    w.add(
        "SUBSCRIBED",
        Some("INITIAL_BUY"),
        uuids[0],
        now - 3 * DAY,
        1,
    );
    w.add(
        "DID_CHANGE_RENEWAL_STATUS",
        Some("AUTO_RENEW_ENABLED"),
        uuids[1],
        now - 2 * DAY,
        1,
    );
    w.add("DID_RENEW", None, uuids[2], now - DAY, 1);
    let hook = TestReceiver::start().await.unwrap();
    let s = serve(
        &w.dir.join("data"),
        &w.root_pem,
        &format!("{}/hook", hook.url()),
        "Production,Sandbox",
    )
    .await;
    let ingest = format!("{}/appstore", s.base);
    let since = rfc3339(now - 10 * DAY);
    let args = [
        "backfill",
        "--store",
        "appstore",
        "--environment",
        "sandbox",
        "--since",
        &since,
        "--ingest-url",
        &ingest,
    ];

    // WHEN the history is backfilled
    let out = w.run(&args).await;
    // THEN every notification is accepted and its events delivered
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fetched: 3, accepted: 3, refused: 0"),
        "{}",
        text(&out)
    );
    hook.wait_for_requests(3, Duration::from_secs(20)).await;
    // (and the events they imply, e.g. ACCESS_GRANTED)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = hook.count();
    // the window went to Apple as given, page after page
    let sent = w.fake.history_requests();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["startDate"], json!(now - 10 * DAY));
    assert!(w.fake.refused().is_empty(), "{:?}", w.fake.refused());

    // WHEN it is backfilled again
    let out = w.run(&args).await;
    assert!(out.status.success(), "{}", text(&out));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // THEN nothing is delivered twice: the events are the original notifications'
    let all = hook.requests();
    assert_eq!(all.len(), first, "delivered again");
    let events: Vec<Value> = all.iter().map(|r| r.json().unwrap()).collect();
    for uuid in uuids {
        let e = events
            .iter()
            .find(|e| e["store_notification"]["id"] == uuid)
            .unwrap_or_else(|| panic!("no event of {uuid}: {events:?}"));
        assert_eq!(
            e["id"].as_str().unwrap(),
            EventId::derive(&[Store::AppStore.as_str(), uuid]).as_str()
        );
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e["store_notification"]["id"] == "bf-3")
            .count(),
        events
            .iter()
            .filter(|e| e["type"] == "SUBSCRIPTION_RENEWED")
            .count()
    );

    // GIVEN the history also holds a forgery and garbage
    let forger = TestPki::new();
    let p = notification(
        "DID_RENEW",
        None,
        "bf-forged",
        now - DAY / 2,
        "Sandbox",
        Some(1),
    );
    let forged: Value = serde_json::from_slice(&forger.notification_body(p, None, None)).unwrap();
    w.fake.add_history(
        now - DAY / 2,
        forged["signedPayload"].as_str().unwrap(),
        "SUCCESS",
    );
    w.fake.add_history(now - DAY / 3, "not.a.jws", "SUCCESS");
    let before = hook.count();
    // WHEN backfilled THEN they are refused, the rest accepted, and the exit code says so
    let out = w.run(&args).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fetched: 5, accepted: 3, refused: 2"),
        "{}",
        text(&out)
    );
    // refused here, before reaching the endpoint: never posted
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("refused (not verified, not posted)").count(),
        2,
        "{stderr}"
    );
    assert!(
        stderr.contains("untrusted") || stderr.contains("chain"),
        "{stderr}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.count(), before, "a forgery was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_reports_what_ingest_refuses_and_apples_own_errors() {
    let w = world().await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    w.add("DID_RENEW", None, "bf-env", now - DAY, 1);
    let hook = TestReceiver::start().await.unwrap();
    // a deployment accepting Production only refuses the Sandbox history
    let s = serve(
        &w.dir.join("data"),
        &w.root_pem,
        &format!("{}/hook", hook.url()),
        "Production",
    )
    .await;
    let ingest = format!("{}/appstore", s.base);
    let since = rfc3339(now - 10 * DAY);
    let out = w
        .run(&[
            "backfill",
            "--store",
            "appstore",
            "--environment",
            "sandbox",
            "--since",
            &since,
            "--ingest-url",
            &ingest,
        ])
        .await;
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("fetched: 1, accepted: 0, refused: 1"), "{t}");
    assert!(t.contains("HTTP 403 wrong_environment"), "{t}");

    // a window older than Apple keeps: Apple's error is reported
    let since = rfc3339(now - 60 * DAY);
    let out = w
        .run(&[
            "backfill",
            "--store",
            "appstore",
            "--environment",
            "sandbox",
            "--since",
            &since,
            "--ingest-url",
            &ingest,
        ])
        .await;
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("HTTP 400") && t.contains("4000030") && t.contains("further in the past"),
        "{t}"
    );

    // Apple's 5xx on a history page is retried
    w.fake.push_reply(
        503,
        json!({"errorCode": 5000000, "errorMessage": "An unknown error occurred."}),
    );
    let since = rfc3339(now - 10 * DAY);
    let hook2 = TestReceiver::start().await.unwrap();
    let s2 = serve(
        &w.dir.join("data2"),
        &w.root_pem,
        &format!("{}/hook", hook2.url()),
        "Sandbox",
    )
    .await;
    let out = w
        .run(&[
            "backfill",
            "--store",
            "appstore",
            "--environment",
            "sandbox",
            "--since",
            &since,
            "--ingest-url",
            &format!("{}/appstore", s2.base),
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("fetched: 1, accepted: 1, refused: 0"),
        "{}",
        text(&out)
    );

    // a page Apple refuses ends the paging: what came before is still posted, and the exit says so
    w.add("DID_RENEW", None, "bf-env-2", now - DAY / 2, 1);
    w.fake.set_page_size(1);
    w.fake.push_normal();
    w.fake.push_reply(
        400,
        json!({"errorCode": 4000006, "errorMessage": "Invalid pagination token."}),
    );
    let out = w
        .run(&[
            "backfill",
            "--store",
            "appstore",
            "--environment",
            "sandbox",
            "--since",
            &since,
            "--ingest-url",
            &format!("{}/appstore", s2.base),
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("fetched: 1, accepted: 1, refused: 0"), "{t}");
    assert!(t.contains("page 2") && t.contains("4000006"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_notification_exits_zero_only_on_success() {
    let w = world().await;
    let args = [
        "test-notification",
        "--store",
        "appstore",
        "--environment",
        "sandbox",
        "--poll-interval-ms",
        "50",
    ];
    // Apple reports SUCCESS after two polls without an attempt
    w.fake.set_test_result("SUCCESS", 2);
    let out = w.run(&args).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("send attempt at") && text(&out).contains(": SUCCESS"),
        "{}",
        text(&out)
    );

    // the TEST notification in the answer does not verify (its root is not trusted):
    // said, but the send attempt Apple reports is still the answer
    let out = w.run_cmd(&args, &w.key_file, false).await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("did not verify") && t.contains("(unverified): SUCCESS"),
        "{t}"
    );

    // the URL did not answer
    w.fake.set_test_result("NO_RESPONSE", 0);
    let out = w.run(&args).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("NO_RESPONSE") && text(&out).contains("FAILED"),
        "{}",
        text(&out)
    );

    // no attempt reported within the polls
    w.fake.set_test_result("SUCCESS", 100);
    let mut few = args.to_vec();
    few.extend(["--poll-attempts", "3"]);
    let out = w.run(&few).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no send attempt after 3 polls"),
        "{}",
        text(&out)
    );

    // a key Apple does not know: 401, said clearly
    let other = ApiKey::generate();
    let other_file = w.dir.join("Other.p8");
    std::fs::write(&other_file, &other.private_key_pem).unwrap();
    let out = w.run_with_key(&args, &other_file).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("HTTP 401") && t.contains("APPLE_API_KEY_ID"),
        "{t}"
    );
    assert!(!t.contains("PRIVATE KEY"), "{t}");
}

/// `storehook serve` wires the App Store Server API into its expiry sweeper:
/// with `APPLE_API_*` set, a subscription whose period ended without a
/// notification is asked about (Get All Subscription Statuses, its answer
/// verified like a notification), and the renewal Apple reports is delivered
/// with the new expiry and `details.source: "sweeper"`, access granted again —
/// not expired by the leeway, which is 0 here.
#[tokio::test]
async fn serve_sweeps_a_lapsed_subscription_through_the_app_store_server_api() {
    let w = world().await;
    w.fake.set_environment("Production");
    let hook = TestReceiver::start().await.unwrap();
    let _serve = w
        .serve_with_api(
            "sweep-data",
            &hook.url(),
            &["--sweep-interval", "1s", "--sweep-leeway", "0"],
        )
        .await;
    let client = reqwest::Client::new();

    // GIVEN Apple's answer: subscription 778 renewed ten days ago, for 30 days
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let day = 86_400_000;
    let renewed = transaction(
        "778",
        "778-2",
        "pro.monthly",
        now - 10 * day,
        30,
        "Production",
    );
    let renewal_info = renewal("778", "pro.monthly", true, now - 10 * day, "Production");
    w.fake.set_statuses(
        "778",
        storehook_testkit::apple_api::status_answer(
            &w.pki,
            "Production",
            BUNDLE_ID,
            &[(1, renewed, Some(renewal_info))],
        ),
    );
    // WHEN the last notification storehook got is of the period that ended ten days ago
    let signed = now - 40 * day;
    let p = notification(
        "SUBSCRIBED",
        Some("INITIAL_BUY"),
        "s-778",
        signed,
        "Production",
        Some(1),
    );
    let t = transaction("778", "778-1", "pro.monthly", signed, 30, "Production");
    let r = renewal("778", "pro.monthly", true, signed, "Production");
    let resp = client
        .post(format!("{}/appstore", _serve.base))
        .body(w.pki.notification_body(p, Some(&t), Some(&r)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // THEN: the notification (inactive by time), then the sweeper's renewal from
    // Apple's answer, then ACCESS_GRANTED
    let got = hook.wait_for_requests(3, Duration::from_secs(30)).await;
    let events: Vec<Value> = got.iter().map(|r| r.json().unwrap()).collect();
    assert_eq!(events[0]["type"], "SUBSCRIPTION_STARTED", "{}", events[0]);
    assert_eq!(events[0]["entitlement"]["active"], false);
    let swept = &events[1];
    assert_eq!(swept["type"], "SUBSCRIPTION_RENEWED", "{swept}");
    assert_eq!(swept["details"]["source"], "sweeper");
    assert_eq!(swept["store_notification"]["type"], "SUBSCRIPTION_STATUS");
    assert_eq!(swept["transaction"]["id"], "778-2");
    assert_eq!(swept["entitlement"]["active"], true);
    assert_eq!(swept["subscription"]["id"], events[0]["subscription"]["id"]);
    assert_eq!(swept["sequence"], 2);
    assert_eq!(events[2]["type"], "ACCESS_GRANTED", "{}", events[2]);
    // AND Apple was asked with a token it accepted, and nothing more is delivered
    assert!(w.fake.refused().is_empty(), "{:?}", w.fake.refused());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.count(), 3);
}

/// The refund defence in `storehook serve` (issue #17): an App Store
/// CONSUMPTION_REQUEST is delivered as REFUND_REQUESTED; the backend answers
/// with consumption information; storehook sends it to Apple (the fake checks
/// the JWT and the body) and delivers REFUND_CONSUMPTION_SENT right after the
/// request in the subscription's stream. An invalid answer is reported, never
/// sent.
#[tokio::test]
async fn serve_answers_a_refund_request_with_the_backends_consumption_information() {
    let w = world().await;
    let hook = TestReceiver::start().await.unwrap();
    let answer = r#"{"consumption":{"customerConsented":true,"deliveryStatus":"DELIVERED","sampleContentProvided":false,"refundPreference":"DECLINE"}}"#;
    hook.set_default(storehook_testkit::receiver::Reply::status(200).with_body(answer));
    let serve = w
        .serve_with_api("refund-data", &hook.url(), &["--sweep-interval", "0"])
        .await;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    let post = |p: Value| {
        let t = transaction("779", "779-1", "pro.yearly", now - day, 365, "Sandbox");
        let r = renewal("779", "pro.yearly", true, now - day, "Sandbox");
        let body = w.pki.notification_body(p, Some(&t), Some(&r));
        let client = client.clone();
        let url = format!("{}/appstore", serve.base);
        async move {
            let resp = client.post(url).body(body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    // GIVEN a yearly subscription bought yesterday, and Apple's refund request now
    post(notification(
        "SUBSCRIBED",
        Some("INITIAL_BUY"),
        "r-buy",
        now - day,
        "Sandbox",
        Some(1),
    ))
    .await;
    post(notification(
        "CONSUMPTION_REQUEST",
        None,
        "r-cr",
        now,
        "Sandbox",
        Some(1),
    ))
    .await;

    // THEN: STARTED, ACCESS_GRANTED, REFUND_REQUESTED, REFUND_CONSUMPTION_SENT
    let got = hook.wait_for_requests(4, Duration::from_secs(30)).await;
    let events: Vec<Value> = got.iter().map(|r| r.json().unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "SUBSCRIPTION_STARTED",
            "ACCESS_GRANTED",
            "REFUND_REQUESTED",
            "REFUND_CONSUMPTION_SENT"
        ]
    );
    let (request, outcome) = (&events[2], &events[3]);
    assert_eq!(request["details"]["suspicious_refund"], true, "{request}");
    assert_eq!(outcome["sequence"], 4);
    assert_eq!(outcome["details"]["cause_event_id"], request["id"]);
    assert_eq!(
        outcome["details"]["consumption"]["result"], "ACCEPTED",
        "{outcome}"
    );
    assert_eq!(outcome["entitlement"]["active"], true, "the stored state");
    // AND Apple got exactly the backend's answer for the request's transaction
    let sent = w.fake.consumptions();
    assert_eq!(sent.len(), 1, "refused: {:?}", w.fake.refused());
    assert_eq!(sent[0].0, "779-1");
    assert_eq!(
        sent[0].1,
        serde_json::from_str::<Value>(answer).unwrap()["consumption"]
    );
    assert_eq!(outcome["details"]["consumption"]["sent"], sent[0].1);

    // WHEN the backend answers the next request without consent
    hook.set_default(storehook_testkit::receiver::Reply::status(200).with_body(
        r#"{"consumption":{"customerConsented":false,"deliveryStatus":"DELIVERED","sampleContentProvided":false}}"#,
    ));
    post(notification(
        "CONSUMPTION_REQUEST",
        None,
        "r-cr-2",
        now + 1000,
        "Sandbox",
        Some(1),
    ))
    .await;
    let got = hook.wait_for_requests(6, Duration::from_secs(30)).await;
    let last = got[5].json().unwrap();
    // THEN it is reported INVALID and nothing more reaches Apple
    assert_eq!(last["type"], "REFUND_CONSUMPTION_SENT", "{last}");
    assert_eq!(last["details"]["consumption"]["result"], "INVALID");
    assert_eq!(w.fake.consumptions().len(), 1);
}
