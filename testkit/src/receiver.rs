//! A real HTTP webhook receiver on 127.0.0.1 whose answers can be scripted and
//! changed mid-test, recording every request it got.
//!
//! ```ignore
//! let rx = TestReceiver::start().await?;
//! rx.push(Reply::status(500));            // next request gets 500
//! rx.set_default(Reply::status(200));      // then 200 for everything
//! // … point a sender at rx.url() …
//! let reqs = rx.wait_for_requests(2, Duration::from_secs(5)).await;
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering (to provoke sender timeouts).
    pub delay: Duration,
    /// Response body.
    pub body: String,
}

impl Reply {
    /// Answer `status` at once with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            body: String::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the response body.
    pub fn with_body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }
}

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// HTTP method.
    pub method: String,
    /// Path (without query).
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// The status it was (or is being) answered with.
    pub answered: u16,
}

impl ReceivedRequest {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `webhook-id` header.
    pub fn webhook_id(&self) -> Option<&str> {
        self.header(storehook_shared::webhook::HEADER_ID)
    }

    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[derive(Debug)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<ReceivedRequest>>,
    keep: AtomicBool,
    count: AtomicUsize,
    arrived: Notify,
}

/// A webhook receiver on `127.0.0.1:<ephemeral port>`; stops when dropped.
#[derive(Debug)]
pub struct TestReceiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl TestReceiver {
    /// Starts a receiver answering `200` by default.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::status(200)),
            requests: Mutex::new(Vec::new()),
            keep: AtomicBool::new(true),
            count: AtomicUsize::new(0),
            arrived: Notify::new(),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The answer for every request once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        *lock(&self.inner.default) = reply;
    }

    /// Queues a one-shot answer (scripted answers are used first, in order).
    pub fn push(&self, reply: Reply) {
        lock(&self.inner.script).push_back(reply);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.inner.requests).clone()
    }

    /// How many requests arrived (also counted when not kept).
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::SeqCst)
    }

    /// Whether to keep requests for [`Self::requests`] (benchmarks turn it off).
    pub fn keep_requests(&self, keep: bool) {
        self.inner.keep.store(keep, Ordering::SeqCst);
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        lock(&self.inner.requests).clear();
    }

    /// Waits until at least `n` requests arrived (or `timeout`), then returns them all.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.arrived.notified();
            if self.count() >= n {
                return self.requests();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.requests();
            }
        }
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = lock(&inner.script)
        .pop_front()
        .unwrap_or_else(|| lock(&inner.default).clone());
    if inner.keep.load(Ordering::SeqCst) {
        lock(&inner.requests).push(ReceivedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers,
            body,
            at: Instant::now(),
            answered: reply.status,
        });
    }
    inner.count.fetch_add(1, Ordering::SeqCst);
    inner.arrived.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, reply.body).into_response();
    for (k, v) in reply.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// A loopback port that was free a moment ago (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
