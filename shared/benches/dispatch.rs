//! Per-event dispatcher overhead: `Dispatcher::process` with `MemoryState`,
//! real HMAC signing and a real HTTP POST to an axum receiver on 127.0.0.1.
//!
//! Run: `cargo bench -p storehook-shared --bench dispatch`
//!
//! Besides criterion's timings it prints, once, a latency distribution of
//! sequential `process` calls (p50/p99/max, events/s) next to the bare
//! signed POST, so the dispatcher's own overhead (state apply, JSON,
//! bookkeeping) is the difference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use storehook_shared::clock::SystemClock;
use storehook_shared::dispatch::{Dispatcher, Outcome};
use storehook_shared::event::{Event, EventId};
use storehook_shared::retry::RetrySchedule;
use storehook_shared::state::MemoryState;
use storehook_shared::webhook::{HttpWebhookSender, WebhookSecret, WebhookSecrets, WebhookSender};

const TEMPLATE: &str = r#"{
  "api_version": 1, "id": "evt_x", "type": "SUBSCRIPTION_RENEWED",
  "occurred_at": "2025-07-28T08:05:12.307Z", "received_at": "2025-07-28T08:05:13.000Z",
  "sequence": 0, "store": "APP_STORE", "environment": "PRODUCTION", "app_id": "com.example.app",
  "app_user_id": "6f1c2a9e-1b7d-4c1e-9a55-3f1f2b7c8d90",
  "product": { "id": "pro.monthly", "plan_id": null, "kind": "AUTO_RENEWABLE" },
  "subscription": { "id": "sub_x", "store_subscription_id": "2000000123456789", "status": "EXPIRED",
    "auto_renew": false, "period_type": "NORMAL", "started_at": "2025-01-28T08:05:12.307Z",
    "current_period_started_at": "2025-07-28T08:05:12.307Z", "expires_at": "2025-08-28T08:05:12.307Z",
    "grace_period_expires_at": null, "renewal_product_id": "pro.monthly",
    "price": { "amount_micros": 4990000, "currency": "EUR" }, "country": "FR" },
  "transaction": { "id": "2000000999", "original_id": "2000000123456789",
    "purchased_at": "2025-07-28T08:05:12.307Z", "price": { "amount_micros": 4990000, "currency": "EUR" } },
  "entitlement": { "active": false, "expires_at": null },
  "details": {},
  "store_notification": { "type": "DID_RENEW", "subtype": null, "id": "n" }
}"#;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh event (unique id) in one of 64 groups; no entitlement flip, so one POST each.
fn next_event(template: &Event) -> Event {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut e = template.clone();
    e.id = EventId::derive(&["bench", &n.to_string()]);
    if let Some(s) = e.subscription.as_mut() {
        s.id.0 = format!("sub_bench{:02}", n % 64);
    }
    e
}

struct Rig {
    rt: tokio::runtime::Runtime,
    dispatcher: Arc<Dispatcher>,
    sender: Arc<HttpWebhookSender>,
    template: Event,
}

fn rig() -> Rig {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let secrets = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
    let sender = Arc::new(
        HttpWebhookSender::new(
            &format!("http://{addr}/hook"),
            secrets,
            Duration::from_secs(10),
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let dispatcher = Arc::new(Dispatcher::new(
        Arc::new(MemoryState::new()),
        sender.clone(),
        RetrySchedule::default(),
        Arc::new(SystemClock),
    ));
    Rig {
        rt,
        dispatcher,
        sender,
        template: serde_json::from_str(TEMPLATE).unwrap(),
    }
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (p(0.50), p(0.99), v[v.len() - 1])
}

/// Prints the latency distribution of sequential calls (criterion reports means only).
fn report_distribution(r: &Rig) {
    const N: usize = 5_000;
    r.rt.block_on(async {
        // warm up the connection pool
        for _ in 0..200 {
            let _ = r.dispatcher.process(next_event(&r.template), 1).await;
        }
        let body = serde_json::to_vec(&r.template).unwrap();
        let mut bare = Vec::with_capacity(N);
        for i in 0..N {
            let id = EventId(format!("evt_bare{i}"));
            let t = Instant::now();
            let a = r.sender.post(&id, &body).await;
            bare.push(t.elapsed());
            assert!(a.is_success());
        }
        let mut full = Vec::with_capacity(N);
        let started = Instant::now();
        for _ in 0..N {
            let e = next_event(&r.template);
            let t = Instant::now();
            let o = r.dispatcher.process(e, 1).await;
            full.push(t.elapsed());
            assert_eq!(o, Outcome::Delivered);
        }
        let wall = started.elapsed();
        let overhead: Vec<Duration> = full
            .iter()
            .zip(&bare)
            .map(|(f, b)| f.saturating_sub(*b))
            .collect();
        let (b50, b99, bmax) = percentiles(bare);
        let (f50, f99, fmax) = percentiles(full);
        let (o50, o99, _) = percentiles(overhead);
        eprintln!(
            "\n[dispatch] sequential, {N} events, 1 signed POST each to 127.0.0.1:\n\
             [dispatch]   bare signed POST       p50 {b50:?}  p99 {b99:?}  max {bmax:?}\n\
             [dispatch]   Dispatcher::process    p50 {f50:?}  p99 {f99:?}  max {fmax:?}  => {:.0} events/s\n\
             [dispatch]   dispatcher overhead    p50 {o50:?}  p99 {o99:?} (process minus bare POST, paired by rank order)",
            N as f64 / wall.as_secs_f64()
        );

        // Concurrent: 32 groups in flight at once (as the Lambda does across groups).
        const C: usize = 32;
        const PER: usize = 400;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..C {
            let d = r.dispatcher.clone();
            let tpl = r.template.clone();
            tasks.spawn(async move {
                let mut lat = Vec::with_capacity(PER);
                for _ in 0..PER {
                    let e = next_event(&tpl);
                    let t = Instant::now();
                    assert_eq!(d.process(e, 1).await, Outcome::Delivered);
                    lat.push(t.elapsed());
                }
                lat
            });
        }
        let mut all = Vec::new();
        while let Some(l) = tasks.join_next().await {
            all.extend(l.unwrap());
        }
        let wall = started.elapsed();
        let (c50, c99, cmax) = percentiles(all);
        eprintln!(
            "[dispatch] concurrent, {C} tasks x {PER} events: {:.0} events/s, latency p50 {c50:?} p99 {c99:?} max {cmax:?}\n",
            (C * PER) as f64 / wall.as_secs_f64()
        );
    });
}

fn bench(c: &mut Criterion) {
    let r = rig();
    report_distribution(&r);

    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));
    let body = serde_json::to_vec(&r.template).unwrap();
    let id = EventId("evt_bench".into());
    g.bench_function("bare_signed_post", |b| {
        b.iter_custom(|iters| {
            r.rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    assert!(r.sender.post(&id, &body).await.is_success());
                }
                t.elapsed()
            })
        });
    });
    g.bench_function("process_event", |b| {
        b.iter_custom(|iters| {
            r.rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let e = next_event(&r.template);
                    assert_eq!(r.dispatcher.process(e, 1).await, Outcome::Delivered);
                }
                t.elapsed()
            })
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
