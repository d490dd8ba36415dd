//! Refund-fraud defence: answering Apple's refund requests (`CONSUMPTION_REQUEST`,
//! delivered as `REFUND_REQUESTED`) with consumption information, inside
//! Apple's 12-hour window.
//!
//! # Flow
//! 1. The dispatcher delivers an App Store `REFUND_REQUESTED`. The backend's
//!    2xx answer may carry `{"consumption": {…}}` in Apple's field names
//!    ([`ConsumptionInfo`]); `{"consumption": null}` means "send nothing";
//!    no answer (an empty body, non-JSON, no `consumption` key) lets the
//!    configured [`DefaultPolicy`] decide (off by default).
//! 2. [`RefundDefence::after_delivery`] validates the answer and puts a
//!    [`ConsumptionJob`] on the event queue — before the delivery is recorded,
//!    so a crash in between re-delivers the event and the backend answers again
//!    (nothing lost). The job has a FIFO group of its own: retrying it for hours
//!    never holds up the subscription's other events.
//! 3. The dispatcher runs the job ([`RefundDefence::run`]): `PUT
//!    /inApps/v2/transactions/consumption/{transactionId}`. 429, 5xx, transport
//!    errors, Apple's retryable "not found" codes and 401 (a key an operator
//!    can still fix) are retried with a backoff (30 s doubling, at most 30 min)
//!    while the window is open; any other 4xx is Apple's final word.
//! 4. The outcome is a `REFUND_CONSUMPTION_SENT` event (additive to v1:
//!    `details.consumption` = [`ConsumptionOutcome`], `details.cause_event_id`
//!    = the request) queued in the subscription's own group, so it is applied
//!    (it never changes the snapshot) and delivered in order like every event.
//!    Its id derives from the request's: a job run twice (a crash after Apple
//!    answered) sends the PUT again — Apple keeps the latest — and the event once.
//!
//! # Trust
//! Only store-signed data decides anything here: the transaction id, the
//! environment and the deadline (`details.respond_by`: Apple's signed date + 12 h)
//! come from the verified notification carried in the job; `suspicious_refund`
//! (the default policy's input) from its signed transaction. The backend's
//! answer only decides what is *sent* to Apple — it arrives over the
//! connection storehook opened to the configured webhook — and nothing is
//! sent unless it says `customerConsented: true` (Apple refuses anything else).
//! The default policy sends only when the operator has set
//! `REFUND_CUSTOMER_CONSENT=true`, stating that their users consented.

use crate::clock::Clock;
use crate::config::{ConfigError, Lookup, flag};
use crate::dispatch::Outcome;
use crate::event::{
    ConsumptionOutcome, Details, Environment, Event, EventId, EventType, Store, Timestamp,
};
use crate::queue::{EventQueue, QueueError, QueueMessage};
use crate::stores::appstore::AppleEnvironment;
use crate::stores::appstore::api::{ApiError, AppleApi};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Apple's window to answer a `CONSUMPTION_REQUEST`.
pub const WINDOW: chrono::Duration = chrono::Duration::hours(12);
/// First retry delay of a job; doubles per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Longest retry delay of a job.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
/// The value of a job message's first field (how the dispatcher tells a job
/// from an event).
pub const JOB_KIND: &str = "apple_consumption";
/// The start of every job message's body.
pub const JOB_PREFIX: &str = "{\"storehook_job\":";
/// `details.source` of a `REFUND_CONSUMPTION_SENT`.
pub const SOURCE: &str = "refund_defence";

/// Apple's `ConsumptionRequest` (App Store Server API 1.19+), exactly its
/// fields; unknown fields are refused so a typo never goes unnoticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsumptionInfo {
    /// Must be `true`: Apple refuses anything else.
    pub customer_consented: bool,
    /// Milliunits (0–100000) of the purchase consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumption_percentage: Option<u32>,
    /// `DELIVERED`, `UNDELIVERED_QUALITY_ISSUE`, `UNDELIVERED_WRONG_ITEM`,
    /// `UNDELIVERED_SERVER_OUTAGE` or `UNDELIVERED_OTHER`.
    pub delivery_status: String,
    /// `DECLINE`, `GRANT_FULL` or `GRANT_PRORATED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_preference: Option<String>,
    /// Whether a free sample, trial or description was provided before purchase.
    pub sample_content_provided: bool,
}

/// Apple's `deliveryStatus` values.
pub const DELIVERY_STATUSES: &[&str] = &[
    "DELIVERED",
    "UNDELIVERED_QUALITY_ISSUE",
    "UNDELIVERED_WRONG_ITEM",
    "UNDELIVERED_SERVER_OUTAGE",
    "UNDELIVERED_OTHER",
];
/// Apple's `refundPreference` values.
pub const REFUND_PREFERENCES: &[&str] = &["DECLINE", "GRANT_FULL", "GRANT_PRORATED"];

impl ConsumptionInfo {
    /// Checks the values Apple documents; the error says which field and why.
    pub fn validate(&self) -> Result<(), String> {
        if !self.customer_consented {
            return Err(
                "customerConsented must be true (Apple refuses consumption information \
                 sent without the customer's consent): nothing sent"
                    .into(),
            );
        }
        if !DELIVERY_STATUSES.contains(&self.delivery_status.as_str()) {
            return Err(format!(
                "deliveryStatus {:?} is not one of {DELIVERY_STATUSES:?}",
                crate::http::sanitize(&self.delivery_status)
            ));
        }
        if let Some(p) = &self.refund_preference
            && !REFUND_PREFERENCES.contains(&p.as_str())
        {
            return Err(format!(
                "refundPreference {:?} is not one of {REFUND_PREFERENCES:?}",
                crate::http::sanitize(p)
            ));
        }
        if let Some(pct) = self.consumption_percentage
            && pct > 100_000
        {
            return Err(format!(
                "consumptionPercentage {pct} is not between 0 and 100000 (milliunits)"
            ));
        }
        if self.refund_preference.as_deref() == Some("GRANT_PRORATED")
            && self.consumption_percentage.is_none()
        {
            return Err("refundPreference GRANT_PRORATED needs a consumptionPercentage".into());
        }
        Ok(())
    }
}

/// What storehook sends when the backend's answer says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultPolicy {
    /// Send nothing (the default).
    #[default]
    Off,
    /// Send the facts (`DELIVERED`, `sampleContentProvided` as configured), no
    /// refund preference.
    NoPreference,
    /// As [`DefaultPolicy::NoPreference`], with `refundPreference: DECLINE`
    /// when the request is flagged `suspicious_refund`.
    DeclineWhenSuspicious,
}

/// The refund-defence settings (`storehook serve` and the dispatcher Lambda).
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `REFUND_CONSUMPTION_DEFAULT` | `off`, `no-preference` or `decline-when-suspicious`: what is sent when the backend's answer says nothing | `off` |
/// | `REFUND_CUSTOMER_CONSENT` | `true` states that the app's users consented to sharing consumption data with Apple; required by any default other than `off` | `false` |
/// | `REFUND_SAMPLE_CONTENT_PROVIDED` | the default answer's `sampleContentProvided` (e.g. `true` for apps with a free trial) | `false` |
///
/// The defence runs when the App Store Server API is configured (`APPLE_API_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// The default policy.
    pub default: DefaultPolicy,
    /// `sampleContentProvided` of default answers.
    pub sample_content_provided: bool,
}

impl Settings {
    /// Reads the settings; a default policy without the consent statement is an error.
    pub fn from_lookup(l: &impl Lookup) -> Result<Self, ConfigError> {
        let default = match l
            .get("REFUND_CONSUMPTION_DEFAULT")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("" | "off") => DefaultPolicy::Off,
            Some("no-preference") => DefaultPolicy::NoPreference,
            Some("decline-when-suspicious") => DefaultPolicy::DeclineWhenSuspicious,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "REFUND_CONSUMPTION_DEFAULT",
                    reason: format!(
                        "{:?} is not off, no-preference or decline-when-suspicious",
                        crate::http::sanitize(other)
                    ),
                });
            }
        };
        let consent = flag(l, "REFUND_CUSTOMER_CONSENT", false)?;
        if default != DefaultPolicy::Off && !consent {
            return Err(ConfigError::Invalid {
                var: "REFUND_CONSUMPTION_DEFAULT",
                reason: "a default answer is sent to Apple only with REFUND_CUSTOMER_CONSENT=true \
                         (you state that your users consented to sharing consumption data)"
                    .into(),
            });
        }
        Ok(Self {
            default,
            sample_content_provided: flag(l, "REFUND_SAMPLE_CONTENT_PROVIDED", false)?,
        })
    }
}

/// One answer to send (or report as invalid), queued after the delivery of a
/// `REFUND_REQUESTED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumptionJob {
    /// Always [`JOB_KIND`]; first, so the body starts with [`JOB_PREFIX`].
    pub storehook_job: String,
    /// The `REFUND_REQUESTED` as delivered (verified store data).
    pub request: Event,
    /// `backend` or `default`.
    pub origin: String,
    /// What to send; `None` with `invalid`.
    pub consumption: Option<ConsumptionInfo>,
    /// Why the backend's answer was not sent.
    pub invalid: Option<String>,
    /// The request's `respond_by`.
    pub deadline: Timestamp,
}

impl ConsumptionJob {
    /// The queue message: a group of its own, deduplicated per request.
    pub fn message(&self) -> Result<QueueMessage, QueueError> {
        Ok(QueueMessage {
            group_id: format!("consumption_{}", self.request.id),
            dedup_id: EventId::derive(&[self.request.id.as_str(), "consumption-job"]).0,
            body: serde_json::to_string(self)
                .map_err(|e| QueueError::Permanent(format!("job does not serialize: {e}")))?,
        })
    }

    /// The job in a message body, when the body is one (see [`JOB_PREFIX`]).
    pub fn parse(body: &str) -> Option<Result<Self, serde_json::Error>> {
        body.starts_with(JOB_PREFIX)
            .then(|| serde_json::from_str(body))
    }
}

/// The one call the defence makes to Apple (a port: tests and the real client).
#[async_trait]
pub trait ConsumptionApi: Send + Sync + fmt::Debug {
    /// Send Consumption Information for `transaction_id` in `env`.
    async fn send(
        &self,
        env: AppleEnvironment,
        transaction_id: &str,
        info: &ConsumptionInfo,
    ) -> Result<(), ApiError>;
}

#[async_trait]
impl ConsumptionApi for AppleApi {
    async fn send(
        &self,
        env: AppleEnvironment,
        transaction_id: &str,
        info: &ConsumptionInfo,
    ) -> Result<(), ApiError> {
        let body = serde_json::to_vec(info)
            .map_err(|e| ApiError::Malformed(format!("consumption body: {e}")))?;
        self.send_consumption_information(env, transaction_id, body)
            .await
    }
}

/// What the backend's answer to a `REFUND_REQUESTED` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Nothing about consumption (empty, not JSON, no `consumption` key).
    Silent,
    /// `{"consumption": null}`: send nothing, whatever the default.
    Declined,
    /// A valid answer.
    Send(ConsumptionInfo),
    /// An answer that cannot be sent, and why.
    Invalid(String),
}

/// Reads the backend's answer (the start of its 2xx body).
pub fn read_answer(body: &[u8]) -> Answer {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(body) else {
        return Answer::Silent;
    };
    match map.remove("consumption") {
        None => Answer::Silent,
        Some(serde_json::Value::Null) => Answer::Declined,
        Some(v) => match serde_json::from_value::<ConsumptionInfo>(v) {
            Err(e) => Answer::Invalid(format!(
                "consumption is not Apple's ConsumptionRequest: {}",
                crate::http::sanitize(&e.to_string())
            )),
            Ok(info) => match info.validate() {
                Ok(()) => Answer::Send(info),
                Err(why) => Answer::Invalid(why),
            },
        },
    }
}

/// The refund defence of one dispatcher.
#[derive(Debug, Clone)]
pub struct RefundDefence {
    api: Arc<dyn ConsumptionApi>,
    queue: Arc<dyn EventQueue>,
    settings: Settings,
    clock: Arc<dyn Clock>,
}

/// Whether `event` is a refund request the defence answers.
pub fn is_refund_request(event: &Event) -> bool {
    event.kind == EventType::RefundRequested && event.store == Store::AppStore
}

impl RefundDefence {
    /// A defence calling `api`, queueing on `queue`.
    pub fn new(
        api: Arc<dyn ConsumptionApi>,
        queue: Arc<dyn EventQueue>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            api,
            queue,
            settings,
            clock,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.clock.now())
    }

    /// The default answer for `request`, if the policy gives one.
    fn default_answer(&self, request: &Event) -> Option<ConsumptionInfo> {
        let preference = match self.settings.default {
            DefaultPolicy::Off => return None,
            DefaultPolicy::NoPreference => None,
            DefaultPolicy::DeclineWhenSuspicious => {
                (request.details.suspicious_refund == Some(true)).then(|| "DECLINE".to_owned())
            }
        };
        Some(ConsumptionInfo {
            customer_consented: true,
            consumption_percentage: None,
            delivery_status: "DELIVERED".into(),
            refund_preference: preference,
            sample_content_provided: self.settings.sample_content_provided,
        })
    }

    /// After `request` (a delivered App Store `REFUND_REQUESTED`) was answered
    /// 2xx with `body`: queues the job the answer (or the default policy) calls
    /// for. `Err`: the job could not be queued; the delivery must be retried.
    pub async fn after_delivery(&self, request: &Event, body: &[u8]) -> Result<(), QueueError> {
        if !is_refund_request(request) {
            return Ok(());
        }
        let (origin, consumption, invalid) = match read_answer(body) {
            Answer::Declined => {
                tracing::info!(event_id = %request.id, "refund request: the backend declined to send consumption information");
                return Ok(());
            }
            Answer::Send(info) => ("backend", Some(info), None),
            Answer::Invalid(why) => {
                tracing::warn!(event_id = %request.id, error = %why, "refund request: the backend's consumption answer is invalid; nothing is sent");
                ("backend", None, Some(why))
            }
            Answer::Silent => match self.default_answer(request) {
                Some(info) => ("default", Some(info), None),
                None => return Ok(()),
            },
        };
        let deadline = request
            .details
            .respond_by
            .unwrap_or_else(|| request.received_at.plus(WINDOW));
        let job = ConsumptionJob {
            storehook_job: JOB_KIND.into(),
            request: request.clone(),
            origin: origin.into(),
            consumption,
            invalid,
            deadline,
        };
        self.queue.send(&[job.message()?]).await
    }

    /// Runs one job (attempt `receive_count`): sends it to Apple while the
    /// window is open, then queues the `REFUND_CONSUMPTION_SENT` outcome.
    pub async fn run(&self, job: &ConsumptionJob, receive_count: u32) -> Outcome {
        let attempt = receive_count.max(1);
        let now = self.now();
        let sent = job
            .consumption
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok());
        let mut outcome = ConsumptionOutcome {
            result: String::new(),
            origin: job.origin.clone(),
            sent,
            apple_status: None,
            apple_error_code: None,
            error: None,
            attempts: attempt,
        };
        match (&job.consumption, &job.invalid) {
            (Some(info), None) => {
                if now >= job.deadline {
                    outcome.result = "EXPIRED".into();
                    outcome.attempts = attempt - 1;
                    outcome.error = Some("Apple's 12-hour window closed before it was sent".into());
                } else {
                    match self.call(job, info).await {
                        Ok(()) => {
                            outcome.result = "ACCEPTED".into();
                            outcome.apple_status = Some(202);
                        }
                        Err(e) => {
                            let (status, code) = status_and_code(&e);
                            outcome.apple_status = status;
                            outcome.apple_error_code = code;
                            outcome.error = Some(e.to_string());
                            if retryable(&e) {
                                let delay = backoff(attempt);
                                let next = now.plus(
                                    chrono::Duration::from_std(delay)
                                        .unwrap_or(chrono::Duration::zero()),
                                );
                                if next < job.deadline {
                                    tracing::warn!(request_id = %job.request.id, attempt, error = %e, delay_s = delay.as_secs(), "consumption information not taken; retrying");
                                    return Outcome::Retry { delay };
                                }
                                outcome.result = "EXPIRED".into();
                            } else {
                                outcome.result = "REFUSED".into();
                            }
                        }
                    }
                }
            }
            _ => {
                outcome.result = "INVALID".into();
                outcome.attempts = 0;
                outcome.error = Some(why_or_missing(job.invalid.as_deref()));
            }
        }
        let event = outcome_event(job, outcome, now);
        tracing::info!(request_id = %job.request.id, event_id = %event.id, result = event.details.consumption.as_ref().map(|c| c.result.as_str()), "refund request answered");
        match QueueMessage::for_event(&event) {
            Err(e) => Outcome::DeadLetter {
                reason: e.to_string(),
            },
            Ok(m) => match self.queue.send(&[m]).await {
                Ok(()) => Outcome::Delivered,
                Err(e) => {
                    tracing::warn!(error = %e, "could not queue REFUND_CONSUMPTION_SENT; the job is retried");
                    Outcome::Retry {
                        delay: FIRST_BACKOFF,
                    }
                }
            },
        }
    }

    async fn call(&self, job: &ConsumptionJob, info: &ConsumptionInfo) -> Result<(), ApiError> {
        let env = match job.request.environment {
            Environment::Sandbox => AppleEnvironment::Sandbox,
            _ => AppleEnvironment::Production,
        };
        let Some(tx) = job.request.transaction.as_ref() else {
            return Err(ApiError::Refused {
                status: 0,
                code: None,
                message: "the refund request names no transaction".into(),
            });
        };
        self.api.send(env, &tx.id, info).await
    }
}

fn why_or_missing(why: Option<&str>) -> String {
    why.unwrap_or("no consumption information").to_owned()
}

/// Apple's "not found, retryable" error codes (`AccountNotFoundRetryableError`,
/// `AppNotFoundRetryableError`, `OriginalTransactionIdNotFoundRetryableError`).
pub const RETRYABLE_NOT_FOUND: &[i64] = &[4_040_002, 4_040_004, 4_040_006];

/// Worth asking again while the window is open: rate limits, outages (5xx,
/// `GeneralInternalRetryableError` included), Apple's retryable "not found"
/// codes, and a refused token (a key the operator can still fix within the
/// window). Every other 4xx is Apple's final word (e.g. `4000035`
/// `InvalidCustomerConsentedError`).
fn retryable(e: &ApiError) -> bool {
    e.retryable()
        || matches!(e, ApiError::Unauthorized)
        || matches!(e, ApiError::Refused { code: Some(c), .. } if RETRYABLE_NOT_FOUND.contains(c))
}

fn status_and_code(e: &ApiError) -> (Option<u16>, Option<i64>) {
    match e {
        ApiError::Unauthorized => (Some(401), None),
        ApiError::RateLimited { code, .. } => (Some(429), *code),
        ApiError::Refused { status, code, .. } => ((*status != 0).then_some(*status), *code),
        _ => (None, None),
    }
}

/// The delay before attempt `attempt + 1`.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(10);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The `REFUND_CONSUMPTION_SENT` event of `job`: the request's store facts,
/// its own id derived from the request's, the outcome in `details.consumption`.
pub fn outcome_event(job: &ConsumptionJob, outcome: ConsumptionOutcome, now: Timestamp) -> Event {
    let r = &job.request;
    Event {
        api_version: r.api_version,
        id: EventId::derive(&[r.id.as_str(), "REFUND_CONSUMPTION_SENT"]),
        kind: EventType::RefundConsumptionSent,
        occurred_at: r.occurred_at,
        received_at: now,
        sequence: 0,
        store: r.store.clone(),
        environment: r.environment.clone(),
        app_id: r.app_id.clone(),
        app_user_id: r.app_user_id.clone(),
        product: r.product.clone(),
        subscription: r.subscription.clone(),
        transaction: r.transaction.clone(),
        entitlement: r.entitlement.clone(),
        details: Details {
            cause_event_id: Some(r.id.clone()),
            cause_type: Some(r.kind.clone()),
            source: Some(SOURCE.into()),
            consumption: Some(outcome),
            ..Details::default()
        },
        store_notification: r.store_notification.clone(),
        raw: None,
        previous_sequence: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::queue::MemoryQueue;
    use crate::state::fixtures::{sub_event, t};
    use crate::stores::appstore::api::ApiSettings;
    use crate::stores::appstore::verify::JwsVerifier;
    use serde_json::json;
    use storehook_testkit::apple_api::{ApiKey, FakeAppleApi};
    use storehook_testkit::appstore::TestPki;
    use storehook_testkit::appstore::payloads::BUNDLE_ID;

    const VALID: &str = r#"{"consumption":{"customerConsented":true,"deliveryStatus":"DELIVERED","sampleContentProvided":false,"consumptionPercentage":25000,"refundPreference":"DECLINE"}}"#;

    struct Rig {
        fake: FakeAppleApi,
        queue: Arc<MemoryQueue>,
        clock: Arc<ManualClock>,
        defence: RefundDefence,
    }

    async fn rig(settings: Settings) -> Rig {
        let pki = TestPki::new();
        let root = pki.root_der.clone();
        let key = ApiKey::generate();
        let fake = FakeAppleApi::start(key.clone(), BUNDLE_ID, pki).await;
        // The request's window: t(0) + 12 h; "now" is an hour into it.
        let clock = Arc::new(ManualClock::new(t(60).0));
        let settings_api =
            ApiSettings::new(&key.key_id, &key.issuer_id, BUNDLE_ID, &key.private_key_pem)
                .with_base_url(fake.url());
        let verifier = Arc::new(JwsVerifier::new(std::slice::from_ref(&root)).unwrap());
        let api = Arc::new(AppleApi::new(settings_api, verifier, clock.clone()).unwrap());
        let queue = Arc::new(MemoryQueue::new());
        let defence = RefundDefence::new(api, queue.clone(), settings, clock.clone());
        fake.set_now_ms(t(60).millis());
        Rig {
            fake,
            queue,
            clock,
            defence,
        }
    }

    impl Rig {
        /// Moves storehook's clock and the fake Apple's (it checks the JWT's expiry).
        fn set_now(&self, now: Timestamp) {
            self.clock.set(now.0);
            self.fake.set_now_ms(now.millis());
        }
    }

    fn request(suspicious: Option<bool>) -> Event {
        let mut e = sub_event("cr-1", EventType::RefundRequested, "o-1", 0, true);
        e.details.respond_by = Some(t(12 * 60));
        e.details.suspicious_refund = suspicious;
        e
    }

    fn jobs(q: &MemoryQueue) -> Vec<ConsumptionJob> {
        q.sent()
            .iter()
            .filter_map(|m| ConsumptionJob::parse(&m.body).map(Result::unwrap))
            .collect()
    }

    fn outcomes(q: &MemoryQueue) -> Vec<(String, Event)> {
        q.sent()
            .iter()
            .filter(|m| ConsumptionJob::parse(&m.body).is_none())
            .map(|m| (m.group_id.clone(), serde_json::from_str(&m.body).unwrap()))
            .collect()
    }

    fn consent() -> Settings {
        Settings {
            default: DefaultPolicy::DeclineWhenSuspicious,
            sample_content_provided: true,
        }
    }

    #[test]
    fn the_backend_answer_is_read_strictly() {
        for silent in ["", "ok", "{}", r#"{"received":true}"#, "[1]"] {
            assert_eq!(read_answer(silent.as_bytes()), Answer::Silent, "{silent}");
        }
        assert_eq!(read_answer(br#"{"consumption":null}"#), Answer::Declined);
        let Answer::Send(info) = read_answer(VALID.as_bytes()) else {
            panic!("valid answer refused");
        };
        assert_eq!(info.consumption_percentage, Some(25_000));
        let invalid = [
            (
                r#"{"consumption":{"customerConsented":false,"deliveryStatus":"DELIVERED","sampleContentProvided":false}}"#,
                "customerConsented must be true",
            ),
            (
                r#"{"consumption":{"deliveryStatus":"DELIVERED","sampleContentProvided":false}}"#,
                "customerConsented",
            ),
            (
                r#"{"consumption":{"customerConsented":true,"deliveryStatus":"LOST","sampleContentProvided":false}}"#,
                "deliveryStatus",
            ),
            (
                r#"{"consumption":{"customerConsented":true,"deliveryStatus":"DELIVERED","sampleContentProvided":false,"refundPreference":"MAYBE"}}"#,
                "refundPreference",
            ),
            (
                r#"{"consumption":{"customerConsented":true,"deliveryStatus":"DELIVERED","sampleContentProvided":false,"consumptionPercentage":100001}}"#,
                "consumptionPercentage",
            ),
            (
                r#"{"consumption":{"customerConsented":true,"deliveryStatus":"DELIVERED","sampleContentProvided":false,"refundPreference":"GRANT_PRORATED"}}"#,
                "GRANT_PRORATED",
            ),
            (
                r#"{"consumption":{"customerConsented":true,"deliveryStatus":"DELIVERED","sampleContentProvided":false,"playTime":3}}"#,
                "playTime",
            ),
            (r#"{"consumption":"yes"}"#, "ConsumptionRequest"),
        ];
        for (body, why) in invalid {
            match read_answer(body.as_bytes()) {
                Answer::Invalid(e) => assert!(e.contains(why), "{body}: {e}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_default_answer_needs_the_consent_statement() {
        fn l<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        }
        assert_eq!(Settings::from_lookup(&l(&[])).unwrap(), Settings::default());
        let e = Settings::from_lookup(&l(&[(
            "REFUND_CONSUMPTION_DEFAULT",
            "decline-when-suspicious",
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("REFUND_CUSTOMER_CONSENT"), "{e}");
        let s = Settings::from_lookup(&l(&[
            ("REFUND_CONSUMPTION_DEFAULT", "decline-when-suspicious"),
            ("REFUND_CUSTOMER_CONSENT", "true"),
            ("REFUND_SAMPLE_CONTENT_PROVIDED", "true"),
        ]))
        .unwrap();
        assert_eq!(s, consent());
        assert!(
            Settings::from_lookup(&l(&[
                ("REFUND_CONSUMPTION_DEFAULT", "always"),
                ("REFUND_CUSTOMER_CONSENT", "true"),
            ]))
            .is_err()
        );
    }

    #[tokio::test]
    async fn the_backend_answer_reaches_apple_and_the_outcome_is_queued_in_the_subscription_stream()
    {
        let r = rig(Settings::default()).await;
        let req = request(None);
        // WHEN the backend answered the delivery with consumption information
        r.defence
            .after_delivery(&req, VALID.as_bytes())
            .await
            .unwrap();
        // THEN one job, in a group of its own
        let sent = r.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_ne!(sent[0].group_id, req.group_key());
        let job = &jobs(&r.queue)[0];
        assert_eq!(job.origin, "backend");
        assert_eq!(job.deadline, t(12 * 60));
        // WHEN it runs
        assert_eq!(r.defence.run(job, 1).await, Outcome::Delivered);
        // THEN Apple got the body for the request's transaction (the fake checked the JWT)
        let got = r.fake.consumptions();
        assert_eq!(got.len(), 1, "refused: {:?}", r.fake.refused());
        assert_eq!(got[0].0, "txn-cr-1");
        assert_eq!(
            got[0].1,
            json!({"customerConsented": true, "deliveryStatus": "DELIVERED",
                   "sampleContentProvided": false, "consumptionPercentage": 25000,
                   "refundPreference": "DECLINE"})
        );
        // AND REFUND_CONSUMPTION_SENT is queued in the subscription's group
        let out = outcomes(&r.queue);
        assert_eq!(out.len(), 1);
        let (group, ev) = &out[0];
        assert_eq!(group, &req.group_key());
        assert_eq!(ev.kind, EventType::RefundConsumptionSent);
        assert_eq!(ev.details.cause_event_id.as_ref(), Some(&req.id));
        assert_eq!(ev.details.source.as_deref(), Some(SOURCE));
        let c = ev.details.consumption.as_ref().unwrap();
        assert_eq!(
            (
                c.result.as_str(),
                c.origin.as_str(),
                c.apple_status,
                c.attempts
            ),
            ("ACCEPTED", "backend", Some(202), 1)
        );
        assert_eq!(c.sent.as_ref(), Some(&got[0].1));
        // AND a second run (a crash before the ack) queues the same event id
        assert_eq!(r.defence.run(job, 2).await, Outcome::Delivered);
        let again = outcomes(&r.queue);
        assert_eq!(again[1].1.id, ev.id);
    }

    #[tokio::test]
    async fn rate_limits_and_outages_are_retried_inside_the_window_only() {
        let r = rig(Settings::default()).await;
        r.defence
            .after_delivery(&request(None), VALID.as_bytes())
            .await
            .unwrap();
        let job = jobs(&r.queue)[0].clone();
        // 429, then 503: retried with a growing delay, nothing queued yet
        r.fake.push_reply(
            429,
            json!({"errorCode": 4290000, "errorMessage": "Rate limit exceeded."}),
        );
        r.fake.push_reply(503, json!({}));
        assert_eq!(
            r.defence.run(&job, 1).await,
            Outcome::Retry {
                delay: Duration::from_secs(30)
            }
        );
        assert_eq!(
            r.defence.run(&job, 2).await,
            Outcome::Retry {
                delay: Duration::from_secs(60)
            }
        );
        assert!(outcomes(&r.queue).is_empty());
        // then accepted on the third attempt
        assert_eq!(r.defence.run(&job, 3).await, Outcome::Delivered);
        let c = outcomes(&r.queue)[0].1.details.consumption.clone().unwrap();
        assert_eq!((c.result.as_str(), c.attempts), ("ACCEPTED", 3));

        // A failure whose retry would land after the window: EXPIRED, with Apple's answer.
        r.set_now(t(12 * 60 - 1));
        r.fake.push_reply(503, json!({}));
        assert_eq!(r.defence.run(&job, 4).await, Outcome::Delivered);
        let c = outcomes(&r.queue)[1].1.details.consumption.clone().unwrap();
        assert_eq!(c.result, "EXPIRED");
        assert!(c.error.unwrap().contains("503"));

        // Past the window: EXPIRED without calling Apple.
        let calls = r.fake.calls();
        r.set_now(t(12 * 60));
        assert_eq!(r.defence.run(&job, 5).await, Outcome::Delivered);
        assert_eq!(
            r.fake.calls(),
            calls,
            "Apple is not called after the window"
        );
        let c = outcomes(&r.queue)[2].1.details.consumption.clone().unwrap();
        assert_eq!((c.result.as_str(), c.apple_status), ("EXPIRED", None));
    }

    #[tokio::test]
    async fn apples_refusal_is_final_and_reported() {
        let r = rig(Settings::default()).await;
        r.defence
            .after_delivery(&request(None), VALID.as_bytes())
            .await
            .unwrap();
        let job = jobs(&r.queue)[0].clone();
        r.fake.push_reply(
            400,
            json!({"errorCode": 4000035, "errorMessage": "Invalid customer consented."}),
        );
        assert_eq!(r.defence.run(&job, 1).await, Outcome::Delivered);
        let c = outcomes(&r.queue)[0].1.details.consumption.clone().unwrap();
        assert_eq!(
            (c.result.as_str(), c.apple_status, c.apple_error_code),
            ("REFUSED", Some(400), Some(4000035))
        );
        // Apple's "not found, retryable" is retried; a plain "not found" is final.
        r.fake.push_reply(
            404,
            json!({"errorCode": 4040006, "errorMessage": "Original transaction id not found. Please try again."}),
        );
        assert!(matches!(
            r.defence.run(&job, 1).await,
            Outcome::Retry { .. }
        ));
        r.fake.push_reply(
            404,
            json!({"errorCode": 4040010, "errorMessage": "Transaction id not found."}),
        );
        assert_eq!(r.defence.run(&job, 2).await, Outcome::Delivered);
        let c = outcomes(&r.queue)[1].1.details.consumption.clone().unwrap();
        assert_eq!(
            (c.result.as_str(), c.apple_error_code),
            ("REFUSED", Some(4040010))
        );
        // A refused token is retried (the operator can fix the key within the window).
        let bad = RefundDefence::new(
            Arc::new(
                AppleApi::new(
                    ApiSettings::new(
                        "WRONGKEY",
                        "issuer",
                        BUNDLE_ID,
                        &ApiKey::generate().private_key_pem,
                    )
                    .with_base_url(r.fake.url()),
                    Arc::new(
                        JwsVerifier::new(std::slice::from_ref(&TestPki::new().root_der)).unwrap(),
                    ),
                    r.clock.clone(),
                )
                .unwrap(),
            ),
            r.queue.clone(),
            Settings::default(),
            r.clock.clone(),
        );
        assert!(matches!(bad.run(&job, 1).await, Outcome::Retry { .. }));
    }

    #[tokio::test]
    async fn an_invalid_answer_is_reported_and_never_sent() {
        let r = rig(consent()).await;
        let body = r#"{"consumption":{"customerConsented":false,"deliveryStatus":"DELIVERED","sampleContentProvided":false}}"#;
        r.defence
            .after_delivery(&request(Some(true)), body.as_bytes())
            .await
            .unwrap();
        let job = jobs(&r.queue)[0].clone();
        assert!(job.consumption.is_none());
        assert_eq!(r.defence.run(&job, 1).await, Outcome::Delivered);
        assert_eq!(r.fake.calls(), 0, "nothing is sent without consent");
        let c = outcomes(&r.queue)[0].1.details.consumption.clone().unwrap();
        assert_eq!((c.result.as_str(), c.attempts), ("INVALID", 0));
        assert!(c.error.unwrap().contains("customerConsented"));
    }

    #[tokio::test]
    async fn the_default_policy_answers_only_when_the_backend_is_silent() {
        // Off (the default): a silent backend → nothing at all.
        let off = rig(Settings::default()).await;
        off.defence
            .after_delivery(&request(Some(true)), b"")
            .await
            .unwrap();
        assert!(off.queue.sent().is_empty());

        let r = rig(consent()).await;
        // Suspicious → DECLINE; not suspicious → no preference.
        r.defence
            .after_delivery(&request(Some(true)), b"OK")
            .await
            .unwrap();
        let mut other = request(Some(false));
        other.id = EventId::derive(&["other"]);
        r.defence.after_delivery(&other, b"{}").await.unwrap();
        let js = jobs(&r.queue);
        assert_eq!(js.len(), 2);
        assert_eq!(js[0].origin, "default");
        let d = js[0].consumption.clone().unwrap();
        assert_eq!(
            (
                d.customer_consented,
                d.delivery_status.as_str(),
                d.sample_content_provided
            ),
            (true, "DELIVERED", true)
        );
        assert_eq!(d.refund_preference.as_deref(), Some("DECLINE"));
        assert_eq!(js[1].consumption.clone().unwrap().refund_preference, None);
        // An explicit null overrides the default.
        r.defence
            .after_delivery(&request(Some(true)), br#"{"consumption":null}"#)
            .await
            .unwrap();
        assert_eq!(jobs(&r.queue).len(), 2);
        // Other events and other stores are not refund requests.
        let renewal = sub_event("n", EventType::SubscriptionRenewed, "o-1", 0, true);
        r.defence
            .after_delivery(&renewal, VALID.as_bytes())
            .await
            .unwrap();
        let mut play = request(Some(true));
        play.store = Store::GooglePlay;
        r.defence
            .after_delivery(&play, VALID.as_bytes())
            .await
            .unwrap();
        assert_eq!(r.queue.sent().len(), 2);
    }

    #[test]
    fn backoff_doubles_up_to_half_an_hour() {
        let d: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(d, [30, 60, 120, 240, 480, 960, 1800, 1800]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
