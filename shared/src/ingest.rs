//! Store-agnostic ingest: an HTTP request in, verified events on the queue,
//! an HTTP answer out. The same code serves the Lambdas (through the Lambda
//! edge, `crate::lambda`, feature `lambda`) and `storehook serve`.
//!
//! Answers: 2xx only after every event is durably queued; 4xx with
//! `{"error":{"code","message"}}` when the request is refused (nothing is
//! queued); 503 when the queue cannot be written (the store retries).

use crate::clock::Clock;
use crate::error::Rejection;
use crate::event::Event;
use crate::queue::{EventQueue, MAX_BATCH, QueueError, QueueMessage};
use async_trait::async_trait;
use std::fmt::Debug;
use std::sync::Arc;

/// Largest body accepted (store notifications are a few KiB; Apple's ~20 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How far a store's event time may lie after `received_at` before it is
/// clamped: 5 minutes. A store signs its time a moment before it sends, so a
/// genuine time is never later than our receipt except by the difference of
/// the two clocks; NTP-synchronised servers (the stores', Lambda's) differ by
/// milliseconds, and 5 minutes is the tolerance Kerberos and most JWT
/// validators give clocks of independent parties. Anything later is not a
/// time the store could have meant and must not order state.
pub const MAX_STORE_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The trust rule for store times, applied once to every event of every
/// store: an `occurred_at` later than `received_at_ms` +
/// [`MAX_STORE_CLOCK_SKEW_MS`] is set to `received_at_ms`, and the original is
/// kept in `details.occurred_at_clamped_from`. Returns whether it clamped.
pub fn clamp_store_time(event: &mut Event, received_at_ms: i64) -> bool {
    let limit = received_at_ms.saturating_add(MAX_STORE_CLOCK_SKEW_MS);
    if event.occurred_at.millis() <= limit {
        return false;
    }
    let Some(received_at) = crate::event::Timestamp::from_millis(received_at_ms) else {
        return false;
    };
    event.details.occurred_at_clamped_from = Some(event.occurred_at);
    event.occurred_at = received_at;
    true
}

/// A store HTTP request, independent of the server that received it.
#[derive(Debug, Clone)]
pub struct StoreRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Raw query string without `?` (Play's push token may be there).
    pub query: Option<String>,
    /// Request headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

impl StoreResponse {
    fn from_rejection(r: &Rejection) -> Self {
        Self {
            status: r.status,
            body: r.body(),
        }
    }
}

/// One store's endpoint logic: authenticate, verify, decode, enrich, translate.
#[async_trait]
pub trait StoreEndpoint: Send + Sync + Debug {
    /// Route name: `appstore`, `playstore`, `huawei`.
    fn route(&self) -> &'static str;

    /// The events of an authentic notification, or why it is refused.
    async fn events(
        &self,
        req: &StoreRequest,
        received_at_ms: i64,
    ) -> Result<Vec<Event>, Rejection>;

    /// The success answer the store expects once the events are queued.
    fn accepted(&self, events: &[Event]) -> StoreResponse {
        StoreResponse {
            status: 200,
            body: serde_json::json!({ "status": "queued", "events": events.len() }).to_string(),
        }
    }
}

/// The ingest pipeline of one store endpoint.
#[derive(Debug, Clone)]
pub struct Ingest {
    endpoint: Arc<dyn StoreEndpoint>,
    queue: Arc<dyn EventQueue>,
    clock: Arc<dyn Clock>,
    store_copies: Vec<crate::fanout::StoreCopy>,
}

impl Ingest {
    /// Wires an endpoint to a queue.
    pub fn new(
        endpoint: Arc<dyn StoreEndpoint>,
        queue: Arc<dyn EventQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            endpoint,
            queue,
            clock,
            store_copies: Vec::new(),
        }
    }

    /// Also queues the verified original request for these `store`-format
    /// endpoints ([`crate::fanout`]).
    pub fn with_store_copies(mut self, copies: Vec<crate::fanout::StoreCopy>) -> Self {
        self.store_copies = copies;
        self
    }

    /// The endpoint's route name.
    pub fn route(&self) -> &'static str {
        self.endpoint.route()
    }

    /// Handles one request end to end.
    #[tracing::instrument(skip_all, fields(store = self.endpoint.route()))]
    pub async fn handle(&self, req: StoreRequest) -> StoreResponse {
        match self.try_handle(&req).await {
            Ok((events, response)) => {
                for e in &events {
                    tracing::info!(
                        event_id = %e.id,
                        event_type = %e.kind,
                        group = %e.group_key(),
                        store_type = %e.store_notification.kind,
                        store_notification_id = %e.store_notification.id,
                        "queued"
                    );
                }
                let types: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
                crate::metrics::notification(self.route(), response.status, None, &types);
                crate::activity::record(crate::activity::Entry::Notification {
                    store: self.route().to_owned(),
                    status: response.status,
                    code: None,
                    events: events
                        .iter()
                        .map(|e| crate::activity::EventRef {
                            id: e.id.0.clone(),
                            kind: e.kind.as_str().to_owned(),
                            group: e.group_key(),
                            store_notification_id: e.store_notification.id.clone(),
                        })
                        .collect(),
                });
                if events.is_empty() {
                    tracing::info!(status = response.status, "accepted: nothing to queue");
                }
                response
            }
            Err(r) => {
                crate::metrics::notification(self.route(), r.status, Some(r.code), &[]);
                crate::activity::record(crate::activity::Entry::Notification {
                    store: self.route().to_owned(),
                    status: r.status,
                    code: Some(r.code.to_owned()),
                    events: Vec::new(),
                });
                if r.status >= 500 {
                    tracing::error!(status = r.status, code = r.code, message = %r.message, "not queued");
                } else {
                    tracing::warn!(status = r.status, code = r.code, message = %r.message, "refused");
                }
                StoreResponse::from_rejection(&r)
            }
        }
    }

    async fn try_handle(
        &self,
        req: &StoreRequest,
    ) -> Result<(Vec<Event>, StoreResponse), Rejection> {
        if req.method != "POST" {
            return Err(Rejection::new(405, "method_not_allowed", "use POST"));
        }
        if req.body.len() > MAX_BODY_BYTES {
            return Err(Rejection::new(
                413,
                "body_too_large",
                format!("body of {} bytes exceeds {MAX_BODY_BYTES}", req.body.len()),
            ));
        }
        let received_at_ms = self.clock.now().timestamp_millis();
        let mut events = self.endpoint.events(req, received_at_ms).await?;
        for e in &mut events {
            if clamp_store_time(e, received_at_ms) {
                tracing::warn!(
                    event_id = %e.id,
                    store_time = %e.details.occurred_at_clamped_from.map(|t| t.to_string()).unwrap_or_default(),
                    "store time later than received_at + skew: clamped to received_at"
                );
            }
        }
        let mut messages = events
            .iter()
            .map(QueueMessage::for_event)
            .collect::<Result<Vec<_>, _>>()
            .map_err(queue_rejection)?;
        // The store's own body for `store`-format endpoints, once verified.
        messages.extend(
            crate::fanout::store_copy_messages(&self.store_copies, self.route(), req, &events)
                .map_err(queue_rejection)?,
        );
        for chunk in messages.chunks(MAX_BATCH) {
            self.queue.send(chunk).await.map_err(queue_rejection)?;
        }
        let response = self.endpoint.accepted(&events);
        Ok((events, response))
    }
}

fn queue_rejection(e: QueueError) -> Rejection {
    Rejection::new(
        503,
        "queue_unavailable",
        format!("the notification could not be queued, retry later: {e}"),
    )
}

/// The App Store endpoint.
#[derive(Debug)]
pub struct AppStoreEndpoint(pub crate::stores::appstore::AppStore);

#[async_trait]
impl StoreEndpoint for AppStoreEndpoint {
    fn route(&self) -> &'static str {
        "appstore"
    }

    async fn events(
        &self,
        req: &StoreRequest,
        received_at_ms: i64,
    ) -> Result<Vec<Event>, Rejection> {
        self.0
            .process(&req.body, received_at_ms)
            .map_err(|e| e.rejection())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::clock::ManualClock;
    use crate::queue::MemoryQueue;
    use crate::stores::appstore::{AppStore, AppStoreConfig};
    use chrono::TimeZone;
    use storehook_testkit::appstore::{TestPki, payloads::*};

    fn ingest(pki: &TestPki) -> (Ingest, Arc<MemoryQueue>) {
        let queue = Arc::new(MemoryQueue::new());
        let app = AppStore::new(AppStoreConfig {
            bundle_id: Some(BUNDLE_ID.into()),
            app_apple_id: Some(APP_APPLE_ID),
            extra_roots: vec![pki.root_der.clone()],
            ..AppStoreConfig::default()
        })
        .unwrap();
        let clock = Arc::new(ManualClock::new(
            chrono::Utc.timestamp_millis_opt(T0 + 100 * DAY).unwrap(),
        ));
        (
            Ingest::new(Arc::new(AppStoreEndpoint(app)), queue.clone(), clock),
            queue,
        )
    }

    fn post(body: Vec<u8>) -> StoreRequest {
        StoreRequest {
            method: "POST".into(),
            query: None,
            headers: http::HeaderMap::new(),
            body: body.into(),
        }
    }

    fn renew_body(pki: &TestPki, uuid: &str) -> Vec<u8> {
        let p = notification(
            "DID_RENEW",
            None,
            uuid,
            T0 + 31 * DAY,
            "Production",
            Some(1),
        );
        let t = transaction("77", "78", "pro.monthly", T0 + 31 * DAY, 30, "Production");
        let r = renewal("77", "pro.monthly", true, T0 + 31 * DAY, "Production");
        pki.notification_body(p, Some(&t), Some(&r))
    }

    #[tokio::test]
    async fn a_genuine_notification_is_queued_with_group_and_dedup_ids() {
        // GIVEN a genuine notification
        let pki = TestPki::new();
        let (ingest, queue) = ingest(&pki);
        // WHEN it is posted
        let resp = ingest.handle(post(renew_body(&pki, "q-1"))).await;
        // THEN 200 after exactly one message with the FIFO ids
        assert_eq!(resp.status, 200, "{}", resp.body);
        let sent = queue.sent();
        assert_eq!(sent.len(), 1);
        let event: Event = serde_json::from_str(&sent[0].body).unwrap();
        assert_eq!(sent[0].dedup_id, event.id.0);
        assert_eq!(sent[0].group_id, event.subscription.as_ref().unwrap().id.0);
        assert_eq!(event.received_at.millis(), T0 + 100 * DAY);
        // a store retry of the same notification carries the same ids
        ingest.handle(post(renew_body(&pki, "q-1"))).await;
        let again = queue.sent();
        assert_eq!(again[1].dedup_id, sent[0].dedup_id);
    }

    /// A DID_RENEW signed at `signed_date` whose period (bought at T0 + 31 days)
    /// lasts 3000 days, so it is entitled at every tested time.
    fn renew_body_signed_at(pki: &TestPki, uuid: &str, signed_date: i64) -> Vec<u8> {
        let p = notification("DID_RENEW", None, uuid, signed_date, "Production", Some(1));
        let t = transaction("77", "78", "pro.monthly", T0 + 31 * DAY, 3000, "Production");
        let r = renewal("77", "pro.monthly", true, T0 + 31 * DAY, "Production");
        pki.notification_body(p, Some(&t), Some(&r))
    }

    fn queued(queue: &MemoryQueue) -> Vec<Event> {
        queue
            .sent()
            .iter()
            .map(|m| serde_json::from_str(&m.body).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_store_time_from_the_future_is_clamped_to_received_at_and_flagged() {
        // GIVEN a genuine, Apple-signed notification whose signedDate lies years
        // after the moment it is received (clock: T0 + 100 days)
        let pki = TestPki::new();
        let (ingest, queue) = ingest(&pki);
        let received = T0 + 100 * DAY;
        let future = T0 + 2000 * DAY;
        // WHEN it is posted
        let resp = ingest
            .handle(post(renew_body_signed_at(&pki, "q-future", future)))
            .await;
        // THEN it is accepted, but the queued event's occurred_at is received_at
        assert_eq!(resp.status, 200, "{}", resp.body);
        let events = queued(&queue);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.occurred_at.millis(), received);
        assert_eq!(e.received_at.millis(), received);
        // AND the signed time is kept in details.occurred_at_clamped_from
        assert_eq!(
            e.details.occurred_at_clamped_from.map(|t| t.millis()),
            Some(future)
        );
        // AND the queued JSON carries it under that name
        let v: serde_json::Value = serde_json::from_str(&queue.sent()[0].body).unwrap();
        assert_eq!(
            v["details"]["occurred_at_clamped_from"],
            crate::event::Timestamp::from_millis(future)
                .unwrap()
                .to_string()
        );
        // AND the dispatcher's state orders it, and derives ACCESS_GRANTED, at received_at
        let state = crate::state::MemoryState::new();
        let applied = crate::state::StateStore::apply(&state, e.clone(), e.received_at)
            .await
            .unwrap();
        assert_eq!(applied.derived.len(), 1);
        assert_eq!(applied.derived[0].occurred_at.millis(), received);
        let group = crate::state::StateStore::group(&state, &e.group_key())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(group.applied_at.map(|t| t.millis()), Some(received));
    }

    #[tokio::test]
    async fn a_store_time_in_the_past_or_within_the_skew_is_kept() {
        // GIVEN genuine notifications signed before, at, and up to the skew after receipt
        let pki = TestPki::new();
        let (ingest, queue) = ingest(&pki);
        let received = T0 + 100 * DAY;
        let times = [T0 + 31 * DAY, received, received + MAX_STORE_CLOCK_SKEW_MS];
        for (i, signed) in times.iter().enumerate() {
            // WHEN each is posted
            let resp = ingest
                .handle(post(renew_body_signed_at(
                    &pki,
                    &format!("q-ok-{i}"),
                    *signed,
                )))
                .await;
            assert_eq!(resp.status, 200, "{}", resp.body);
        }
        // THEN each keeps its signed time and carries no clamp flag
        let events = queued(&queue);
        assert_eq!(events.len(), times.len());
        for (e, signed) in events.iter().zip(times) {
            assert_eq!(e.occurred_at.millis(), signed);
            assert_eq!(e.details.occurred_at_clamped_from, None);
        }
        // AND one millisecond beyond the skew is clamped
        let resp = ingest
            .handle(post(renew_body_signed_at(
                &pki,
                "q-beyond",
                received + MAX_STORE_CLOCK_SKEW_MS + 1,
            )))
            .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let last = queued(&queue).pop().unwrap();
        assert_eq!(last.occurred_at.millis(), received);
        assert_eq!(
            last.details.occurred_at_clamped_from.map(|t| t.millis()),
            Some(received + MAX_STORE_CLOCK_SKEW_MS + 1)
        );
    }

    #[tokio::test]
    async fn refusals_queue_nothing() {
        let pki = TestPki::new();
        let (ingest, queue) = ingest(&pki);
        let stranger = TestPki::new();
        let cases = vec![
            (post(b"{}".to_vec()), 400, "malformed_body"),
            (post(renew_body(&stranger, "q-2")), 401, "untrusted_chain"),
            (post(vec![b' '; MAX_BODY_BYTES + 1]), 413, "body_too_large"),
            (
                StoreRequest {
                    method: "GET".into(),
                    ..post(renew_body(&pki, "q-3"))
                },
                405,
                "method_not_allowed",
            ),
        ];
        for (req, status, code) in cases {
            let resp = ingest.handle(req).await;
            assert_eq!(resp.status, status);
            let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
            assert_eq!(v["error"]["code"], code);
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        assert!(queue.sent().is_empty());
    }

    #[tokio::test]
    async fn a_queue_failure_is_a_503_so_the_store_retries() {
        let pki = TestPki::new();
        let (ingest, queue) = ingest(&pki);
        queue.fail_with(Some(QueueError::Unavailable("throttled".into())));
        let resp = ingest.handle(post(renew_body(&pki, "q-4"))).await;
        assert_eq!(resp.status, 503);
        assert!(resp.body.contains("queue_unavailable"));
        // and the retry succeeds once the queue is back
        queue.fail_with(None);
        assert_eq!(
            ingest.handle(post(renew_body(&pki, "q-4"))).await.status,
            200
        );
        assert_eq!(queue.sent().len(), 1);
    }

    #[tokio::test]
    async fn the_lambda_entry_point_takes_an_api_gateway_v2_event() {
        // GIVEN an API Gateway HTTP API (v2) event carrying a genuine notification
        let pki = TestPki::new();
        let (ingest, queue) = ingest(&pki);
        let body = String::from_utf8(renew_body(&pki, "q-5")).unwrap();
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "POST /appstore", "rawPath": "/appstore", "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "x.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "x", "http": {"method": "POST", "path": "/appstore", "protocol": "HTTP/1.1", "sourceIp": "17.0.0.1", "userAgent": "App Store"},
                "requestId": "r", "routeKey": "POST /appstore", "stage": "$default", "time": "12/Mar/2025:19:03:58 +0000", "timeEpoch": 1741806238000i64},
            "body": body, "isBase64Encoded": false
        });
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        // WHEN the Lambda handler runs in-process
        let resp = ingest.lambda(req).await.unwrap();
        // THEN it answers 200 JSON and the event is queued
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(queue.sent().len(), 1);
    }
}
