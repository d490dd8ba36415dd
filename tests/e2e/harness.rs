//! Harness of storehook's end-to-end tests (`tests/e2e`): the real ingest
//! path (App Store verification → [`Ingest`] → SQS FIFO), the real dispatcher
//! path ([`poll_once`] → the Lambda's batch handler → DynamoDB → a signed POST)
//! and a scripted loopback webhook receiver, against a local AWS emulator
//! (moto) named by `STOREHOOK_TEST_AWS_ENDPOINT`.
//!
//! Every [`Harness`] provisions its own queue, dead-letter queue and table
//! (unique names, created by [`storehook_testkit::provision`] with the
//! attributes `template.yaml` declares), so tests run in parallel without
//! seeing each other's messages or items.
//!
//! Failures here are test failures: the harness panics with a description.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storehook_shared::clock::{Clock, ManualClock, SystemClock};
use storehook_shared::dispatch::Dispatcher;
use storehook_shared::dispatch::sqs_poller::poll_once;
use storehook_shared::event::{Event, EventId, Store, SubscriptionId, Timestamp};
use storehook_shared::ingest::{AppStoreEndpoint, Ingest, StoreRequest, StoreResponse};
use storehook_shared::provision::{DEFAULT_MAX_RECEIVE_COUNT, QUEUE_VISIBILITY_TIMEOUT_S};
use storehook_shared::queue::message_control::MessageControl;
use storehook_shared::queue::sqs::{SqsMessageControl, SqsQueue};
use storehook_shared::retry::RetrySchedule;
use storehook_shared::state::{
    DeliveryRecord, Due, DynamoState, GroupState, Recorded, StateError, StateStore,
};
use storehook_shared::stores::appstore::{AppStore, AppStoreConfig};
use storehook_shared::webhook::{
    DEFAULT_TOLERANCE, HttpWebhookSender, WebhookSecret, WebhookSecrets, verify,
};
use storehook_testkit::appstore::TestPki;
use storehook_testkit::appstore::payloads::{self, APP_APPLE_ID, BUNDLE_ID, DAY, T0};

/// The dispatcher's clock in these tests: before every notification they
/// sign (the earliest is 50 months before `T0`), so every entitlement is
/// still running when applied, as when the store sends a notification live.
/// (An entitlement whose end has passed at apply time is delivered inactive.)
pub const DISPATCH_NOW: i64 = T0 - 60 * 31 * DAY;
use storehook_testkit::emulator::{TEST_ENDPOINT_ENV, test_sdk_config};
use storehook_testkit::provision::{self, Provisioned};
use storehook_testkit::receiver::{ReceivedRequest, TestReceiver};

pub use storehook_testkit::receiver::Reply;

/// One hour in ms.
pub const HOUR: i64 = 3_600_000;

/// How a [`Harness`] is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The dispatcher's retry schedule (jitter is always 0).
    pub schedule: &'static str,
    /// The webhook sender's per-attempt timeout.
    pub sender_timeout: Duration,
    /// The redrive policy's `maxReceiveCount` (production: 14).
    pub max_receive_count: u32,
    /// The queue's visibility timeout (production: 720 s).
    pub visibility_timeout_s: u32,
}

impl Default for Options {
    /// Production queue attributes, a fast retry schedule.
    fn default() -> Self {
        Self {
            schedule: "1s,1s,1s",
            sender_timeout: Duration::from_secs(5),
            max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
            visibility_timeout_s: QUEUE_VISIBILITY_TIMEOUT_S,
        }
    }
}

/// A delivered request, parsed and signature-checked.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The `webhook-id` header (as verified).
    pub webhook_id: String,
    /// The body as an event.
    pub event: Event,
    /// The status the receiver answered.
    pub answered: u16,
    /// The raw body.
    pub body: bytes::Bytes,
}

/// Provisioned resources, the ingest and dispatcher wiring, the receiver.
#[derive(Debug)]
pub struct Harness {
    /// Test name (for messages).
    pub name: String,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB client.
    pub ddb: aws_sdk_dynamodb::Client,
    /// The queues and the table of this test.
    pub resources: Provisioned,
    /// The dispatcher's state store (read it in assertions).
    pub state: Arc<dyn StateStore>,
    /// The webhook receiver.
    pub rx: TestReceiver,
    /// The secrets the sender signs with and the receiver verifies with.
    pub secrets: WebhookSecrets,
    /// The dispatcher (same wiring as the dispatcher Lambda).
    pub dispatcher: Arc<Dispatcher>,
    /// ChangeMessageVisibility / explicit dead-lettering on this test's queues.
    pub control: Arc<dyn MessageControl>,
    /// The App Store endpoint's ingest, writing to this test's queue.
    pub ingest: Ingest,
    /// The generated Apple-like PKI the notifications are signed with.
    pub pki: TestPki,
    /// A random prefix for store ids of this test.
    pub tag: String,
    /// SQS messages handled by the dispatcher so far.
    pub handled: std::sync::atomic::AtomicUsize,
}

/// The emulator configuration, or `None` after printing the SKIP line.
pub async fn emulator(test: &str) -> Option<SdkConfig> {
    let sdk = test_sdk_config().await;
    if sdk.is_none() {
        eprintln!("SKIP {test}: {TEST_ENDPOINT_ENV} not set");
    }
    sdk
}

impl Harness {
    /// Provisions the resources of test `test` and wires everything; `None`
    /// (after printing `SKIP`) when no emulator is configured.
    pub async fn start(test: &str, options: Options) -> Option<Self> {
        let sdk = emulator(test).await?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let tag = format!("{:08x}", fastrand_u32());
        // Queue names: `<name>.fifo`, `<name>-dlq.fifo` (≤ 80 characters).
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(40)
            .collect();
        let name = format!("e2e-{short}-{tag}");
        let queues = provision::create_queues(
            &sqs,
            &name,
            options.max_receive_count,
            options.visibility_timeout_s,
        )
        .await
        .unwrap_or_else(|e| panic!("{test}: provisioning the queues failed: {e}"));
        provision::create_table(&ddb, &name)
            .await
            .unwrap_or_else(|e| panic!("{test}: provisioning the table failed: {e}"));
        let resources = Provisioned {
            queues,
            table_name: name.clone(),
        };

        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let state: Arc<dyn StateStore> = Arc::new(SerializedState::new(DynamoState::from_sdk(
            &sdk,
            &name,
            clock.clone(),
        )));
        let rx = TestReceiver::start().await.expect("receiver starts");
        let secrets =
            WebhookSecrets::parse(&WebhookSecret::generate().expect("secret")).expect("secret");
        let sender = HttpWebhookSender::new(
            &rx.url(),
            secrets.clone(),
            options.sender_timeout,
            clock.clone(),
        )
        .expect("sender");
        let schedule = RetrySchedule::parse(options.schedule)
            .expect("schedule")
            .with_jitter(0.0);
        let dispatcher = Arc::new(Dispatcher::new(
            state.clone(),
            Arc::new(sender),
            schedule,
            Arc::new(ManualClock::new(
                Timestamp::from_millis_clamped(DISPATCH_NOW).0,
            )),
        ));
        let control: Arc<dyn MessageControl> = Arc::new(SqsMessageControl::new(
            sqs.clone(),
            resources.queues.queue_url.clone(),
            resources.queues.dlq_url.clone(),
        ));

        let pki = TestPki::new();
        let app = AppStore::new(AppStoreConfig {
            bundle_id: Some(BUNDLE_ID.into()),
            app_apple_id: Some(APP_APPLE_ID),
            extra_roots: vec![pki.root_der.clone()],
            ..AppStoreConfig::default()
        })
        .expect("app store config");
        let ingest = Ingest::new(
            Arc::new(AppStoreEndpoint(app)),
            Arc::new(SqsQueue::new(
                sqs.clone(),
                resources.queues.queue_url.clone(),
            )),
            clock,
        );
        Some(Self {
            name: test.to_owned(),
            sqs,
            ddb,
            resources,
            state,
            rx,
            secrets,
            dispatcher,
            control,
            ingest,
            pki,
            tag,
            handled: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// URL of the event queue.
    pub fn queue_url(&self) -> &str {
        &self.resources.queues.queue_url
    }

    /// URL of the dead-letter queue.
    pub fn dlq_url(&self) -> &str {
        &self.resources.queues.dlq_url
    }

    /// A store id unique to this test (`<tag>-<suffix>`).
    pub fn store_id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.tag)
    }

    /// POSTs a store body to the App Store endpoint (as `storehook serve` would)
    /// and asserts it was queued (200).
    pub async fn post(&self, body: Vec<u8>) -> StoreResponse {
        let resp = self
            .ingest
            .handle(StoreRequest {
                method: "POST".into(),
                query: None,
                headers: http::HeaderMap::new(),
                body: body.into(),
            })
            .await;
        assert_eq!(
            resp.status, 200,
            "{}: ingest refused: {}",
            self.name, resp.body
        );
        resp
    }

    /// Runs the App Store Lambda handler on an API Gateway HTTP API (v2) event
    /// carrying `body`, in-process.
    pub async fn post_lambda(&self, body: Vec<u8>) -> lambda_http::Response<lambda_http::Body> {
        let body = String::from_utf8(body).expect("notification bodies are JSON");
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "POST /appstore",
            "rawPath": "/appstore",
            "rawQueryString": "",
            "headers": {"content-type": "application/json", "user-agent": "App Store Server Notifications"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "e2e",
                "domainName": "e2e.execute-api.us-east-1.amazonaws.com", "domainPrefix": "e2e",
                "http": {"method": "POST", "path": "/appstore", "protocol": "HTTP/1.1",
                         "sourceIp": "17.0.0.1", "userAgent": "App Store Server Notifications"},
                "requestId": format!("req-{}", self.tag), "routeKey": "POST /appstore",
                "stage": "$default", "time": "12/Mar/2025:19:03:58 +0000", "timeEpoch": 1_741_806_238_000_i64
            },
            "body": body,
            "isBase64Encoded": false
        });
        let req = lambda_http::request::from_str(&event.to_string())
            .expect("API Gateway v2 event parses");
        match self.ingest.lambda(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// One receive → batch handler → delete round (long poll up to `wait`).
    pub async fn poll(&self, wait: Duration) -> usize {
        let n = poll_once(
            &self.sqs,
            self.queue_url(),
            wait,
            self.dispatcher.clone(),
            self.control.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: poll_once failed: {e}", self.name));
        self.handled
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        n
    }

    /// Calls [`poll_once`] until `done()` holds; panics after `timeout`.
    pub async fn pump_until<F, Fut>(&self, what: &str, timeout: Duration, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if done().await {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: not reached within {timeout:?}: {what}; receiver got {:?}; queue depth {:?}",
                    self.name,
                    self.summary(),
                    self.depth(self.queue_url()).await
                );
            }
            self.poll(Duration::from_secs(1)).await;
        }
    }

    /// Pumps until the receiver got at least `n` requests.
    pub async fn pump_until_requests(&self, n: usize, timeout: Duration) {
        self.pump_until(&format!("{n} webhook requests"), timeout, || async move {
            self.rx.count() >= n
        })
        .await;
    }

    /// Pumps until the event queue holds nothing (visible or in flight).
    pub async fn drain(&self, timeout: Duration) {
        self.pump_until("an empty queue", timeout, || async move {
            self.depth(self.queue_url()).await == (0, 0)
        })
        .await;
    }

    /// (visible, in flight) messages of a queue.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        queue_depth(&self.sqs, url).await
    }

    /// The dead-letter queue's messages as (body, message attributes), left in
    /// the queue (received, then made visible again).
    pub async fn peek_dead_letters(
        &self,
    ) -> Vec<(String, std::collections::HashMap<String, String>)> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(self.dlq_url())
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: ReceiveMessage (DLQ): {e:?}", self.name));
        let mut got = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let attrs = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            got.push((m.body.unwrap_or_default(), attrs));
            if let Some(rh) = m.receipt_handle {
                self.sqs
                    .change_message_visibility()
                    .queue_url(self.dlq_url())
                    .receipt_handle(rh)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{}: release DLQ message: {e:?}", self.name));
            }
        }
        got
    }

    /// Every request the receiver got, each one's Standard Webhooks signature
    /// verified with [`verify`] (panics on the first that does not verify,
    /// or whose body is not an event).
    pub fn deliveries(&self) -> Vec<Delivery> {
        let now = chrono::Utc::now();
        self.rx
            .requests()
            .iter()
            .enumerate()
            .map(|(i, r)| verified(&self.name, i, r, &self.secrets, now))
            .collect()
    }

    /// The deliveries of one group key, in arrival order, successful answers only.
    pub fn delivered_to(&self, group: &str) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.answered < 300 && d.event.group_key() == group)
            .collect()
    }

    /// (type, sequence, answered) of every request, for failure messages.
    pub fn summary(&self) -> Vec<(String, u64, u16)> {
        self.rx
            .requests()
            .iter()
            .map(|r| {
                let v = r.json().unwrap_or_default();
                (
                    v["type"].as_str().unwrap_or("?").to_owned(),
                    v["sequence"].as_u64().unwrap_or(0),
                    r.answered,
                )
            })
            .collect()
    }

    /// The group state, which must exist.
    pub async fn group(&self, group: &str) -> GroupState {
        self.state
            .group(group)
            .await
            .unwrap_or_else(|e| panic!("{}: group read: {e}", self.name))
            .unwrap_or_else(|| panic!("{}: no STATE for {group}", self.name))
    }

    /// The history of a group.
    pub async fn history(&self, group: &str) -> Vec<Event> {
        self.state
            .history(group)
            .await
            .unwrap_or_else(|e| panic!("{}: history read: {e}", self.name))
    }

    /// The delivery record of an event, which must exist.
    pub async fn delivery(&self, id: &EventId) -> DeliveryRecord {
        self.state
            .delivery(id)
            .await
            .unwrap_or_else(|e| panic!("{}: delivery read: {e}", self.name))
            .unwrap_or_else(|| panic!("{}: no delivery record for {id:?}", self.name))
    }

    /// Deletes the queues and the table (moto keeps everything in memory).
    pub async fn destroy(self) {
        if let Err(e) = provision::destroy(&self.sqs, &self.ddb, &self.resources).await {
            eprintln!("{}: cleanup failed (ignored): {e}", self.name);
        }
    }
}

fn verified(
    test: &str,
    i: usize,
    r: &ReceivedRequest,
    secrets: &WebhookSecrets,
    now: chrono::DateTime<chrono::Utc>,
) -> Delivery {
    let v = verify(&r.headers, &r.body, secrets, now, DEFAULT_TOLERANCE)
        .unwrap_or_else(|e| panic!("{test}: request #{i} does not verify: {e}"));
    let event: Event = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{test}: request #{i} is not an event: {e}"));
    assert_eq!(r.method, "POST", "{test}: request #{i}");
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{test}: request #{i}"
    );
    Delivery {
        webhook_id: v.id,
        event,
        answered: r.answered,
        body: r.body.clone(),
    }
}

fn fastrand_u32() -> u32 {
    let mut b = [0u8; 4];
    aws_lc_rs::rand::fill(&mut b).expect("random");
    u32::from_le_bytes(b)
}

/// One App Store subscription (an `originalTransactionId`) of the test app,
/// and signed notifications about it.
#[derive(Debug, Clone)]
pub struct AppleSub {
    /// `originalTransactionId`.
    pub original_id: String,
    /// Product id.
    pub product: String,
}

/// What a notification says about the subscription.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// `notificationType`.
    pub ntype: &'a str,
    /// `subtype`.
    pub subtype: Option<&'a str>,
    /// `notificationUUID` (the event id derives from it).
    pub uuid: String,
    /// `signedDate` (the event's `occurred_at`).
    pub signed_ms: i64,
    /// `data.status` (1 active, 2 expired, …).
    pub status: i64,
    /// The transaction's purchase date (the period is 30 days).
    pub purchase_ms: i64,
    /// `autoRenewStatus` of the renewal info.
    pub auto_renew: bool,
}

impl AppleSub {
    /// A subscription with original id `original_id`.
    pub fn new(original_id: impl Into<String>) -> Self {
        Self {
            original_id: original_id.into(),
            product: "pro.monthly".into(),
        }
    }

    /// storehook's subscription id = the group key of its events.
    pub fn group(&self) -> String {
        SubscriptionId::derive(&[Store::AppStore.as_str(), &self.original_id]).0
    }

    /// The event id storehook derives from a notification UUID.
    pub fn event_id(uuid: &str) -> EventId {
        EventId::derive(&[Store::AppStore.as_str(), uuid])
    }

    /// The id of the ACCESS_* event derived from `cause`.
    pub fn derived_id(cause: &EventId, kind: &str) -> EventId {
        EventId::derive(&[cause.as_str(), kind])
    }

    /// A signed notification body.
    pub fn body(&self, pki: &TestPki, n: &Notice<'_>) -> Vec<u8> {
        let p = payloads::notification(
            n.ntype,
            n.subtype,
            &n.uuid,
            n.signed_ms,
            "Production",
            Some(n.status),
        );
        let tx_id = format!("{}-{}", self.original_id, n.purchase_ms);
        let t = payloads::transaction(
            &self.original_id,
            &tx_id,
            &self.product,
            n.purchase_ms,
            30,
            "Production",
        );
        let r = payloads::renewal(
            &self.original_id,
            &self.product,
            n.auto_renew,
            n.signed_ms,
            "Production",
        );
        pki.notification_body(p, Some(&t), Some(&r))
    }

    /// SUBSCRIBED / INITIAL_BUY at `at` (purchase at `at`, active, auto-renew on).
    pub fn subscribed(&self, pki: &TestPki, uuid: &str, at: i64) -> Vec<u8> {
        self.body(
            pki,
            &Notice {
                ntype: "SUBSCRIBED",
                subtype: Some("INITIAL_BUY"),
                uuid: uuid.into(),
                signed_ms: at,
                status: 1,
                purchase_ms: at,
                auto_renew: true,
            },
        )
    }

    /// SUBSCRIBED / RESUBSCRIBE at `at`.
    pub fn resubscribed(&self, pki: &TestPki, uuid: &str, at: i64) -> Vec<u8> {
        self.body(
            pki,
            &Notice {
                ntype: "SUBSCRIBED",
                subtype: Some("RESUBSCRIBE"),
                uuid: uuid.into(),
                signed_ms: at,
                status: 1,
                purchase_ms: at,
                auto_renew: true,
            },
        )
    }

    /// DID_RENEW at `at` (new period from `at`).
    pub fn renewed(&self, pki: &TestPki, uuid: &str, at: i64) -> Vec<u8> {
        self.body(
            pki,
            &Notice {
                ntype: "DID_RENEW",
                subtype: None,
                uuid: uuid.into(),
                signed_ms: at,
                status: 1,
                purchase_ms: at,
                auto_renew: true,
            },
        )
    }

    /// DID_CHANGE_RENEWAL_STATUS / AUTO_RENEW_DISABLED at `at`, in the period
    /// bought at `period_start` (still entitled).
    pub fn auto_renew_disabled(
        &self,
        pki: &TestPki,
        uuid: &str,
        at: i64,
        period_start: i64,
    ) -> Vec<u8> {
        self.body(
            pki,
            &Notice {
                ntype: "DID_CHANGE_RENEWAL_STATUS",
                subtype: Some("AUTO_RENEW_DISABLED"),
                uuid: uuid.into(),
                signed_ms: at,
                status: 1,
                purchase_ms: period_start,
                auto_renew: false,
            },
        )
    }

    /// EXPIRED / VOLUNTARY one hour after the period bought at `period_start` ended.
    pub fn expired(&self, pki: &TestPki, uuid: &str, period_start: i64) -> Vec<u8> {
        self.body(
            pki,
            &Notice {
                ntype: "EXPIRED",
                subtype: Some("VOLUNTARY"),
                uuid: uuid.into(),
                signed_ms: period_start + 30 * DAY + HOUR,
                status: 2,
                purchase_ms: period_start,
                auto_renew: false,
            },
        )
    }
}

/// A [`StateStore`] that lets one operation at a time reach the wrapped store.
///
/// moto does not isolate concurrent `TransactWriteItems` on one table (it
/// snapshots and restores whole tables without a lock), so concurrent writers
/// race inside the emulator, not in storehook (toolchain.md). The dispatcher
/// still handles the groups of a batch concurrently; only the state calls
/// are queued. DynamoDB itself serializes transactions.
#[derive(Debug)]
pub struct SerializedState<S> {
    inner: S,
    lock: tokio::sync::Mutex<()>,
}

impl<S> SerializedState<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

#[async_trait]
impl<S: StateStore> StateStore for SerializedState<S> {
    async fn apply(&self, event: Event, now: Timestamp) -> Result<Recorded, StateError> {
        let _g = self.lock.lock().await;
        self.inner.apply(event, now).await
    }

    async fn group(&self, group_key: &str) -> Result<Option<GroupState>, StateError> {
        let _g = self.lock.lock().await;
        self.inner.group(group_key).await
    }

    async fn history(&self, group_key: &str) -> Result<Vec<Event>, StateError> {
        let _g = self.lock.lock().await;
        self.inner.history(group_key).await
    }

    async fn record_delivery(
        &self,
        event_id: &EventId,
        record: &DeliveryRecord,
    ) -> Result<(), StateError> {
        let _g = self.lock.lock().await;
        self.inner.record_delivery(event_id, record).await
    }

    async fn delivery(&self, event_id: &EventId) -> Result<Option<DeliveryRecord>, StateError> {
        let _g = self.lock.lock().await;
        self.inner.delivery(event_id).await
    }

    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Due>, StateError> {
        let _g = self.lock.lock().await;
        self.inner.due(now, limit).await
    }

    async fn snooze(&self, group_key: &str, until: Timestamp) -> Result<(), StateError> {
        let _g = self.lock.lock().await;
        self.inner.snooze(group_key, until).await
    }
}

/// (visible, in flight) messages of the queue `url`.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: GetQueueAttributes: {e:?}"));
    let attrs = out.attributes.unwrap_or_default();
    let get = |k: QueueAttributeName| {
        attrs
            .get(&k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}
