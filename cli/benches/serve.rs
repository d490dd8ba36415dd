//! `storehook serve` end to end, in-process but over real loopback HTTP:
//! signed App Store notifications are POSTed to `/appstore` (verified,
//! translated, written to the durable embedded queue), the dispatcher workers
//! apply them to the redb state and deliver them, signed, to a loopback
//! webhook receiver.
//!
//! Three measurements:
//! - a burst (printed): N notifications over many subscriptions from 32
//!   concurrent clients, each sending its next one as soon as it is answered;
//!   throughput (notifications accepted and delivered per second), p50/p99 of
//!   the store-facing answer and of POST → webhook delivery, CPU used;
//! - the same N offered at a steady 2,000/s (open loop: latencies count from
//!   when each notification was due), which shows whether delivery keeps up;
//! - criterion `serve/post_and_deliver_one`: one notification at a time, POST →
//!   delivered at the webhook.
//!
//! cargo bench -p storehook-cli --bench serve
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storehook_cli::admin::AdminToken;
use storehook_cli::listener::{self, Limits};
use storehook_cli::serve::{Admin, StorageHealth, router};
use storehook_shared::clock::{Clock, SystemClock};
use storehook_shared::dispatch::Dispatcher;
use storehook_shared::dispatch::worker::Consumer;
use storehook_shared::ingest::{AppStoreEndpoint, StoreEndpoint};
use storehook_shared::queue::redb::RedbQueue;
use storehook_shared::retry::RetrySchedule;
use storehook_shared::state::{RedbState, StateStore};
use storehook_shared::stores::appstore::{AppStore, AppStoreConfig};
use storehook_shared::webhook::{HttpWebhookSender, WebhookSecret, WebhookSecrets};
use storehook_testkit::appstore::{TestPki, payloads::*};

/// The allocator of the `storehook` binary (cli/src/main.rs), so the bench
/// measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver(arrivals: Arrivals) -> String {
    async fn hook(State(a): State<Arrivals>, headers: http::HeaderMap) -> http::StatusCode {
        if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
            a.lock().unwrap().insert(id.to_owned(), Instant::now());
        }
        http::StatusCode::NO_CONTENT
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(arrivals);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

struct Server {
    url: String,
    arrivals: Arrivals,
    _dir: tempfile::TempDir,
}

async fn start(pki: &TestPki) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let arrivals: Arrivals = Arc::default();
    let hook = receiver(arrivals.clone()).await;
    let secrets = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
    let sender = Arc::new(
        HttpWebhookSender::new(&hook, secrets, Duration::from_secs(10), clock.clone()).unwrap(),
    );
    let queue = RedbQueue::open(dir.path()).unwrap();
    let state: Arc<dyn StateStore> = Arc::new(RedbState::open(dir.path()).unwrap());
    let dispatcher = Arc::new(Dispatcher::new(
        state,
        sender,
        RetrySchedule::default(),
        clock.clone(),
    ));
    let workers: usize = std::env::var("SERVE_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32); // `storehook serve --workers` default
    Consumer::Redb {
        queue: queue.clone(),
        workers,
    }
    .spawn(dispatcher, clock.clone());
    let app = AppStore::new(app_config(pki)).unwrap();
    let endpoints: Vec<Arc<dyn StoreEndpoint>> = vec![Arc::new(AppStoreEndpoint(app))];
    let admin = Admin {
        queue: queue.clone(),
        token: AdminToken::generate().unwrap(),
        console: None,
    };
    let routes = router(
        endpoints,
        Vec::new(),
        Arc::new(queue),
        clock,
        Some(admin),
        StorageHealth::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/appstore", listener.local_addr().unwrap());
    // the listener `storehook serve` runs, with its default limits
    tokio::spawn(listener::serve(
        listener,
        routes,
        Limits::default(),
        std::future::pending(),
    ));
    Server {
        url,
        arrivals,
        _dir: dir,
    }
}

fn app_config(pki: &TestPki) -> AppStoreConfig {
    AppStoreConfig {
        bundle_id: Some(BUNDLE_ID.into()),
        app_apple_id: Some(APP_APPLE_ID),
        extra_roots: vec![pki.root_der.clone()],
        ..AppStoreConfig::default()
    }
}

/// A DID_RENEW notification (sequence `n` of subscription `sub`) and its event id.
fn notification(pki: &TestPki, sub: usize, n: usize) -> (Vec<u8>, String) {
    let uuid = format!("bench-{sub}-{n}-{}", fastrand_u64());
    let signed = T0 + (n as i64 + 1) * DAY;
    let original = format!("{}", 700_000 + sub);
    let p = notification_payload(&uuid, signed);
    let t = transaction(
        &original,
        &format!("{original}-{n}"),
        "pro.monthly",
        signed,
        30,
        "Production",
    );
    let r = renewal(&original, "pro.monthly", true, signed, "Production");
    let id = storehook_shared::event::EventId::derive(&["APP_STORE", &uuid]).0;
    (pki.notification_body(p, Some(&t), Some(&r)), id)
}

fn notification_payload(uuid: &str, signed: i64) -> serde_json::Value {
    storehook_testkit::appstore::payloads::notification(
        "DID_RENEW",
        None,
        uuid,
        signed,
        "Production",
        Some(1),
    )
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

/// CPU seconds (user + system) this process has used so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn wait_delivered(arrivals: &Arrivals, ids: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let done = {
            // Count first: checking 4,000 ids every millisecond would make the
            // bench itself a noticeable CPU load on the machine it measures.
            let a = arrivals.lock().unwrap();
            a.len() >= ids.len() && ids.iter().all(|id| a.contains_key(id))
        };
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all events were delivered in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `rate`: None = closed loop (each client sends its next notification when
/// the previous one is answered: the burst capacity); Some(r) = open loop,
/// notification i is due at start + i/r and its latencies count from when it
/// was due (no coordinated omission: a server that falls behind shows it).
async fn load_run(
    pki: &TestPki,
    subscriptions: usize,
    per_sub: usize,
    clients: usize,
    rate: Option<f64>,
) {
    let server = start(pki).await;
    let mut work = Vec::new();
    for n in 0..per_sub {
        for s in 0..subscriptions {
            work.push(notification(pki, s, n));
        }
    }
    let total = work.len();
    // Same-run floor: verify + translate alone, one core (the VM's speed varies between runs).
    let floor = {
        let app = AppStore::new(app_config(pki)).unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        let sample = &work[..200.min(total)];
        let t = Instant::now();
        for (body, _) in sample {
            assert!(!app.process(body, now).unwrap().is_empty());
        }
        t.elapsed() / sample.len() as u32
    };
    let work = Arc::new(Mutex::new(
        work.into_iter().enumerate().rev().collect::<Vec<_>>(),
    ));
    let posted: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (work, posted, client, url) = (
            work.clone(),
            posted.clone(),
            client.clone(),
            server.url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some((i, (body, id))) = work.lock().unwrap().pop() else {
                    break;
                };
                let t = match rate {
                    Some(r) => {
                        let due = start + Duration::from_secs_f64(i as f64 / r);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let resp = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                posted.lock().unwrap().push((id, t, t.elapsed()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let accepted_in = start.elapsed();
    let cpu_accepted = cpu_seconds() - cpu_start;
    let ids: Vec<String> = posted
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _, _)| id.clone())
        .collect();
    wait_delivered(&server.arrivals, &ids, Duration::from_secs(120)).await;
    let all_in = start.elapsed();
    let cpu_all = cpu_seconds() - cpu_start;
    let arrivals = server.arrivals.lock().unwrap().clone();
    let posted = posted.lock().unwrap().clone();
    let mut answer: Vec<Duration> = posted.iter().map(|(_, _, d)| *d).collect();
    let mut e2e: Vec<Duration> = posted
        .iter()
        .map(|(id, t, _)| arrivals[id].duration_since(*t))
        .collect();
    answer.sort();
    e2e.sort();
    let mode = rate.map_or_else(|| "burst".to_owned(), |r| format!("paced at {r:.0}/s"));
    println!(
        "serve load, {mode}: {total} notifications ({subscriptions} subscriptions x {per_sub}), {clients} clients: \
         accepted {:.0}/s, delivered {:.0}/s end to end; store answer p50 {:.2} ms p99 {:.2} ms; \
         POST→webhook p50 {:.2} ms p99 {:.2} ms; \
         CPU {:.0}% of one core while accepting, {:.0}% overall ({:.0} µs CPU per notification; \
         same-run floor: verify + translate alone {:.0} µs on one core)",
        total as f64 / accepted_in.as_secs_f64(),
        total as f64 / all_in.as_secs_f64(),
        pct(&answer, 0.5).as_secs_f64() * 1e3,
        pct(&answer, 0.99).as_secs_f64() * 1e3,
        pct(&e2e, 0.5).as_secs_f64() * 1e3,
        pct(&e2e, 0.99).as_secs_f64() * 1e3,
        cpu_accepted / accepted_in.as_secs_f64() * 100.0,
        cpu_all / all_in.as_secs_f64() * 100.0,
        cpu_all / total as f64 * 1e6,
        floor.as_secs_f64() * 1e6,
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pki = TestPki::new();
    let per_sub: usize = std::env::var("SERVE_BENCH_PER_SUB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    // The burst: how much the server takes when 32 clients send as fast as it answers.
    rt.block_on(load_run(&pki, 400, per_sub, 32, None));
    // The target load, offered at a steady 2,000/s: does delivery keep up?
    rt.block_on(load_run(&pki, 400, per_sub, 64, Some(2_000.0)));

    let server = rt.block_on(start(&pki));
    let client = reqwest::Client::new();
    let mut n = 0usize;
    c.bench_function("serve/post_and_deliver_one", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let (body, id) = notification(&pki, 0, n);
                total += rt.block_on(async {
                    let t = Instant::now();
                    let resp = client.post(&server.url).body(body).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    wait_delivered(
                        &server.arrivals,
                        std::slice::from_ref(&id),
                        Duration::from_secs(10),
                    )
                    .await;
                    t.elapsed()
                });
            }
            total
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(8));
    targets = bench
}
criterion_main!(benches);
