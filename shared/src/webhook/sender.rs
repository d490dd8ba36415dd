//! The [`WebhookSender`] port and its HTTP implementation: one signed POST
//! per attempt with the shared outbound client, and what the answer means
//! (success, `410 Gone`, `Retry-After`).

use super::signature::{WebhookError, WebhookSecrets};
use crate::clock::Clock;
use crate::event::EventId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default HTTP timeout of one delivery attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `user-agent` sent with every delivery.
pub const USER_AGENT: &str = crate::http::USER_AGENT;

/// The result of one POST to the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The response's `Retry-After`, when present and parseable.
    pub retry_after: Option<Duration>,
    /// Time from sending to the end of the response (or the failure).
    pub latency: Duration,
    /// Transport failure (timeout, connection refused, …); never contains the URL.
    pub error: Option<String>,
    /// The start of a 2xx answer's body (at most [`MAX_ANSWER_BODY`] bytes; empty
    /// otherwise): the backend's answer to a `REFUND_REQUESTED`
    /// ([`crate::consumption`]). Never logged.
    pub body: Vec<u8>,
}

/// The most of a 2xx answer's body kept in [`DeliveryAttempt::body`].
pub const MAX_ANSWER_BODY: usize = 16 * 1024;

impl DeliveryAttempt {
    /// Any 2xx is success.
    pub fn is_success(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }

    /// `410 Gone`: the endpoint asks us to stop; the event is dead-lettered at once.
    pub fn is_gone(&self) -> bool {
        self.status == Some(410)
    }

    /// A short description for logs and dead-letter reasons.
    pub fn describe(&self) -> String {
        match (self.status, &self.error) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "no response".to_owned(),
        }
    }
}

/// Posts one signed event body to the app maker's webhook.
#[async_trait]
pub trait WebhookSender: Send + Sync + fmt::Debug {
    /// POSTs `body` with `webhook-id` = `id`. Never fails: every outcome is a [`DeliveryAttempt`].
    async fn post(&self, id: &EventId, body: &[u8]) -> DeliveryAttempt;

    /// POSTs `body` as `content_type` with the extra `headers` (a `store`-format
    /// delivery: the store's original body). Default: [`WebhookSender::post`]
    /// (test doubles that do not care about headers).
    async fn post_as(
        &self,
        id: &EventId,
        body: &[u8],
        _content_type: &str,
        _headers: &[(&str, &str)],
    ) -> DeliveryAttempt {
        self.post(id, body).await
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (past dates give zero).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// `scheme://host[:port]/…` of a URL (paths and queries of webhook URLs may
/// hold tokens); `<invalid url>` when it does not parse.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/…",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// Most of a response body we read (to keep the connection reusable) before dropping it.
const MAX_DRAIN: usize = 64 * 1024;

/// [`WebhookSender`] over HTTPS with the shared outbound client
/// ([`crate::http`]): signs with every secret, no redirects followed (a
/// 3xx is a failed attempt), one timeout per attempt, errors without the URL.
pub struct HttpWebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
    secrets: WebhookSecrets,
    clock: Arc<dyn Clock>,
}

impl HttpWebhookSender {
    /// A sender to `url`, signing with `secrets`, each attempt limited to `timeout`.
    pub fn new(
        url: &str,
        secrets: WebhookSecrets,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, WebhookError> {
        let url = reqwest::Url::parse(url).map_err(|e| WebhookError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(WebhookError::InvalidUrl(
                "must be an absolute http(s) URL".into(),
            ));
        }
        let client = crate::http::client(crate::http::Timeouts::both(timeout))
            .map_err(WebhookError::Client)?;
        Ok(Self {
            client,
            url,
            secrets,
            clock,
        })
    }

    /// The target as scheme, host and port only (safe to log: webhook URLs
    /// often carry a token in the path or query).
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.as_str())
    }
}

impl fmt::Debug for HttpWebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpWebhookSender")
            .field("url", &self.redacted_url())
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn post(&self, id: &EventId, body: &[u8]) -> DeliveryAttempt {
        self.post_as(id, body, "application/json", &[]).await
    }

    async fn post_as(
        &self,
        id: &EventId,
        body: &[u8],
        content_type: &str,
        extra: &[(&str, &str)],
    ) -> DeliveryAttempt {
        let ts = self.clock.now().timestamp();
        let headers = self.secrets.headers(id.as_str(), ts, body);
        let started = Instant::now();
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .header(http::header::CONTENT_TYPE, content_type);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let sent = req.body(body.to_vec()).send().await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return DeliveryAttempt {
                    status: None,
                    retry_after: None,
                    latency: started.elapsed(),
                    error: Some(crate::http::describe(&e)),
                    body: Vec::new(),
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        // Drain a bounded amount of the body so the connection can be reused;
        // a body error after the status arrived does not change the outcome.
        // The start of a 2xx body is kept (a backend may answer a refund request).
        let keep = (200..300).contains(&status);
        let mut kept = Vec::new();
        let mut drained = 0usize;
        while drained < MAX_DRAIN {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    drained += c.len();
                    if keep && kept.len() < MAX_ANSWER_BODY {
                        let room = MAX_ANSWER_BODY - kept.len();
                        kept.extend_from_slice(&c[..c.len().min(room)]);
                    }
                }
                _ => break,
            }
        }
        DeliveryAttempt {
            status: Some(status),
            retry_after,
            latency: started.elapsed(),
            error: None,
            body: kept,
        }
    }
}
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::webhook::signature::tests::VECTOR_SECRET;
    use crate::webhook::{DEFAULT_TOLERANCE, HEADER_TIMESTAMP, verify};
    use chrono::TimeZone;
    use storehook_testkit::receiver::{Reply, TestReceiver};

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn retry_after_seconds_and_http_dates() {
        // GIVEN now
        let now = at(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        // THEN both forms parse; past dates are zero; junk is ignored
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    fn sender(url: &str, timeout: Duration) -> (HttpWebhookSender, WebhookSecrets) {
        let secrets = WebhookSecrets::parse(VECTOR_SECRET).unwrap();
        let clock = Arc::new(ManualClock::new(at(1_700_000_000)));
        (
            HttpWebhookSender::new(url, secrets.clone(), timeout, clock).unwrap(),
            secrets,
        )
    }

    #[tokio::test]
    async fn posts_signed_json_with_user_agent() {
        // GIVEN a receiver answering 204
        let rx = TestReceiver::start().await.unwrap();
        rx.set_default(Reply::status(204));
        let (s, secrets) = sender(&rx.url(), DEFAULT_TIMEOUT);
        let id = EventId("evt_0123".into());
        // WHEN posting
        let a = s.post(&id, br#"{"x":1}"#).await;
        // THEN it succeeded and the request is a signed JSON POST
        assert!(a.is_success(), "{a:?}");
        assert_eq!(a.status, Some(204));
        let reqs = rx.requests();
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("user-agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("storehook/"));
        assert_eq!(r.header(HEADER_TIMESTAMP), Some("1700000000"));
        let v = verify(
            &r.headers,
            &r.body,
            &secrets,
            at(1_700_000_000),
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        assert_eq!(v.id, "evt_0123");
        assert_eq!(&r.body[..], br#"{"x":1}"#);
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_retry_after_is_read() {
        // GIVEN a receiver answering 307 with a Location, then 503 Retry-After 30
        let rx = TestReceiver::start().await.unwrap();
        rx.push(Reply::status(307).with_header("location", &format!("{}/elsewhere", rx.url())));
        rx.push(Reply::status(503).with_header("retry-after", "30"));
        let (s, _) = sender(&rx.url(), DEFAULT_TIMEOUT);
        let id = EventId("evt_1".into());
        // WHEN posting twice
        let a = s.post(&id, b"{}").await;
        let b = s.post(&id, b"{}").await;
        // THEN the 3xx is a failed attempt and was not followed
        assert_eq!(a.status, Some(307));
        assert!(!a.is_success());
        assert_eq!(rx.requests().len(), 2);
        assert!(rx.requests().iter().all(|r| r.path == "/"));
        // AND the 503 carries its Retry-After
        assert_eq!(b.status, Some(503));
        assert_eq!(b.retry_after, Some(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_are_failures_without_url() {
        // GIVEN a receiver that answers too slowly, and a closed port
        let rx = TestReceiver::start().await.unwrap();
        rx.set_default(Reply::status(200).after(Duration::from_secs(5)));
        let (slow, _) = sender(
            &format!("{}hooks/p4thT0ken?token=s3cr3t", rx.url()),
            Duration::from_millis(200),
        );
        // WHEN posting
        let a = slow.post(&EventId("evt_t".into()), b"{}").await;
        // THEN the attempt timed out, with no status and no URL/query in the error
        assert_eq!(a.status, None);
        let err = a.error.clone().unwrap();
        assert!(err.starts_with("timeout"), "{err}");
        assert!(
            !err.contains("s3cr3t") && !err.contains("p4thT0ken") && !err.contains("127.0.0.1"),
            "{err}"
        );
        assert!(a.latency >= Duration::from_millis(200));
        let dbg = format!("{slow:?}");
        assert!(
            !dbg.contains("s3cr3t") && !dbg.contains("p4thT0ken"),
            "{dbg}"
        );
        assert!(dbg.contains("127.0.0.1"), "{dbg}");
        assert_eq!(redact_url("not a url"), "<invalid url>");

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (refused, _) = sender(&format!("http://{closed}/"), Duration::from_secs(2));
        let b = refused.post(&EventId("evt_r".into()), b"{}").await;
        assert_eq!(b.status, None);
        assert!(b.error.unwrap().starts_with("connect"));
    }

    #[test]
    fn rejects_non_http_urls() {
        let secrets = WebhookSecrets::parse(VECTOR_SECRET).unwrap();
        let clock = Arc::new(ManualClock::new(at(0)));
        for bad in ["ftp://x/", "not a url", "file:///etc/passwd"] {
            assert!(matches!(
                HttpWebhookSender::new(bad, secrets.clone(), DEFAULT_TIMEOUT, clock.clone()),
                Err(WebhookError::InvalidUrl(_))
            ));
        }
    }
}
