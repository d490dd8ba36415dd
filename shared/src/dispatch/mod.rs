//! The delivery spine: one queued event in → state applied → the event and
//! its derived events POSTed in order → an [`Outcome`] for the queue.
//!
//! [`Dispatcher::process`] is transport-agnostic; [`Dispatcher::settle`]
//! ([`settle`]) is the one rule turning a received queue message (an SQS
//! message, a redb lease) and its [`Outcome`] into `ack`, `retry` or
//! `dead_letter`. Around it: [`sqs_batch`], the SQS-batch logic of the
//! dispatcher Lambda (FIFO partial batch failures); [`worker`], the consuming
//! loops of `storehook serve` (redb queue, or SQS through `sqs_poller`).
//!
//! Guarantees:
//! - the state is applied before anything is sent, exactly once per event id;
//! - the event is sent before its derived events; an event already delivered
//!   (a 2xx recorded) is never sent again — a redelivered message whose events
//!   were all delivered is [`Outcome::AlreadyDelivered`];
//! - a retried event is the same JSON with the same `webhook-id` (the event id);
//! - `410 Gone` dead-letters at once; any other failure retries along the
//!   [`RetrySchedule`], then dead-letters.
//!
//! Attempt numbering: `receive_count` (SQS `ApproximateReceiveCount`) is the
//! attempt number. In a FIFO batch, messages queued behind a failing message of
//! the same group are returned unprocessed and their receive count grows too;
//! after a long outage such a backlog therefore dead-letters after fewer own
//! attempts (or is moved by the SQS redrive policy) instead of restarting a
//! full multi-day schedule per message — which keeps every message well inside
//! SQS's 14-day retention. Dead-lettered messages are replayable.

use crate::clock::Clock;
use crate::consumption::{ConsumptionJob, RefundDefence};
use crate::event::EventId;
use crate::event::{Event, Timestamp};
use crate::fanout::{DeliveryJob, Fanout};
use crate::retry::RetrySchedule;
use crate::state::Recorded;
use crate::state::{DeliveryRecord, StateStore};
use crate::webhook::WebhookSender;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub mod settle;
pub mod sqs_batch;
#[cfg(feature = "aws")]
pub mod sqs_poller;
pub mod worker;

/// What to do with the queue message after [`Dispatcher::process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every event of the message was delivered now (some maybe earlier): acknowledge.
    Delivered,
    /// A redelivered message whose events had all been delivered: acknowledge, nothing sent.
    AlreadyDelivered,
    /// Try the message again after `delay` (keep later events of its group waiting).
    Retry {
        /// How long to hide the message (SQS visibility timeout).
        delay: Duration,
    },
    /// Give up: move the message to the dead-letter queue and acknowledge it.
    DeadLetter {
        /// Why (no secrets, no URL, no payload).
        reason: String,
    },
}

/// Applies state and delivers events.
#[derive(Clone)]
pub struct Dispatcher {
    /// Where state and delivery records live.
    pub state: Arc<dyn StateStore>,
    /// Who POSTs to the webhook.
    pub sender: Arc<dyn WebhookSender>,
    /// Backoff between attempts.
    pub schedule: RetrySchedule,
    /// Time of delivery records.
    pub clock: Arc<dyn Clock>,
    /// Answers App Store refund requests to Apple ([`crate::consumption`]),
    /// when the App Store Server API is configured.
    pub refund: Option<Arc<RefundDefence>>,
    /// Several endpoints ([`crate::fanout`]): events are applied here and
    /// delivered by per-endpoint jobs; `None`: `sender` is the one endpoint.
    pub fanout: Option<Arc<Fanout>>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("state", &self.state)
            .field("sender", &self.sender)
            .field("schedule", &self.schedule.to_string())
            .finish_non_exhaustive()
    }
}

/// Longest reason text kept (SQS attributes and logs stay small).
const MAX_REASON: usize = 1_000;

fn truncate(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl Dispatcher {
    /// A dispatcher over the given ports.
    pub fn new(
        state: Arc<dyn StateStore>,
        sender: Arc<dyn WebhookSender>,
        schedule: RetrySchedule,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            state,
            sender,
            schedule,
            clock,
            refund: None,
            fanout: None,
        }
    }

    /// The same dispatcher delivering to several endpoints through `fanout`.
    pub fn with_fanout(mut self, fanout: Option<Arc<Fanout>>) -> Self {
        self.fanout = fanout;
        self
    }

    /// The same dispatcher answering App Store refund requests with `refund`.
    pub fn with_refund_defence(mut self, refund: Option<Arc<RefundDefence>>) -> Self {
        self.refund = refund;
        self
    }

    /// Runs a refund-defence job ([`crate::consumption::ConsumptionJob`]).
    #[tracing::instrument(skip_all, fields(request_id = %job.request.id, attempt = receive_count))]
    pub async fn process_job(&self, job: &ConsumptionJob, receive_count: u32) -> Outcome {
        match &self.refund {
            Some(r) => r.run(job, receive_count).await,
            // Replayable once the App Store Server API is configured again.
            None => Outcome::DeadLetter {
                reason: "a refund-defence job, but the App Store Server API is not configured"
                    .into(),
            },
        }
    }

    /// Processes one queued event; `receive_count` is the 1-based attempt
    /// number of this message (0 is treated as 1).
    #[tracing::instrument(skip_all, fields(event_id = %event.id, attempt = receive_count))]
    pub async fn process(&self, event: Event, receive_count: u32) -> Outcome {
        let attempt = receive_count.max(1);
        let recorded = match self.state.apply(event, Timestamp(self.clock.now())).await {
            Ok(r) => r,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "state apply failed");
                return self.retry_or_dead_letter(attempt, None, &format!("state store: {e}"));
            }
            Err(e) => {
                tracing::error!(error = %e, "state apply failed permanently");
                return Outcome::DeadLetter {
                    reason: truncate(format!("state store: {e}")),
                };
            }
        };

        if let Some(fanout) = &self.fanout {
            return self.fan_out(fanout, &recorded, attempt).await;
        }

        let mut sent = false;
        for ev in std::iter::once(&recorded.event).chain(&recorded.derived) {
            // A first-time apply has no delivery records yet (derived ids are new too).
            let previous = if recorded.first_time {
                None
            } else {
                match self.state.delivery(&ev.id).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery record read failed");
                        return self.retry_or_dead_letter(
                            attempt,
                            None,
                            &format!("state store: {e}"),
                        );
                    }
                }
            };
            if previous.as_ref().is_some_and(|r| r.delivered_at.is_some()) {
                continue;
            }
            let body = match serde_json::to_vec(ev) {
                Ok(b) => b,
                Err(e) => {
                    return Outcome::DeadLetter {
                        reason: truncate(format!("event does not serialize: {e}")),
                    };
                }
            };

            let result = self.sender.post(&ev.id, &body).await;
            sent = true;
            let record = self.record_of(previous, &result);
            let latency_ms = record.latency_ms;
            crate::metrics::delivery(attempt_outcome(&result), record.attempts, latency_ms);
            crate::activity::record(crate::activity::Entry::Delivery {
                event_id: ev.id.0.clone(),
                kind: ev.kind.as_str().to_owned(),
                group: ev.group_key(),
                sequence: ev.sequence,
                status: result.status,
                attempt: record.attempts,
                outcome: attempt_outcome(&result).to_owned(),
            });
            if result.is_success() {
                tracing::info!(
                    event_id = %ev.id,
                    event_type = %ev.kind,
                    group = %ev.group_key(),
                    store_notification_id = %ev.store_notification.id,
                    sequence = ev.sequence,
                    status = result.status,
                    latency_ms,
                    attempt = record.attempts,
                    "webhook delivered"
                );
            } else {
                tracing::warn!(
                    event_id = %ev.id,
                    event_type = %ev.kind,
                    group = %ev.group_key(),
                    store_notification_id = %ev.store_notification.id,
                    sequence = ev.sequence,
                    status = result.status,
                    latency_ms,
                    attempt = record.attempts,
                    error = result.error.as_deref(),
                    "webhook delivery failed"
                );
            }
            // A refund request's answer becomes a job before the delivery is
            // recorded: if queueing fails (or the process dies here) the event is
            // delivered again and the backend answers again.
            if result.is_success()
                && let Some(refund) = &self.refund
                && let Err(e) = refund.after_delivery(ev, &result.body).await
            {
                tracing::warn!(event_id = %ev.id, error = %e, "refund-defence job not queued");
                return self.retry_or_dead_letter(
                    attempt,
                    None,
                    &format!("refund-defence job for {}: {e}", ev.id),
                );
            }
            if let Err(e) = self.state.record_delivery(&ev.id, &record).await {
                // The attempt happened either way; a missing record at worst
                // causes one more (idempotent, same webhook-id) delivery.
                tracing::warn!(event_id = %ev.id, error = %e, "delivery record not stored");
            }

            if result.is_success() {
                continue;
            }
            if result.is_gone() {
                return Outcome::DeadLetter {
                    reason: format!("webhook answered 410 Gone for {} ({})", ev.id, ev.kind),
                };
            }
            return self.retry_or_dead_letter(
                attempt,
                result.retry_after,
                &format!("webhook {} for {}", result.describe(), ev.id),
            );
        }
        if sent {
            Outcome::Delivered
        } else {
            Outcome::AlreadyDelivered
        }
    }

    /// Several endpoints: queues the delivery jobs of an applied event (see
    /// [`crate::fanout`]); the message is done once they are queued.
    async fn fan_out(&self, fanout: &Fanout, recorded: &Recorded, attempt: u32) -> Outcome {
        let events: Vec<&Event> = std::iter::once(&recorded.event)
            .chain(&recorded.derived)
            .collect();
        let history = if fanout.needs_history() {
            match self.state.history(&recorded.event.group_key()).await {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "history read failed");
                    return self.retry_or_dead_letter(attempt, None, &format!("state store: {e}"));
                }
            }
        } else {
            None
        };
        let messages = match fanout.jobs(&events, history.as_deref()) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::DeadLetter {
                    reason: truncate(e.to_string()),
                };
            }
        };
        match fanout.send(&messages).await {
            Ok(()) => {
                tracing::info!(
                    event_id = %recorded.event.id,
                    sequence = recorded.event.sequence,
                    deliveries = messages.len(),
                    "applied; deliveries queued"
                );
                Outcome::Delivered
            }
            Err(e) => {
                tracing::warn!(error = %e, "delivery jobs not queued");
                self.retry_or_dead_letter(attempt, None, &format!("queueing deliveries: {e}"))
            }
        }
    }

    /// Runs one delivery job ([`DeliveryJob`]): one POST to one endpoint,
    /// recorded under the job's id; its outcome settles only this job.
    #[tracing::instrument(skip_all, fields(delivery_id = %job.id, endpoint = %job.endpoint, attempt = receive_count))]
    pub async fn process_delivery(&self, job: &DeliveryJob, receive_count: u32) -> Outcome {
        let attempt = receive_count.max(1);
        let Some(dest) = self
            .fanout
            .as_ref()
            .and_then(|f| f.destination(&job.endpoint))
        else {
            // Replayable once the endpoint is configured again.
            return Outcome::DeadLetter {
                reason: format!("endpoint {:?} is not configured", job.endpoint),
            };
        };
        let record_id = EventId(job.id.clone());
        let previous = match self.state.delivery(&record_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "delivery record read failed");
                return self.retry_or_dead_letter(attempt, None, &format!("state store: {e}"));
            }
        };
        if previous.as_ref().is_some_and(|r| r.delivered_at.is_some()) {
            return Outcome::AlreadyDelivered;
        }
        let webhook_id = EventId(job.webhook_id.clone());
        let result = match (&job.event, &job.store) {
            (Some(ev), _) => match serde_json::to_vec(ev) {
                Ok(body) => dest.sender.post(&webhook_id, &body).await,
                Err(e) => {
                    return Outcome::DeadLetter {
                        reason: truncate(format!("event does not serialize: {e}")),
                    };
                }
            },
            (None, Some(copy)) => match copy.bytes() {
                Ok(body) => {
                    let ct = copy.content_type.as_deref().unwrap_or("application/json");
                    dest.sender
                        .post_as(
                            &webhook_id,
                            &body,
                            ct,
                            &[(crate::fanout::STORE_HEADER, copy.store.as_str())],
                        )
                        .await
                }
                Err(e) => return Outcome::DeadLetter { reason: e },
            },
            (None, None) => {
                return Outcome::DeadLetter {
                    reason: "a delivery job with nothing to deliver".into(),
                };
            }
        };
        let record = self.record_of(previous, &result);
        let latency_ms = record.latency_ms;
        crate::metrics::delivery(attempt_outcome(&result), record.attempts, latency_ms);
        if let Some(ev) = &job.event {
            crate::activity::record(crate::activity::Entry::Delivery {
                event_id: ev.id.0.clone(),
                kind: ev.kind.as_str().to_owned(),
                group: ev.group_key(),
                sequence: ev.sequence,
                status: result.status,
                attempt: record.attempts,
                outcome: attempt_outcome(&result).to_owned(),
            });
        }
        let kind = job
            .event
            .as_ref()
            .map(|e| e.kind.as_str())
            .unwrap_or("store");
        if result.is_success() {
            tracing::info!(webhook_id = %webhook_id, event_type = kind, status = result.status, latency_ms, attempt = record.attempts, "webhook delivered");
        } else {
            tracing::warn!(webhook_id = %webhook_id, event_type = kind, status = result.status, latency_ms, attempt = record.attempts, error = result.error.as_deref(), "webhook delivery failed");
        }
        // The refund defence reads the answer of the first event endpoint,
        // before the delivery is recorded (as on the one-endpoint path).
        if result.is_success()
            && let (Some(refund), Some(ev)) = (&self.refund, &job.event)
            && self
                .fanout
                .as_ref()
                .is_some_and(|f| f.answers_refunds(&job.endpoint))
            && let Err(e) = refund.after_delivery(ev, &result.body).await
        {
            tracing::warn!(error = %e, "refund-defence job not queued");
            return self.retry_or_dead_letter(
                attempt,
                None,
                &format!("refund-defence job for {}: {e}", ev.id),
            );
        }
        if let Err(e) = self.state.record_delivery(&record_id, &record).await {
            tracing::warn!(error = %e, "delivery record not stored");
        }
        if result.is_success() {
            return Outcome::Delivered;
        }
        if result.is_gone() {
            return Outcome::DeadLetter {
                reason: format!("endpoint {} answered 410 Gone for {}", job.endpoint, job.id),
            };
        }
        self.retry_or_dead_letter(
            attempt,
            result.retry_after,
            &format!(
                "endpoint {}: {} for {}",
                job.endpoint,
                result.describe(),
                job.id
            ),
        )
    }

    /// The delivery record of one attempt, after `previous` attempts' record.
    fn record_of(
        &self,
        previous: Option<DeliveryRecord>,
        result: &crate::webhook::DeliveryAttempt,
    ) -> DeliveryRecord {
        let now = Timestamp(self.clock.now());
        DeliveryRecord {
            attempts: previous.map_or(0, |p| p.attempts).saturating_add(1),
            last_status: result.status,
            latency_ms: u64::try_from(result.latency.as_millis()).unwrap_or(u64::MAX),
            delivered_at: result.is_success().then_some(now),
            last_error: result.error.clone(),
            last_attempt_at: Some(now),
        }
    }

    fn retry_or_dead_letter(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        cause: &str,
    ) -> Outcome {
        match self.schedule.next_delay(attempt, retry_after) {
            Some(delay) => Outcome::Retry { delay },
            None => Outcome::DeadLetter {
                reason: truncate(format!(
                    "retry schedule exhausted after {attempt} attempts; last failure: {cause}"
                )),
            },
        }
    }
}

/// The metrics outcome of one webhook attempt.
fn attempt_outcome(result: &crate::webhook::DeliveryAttempt) -> &'static str {
    if result.is_success() {
        "delivered"
    } else if result.is_gone() {
        "gone"
    } else {
        "failed"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::{EventId, EventType};
    use crate::state::fixtures::*;
    use crate::state::{MemoryState, StateError};
    use crate::webhook::{
        DEFAULT_TOLERANCE, HttpWebhookSender, WebhookSecret, WebhookSecrets, verify,
    };
    use storehook_testkit::receiver::{Reply, TestReceiver};

    struct Rig {
        rx: TestReceiver,
        state: Arc<MemoryState>,
        secrets: WebhookSecrets,
        clock: Arc<ManualClock>,
        d: Dispatcher,
    }

    async fn rig(timeout: Duration) -> Rig {
        let rx = TestReceiver::start().await.unwrap();
        let secrets = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
        let clock = Arc::new(ManualClock::new(t(0).0));
        let state = Arc::new(MemoryState::new());
        let sender =
            HttpWebhookSender::new(&rx.url(), secrets.clone(), timeout, clock.clone()).unwrap();
        let d = Dispatcher::new(
            state.clone(),
            Arc::new(sender),
            RetrySchedule::default().with_jitter(0.0),
            clock.clone(),
        );
        Rig {
            rx,
            state,
            secrets,
            clock,
            d,
        }
    }

    #[tokio::test]
    async fn delivers_event_then_derived_event_signed_and_in_order() {
        // GIVEN a receiver answering 200 and a first entitled event
        let r = rig(Duration::from_secs(5)).await;
        let e = sub_event("d1", EventType::SubscriptionStarted, "o-d", 0, true);
        // WHEN processed
        let out = r.d.process(e.clone(), 1).await;
        // THEN it is delivered: the event (seq 1) then ACCESS_GRANTED (seq 2), both verifiable
        assert_eq!(out, Outcome::Delivered);
        let reqs = r.rx.requests();
        assert_eq!(reqs.len(), 2);
        let bodies: Vec<Event> = reqs
            .iter()
            .map(|q| serde_json::from_slice(&q.body).unwrap())
            .collect();
        assert_eq!(bodies[0].id, e.id);
        assert_eq!(bodies[0].sequence, 1);
        assert_eq!(bodies[1].kind, EventType::AccessGranted);
        assert_eq!(bodies[1].sequence, 2);
        for (q, b) in reqs.iter().zip(&bodies) {
            let v = verify(
                &q.headers,
                &q.body,
                &r.secrets,
                r.clock.now(),
                DEFAULT_TOLERANCE,
            )
            .unwrap();
            assert_eq!(v.id, b.id.as_str());
        }
        // AND both delivery records say delivered after one attempt
        for b in &bodies {
            let rec = r.state.delivery(&b.id).await.unwrap().unwrap();
            assert_eq!(rec.attempts, 1);
            assert_eq!(rec.last_status, Some(200));
            assert!(rec.delivered_at.is_some());
        }
    }

    #[tokio::test]
    async fn a_500_then_200_retries_with_the_same_webhook_id_and_body() {
        // GIVEN a receiver answering 500 once, then 200
        let r = rig(Duration::from_secs(5)).await;
        r.rx.push(Reply::status(500));
        let e = sub_event("d2", EventType::SubscriptionRenewed, "o-r", 0, false);
        // WHEN processed (attempt 1)
        let out = r.d.process(e.clone(), 1).await;
        // THEN it is retried after the first step (5 s, no jitter)
        assert_eq!(
            out,
            Outcome::Retry {
                delay: Duration::from_secs(5)
            }
        );
        let rec = r.state.delivery(&e.id).await.unwrap().unwrap();
        assert_eq!(
            (rec.attempts, rec.last_status, rec.delivered_at),
            (1, Some(500), None)
        );
        // WHEN the message comes back (attempt 2), 10 s later
        r.clock.advance(chrono::Duration::seconds(10));
        let out = r.d.process(e.clone(), 2).await;
        // THEN it is delivered, with the same webhook-id and the same body
        assert_eq!(out, Outcome::Delivered);
        let reqs = r.rx.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].webhook_id(), reqs[1].webhook_id());
        assert_eq!(reqs[0].webhook_id(), Some(e.id.as_str()));
        assert_eq!(reqs[0].body, reqs[1].body);
        assert_ne!(
            reqs[0].header("webhook-timestamp"),
            reqs[1].header("webhook-timestamp")
        );
        let rec = r.state.delivery(&e.id).await.unwrap().unwrap();
        assert_eq!((rec.attempts, rec.last_status), (2, Some(200)));
    }

    #[tokio::test]
    async fn a_timeout_is_a_retry_and_retry_after_is_honoured() {
        // GIVEN a receiver slower than the sender's timeout
        let r = rig(Duration::from_millis(200)).await;
        r.rx.push(Reply::status(200).after(Duration::from_secs(3)));
        let e = sub_event("d3", EventType::SubscriptionRenewed, "o-t", 0, false);
        // WHEN processed
        let out = r.d.process(e.clone(), 1).await;
        // THEN it is a retry, recorded with a timeout error and no status
        assert_eq!(
            out,
            Outcome::Retry {
                delay: Duration::from_secs(5)
            }
        );
        let rec = r.state.delivery(&e.id).await.unwrap().unwrap();
        assert_eq!(rec.last_status, None);
        assert!(rec.last_error.unwrap().starts_with("timeout"));
        // WHEN the receiver then answers 429 Retry-After: 90
        r.rx.push(Reply::status(429).with_header("retry-after", "90"));
        let out = r.d.process(e.clone(), 2).await;
        // THEN the delay is max(schedule 5 min, 90 s) = 5 min; with Retry-After 600: 600 s
        assert_eq!(
            out,
            Outcome::Retry {
                delay: Duration::from_secs(300)
            }
        );
        r.rx.push(Reply::status(503).with_header("retry-after", "600"));
        assert_eq!(
            r.d.process(e, 2).await,
            Outcome::Retry {
                delay: Duration::from_secs(600)
            }
        );
    }

    #[tokio::test]
    async fn gone_dead_letters_at_once_and_exhaustion_dead_letters() {
        // GIVEN a receiver answering 410
        let r = rig(Duration::from_secs(5)).await;
        r.rx.push(Reply::status(410));
        let e = sub_event("d4", EventType::SubscriptionRenewed, "o-g", 0, false);
        // WHEN processed on the first attempt THEN it is dead-lettered
        match r.d.process(e.clone(), 1).await {
            Outcome::DeadLetter { reason } => assert!(reason.contains("410"), "{reason}"),
            o => panic!("{o:?}"),
        }
        // GIVEN a 500 on the last attempt of the schedule
        r.rx.push(Reply::status(500));
        let last = r.d.schedule.max_attempts();
        // THEN it is dead-lettered with the reason, no URL in it
        match r.d.process(e, last).await {
            Outcome::DeadLetter { reason } => {
                assert!(reason.contains("exhausted after 14 attempts"), "{reason}");
                assert!(reason.contains("HTTP 500"), "{reason}");
                assert!(!reason.contains("127.0.0.1"), "{reason}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[tokio::test]
    async fn redelivery_after_success_sends_nothing() {
        // GIVEN an event delivered with its derived event
        let r = rig(Duration::from_secs(5)).await;
        let e = sub_event("d5", EventType::SubscriptionStarted, "o-a", 0, true);
        assert_eq!(r.d.process(e.clone(), 1).await, Outcome::Delivered);
        // WHEN the same message is delivered again (SQS at-least-once)
        let out = r.d.process(e, 2).await;
        // THEN it is acknowledged without sending
        assert_eq!(out, Outcome::AlreadyDelivered);
        assert_eq!(r.rx.count(), 2);
    }

    #[tokio::test]
    async fn a_failed_derived_event_is_retried_alone() {
        // GIVEN the event is accepted but its ACCESS_GRANTED gets a 502
        let r = rig(Duration::from_secs(5)).await;
        r.rx.push(Reply::status(200));
        r.rx.push(Reply::status(502));
        let e = sub_event("d6", EventType::SubscriptionStarted, "o-b", 0, true);
        assert!(matches!(
            r.d.process(e.clone(), 1).await,
            Outcome::Retry { .. }
        ));
        // WHEN the message is retried
        let out = r.d.process(e.clone(), 2).await;
        // THEN only the derived event is sent again, same id both times
        assert_eq!(out, Outcome::Delivered);
        let ids: Vec<String> =
            r.rx.requests()
                .iter()
                .map(|q| q.webhook_id().unwrap().to_owned())
                .collect();
        let granted = EventId::derive(&[e.id.as_str(), "ACCESS_GRANTED"]);
        assert_eq!(
            ids,
            vec![e.id.0.clone(), granted.0.clone(), granted.0.clone()]
        );
        assert_eq!(
            r.state.delivery(&granted).await.unwrap().unwrap().attempts,
            2
        );
    }

    #[tokio::test]
    async fn state_failures_retry_or_dead_letter_without_sending() {
        // GIVEN an unavailable state store
        let r = rig(Duration::from_secs(5)).await;
        r.state
            .fail_with(Some(StateError::Unavailable("throttled".into())));
        let e = sub_event("d7", EventType::SubscriptionRenewed, "o-s", 0, false);
        // THEN the message is retried and nothing is sent
        assert_eq!(
            r.d.process(e.clone(), 1).await,
            Outcome::Retry {
                delay: Duration::from_secs(5)
            }
        );
        // AND a permanent state error dead-letters
        r.state
            .fail_with(Some(StateError::Permanent("item too large".into())));
        assert!(matches!(
            r.d.process(e, 1).await,
            Outcome::DeadLetter { .. }
        ));
        assert_eq!(r.rx.count(), 0);
    }

    #[test]
    fn long_reasons_are_truncated_on_a_char_boundary() {
        let s = truncate("é".repeat(MAX_REASON));
        assert!(s.len() <= MAX_REASON + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }

    #[derive(Debug)]
    struct Accepting;

    #[async_trait::async_trait]
    impl crate::consumption::ConsumptionApi for Accepting {
        async fn send(
            &self,
            _: crate::stores::appstore::AppleEnvironment,
            _: &str,
            _: &crate::consumption::ConsumptionInfo,
        ) -> Result<(), crate::stores::appstore::api::ApiError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_refund_requests_answer_is_queued_before_the_delivery_is_recorded() {
        // GIVEN a dispatcher with the refund defence, whose queue is down
        let r = rig(Duration::from_secs(5)).await;
        let queue = Arc::new(crate::queue::MemoryQueue::new());
        let d =
            r.d.clone()
                .with_refund_defence(Some(Arc::new(RefundDefence::new(
                    Arc::new(Accepting),
                    queue.clone(),
                    crate::consumption::Settings::default(),
                    r.clock.clone(),
                ))));
        queue.fail_with(Some(crate::queue::QueueError::Unavailable("down".into())));
        let answer = r#"{"consumption":{"customerConsented":true,"deliveryStatus":"DELIVERED","sampleContentProvided":false}}"#;
        r.rx.set_default(Reply::status(200).with_body(answer));
        let mut e = sub_event("rr1", EventType::RefundRequested, "o-rr", 0, true);
        e.details.respond_by = Some(t(12 * 60));
        // WHEN the backend answers but the job cannot be queued
        let out = d.process(e.clone(), 1).await;
        // THEN the delivery is retried and not recorded as delivered
        assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
        let rec = r.state.delivery(&e.id).await.unwrap();
        assert!(
            rec.as_ref().is_none_or(|x| x.delivered_at.is_none()),
            "{rec:?}"
        );
        // WHEN the queue is back
        queue.fail_with(None);
        let out = d.process(e.clone(), 2).await;
        // THEN the event is delivered again (same webhook-id), the job queued, the delivery recorded
        assert_eq!(out, Outcome::Delivered);
        let ids: Vec<_> =
            r.rx.requests()
                .iter()
                .filter_map(|q| q.webhook_id().map(str::to_owned))
                .collect();
        assert_eq!(ids.iter().filter(|i| **i == e.id.0).count(), 2, "{ids:?}");
        let jobs: Vec<_> = queue
            .sent()
            .iter()
            .filter_map(|m| ConsumptionJob::parse(&m.body).map(Result::unwrap))
            .collect();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].request.id, e.id);
        assert!(
            r.state
                .delivery(&e.id)
                .await
                .unwrap()
                .unwrap()
                .delivered_at
                .is_some()
        );
        // AND a plain event's answer body is ignored
        let plain = sub_event("p1", EventType::SubscriptionRenewed, "o-rr", 5, true);
        assert_eq!(d.process(plain, 1).await, Outcome::Delivered);
        assert_eq!(queue.sent().len(), 1);
    }
}
