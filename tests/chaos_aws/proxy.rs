//! A fault-injecting HTTP proxy between the AWS SDK clients and the emulator
//! (moto), for the JSON protocols of SQS (`X-Amz-Target: AmazonSQS.<Op>`) and
//! DynamoDB (`DynamoDB_20120810.<Op>`).
//!
//! Every request is forwarded to moto; for the operations in [`FAULTABLE`]
//! the proxy decides per request (seeded RNG) whether to inject a [`Fault`]:
//! before the request reaches moto (connection dropped, 500, throttling,
//! hang then drop) or after moto applied it (connection dropped, 500, hang
//! then drop: the write took effect, the client does not know). Every kind
//! is injected for sure into the 2nd … 12th request of each operation
//! ([`FORCED`]), the others at random at the configured rate. Counters per
//! fault kind and operation.
//!
//! The moto workarounds (see the module docs of `main.rs` for why) live here:
//! - `ReceiveMessage` calls reach moto one at a time, and a long poll is cut
//!   to at most [`MAX_WAIT_S`] second;
//! - the **ordering guard**: the proxy tracks the messages of the guarded
//!   queue per group, in moto's append order (`SendMessageBatch` and the
//!   deletes are serialized with each other, and moto's FIFO deduplication
//!   is mirrored); a `ReceiveMessage` answer may only hand out, per group, the
//!   oldest live messages in order — others are made visible again at once
//!   and left out of the answer (counted);
//! - a `TransactWriteItems` reaches moto alone: no other DynamoDB call runs
//!   at the same time (other calls may run concurrently with each other).
//!
//! Forwarding runs in its own task, so a client that gives up (its timeout,
//! a killed dispatcher) never cuts the proxy's bookkeeping short.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Operations faults are injected into.
pub const FAULTABLE: &[&str] = &[
    "AmazonSQS.SendMessageBatch",
    "AmazonSQS.ReceiveMessage",
    "AmazonSQS.ChangeMessageVisibility",
    "AmazonSQS.DeleteMessage",
    "AmazonSQS.DeleteMessageBatch",
    "DynamoDB_20120810.TransactWriteItems",
    "DynamoDB_20120810.GetItem",
    "DynamoDB_20120810.UpdateItem",
];

/// The n-th request (1-based, counted per operation) that gets a fault for sure.
const FORCED: &[(u64, Fault)] = &[
    (2, Fault::DropAfter),
    (3, Fault::DropBefore),
    (5, Fault::Error500After),
    (6, Fault::Error500Before),
    (8, Fault::TimeoutAfter),
    (9, Fault::Throttling),
    (11, Fault::ProvisionedThroughputExceeded),
    (12, Fault::TimeoutBefore),
];

/// The longest long poll the proxy lets reach moto (seconds).
pub const MAX_WAIT_S: u64 = 1;

/// How long a "timeout" fault holds the connection before dropping it; longer
/// than the clients' attempt timeout.
pub const HOLD: Duration = Duration::from_millis(3_500);
/// SQS FIFO's (and moto's) deduplication interval.
const DEDUPLICATION_INTERVAL: Duration = Duration::from_secs(300);

/// What goes wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The connection is closed; moto never saw the request.
    DropBefore,
    /// 500 InternalFailure; moto never saw the request.
    Error500Before,
    /// 400 `ThrottlingException` (SQS and DynamoDB); moto never saw the request.
    Throttling,
    /// 400 `ProvisionedThroughputExceededException` (DynamoDB; SQS gets `ThrottlingException`).
    ProvisionedThroughputExceeded,
    /// No answer for [`HOLD`], then the connection is closed; moto never saw it.
    TimeoutBefore,
    /// moto applied it, then the connection is closed.
    DropAfter,
    /// moto applied it, then 500.
    Error500After,
    /// moto applied it, then no answer for [`HOLD`] and the connection is closed.
    TimeoutAfter,
}

impl Fault {
    /// All kinds, with their relative weights.
    const WEIGHTED: &[(Fault, u32)] = &[
        (Fault::DropBefore, 3),
        (Fault::Error500Before, 3),
        (Fault::Throttling, 2),
        (Fault::ProvisionedThroughputExceeded, 2),
        (Fault::TimeoutBefore, 1),
        (Fault::DropAfter, 4),
        (Fault::Error500After, 4),
        (Fault::TimeoutAfter, 1),
    ];

    /// A snake_case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DropBefore => "drop_before",
            Fault::Error500Before => "500_before",
            Fault::Throttling => "throttling",
            Fault::ProvisionedThroughputExceeded => "provisioned_throughput_exceeded",
            Fault::TimeoutBefore => "timeout_before",
            Fault::DropAfter => "drop_after_write",
            Fault::Error500After => "500_after_write",
            Fault::TimeoutAfter => "timeout_after_write",
        }
    }

    fn after(self) -> bool {
        matches!(
            self,
            Fault::DropAfter | Fault::Error500After | Fault::TimeoutAfter
        )
    }
}

/// What the ordering guard did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GuardStats {
    /// Answers whose messages of one group moto handed out in the wrong order (put in order).
    pub reordered: u64,
    /// Messages left out of an answer and made visible again (a group's older message was
    /// still live, or the message was not tracked yet).
    pub released: u64,
    /// Sends moto dropped as FIFO duplicates (mirrored).
    pub deduplicated: u64,
    /// Messages handed out again (after a visibility timeout, a retry delay or a release).
    pub redelivered: u64,
    /// `SendMessageBatch`/`DeleteMessage(Batch)` requests whose answer from moto the proxy
    /// lost (connection error): resent until answered, so the guard knows what moto holds.
    pub resent: u64,
    /// Pending messages (appended by a request whose answer was lost) whose id the guard
    /// learned when they were handed out.
    pub learned: u64,
    /// Messages handed out before the guard knew them (released; placed once their send's
    /// answer was recorded).
    pub unknown: u64,
}

#[derive(Debug, Default)]
struct Tracker {
    queue_url: Option<String>,
    /// group → live messages (moto's append order): message id — `None` while
    /// pending (moto appended it but its id was lost with the answer, see
    /// [`Tracker::sent_unknown`]) —, dedup id, and when it was sent.
    live: HashMap<String, Vec<(Option<String>, String, std::time::Instant)>>,
    /// receipt handle → message id.
    handles: HashMap<String, String>,
    /// Messages handed out before the guard knew them: id → (group, first seen).
    unknown: HashMap<String, (String, std::time::Instant)>,
    stats: GuardStats,
    errors: Vec<String>,
}

impl Tracker {
    fn guarded(&self, body: &Value) -> bool {
        self.queue_url.is_some() && body["QueueUrl"].as_str() == self.queue_url.as_deref()
    }

    fn sent(&mut self, request: &Value, response: &Value) {
        self.sent_within(request, response, DEDUPLICATION_INTERVAL, false);
    }

    /// A `SendMessageBatch` whose first answer was lost (moto may or may not have
    /// appended it) and whose resend was answered: its entries are in moto now,
    /// but the ids of those the lost attempt appended are unknown (the resend's
    /// answer carries fresh ids for deduplicated entries), so every entry is
    /// tracked as pending, in order, and learns its id from its deduplication id
    /// when a `ReceiveMessage` hands it out.
    fn sent_unknown(&mut self, request: &Value, response: &Value) {
        self.sent_within(request, response, DEDUPLICATION_INTERVAL, true);
    }

    /// [`Tracker::sent`] with moto's deduplication interval as a parameter (tests).
    fn sent_within(
        &mut self,
        request: &Value,
        response: &Value,
        interval: Duration,
        unknown: bool,
    ) {
        let ok: std::collections::HashSet<&str> = response["Successful"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["Id"].as_str())
            .collect();
        let ids: HashMap<&str, &str> = response["Successful"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["Id"].as_str()?, e["MessageId"].as_str()?)))
            .collect();
        for e in request["Entries"].as_array().into_iter().flatten() {
            let Some(id) = e["Id"].as_str() else { continue };
            if !ok.contains(id) {
                continue;
            }
            let group = e["MessageGroupId"].as_str().unwrap_or_default().to_owned();
            let dedup = e["MessageDeduplicationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let live = self.live.entry(group).or_default();
            // moto drops a FIFO duplicate of a message still in the queue, but
            // only within the 5-minute deduplication interval of that message's
            // send (moto's `add_message`); a later one is appended. Mirroring
            // only the first half left a message appended after 5 minutes
            // untracked, and the guard held it back for ever (a full-size run).
            if live
                .iter()
                .any(|(_, d, at)| *d == dedup && at.elapsed() < interval)
            {
                self.stats.deduplicated += 1;
                continue;
            }
            let message_id = match unknown {
                true => None,
                false => ids.get(id).map(|m| (*m).to_owned()),
            };
            if let Some(m) = &message_id {
                self.unknown.remove(m);
            }
            live.push((message_id, dedup, std::time::Instant::now()));
        }
    }

    fn deleted(&mut self, receipt_handle: &str) {
        let Some(id) = self.handles.get(receipt_handle) else {
            return;
        };
        for live in self.live.values_mut() {
            live.retain(|(m, _, _)| m.as_deref() != Some(id.as_str()));
        }
    }

    /// A handed-out message the guard does not know by id: a pending entry of its
    /// group with its deduplication id learns the id; otherwise the guard cannot
    /// place it yet (see below).
    fn learn(&mut self, group: &str, id: &str, dedup: Option<&str>) {
        let live = self.live.entry(group.to_owned()).or_default();
        if live.iter().any(|(m, _, _)| m.as_deref() == Some(id)) {
            return;
        }
        if let Some(entry) = live
            .iter_mut()
            .find(|(m, d, _)| m.is_none() && Some(d.as_str()) == dedup)
        {
            entry.0 = Some(id.to_owned());
            self.stats.learned += 1;
            return;
        }
        // Not known (yet): a ReceiveMessage can hand out a message moto just
        // appended before the proxy has read that SendMessageBatch's answer
        // (receives are not serialized with sends). It is released now and
        // placed once the send's answer is recorded; one that stays unknown is
        // in the stall report.
        self.stats.unknown += 1;
        self.unknown
            .entry(id.to_owned())
            .or_insert_with(|| (group.to_owned(), std::time::Instant::now()));
    }

    /// The groups that still have live messages, with their first few (for a stall report).
    fn report(&self) -> String {
        let mut out = Vec::new();
        for (g, live) in &self.live {
            if live.is_empty() {
                continue;
            }
            let head: Vec<String> = live
                .iter()
                .take(3)
                .map(|(m, d, at)| {
                    format!(
                        "{}/{d}/{}s",
                        m.as_deref().unwrap_or("pending"),
                        at.elapsed().as_secs()
                    )
                })
                .collect();
            out.push(format!("{g}: {} live, first {head:?}", live.len()));
        }
        out.sort();
        for (id, (g, at)) in &self.unknown {
            out.push(format!(
                "unknown {id} of {g} since {}s",
                at.elapsed().as_secs()
            ));
        }
        out.join("; ")
    }

    /// Filters one `ReceiveMessage` answer; returns the receipt handles to release.
    fn received(&mut self, response: &mut Value) -> Vec<String> {
        let Some(messages) = response["Messages"].as_array().cloned() else {
            return Vec::new();
        };
        let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
        for m in messages {
            let group = m["Attributes"]["MessageGroupId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let (Some(rh), Some(id)) = (m["ReceiptHandle"].as_str(), m["MessageId"].as_str()) {
                if self.handles.values().any(|seen| seen == id) {
                    self.stats.redelivered += 1;
                }
                self.handles.insert(rh.to_owned(), id.to_owned());
                self.learn(
                    &group,
                    id,
                    m["Attributes"]["MessageDeduplicationId"].as_str(),
                );
            }
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, v)) => v.push(m),
                None => groups.push((group, vec![m])),
            }
        }
        let mut kept = Vec::new();
        let mut release = Vec::new();
        for (group, mut ms) in groups {
            let live = self.live.get(&group).cloned().unwrap_or_default();
            let pos = |m: &Value| {
                let id = m["MessageId"].as_str().unwrap_or_default();
                live.iter()
                    .position(|(l, _, _)| l.as_deref() == Some(id))
                    .unwrap_or(usize::MAX)
            };
            let before: Vec<usize> = ms.iter().map(pos).collect();
            ms.sort_by_key(pos);
            let after: Vec<usize> = ms.iter().map(pos).collect();
            let n = after
                .iter()
                .enumerate()
                .take_while(|(i, p)| i == *p)
                .count();
            if before[..] != after[..] && n > 1 {
                self.stats.reordered += 1;
            }
            for (i, m) in ms.into_iter().enumerate() {
                if i < n {
                    kept.push(m);
                } else {
                    self.stats.released += 1;
                    release.push(m["ReceiptHandle"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        response["Messages"] = Value::Array(kept);
        release
    }
}

#[derive(Debug)]
struct Inner {
    upstream: String,
    http: reqwest::Client,
    rng: Mutex<fastrand::Rng>,
    rate: Mutex<f64>,
    enabled: AtomicBool,
    faults: Mutex<BTreeMap<(Fault, String), u64>>,
    requests: Mutex<BTreeMap<String, u64>>,
    upstream_ms: Mutex<BTreeMap<String, u64>>,
    moto_ms: Mutex<BTreeMap<String, u64>>,
    receive_lock: tokio::sync::Mutex<()>,
    order_lock: tokio::sync::Mutex<()>,
    ddb_lock: tokio::sync::RwLock<()>,
    tracker: Mutex<Tracker>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The connection is dropped instead of answered.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault: connection dropped")
    }
}

impl std::error::Error for Dropped {}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

struct Upstream {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Inner {
    fn decide(&self, op: &str, nth: u64) -> Option<Fault> {
        if !self.enabled.load(Ordering::SeqCst) || !FAULTABLE.contains(&op) {
            return None;
        }
        // Every kind of fault, for sure, on every operation that is called often enough;
        // the rest at random.
        if let Some((_, f)) = FORCED.iter().find(|(n, _)| *n == nth) {
            return Some(*f);
        }
        let rate = *lock(&self.rate);
        let mut rng = lock(&self.rng);
        if rng.f64() >= rate {
            return None;
        }
        let total: u32 = Fault::WEIGHTED.iter().map(|(_, w)| w).sum();
        let mut pick = rng.u32(0..total);
        for (f, w) in Fault::WEIGHTED {
            if pick < *w {
                return Some(*f);
            }
            pick -= w;
        }
        None
    }

    async fn post(&self, headers: &http::HeaderMap, body: Bytes) -> Result<Upstream, String> {
        let mut h = headers.clone();
        for k in ["host", "content-length", "connection", "transfer-encoding"] {
            h.remove(k);
        }
        let t0 = std::time::Instant::now();
        let op = h
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let resp = self
            .http
            .post(format!("{}/", self.upstream))
            .headers(h)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{op}: {e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| format!("{op}: {e:?}"))?;
        *lock(&self.moto_ms).entry(op).or_default() +=
            u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(Upstream {
            status,
            headers,
            body,
        })
    }

    /// Forwards one request to moto with the workarounds; `None` when moto did not answer.
    async fn forward(
        self: Arc<Self>,
        op: String,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> Option<Upstream> {
        let mut request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if op.starts_with("DynamoDB_20120810.") {
            // A transaction reaches moto alone; other calls only wait for transactions.
            if op == "DynamoDB_20120810.TransactWriteItems" {
                let _alone = self.ddb_lock.write().await;
                return self.post(&headers, body).await.ok();
            }
            let _shared = self.ddb_lock.read().await;
            return self.post(&headers, body).await.ok();
        }
        match op.as_str() {
            "AmazonSQS.ReceiveMessage" => {
                let _one = self.receive_lock.lock().await;
                let cap = request["WaitTimeSeconds"]
                    .as_u64()
                    .map(|w| w.min(MAX_WAIT_S));
                if let Some(w) = cap {
                    request["WaitTimeSeconds"] = json!(w);
                }
                let body = Bytes::from(serde_json::to_vec(&request).unwrap());
                let mut up = self.post(&headers, body).await.ok()?;
                let guarded = lock(&self.tracker).guarded(&request);
                if up.status == 200 && guarded {
                    let mut v: Value = serde_json::from_slice(&up.body).unwrap_or(Value::Null);
                    let release = lock(&self.tracker).received(&mut v);
                    for rh in release {
                        self.release(&headers, &request, &rh).await;
                    }
                    up.body = Bytes::from(serde_json::to_vec(&v).unwrap());
                }
                Some(up)
            }
            "AmazonSQS.SendMessageBatch"
            | "AmazonSQS.DeleteMessage"
            | "AmazonSQS.DeleteMessageBatch" => {
                let _one = self.order_lock.lock().await;
                // The guard must know what moto holds: when moto's answer is lost (a
                // connection error; moto may have applied the request), the same request
                // is resent until answered — moto deduplicates a resent message and a
                // resent delete finds the message gone — and the client gets that answer.
                let mut lost = false;
                let mut attempt = 0;
                let up = loop {
                    match self.post(&headers, body.clone()).await {
                        Ok(up) => break up,
                        Err(e) if attempt < 20 => {
                            lost = true;
                            attempt += 1;
                            eprintln!("chaos proxy: moto's answer lost ({e}); resending");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => {
                            lock(&self.tracker)
                                .errors
                                .push(format!("moto never answered a resend: {e}"));
                            return None;
                        }
                    }
                };
                let mut t = lock(&self.tracker);
                if lost {
                    t.stats.resent += 1;
                }
                let v: Value = serde_json::from_slice(&up.body).unwrap_or(Value::Null);
                // A delete whose message is gone already (deleted by the lost attempt or
                // by another consumer) counts as deleted.
                let gone = String::from_utf8_lossy(&up.body).contains("ReceiptHandleIsInvalid");
                if t.guarded(&request) {
                    match op.as_str() {
                        "AmazonSQS.SendMessageBatch" if up.status == 200 && lost => {
                            t.sent_unknown(&request, &v);
                        }
                        "AmazonSQS.SendMessageBatch" if up.status == 200 => t.sent(&request, &v),
                        "AmazonSQS.DeleteMessage" if up.status == 200 || gone => {
                            t.deleted(request["ReceiptHandle"].as_str().unwrap_or_default());
                        }
                        "AmazonSQS.DeleteMessageBatch" if up.status == 200 => {
                            let ok: Vec<&str> = v["Successful"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|e| e["Id"].as_str())
                                .chain(
                                    v["Failed"]
                                        .as_array()
                                        .into_iter()
                                        .flatten()
                                        .filter(|e| {
                                            e["Code"].as_str().is_some_and(|c| {
                                                c.contains("ReceiptHandleIsInvalid")
                                            })
                                        })
                                        .filter_map(|e| e["Id"].as_str()),
                                )
                                .collect();
                            for e in request["Entries"].as_array().into_iter().flatten() {
                                if e["Id"].as_str().is_some_and(|id| ok.contains(&id)) {
                                    t.deleted(e["ReceiptHandle"].as_str().unwrap_or_default());
                                }
                            }
                        }
                        _ => {}
                    }
                }
                drop(t);
                Some(up)
            }
            _ => self.post(&headers, body).await.ok(),
        }
    }

    /// Makes a message visible again at once (directly at moto).
    async fn release(&self, headers: &http::HeaderMap, request: &Value, receipt_handle: &str) {
        let mut h = headers.clone();
        h.insert(
            "x-amz-target",
            http::HeaderValue::from_static("AmazonSQS.ChangeMessageVisibility"),
        );
        let body = json!({
            "QueueUrl": request["QueueUrl"],
            "ReceiptHandle": receipt_handle,
            "VisibilityTimeout": 0,
        });
        let up = self
            .post(&h, Bytes::from(serde_json::to_vec(&body).unwrap()))
            .await;
        match up {
            Ok(u) if u.status == 200 => {}
            // Deleted meanwhile (with an older receipt handle of the same message): gone anyway.
            Ok(u) if String::from_utf8_lossy(&u.body).contains("ReceiptHandleIsInvalid") => {}
            other => lock(&self.tracker).errors.push(format!(
                "the ordering guard could not release a message: {:?}",
                other.map(|u| (u.status, u.body))
            )),
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Answer {
        let headers = req.headers().clone();
        let op = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(Dropped),
        };
        let nth = {
            let mut r = lock(&self.requests);
            let n = r.entry(op.clone()).or_default();
            *n += 1;
            *n
        };
        let t0 = std::time::Instant::now();
        let fault = self.decide(&op, nth);
        if let Some(f) = fault {
            *lock(&self.faults).entry((f, op.clone())).or_default() += 1;
        }
        let ddb = op.starts_with("DynamoDB_20120810.");
        match fault {
            Some(Fault::DropBefore) => return Err(Dropped),
            Some(Fault::TimeoutBefore) => {
                tokio::time::sleep(HOLD).await;
                return Err(Dropped);
            }
            Some(Fault::Error500Before) => return Ok(error(500, "InternalFailure", ddb)),
            Some(Fault::Throttling) => return Ok(error(400, "ThrottlingException", ddb)),
            Some(Fault::ProvisionedThroughputExceeded) => {
                let code = if ddb {
                    "ProvisionedThroughputExceededException"
                } else {
                    "ThrottlingException"
                };
                return Ok(error(400, code, ddb));
            }
            _ => {}
        }
        // Forwarded in a task of its own: a client giving up does not cut it short.
        let up = tokio::spawn(self.clone().forward(op.clone(), headers, body))
            .await
            .ok()
            .flatten();
        *lock(&self.upstream_ms).entry(op.clone()).or_default() +=
            u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        let Some(up) = up else {
            return Err(Dropped);
        };
        match fault {
            Some(f) if f.after() => match f {
                Fault::Error500After => Ok(error(500, "InternalFailure", ddb)),
                Fault::TimeoutAfter => {
                    tokio::time::sleep(HOLD).await;
                    Err(Dropped)
                }
                _ => Err(Dropped),
            },
            _ => {
                let mut resp = Response::builder().status(up.status);
                for (k, v) in &up.headers {
                    if !matches!(
                        k.as_str(),
                        "content-length" | "transfer-encoding" | "connection"
                    ) {
                        resp = resp.header(k, v);
                    }
                }
                Ok(resp.body(Full::new(up.body)).unwrap())
            }
        }
    }
}

fn error(status: u16, code: &str, ddb: bool) -> Response<Full<Bytes>> {
    let ty = if ddb {
        format!("com.amazonaws.dynamodb.v20120810#{code}")
    } else {
        format!("com.amazonaws.sqs#{code}")
    };
    let body = json!({"__type": ty, "message": "injected by the chaos proxy"}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A proxy in front of `upstream` (moto), faults off, RNG seeded with `seed`.
    pub async fn start(upstream: &str, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            rate: Mutex::new(0.0),
            enabled: AtomicBool::new(false),
            faults: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(BTreeMap::new()),
            upstream_ms: Mutex::new(BTreeMap::new()),
            moto_ms: Mutex::new(BTreeMap::new()),
            receive_lock: tokio::sync::Mutex::new(()),
            order_lock: tokio::sync::Mutex::new(()),
            ddb_lock: tokio::sync::RwLock::new(()),
            tracker: Mutex::new(Tracker::default()),
        });
        let i = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let i = i.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| i.clone().handle(req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { url, inner, task }
    }

    /// Injects a fault into this share of the faultable requests (0 = off).
    pub fn set_fault_rate(&self, rate: f64) {
        *lock(&self.inner.rate) = rate;
        self.inner.enabled.store(rate > 0.0, Ordering::SeqCst);
    }

    /// Applies the ordering guard to the queue `queue_url` (its messages must all be sent
    /// through the proxy).
    pub fn guard_queue(&self, queue_url: &str) {
        lock(&self.inner.tracker).queue_url = Some(queue_url.to_owned());
    }

    /// Faults injected so far: (kind, operation) → count.
    pub fn faults(&self) -> BTreeMap<(Fault, String), u64> {
        lock(&self.inner.faults).clone()
    }

    /// Faults injected so far per kind.
    pub fn faults_by_kind(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for ((f, _), n) in self.faults() {
            *out.entry(f.name()).or_default() += n;
        }
        out
    }

    /// Requests seen so far per operation.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.requests).clone()
    }

    /// Time spent forwarding (waiting for a turn + moto), per operation, in ms.
    pub fn upstream_ms(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.upstream_ms).clone()
    }

    /// Time moto took to answer, per operation, in ms.
    pub fn moto_ms(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.moto_ms).clone()
    }

    /// What the ordering guard did so far.
    pub fn guard_stats(&self) -> GuardStats {
        lock(&self.inner.tracker).stats.clone()
    }

    /// What went wrong inside the proxy (must stay empty).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.inner.tracker).errors.clone()
    }

    /// The guard's groups with live messages (a stall report).
    pub fn guard_report(&self) -> String {
        lock(&self.inner.tracker).report()
    }

    /// Messages of the guarded queue the guard still counts as live, per group.
    pub fn live_messages(&self) -> usize {
        lock(&self.inner.tracker).live.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(entries: &[(&str, &str)]) -> (Value, Value) {
        let request = json!({
            "QueueUrl": "q",
            "Entries": entries.iter().enumerate().map(|(i, (_, dedup))| json!({
                "Id": i.to_string(), "MessageGroupId": "g", "MessageDeduplicationId": dedup,
            })).collect::<Vec<_>>(),
        });
        let response = json!({
            "Successful": entries.iter().enumerate().map(|(i, (message_id, _))| json!({
                "Id": i.to_string(), "MessageId": message_id,
            })).collect::<Vec<_>>(),
        });
        (request, response)
    }

    /// The mirror of moto's FIFO deduplication: a resend of a queued message is
    /// dropped inside the interval and appended after it (as moto does), so the
    /// guard tracks the appended copy instead of holding it back for ever.
    #[test]
    fn the_guard_mirrors_deduplication_only_within_the_interval() {
        let interval = Duration::from_millis(200);
        let mut t = Tracker::default();
        let (rq, rs) = send(&[("m1", "d1")]);
        t.sent_within(&rq, &rs, interval, false);
        let (rq, rs) = send(&[("m2", "d1")]);
        t.sent_within(&rq, &rs, interval, false);
        assert_eq!(t.stats.deduplicated, 1);
        assert_eq!(
            t.live["g"].len(),
            1,
            "a resend inside the interval is dropped"
        );

        std::thread::sleep(interval + Duration::from_millis(50));
        let (rq, rs) = send(&[("m3", "d1")]);
        t.sent_within(&rq, &rs, interval, false);
        assert_eq!(t.stats.deduplicated, 1);
        let ids: Vec<&str> = t.live["g"]
            .iter()
            .map(|(m, _, _)| m.as_deref().unwrap_or("pending"))
            .collect();
        assert_eq!(ids, ["m1", "m3"], "a resend after the interval is appended");
    }

    /// A batch whose answer was lost is tracked as pending, in order: a later
    /// message of the group stays behind it, and the pending entry learns its id
    /// from its deduplication id when moto hands it out.
    #[test]
    fn a_lost_send_is_tracked_as_pending_and_learns_its_id() {
        let mut t = Tracker::default();
        let (rq, rs) = send(&[("fresh-id-from-the-resend", "d1")]);
        t.sent_unknown(&rq, &rs);
        let (rq, rs) = send(&[("m2", "d2")]);
        t.sent(&rq, &rs);
        let received = |id: &str, dedup: &str| {
            json!({"Messages": [{
                "MessageId": id, "ReceiptHandle": format!("rh-{id}"),
                "Attributes": {"MessageGroupId": "g", "MessageDeduplicationId": dedup},
            }]})
        };
        let mut answer = received("m2", "d2");
        assert_eq!(
            t.received(&mut answer),
            ["rh-m2"],
            "held behind the pending one"
        );
        let mut answer = received("m1", "d1");
        assert!(
            t.received(&mut answer).is_empty(),
            "the pending one goes first"
        );
        assert_eq!(answer["Messages"][0]["MessageId"], "m1");
        assert_eq!(t.stats.learned, 1);
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        t.deleted("rh-m1");
        let mut answer = received("m2", "d2");
        assert!(t.received(&mut answer).is_empty(), "then the next");

        // A message the guard does not know yet is released and reported, then
        // placed once its send's answer is recorded.
        let mut answer = received("m9", "d9");
        assert_eq!(t.received(&mut answer), ["rh-m9"]);
        assert_eq!(t.stats.unknown, 1);
        assert!(t.report().contains("unknown m9"), "{}", t.report());
        t.deleted("rh-m2");
        let (rq, rs) = send(&[("m9", "d9")]);
        t.sent(&rq, &rs);
        assert!(!t.report().contains("unknown"), "{}", t.report());
        let mut answer = received("m9", "d9");
        assert!(t.received(&mut answer).is_empty());
        assert!(t.errors.is_empty(), "{:?}", t.errors);
    }
}
