#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `storehook serve` under chaos (issue #10 §1), driving the real binary.
//!
//! Genuine App Store notifications (generated PKI, `--trust-root`), Huawei
//! notifications (a generated IAP key) and Google Play pushes (push token; the
//! state from a fake Play Developer API) of many subscriptions, each a full lifecycle (start, renewals, auto-renew off/on,
//! grace period, recovery, billing retry, expiry, resubscribe, refund), are
//! shuffled across and within subscriptions, 20 % posted twice, by 16
//! concurrent "stores" that retry every non-2xx answer later, as the stores
//! do. Meanwhile:
//! - the receiver verifies every signature, answers 503 to ~25 % of first
//!   attempts, has two full outages and answers some requests slowly;
//! - `storehook serve` is SIGKILLed at random moments and restarted on the
//!   same data dir;
//! - when the test runs as root (CI does), the data dir is a small tmpfs that
//!   is filled up mid-run and freed again: intake answers 5xx while it is full
//!   and serve heals by itself, without a restart.
//!
//! Then: 0 lost (every notification's event acknowledged by the receiver),
//! duplicates only after kills and counted (same webhook-id, same body),
//! per-subscription order (acknowledged `sequence` gap-free from 1, strictly
//! increasing), the last event of every subscription carries the state of its
//! newest notification, 0 bad signatures, 0 dead letters, every post
//! eventually answered 2xx.
//!
//! Size (defaults are the reduced CI run):
//! `CHAOS_SUBSCRIPTIONS` (100), `CHAOS_PER_SUBSCRIPTION` (20), `CHAOS_KILLS`
//! (2), `CHAOS_DISK_FULL` (1 = the tmpfs phase when root), `CHAOS_TMPFS_SIZE`
//! (256m). The full run:
//! `CHAOS_SUBSCRIPTIONS=500 CHAOS_KILLS=6 cargo test -p storehook-cli --test chaos -- --nocapture`

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storehook_shared::event::Event;
use storehook_shared::webhook::{DEFAULT_TOLERANCE, WebhookSecret, WebhookSecrets, verify};
use storehook_testkit::appstore::{TestPki, payloads::*};
use storehook_testkit::huawei::{HuaweiTestKey, SignAs, payloads as hw};
use storehook_testkit::playstore::{
    PlayTestEnv, TestKeys, id_token, payloads as play, push_claims,
};
use storehook_testkit::receiver::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_storehook");

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- the store side

/// One notification of a lifecycle: `(notificationType, subtype, status, auto_renew)`.
type Step = (&'static str, Option<&'static str>, i64, bool);

const LIFECYCLE: [Step; 12] = [
    ("SUBSCRIBED", Some("INITIAL_BUY"), 1, true),
    ("DID_RENEW", None, 1, true),
    (
        "DID_CHANGE_RENEWAL_STATUS",
        Some("AUTO_RENEW_DISABLED"),
        1,
        false,
    ),
    (
        "DID_CHANGE_RENEWAL_STATUS",
        Some("AUTO_RENEW_ENABLED"),
        1,
        true,
    ),
    ("DID_FAIL_TO_RENEW", Some("GRACE_PERIOD"), 4, true),
    ("DID_RENEW", Some("BILLING_RECOVERY"), 1, true),
    ("DID_FAIL_TO_RENEW", None, 3, true),
    ("EXPIRED", Some("BILLING_RETRY"), 2, false),
    ("SUBSCRIBED", Some("RESUBSCRIBE"), 1, true),
    ("DID_RENEW", None, 1, true),
    ("REFUND", None, 5, false),
    ("SUBSCRIBED", Some("RESUBSCRIBE"), 1, true),
];

struct Notification {
    /// A label unique per notification (not the store's id).
    label: String,
    /// The route it is posted to (`appstore`, `huawei`, `playstore?token=…`).
    route: String,
    body: Vec<u8>,
}

/// `per` App Store notifications of subscription `k`, one day apart, in store order.
fn apple_lifecycle(pki: &TestPki, k: usize, per: usize) -> Vec<Notification> {
    let original = format!("chaos-{k}");
    (0..per)
        .map(|i| {
            // After the scripted steps, the subscription keeps renewing.
            let (ntype, subtype, status, auto) =
                LIFECYCLE
                    .get(i)
                    .copied()
                    .unwrap_or(("DID_RENEW", None, 1, true));
            let signed = T0 + (i as i64) * DAY + (k as i64) * 1_000;
            let uuid = format!("chaos-{k}-{i}");
            let p = notification(ntype, subtype, &uuid, signed, "Production", Some(status));
            let mut t = transaction(
                &original,
                &format!("{original}-{i}"),
                "pro.monthly",
                signed,
                30,
                "Production",
            );
            if ntype == "REFUND" {
                t["revocationDate"] = serde_json::json!(signed);
                t["revocationReason"] = serde_json::json!(0);
            }
            let r = renewal(&original, "pro.monthly", auto, signed, "Production");
            Notification {
                label: uuid,
                route: "appstore".into(),
                body: pki.notification_body(p, Some(&t), Some(&r)),
            }
        })
        .collect()
}

/// Huawei notification types with a signed time of their own (an unsigned
/// `notifyTime` never orders, so types without one are ordered by arrival):
/// INITIAL_BUY, RENEWAL, RENEWAL_RECURRING, CANCEL (refund, with its signed
/// `cancellationDate`), INTERACTIVE_RENEWAL (resubscribe).
const HUAWEI_LIFECYCLE: [i64; 9] = [0, 7, 7, 2, 7, 1, 3, 7, 7];

/// `per` Huawei notifications of subscription `k`, signed with `key`.
fn huawei_lifecycle(key: &HuaweiTestKey, k: usize, per: usize) -> Vec<Notification> {
    let (sub, token) = (format!("hw-sub-{k}"), format!("hw-token-{k}"));
    (0..per)
        .map(|i| {
            let ntype = HUAWEI_LIFECYCLE.get(i).copied().unwrap_or(7);
            let time = hw::T0 + (i as i64) * hw::DAY + (k as i64) * 1_000;
            let mut r = hw::receipt("pro.monthly", time, time + 30 * hw::DAY);
            r["subscriptionId"] = serde_json::json!(sub);
            r["purchaseToken"] = serde_json::json!(token);
            r["orderId"] = serde_json::json!(format!("hw-order-{k}-{i}"));
            if ntype == 1 {
                r["cancelTime"] = serde_json::json!(time);
                r["subIsvalid"] = serde_json::json!(false);
            }
            let mut n = hw::status_update(ntype, Some(&r));
            n["subscriptionId"] = serde_json::json!(sub);
            n["purchaseToken"] = serde_json::json!(token);
            n["latestReceipt"] = serde_json::json!(token);
            if ntype == 1 {
                n["cancellationDate"] = serde_json::json!(time);
            }
            Notification {
                label: format!("hw-{k}-{i}"),
                route: "huawei".into(),
                body: key.v2_body(&n, SignAs::Pkcs1, time),
            }
        })
        .collect()
}

/// The Pub/Sub push token `storehook serve` is given (`PLAY_PUSH_TOKEN`).
const PLAY_PUSH_TOKEN: &str = "chaos-push-token-0123456789abcdef";

/// Google Play RTDN types of a lifecycle: PURCHASED, RENEWED, CANCELED,
/// RESTARTED, RENEWED, IN_GRACE_PERIOD, RECOVERED, ON_HOLD, RECOVERED.
const PLAY_LIFECYCLE: [i64; 9] = [4, 2, 3, 7, 2, 6, 1, 5, 1];

/// `per` Play pushes of subscription `k`. Play notifications carry no state:
/// serve reads it from the (fake) Play Developer API, which `google` answers
/// for this token.
fn play_lifecycle(google: &PlayTestEnv, k: usize, per: usize) -> Vec<Notification> {
    let token = format!("play-token-{k}");
    let state = play::Sub::active().order(&format!("GPA.{k}")).json();
    google.google.set_subscription(play::PACKAGE, &token, state);
    (0..per)
        .map(|i| {
            let ntype = PLAY_LIFECYCLE.get(i).copied().unwrap_or(2);
            let time = play::T0 + (i as i64) * play::DAY + (k as i64) * 1_000;
            let n = play::subscription_notification(ntype, &token, time);
            Notification {
                label: format!("play-{k}-{i}"),
                route: format!("playstore?token={PLAY_PUSH_TOKEN}"),
                body: play::push_body(&format!("msg-{k}-{i}"), &n, time),
            }
        })
        .collect()
}

// ---------------------------------------------------------------- the receiver

#[derive(Default)]
struct Receiver {
    secrets: Option<WebhookSecrets>,
    /// webhook-ids seen at least once (for "25 % of first attempts").
    attempted: HashSet<String>,
    /// Every acknowledged (2xx) delivery, in acknowledgement order.
    acked: Vec<(String, Event, Bytes)>,
    bad_signatures: u64,
    refused: u64,
}

#[derive(Clone)]
struct Rx {
    inner: Arc<Mutex<Receiver>>,
    outage: Arc<AtomicBool>,
}

impl Rx {
    fn lock(&self) -> std::sync::MutexGuard<'_, Receiver> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn receive(State(rx): State<Rx>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    {
        let mut r = rx.lock();
        let ok = verify(
            &headers,
            &body,
            r.secrets.as_ref().unwrap(),
            chrono::Utc::now(),
            DEFAULT_TOLERANCE,
        )
        .is_ok();
        if !ok {
            r.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
        let first = r.attempted.insert(id.clone());
        if rx.outage.load(Ordering::Relaxed) || (first && fastrand::u8(..100) < 25) {
            r.refused += 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    if fastrand::u8(..100) < 3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let event: Event = serde_json::from_slice(&body).unwrap();
    rx.lock().acked.push((id, event, body));
    StatusCode::OK
}

// ---------------------------------------------------------------- the server

struct Server {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
    root_pem: PathBuf,
    hook: String,
    secret: String,
    /// Store settings passed in the environment (Huawei).
    env: Vec<(String, String)>,
}

impl Server {
    fn spawn(&mut self) {
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data)
            .args([
                "--webhook-url",
                &self.hook,
                "--webhook-secret",
                &self.secret,
            ])
            .arg("--trust-root")
            .arg(&self.root_pem)
            .args(["--apple-bundle-id", BUNDLE_ID])
            .args(["--apple-app-apple-id", &APP_APPLE_ID.to_string()])
            // 40 steps of 250 ms: the schedule outlasts the outages and the full disk.
            .args(["--retry-schedule", &vec!["250ms"; 40].join(",")])
            // The lifecycles are signed in the past: the expiry sweeper would add its own
            // SUBSCRIPTION_EXPIRED to the groups it closes; this test counts only the
            // notifications' events (the sweeper has its own serve test).
            .args(["--sweep-interval", "0"])
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("STOREHOOK_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn admin(&self, client: &reqwest::Client, path: &str) -> Option<Value> {
        let token = std::fs::read_to_string(self.data.join("admin-token")).ok()?;
        let r = client
            .get(format!("{}{path}", self.base()))
            .bearer_auth(token.trim())
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        serde_json::from_str(&r.text().await.ok()?).ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tmpfs mounted on `dir` (root only); unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }

    /// Fills the file system with one file until it is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

// ---------------------------------------------------------------- the run

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_loses_nothing_and_keeps_order_under_kills_outages_and_a_full_disk() {
    let subs = env_num("CHAOS_SUBSCRIPTIONS", 100);
    let per = env_num("CHAOS_PER_SUBSCRIPTION", 20);
    let kills = env_num("CHAOS_KILLS", 2);
    let disk_full = env_num("CHAOS_DISK_FULL", 1) == 1;
    let started = Instant::now();

    let work = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let root_pem = work.path().join("root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let tmpfs = if disk_full {
        Tmpfs::mount(
            &data,
            &std::env::var("CHAOS_TMPFS_SIZE").unwrap_or_else(|_| "256m".into()),
        )
    } else {
        None
    };
    if disk_full && tmpfs.is_none() {
        eprintln!("chaos: not root (mount failed): the disk-full phase is skipped");
    }

    // The receiver.
    let secret = WebhookSecret::generate().unwrap();
    let rx = Rx {
        inner: Arc::new(Mutex::new(Receiver {
            secrets: Some(WebhookSecrets::parse(&secret).unwrap()),
            ..Receiver::default()
        })),
        outage: Arc::new(AtomicBool::new(false)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(rx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The notifications: every subscription's lifecycle, shuffled, 20 % twice.
    let mut posts: Vec<Arc<Notification>> = Vec::new();
    // A third of the subscriptions each: App Store, Huawei, Google Play.
    let huawei_key = HuaweiTestKey::generate();
    let google = PlayTestEnv::start().await;
    for k in 0..subs {
        let lifecycle = match k % 3 {
            0 => apple_lifecycle(&pki, k, per),
            1 => huawei_lifecycle(&huawei_key, k, per),
            _ => play_lifecycle(&google, k, per),
        };
        for n in lifecycle {
            let n = Arc::new(n);
            if fastrand::u8(..100) < 20 {
                posts.push(n.clone());
            }
            posts.push(n);
        }
    }
    fastrand::shuffle(&mut posts);
    let total_posts = posts.len();
    let notifications = posts
        .iter()
        .map(|n| n.label.as_str())
        .collect::<HashSet<_>>()
        .len();
    eprintln!(
        "chaos: {} notifications ({total_posts} posts) of {subs} subscriptions, {kills} kills, disk full: {}",
        notifications,
        tmpfs.is_some()
    );

    let server = Arc::new(tokio::sync::Mutex::new(Server {
        child: None,
        port: free_port(),
        data: data.clone(),
        root_pem,
        hook,
        secret,
        env: [
            ("HUAWEI_APP_IDS".to_owned(), hw::APP_ID.to_owned()),
            (
                "HUAWEI_PUBLIC_KEY".to_owned(),
                huawei_key.public_key_base64(),
            ),
            ("PLAY_PUSH_TOKEN".to_owned(), PLAY_PUSH_TOKEN.to_owned()),
        ]
        .into_iter()
        .chain(google.env_vars())
        .collect(),
    }));
    server.lock().await.spawn();
    let base = server.lock().await.base();

    // 16 "stores": post, and retry any non-2xx answer later.
    let queue = Arc::new(Mutex::new(posts));
    let answered = Arc::new(AtomicU64::new(0));
    let non_2xx = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (queue, answered, non_2xx, base) = (
            queue.clone(),
            answered.clone(),
            non_2xx.clone(),
            base.clone(),
        );
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            loop {
                let Some(n) = queue.lock().unwrap().pop() else {
                    return;
                };
                // A store gives up after days; the harness after 2 minutes.
                let give_up = Instant::now() + Duration::from_secs(120);
                loop {
                    assert!(Instant::now() < give_up, "{} never answered 2xx", n.route);
                    let mut req = http
                        .post(format!("{base}/{}", n.route))
                        .body(n.body.clone());
                    if n.route.starts_with("playstore") {
                        // Pub/Sub's OIDC token, minted per push like Google does.
                        let claims = push_claims(
                            play::AUDIENCE,
                            play::PUSH_ACCOUNT,
                            chrono::Utc::now().timestamp(),
                        );
                        req = req.bearer_auth(id_token(&TestKeys::shared().google, &claims));
                    }
                    let r = req.send().await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // A refusal (4xx) is never retried by a store: it is a harness bug.
                        Ok(r) if r.status().is_client_error() => panic!(
                            "{} answered {}: {}",
                            n.route,
                            r.status(),
                            r.text().await.unwrap_or_default()
                        ),
                        _ => {}
                    }
                    non_2xx.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(50..400))).await;
                }
            }
        }));
    }

    // Chaos: kills, receiver outages, the full disk, interleaved while the posts run.
    let chaos = {
        let (server, rx, answered) = (server.clone(), rx.clone(), answered.clone());
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            let mut unhealthy_seen = false;
            let mut healed_in: Option<Duration> = None;
            let mut plan: Vec<&str> = vec!["kill"; kills];
            plan.extend(["outage", "outage"]);
            if tmpfs.is_some() {
                plan.push("disk");
            }
            fastrand::shuffle(&mut plan);
            let step = total_posts as u64 / (plan.len() as u64 + 1);
            for (i, what) in plan.into_iter().enumerate() {
                // Spread the faults over the run: wait for the next share of posts.
                let target = step * (i as u64 + 1);
                while answered.load(Ordering::Relaxed) < target {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..300))).await;
                match what {
                    "kill" => {
                        let mut s = server.lock().await;
                        s.kill();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        s.spawn();
                    }
                    "outage" => {
                        rx.outage.store(true, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        rx.outage.store(false, Ordering::Relaxed);
                    }
                    _ => {
                        let fs = tmpfs.as_ref().unwrap();
                        let filler = fs.fill();
                        let base = server.lock().await.base();
                        // Full until serve has hit it (files grow as events
                        // are written, so it does soon) and 2 s more; 20 s at most.
                        let give_up = Instant::now() + Duration::from_secs(20);
                        let mut until = give_up;
                        while Instant::now() < until {
                            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                                && r.status() == 503
                                && !unhealthy_seen
                            {
                                unhealthy_seen = true;
                                until = until.min(Instant::now() + Duration::from_secs(2));
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        std::fs::remove_file(filler).unwrap();
                        // Heals by itself: /healthz is 200 again with no restart
                        // (the next kill comes only after this).
                        let freed = Instant::now();
                        loop {
                            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                                && r.status() == 200
                            {
                                break;
                            }
                            assert!(
                                freed.elapsed() < Duration::from_secs(30),
                                "serve did not heal within 30 s of the disk being freed"
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        healed_in = Some(freed.elapsed());
                    }
                }
            }
            (tmpfs, unhealthy_seen, healed_in)
        })
    };

    for c in clients {
        c.await.unwrap();
    }
    let (tmpfs, unhealthy_seen, healed_in) = chaos.await.unwrap();
    eprintln!(
        "chaos: every post answered 2xx after {:.1}s ({} non-2xx answers retried)",
        started.elapsed().as_secs_f64(),
        non_2xx.load(Ordering::Relaxed)
    );

    // Wait until every notification's event is acknowledged and the queue is empty.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // A notification's own event (not a derived ACCESS_* one), by event id.
        let delivered = rx
            .lock()
            .acked
            .iter()
            .filter(|(_, e, _)| e.details.cause_event_id.is_none())
            .map(|(_, e, _)| e.id.clone())
            .collect::<HashSet<_>>()
            .len();
        let depth = server
            .lock()
            .await
            .admin(&client, "/_storehook/queue")
            .await
            .map(|v| v["depth"].as_u64().unwrap_or(u64::MAX));
        if delivered >= notifications && depth == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {} of {} notifications delivered, queue depth {depth:?}",
            delivered,
            notifications
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead = server
        .lock()
        .await
        .admin(&client, "/_storehook/dead-letters")
        .await
        .unwrap();

    // ------------------------------------------------------------ the verdict
    let r = std::mem::take(&mut *rx.lock());
    assert_eq!(r.bad_signatures, 0, "bad signatures");
    assert_eq!(
        dead["dead_letters"].as_array().map(Vec::len),
        Some(0),
        "{dead}"
    );

    // Duplicates: the same webhook-id acknowledged again carries the same body.
    let mut first: HashMap<&str, &Bytes> = HashMap::new();
    let mut duplicates = 0;
    let mut groups: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for (id, e, body) in &r.acked {
        match first.get(id.as_str()) {
            Some(b) => {
                duplicates += 1;
                assert_eq!(*b, body, "webhook-id {id} re-sent with another body");
            }
            None => {
                first.insert(id, body);
                groups.entry(e.group_key()).or_default().push(e);
            }
        }
    }
    if kills == 0 && tmpfs.is_none() {
        assert_eq!(duplicates, 0, "duplicates without a kill");
    }

    // Order: per subscription, acknowledged sequences are 1, 2, 3, … in order.
    let mut violations = Vec::new();
    for (g, events) in &groups {
        let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        if seqs != want {
            violations.push(format!("{g}: {seqs:?}"));
        }
    }
    assert!(violations.is_empty(), "order violations: {violations:?}");
    assert_eq!(groups.len(), subs, "one group per subscription");

    // 0 lost: each subscription's notifications each delivered their own event.
    for (g, events) in &groups {
        let own = events
            .iter()
            .filter(|e| e.details.cause_event_id.is_none())
            .count();
        assert_eq!(own, per, "{g}: events of its {per} notifications");
    }

    // Newest state: the last event of each subscription carries the snapshot
    // its newest notification's own event carried (the newest has the latest
    // signed store time; every lifecycle step is a day apart).
    for (g, events) in &groups {
        let last = events.last().unwrap();
        let own = events
            .iter()
            .filter(|e| e.details.cause_event_id.is_none())
            .max_by_key(|e| e.occurred_at)
            .unwrap();
        assert_eq!(last.subscription, own.subscription, "{g}");
        assert_eq!(last.entitlement, own.entitlement, "{g}");
        assert_ne!(
            own.details.out_of_order,
            Some(true),
            "the newest is never out of order"
        );
    }
    eprintln!(
        "chaos: RESULT notifications={} posts={total_posts} subscriptions={subs} kills={kills} \
         disk_full={} unhealthy_seen={unhealthy_seen} healed_in={healed_in:?} receiver_503={} acked={} duplicates={duplicates} \
         lost=0 order_violations=0 dead_letters=0 bad_signatures=0 time={:.1}s",
        notifications,
        tmpfs.is_some(),
        r.refused,
        r.acked.len(),
        started.elapsed().as_secs_f64()
    );
    if tmpfs.is_some() {
        assert!(unhealthy_seen, "/healthz never reported the full disk");
    }
    drop(r);
    server.lock().await.kill();
    drop(tmpfs);
}
