//! The HTTP listener of `storehook serve`: HTTP/1.1 and h2c (prior
//! knowledge) on one port, with the limits a server facing the network needs.
//!
//! - At most `max_connections` connections at once: the accept loop takes a
//!   slot before accepting, so further clients wait in the kernel's backlog
//!   until one frees.
//! - Idle deadline per connection: a connection with no request in flight for
//!   `idle_timeout` is closed — whether it never sent a byte, sent half a
//!   request line, or is an idle HTTP/1 keep-alive or h2c connection.
//! - HTTP/1 header-read timeout (`header_read_timeout`, from the first byte
//!   of a request to its last header).
//! - Body deadline: a request body must arrive whole within `body_timeout`
//!   (408 `body_timeout` otherwise) and be at most [`MAX_BODY_BYTES`] (413
//!   `body_too_large`).
//! - h2c: at most `max_h2_streams` concurrent streams per connection.

use crate::admin::error;
use axum::Router;
use http::StatusCode;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// The largest request body read: the store routes' own limit (64 KiB), so a
/// bigger body is refused (413 `body_too_large`) without being buffered.
pub const MAX_BODY_BYTES: usize = storehook_shared::ingest::MAX_BODY_BYTES;

/// How long a connection told to close because the server stops may take to
/// finish what it has in flight before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// An idle connection has nothing in flight: it gets only the time to say
/// goodbye (h2 GOAWAY) before it is dropped — a half-sent request included.
const IDLE_CLOSE_GRACE: Duration = Duration::from_millis(200);

/// The listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// HTTP/1: from a request's first byte to its last header.
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this.
    pub body_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// h2c: concurrent streams per connection.
    pub max_h2_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_h2_streams: 100,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting, lets open connections finish their requests (at most
/// [`CLOSE_GRACE`]) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(None)
        .max_concurrent_streams(limits.max_h2_streams);
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, app, stop) = (builder.clone(), app.clone(), stop_rx.clone());
        tokio::spawn(async move {
            connection(builder, stream, app, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // every slot back = every connection closed
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(CLOSE_GRACE, slots.acquire_many(all)).await;
}

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// `None` while a request is in flight; else when the connection is idle
    /// for too long.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::SeqCst));
        Some(self.start + last + idle)
    }
}

/// A request in flight; its drop marks the connection active now.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(
    builder: auto::Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let busy = activity.begin();
            let app = app.clone();
            async move {
                let resp = handle(app, req, limits.body_timeout).await;
                drop(busy);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let grace = loop {
        let wake = activity
            .idle_deadline(limits.idle_timeout)
            .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep_until(wake) => {
                if activity
                    .idle_deadline(limits.idle_timeout)
                    .is_some_and(|d| d <= Instant::now())
                {
                    break IDLE_CLOSE_GRACE;
                }
            }
            _ = stop.wait_for(|s| *s) => break CLOSE_GRACE,
        }
    };
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, conn.as_mut()).await;
}

/// Reads the whole body within the deadline and the size limit, then hands
/// the request to the router.
async fn handle(
    app: Router,
    req: http::Request<Incoming>,
    body_timeout: Duration,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let collected =
        tokio::time::timeout(body_timeout, Limited::new(body, MAX_BODY_BYTES).collect()).await;
    let bytes = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return close(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        Ok(Err(_)) => {
            return close(error(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "the request body could not be read",
            ));
        }
        Err(_) => {
            return close(error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                &format!(
                    "the request body did not arrive within {} ms",
                    body_timeout.as_millis()
                ),
            ));
        }
    };
    let req = http::Request::from_parts(parts, axum::body::Body::from(bytes));
    match app.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// HTTP/1: the rest of an unread body is not drained; the connection closes.
fn close(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}
