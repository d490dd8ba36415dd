//! Several destinations ("endpoints"): per-endpoint filters, the original
//! store notification forwarded byte for byte, and independent delivery.
//!
//! # Configuration
//! `WEBHOOK_ENDPOINTS` (Lambda: the JSON, or `WEBHOOK_ENDPOINTS_SECRET_ARN`
//! naming a Secrets Manager secret holding it) and `storehook serve --endpoints
//! FILE`: a JSON array of
//! `{"name", "url", "secret" | "secret_arn", "filter": {"types", "stores",
//! "environments", "app_ids"}, "format": "event" | "store"}` ([`parse_endpoints`]).
//! Without it the single-webhook settings (`WEBHOOK_URL`, …) are the
//! one-endpoint shorthand and nothing here runs.
//!
//! # Design: apply once, deliver per endpoint
//! With endpoints configured the dispatcher's work on a queued event is split:
//! 1. **apply** ([`crate::dispatch::Dispatcher::process`]): the state is applied
//!    once per event, exactly as before; then, for every `event`-format
//!    endpoint, each of the event and its derived events that passes the
//!    endpoint's filter becomes a [`DeliveryJob`] on the same queue, in the
//!    FIFO group `dlv_<endpoint>_<subscription group>` (deduplicated by
//!    `dlv:<endpoint>:<event id>`); the message is acknowledged once they are
//!    all queued (a crash before re-applies idempotently and queues the same
//!    jobs again; a job already delivered is skipped by its delivery record).
//! 2. **deliver** ([`crate::dispatch::Dispatcher::process_delivery`]): one POST
//!    to one endpoint, its own retries, dead letters and replay
//!    (`storehook replay --endpoint NAME`). A failing endpoint only holds its
//!    own groups: another endpoint's jobs of the same subscription are in other
//!    groups.
//!
//! `store`-format endpoints are fed by ingest instead ([`store_copies`]): once a
//! notification is verified and translated, its original body (with its
//! content type; never the query string or `Authorization`, which carry Play's
//! push credentials) is queued as a [`DeliveryJob`] in the endpoint's group of
//! the subscription, when the filter passes any of its events. Its POST is
//! signed like every delivery and carries `storehook-store`.
//!
//! # Sequence with filters
//! Every event keeps its subscription-wide `sequence`. An `event`-format
//! endpoint's copy carries `previous_sequence` (additive): the sequence of the
//! last event of that subscription that passed the same filter before it (for
//! an unfiltered endpoint, `sequence - 1`), or none for the first. A consumer
//! that last saw a smaller number knows it missed a delivery.

use crate::config::{ConfigError, Lookup, SecretSetting};
use crate::event::{Environment, Event, EventType, Store};
use crate::ingest::StoreRequest;
use crate::queue::{QueueError, QueueMessage};
use crate::secrets::SecretSource;
use crate::webhook::{WebhookSecrets, WebhookSender};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// `WEBHOOK_ENDPOINTS` inline, or the secret named by `WEBHOOK_ENDPOINTS_SECRET_ARN`.
pub const ENDPOINTS: SecretSetting = SecretSetting {
    inline: "WEBHOOK_ENDPOINTS",
    arn: "WEBHOOK_ENDPOINTS_SECRET_ARN",
};
/// The value of a delivery job's first field.
pub const JOB_KIND: &str = "delivery";
/// Most endpoints accepted.
pub const MAX_ENDPOINTS: usize = 20;
/// Longest endpoint name (it is part of FIFO group and deduplication ids).
pub const MAX_NAME: usize = 40;
/// The header naming the store on a `store`-format delivery.
pub const STORE_HEADER: &str = "storehook-store";

/// Which events an endpoint gets; an absent field lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Event types (`SUBSCRIPTION_RENEWED`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// Stores (`APP_STORE`, `GOOGLE_PLAY`, `HUAWEI_APPGALLERY`, `AMAZON_APPSTORE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<Vec<String>>,
    /// `PRODUCTION`, `SANDBOX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
    /// Bundle ids / package names / app ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ids: Option<Vec<String>>,
}

fn passes(list: Option<&Vec<String>>, value: &str) -> bool {
    list.is_none_or(|l| l.iter().any(|v| v == value))
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        passes(self.types.as_ref(), event.kind.as_str())
            && passes(self.stores.as_ref(), event.store.as_str())
            && passes(self.environments.as_ref(), event.environment.as_str())
            && passes(self.app_ids.as_ref(), &event.app_id)
    }

    /// Lets everything through.
    pub fn is_everything(&self) -> bool {
        self.types.is_none()
            && self.stores.is_none()
            && self.environments.is_none()
            && self.app_ids.is_none()
    }

    fn validate(&self) -> Result<(), String> {
        let check = |field: &str, list: Option<&Vec<String>>, known: &[&str]| {
            let Some(l) = list else { return Ok(()) };
            if l.is_empty() {
                return Err(format!(
                    "filter.{field} is empty (it would let nothing through; leave it out to let everything through)"
                ));
            }
            if known.is_empty() {
                return Ok(());
            }
            match l.iter().find(|v| !known.contains(&v.as_str())) {
                Some(v) => Err(format!(
                    "filter.{field}: unknown value {:?} (known: {})",
                    crate::http::sanitize(v),
                    known.join(", ")
                )),
                None => Ok(()),
            }
        };
        check("types", self.types.as_ref(), EventType::KNOWN)?;
        check("stores", self.stores.as_ref(), Store::KNOWN)?;
        check(
            "environments",
            self.environments.as_ref(),
            Environment::KNOWN,
        )?;
        check("app_ids", self.app_ids.as_ref(), &[])
    }
}

/// What an endpoint receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// storehook events (the event language v1).
    #[default]
    Event,
    /// The store's original notification body, byte for byte.
    Store,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    url: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_arn: Option<String>,
    #[serde(default)]
    filter: Filter,
    #[serde(default)]
    format: Format,
}

/// One configured endpoint.
#[derive(Clone)]
pub struct EndpointSpec {
    /// Unique name (`[A-Za-z0-9_-]`, at most [`MAX_NAME`]).
    pub name: String,
    /// `http(s)://…`.
    pub url: String,
    /// Its signing secret(s).
    pub secret: SecretSource<WebhookSecrets>,
    /// Which events it gets.
    pub filter: Filter,
    /// Events or the store's original bodies.
    pub format: Format,
}

impl fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("name", &self.name)
            .field("url", &crate::webhook::redact_url(&self.url))
            .field("secret", &self.secret)
            .field("filter", &self.filter)
            .field("format", &self.format)
            .finish()
    }
}

/// Parses and checks the endpoints JSON: a non-empty array of at most
/// [`MAX_ENDPOINTS`], unique names, http(s) URLs, one secret each (inline
/// `whsec_…`, or `secret_arn` when `arn_allowed`), known filter values.
pub fn parse_endpoints(json: &str, arn_allowed: bool) -> Result<Vec<EndpointSpec>, String> {
    let raw: Vec<RawEndpoint> = serde_json::from_str(json).map_err(|e| {
        format!(
            "not a JSON array of endpoints: {}",
            crate::http::sanitize(&e.to_string())
        )
    })?;
    if raw.is_empty() {
        return Err("the array is empty".into());
    }
    if raw.len() > MAX_ENDPOINTS {
        return Err(format!("{} endpoints (at most {MAX_ENDPOINTS})", raw.len()));
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let name = r.name.trim().to_owned();
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "endpoint name {:?}: use 1 to {MAX_NAME} letters, digits, '-' or '_'",
                crate::http::sanitize(&name)
            ));
        }
        if !names.insert(name.clone()) {
            return Err(format!("endpoint name {name:?} is used twice"));
        }
        let url = r.url.trim().to_owned();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || reqwest::Url::parse(&url).is_err()
        {
            return Err(format!(
                "endpoint {name:?}: url must be an http:// or https:// URL"
            ));
        }
        let secret = match (r.secret, r.secret_arn) {
            (Some(s), None) => SecretSource::Inline(
                WebhookSecrets::parse(&s).map_err(|e| format!("endpoint {name:?}: secret: {e}"))?,
            ),
            (None, Some(arn)) if arn_allowed => SecretSource::SecretsManager(arn),
            (None, Some(_)) => {
                return Err(format!(
                    "endpoint {name:?}: secret_arn needs AWS (storehook serve takes \"secret\")"
                ));
            }
            _ => {
                return Err(format!(
                    "endpoint {name:?}: give exactly one of \"secret\" or \"secret_arn\""
                ));
            }
        };
        r.filter
            .validate()
            .map_err(|e| format!("endpoint {name:?}: {e}"))?;
        out.push(EndpointSpec {
            name,
            url,
            secret,
            filter: r.filter,
            format: r.format,
        });
    }
    Ok(out)
}

/// The endpoints setting (`WEBHOOK_ENDPOINTS`, or the resolved secret of
/// `WEBHOOK_ENDPOINTS_SECRET_ARN` through [`crate::config::WithSecrets`]);
/// `None` when unset (the single-webhook shorthand).
pub fn endpoints_setting(l: &impl Lookup) -> Result<Option<Vec<EndpointSpec>>, ConfigError> {
    let Some(json) = l.get(ENDPOINTS.inline) else {
        if ENDPOINTS.source(l).is_some() {
            return Err(ConfigError::Secret {
                var: ENDPOINTS.arn,
                reason: "the secret was not resolved at start".into(),
            });
        }
        return Ok(None);
    };
    parse_endpoints(&json, true)
        .map(Some)
        .map_err(|reason| ConfigError::Invalid {
            var: ENDPOINTS.inline,
            reason,
        })
}

/// What ingest needs of a `store`-format endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCopy {
    /// The endpoint's name.
    pub name: String,
    /// Its filter (any of the notification's events must pass).
    pub filter: Filter,
}

/// The `store`-format endpoints of `specs` (what ingest needs).
pub fn store_copies(specs: &[EndpointSpec]) -> Vec<StoreCopy> {
    specs
        .iter()
        .filter(|s| s.format == Format::Store)
        .map(|s| StoreCopy {
            name: s.name.clone(),
            filter: s.filter.clone(),
        })
        .collect()
}

/// The original store request of a `store`-format delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreBody {
    /// The store route (`appstore`, `playstore`, `huawei`): the `storehook-store` header.
    pub store: String,
    /// The request's `content-type`.
    pub content_type: Option<String>,
    /// The body, base64.
    pub body_b64: String,
}

impl StoreBody {
    /// The body's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.body_b64)
            .map_err(|e| format!("store body is not base64: {e}"))
    }
}

/// One delivery to one endpoint, queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// Always [`JOB_KIND`]; first.
    pub storehook_job: String,
    /// The delivery's id: its deduplication id, the key of its delivery record,
    /// what `storehook replay --event-id` names.
    pub id: String,
    /// The endpoint's name.
    pub endpoint: String,
    /// The `webhook-id` sent: the event id (the store copy: its first event's).
    pub webhook_id: String,
    /// `event` format: the event as applied (with `previous_sequence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// `store` format: the original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreBody>,
}

/// A job of the queue: what [`crate::dispatch::Dispatcher::settle`] runs
/// instead of applying an event.
#[derive(Debug)]
pub enum Job {
    /// One delivery to one endpoint.
    Delivery(Box<DeliveryJob>),
    /// An answer to an App Store refund request.
    Consumption(Box<crate::consumption::ConsumptionJob>),
}

/// The start of every delivery job's body.
pub const JOB_PREFIX: &str = "{\"storehook_job\":\"delivery\"";

impl DeliveryJob {
    /// The delivery job in a message body, when the body is one.
    pub fn parse(body: &str) -> Option<Result<Job, serde_json::Error>> {
        body.starts_with(JOB_PREFIX)
            .then(|| serde_json::from_str::<DeliveryJob>(body).map(|j| Job::Delivery(Box::new(j))))
    }

    fn message(&self, group: String) -> Result<QueueMessage, QueueError> {
        Ok(QueueMessage {
            group_id: group,
            dedup_id: self.id.clone(),
            body: serde_json::to_string(self)
                .map_err(|e| QueueError::Permanent(format!("job does not serialize: {e}")))?,
        })
    }
}

/// The FIFO group of `endpoint`'s deliveries of subscription group `group`.
pub fn delivery_group(endpoint: &str, group: &str) -> String {
    format!("dlv_{endpoint}_{group}")
}

/// The queue messages of the `store`-format copies of one verified notification.
pub fn store_copy_messages(
    copies: &[StoreCopy],
    route: &str,
    req: &StoreRequest,
    events: &[Event],
) -> Result<Vec<QueueMessage>, QueueError> {
    let Some(first) = events.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for c in copies {
        if !events.iter().any(|e| c.filter.matches(e)) {
            continue;
        }
        let job = DeliveryJob {
            storehook_job: JOB_KIND.into(),
            id: format!("store:{}:{}", c.name, first.id),
            endpoint: c.name.clone(),
            webhook_id: first.id.0.clone(),
            event: None,
            store: Some(StoreBody {
                store: route.to_owned(),
                content_type: req
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body_b64: base64::engine::general_purpose::STANDARD.encode(&req.body),
            }),
        };
        out.push(job.message(delivery_group(&c.name, &first.group_key()))?);
    }
    Ok(out)
}

/// One endpoint, ready to deliver.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Its name.
    pub name: String,
    /// Its filter.
    pub filter: Filter,
    /// Its format.
    pub format: Format,
    /// Who POSTs to it (signed with its secret).
    pub sender: Arc<dyn WebhookSender>,
}

/// The endpoints of a dispatcher.
#[derive(Debug, Clone)]
pub struct Fanout {
    destinations: Vec<Destination>,
    queue: Arc<dyn crate::queue::EventQueue>,
}

impl Fanout {
    /// Delivers to `destinations`, queueing the jobs on `queue`.
    pub fn new(destinations: Vec<Destination>, queue: Arc<dyn crate::queue::EventQueue>) -> Self {
        Self {
            destinations,
            queue,
        }
    }

    /// The endpoint named `name`.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// The endpoint whose answer to a `REFUND_REQUESTED` counts (the refund
    /// defence): the first `event`-format endpoint.
    pub fn answers_refunds(&self, name: &str) -> bool {
        self.destinations
            .iter()
            .find(|d| d.format == Format::Event)
            .is_some_and(|d| d.name == name)
    }

    /// Whether computing `previous_sequence` needs the subscription's history
    /// (some `event`-format endpoint has a filter).
    pub fn needs_history(&self) -> bool {
        self.destinations
            .iter()
            .any(|d| d.format == Format::Event && !d.filter.is_everything())
    }

    /// The delivery jobs of `events` (an applied event and its derived ones, in
    /// order); `history` is the subscription's applied events (with these) when
    /// [`Fanout::needs_history`].
    pub fn jobs(
        &self,
        events: &[&Event],
        history: Option<&[Event]>,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let mut out = Vec::new();
        for d in self
            .destinations
            .iter()
            .filter(|d| d.format == Format::Event)
        {
            for ev in events.iter().filter(|e| d.filter.matches(e)) {
                let previous = if d.filter.is_everything() {
                    ev.sequence.checked_sub(1).filter(|s| *s > 0)
                } else {
                    history.and_then(|h| {
                        h.iter()
                            .filter(|x| x.sequence < ev.sequence && d.filter.matches(x))
                            .map(|x| x.sequence)
                            .max()
                    })
                };
                let mut copy = (*ev).clone();
                copy.previous_sequence = previous;
                let job = DeliveryJob {
                    storehook_job: JOB_KIND.into(),
                    id: format!("dlv:{}:{}", d.name, ev.id),
                    endpoint: d.name.clone(),
                    webhook_id: ev.id.0.clone(),
                    event: Some(copy),
                    store: None,
                };
                out.push(job.message(delivery_group(&d.name, &ev.group_key()))?);
            }
        }
        Ok(out)
    }

    /// Queues `messages` (in batches the queue accepts).
    pub async fn send(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        for chunk in messages.chunks(crate::queue::MAX_BATCH) {
            self.queue.send(chunk).await?;
        }
        Ok(())
    }
}

/// The `store`-format endpoints an ingest function feeds, from
/// `WEBHOOK_ENDPOINTS` (none when unset).
pub fn store_copies_setting(l: &impl Lookup) -> Result<Vec<StoreCopy>, ConfigError> {
    Ok(endpoints_setting(l)?
        .map(|specs| store_copies(&specs))
        .unwrap_or_default())
}

/// Whether a replay selector picks the dead letter `id` (its deduplication
/// id / the job's `id`): the id itself, or `endpoint:NAME` for every delivery
/// to endpoint NAME (`dlv:NAME:…`, `store:NAME:…`).
pub fn selects(selector: &str, id: &str) -> bool {
    if selector == id {
        return true;
    }
    selector.strip_prefix("endpoint:").is_some_and(|name| {
        !name.is_empty()
            && ["dlv:", "store:"].iter().any(|p| {
                id.strip_prefix(p)
                    .and_then(|rest| rest.strip_prefix(name))
                    .is_some_and(|rest| rest.starts_with(':'))
            })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::queue::MemoryQueue;
    use crate::state::fixtures::sub_event;
    use crate::webhook::{DeliveryAttempt, WebhookSecret};

    fn secret() -> String {
        WebhookSecret::generate().unwrap()
    }

    fn parse(json: &str) -> Result<Vec<EndpointSpec>, String> {
        parse_endpoints(json, false)
    }

    #[test]
    fn replay_selectors_pick_an_endpoints_deliveries() {
        assert!(selects("evt_1", "evt_1"));
        assert!(selects("endpoint:main", "dlv:main:evt_1"));
        assert!(selects("endpoint:main", "store:main:evt_1"));
        assert!(!selects("endpoint:main", "dlv:main2:evt_1"));
        assert!(!selects("endpoint:main", "evt_1"));
        assert!(!selects("endpoint:", "dlv::x"));
        assert!(!selects("dlv:main", "dlv:main:evt_1"));
    }

    #[test]
    fn endpoints_are_checked_at_start() {
        let s = secret();
        let ok = format!(
            r#"[{{"name":"main","url":"https://a.example/hook","secret":"{s}"}},
                {{"name":"renewals","url":"http://127.0.0.1:9/x","secret":"{s}",
                  "filter":{{"types":["SUBSCRIPTION_RENEWED"],"stores":["APP_STORE"],"environments":["SANDBOX"],"app_ids":["com.example.app"]}}}},
                {{"name":"raw","url":"https://b.example/","secret":"{s}","format":"store"}}]"#
        );
        let specs = parse(&ok).unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[2].format, Format::Store);
        assert!(specs[0].filter.is_everything());
        assert_eq!(
            store_copies(&specs),
            [StoreCopy {
                name: "raw".into(),
                filter: Filter::default()
            }]
        );
        let bad = [
            ("[]".to_owned(), "empty"),
            (
                format!(
                    r#"[{{"name":"a","url":"https://x/","secret":"{s}"}},{{"name":"a","url":"https://y/","secret":"{s}"}}]"#
                ),
                "used twice",
            ),
            (
                format!(r#"[{{"name":"a b","url":"https://x/","secret":"{s}"}}]"#),
                "name",
            ),
            (
                format!(r#"[{{"name":"a","url":"ftp://x/","secret":"{s}"}}]"#),
                "url",
            ),
            (
                r#"[{"name":"a","url":"https://x/"}]"#.to_owned(),
                "exactly one",
            ),
            (
                format!(
                    r#"[{{"name":"a","url":"https://x/","secret":"{s}","secret_arn":"arn:x"}}]"#
                ),
                "exactly one",
            ),
            (
                r#"[{"name":"a","url":"https://x/","secret_arn":"arn:x"}]"#.to_owned(),
                "needs AWS",
            ),
            (
                format!(
                    r#"[{{"name":"a","url":"https://x/","secret":"{s}","filter":{{"types":["SUBSCRIPTION_RENEW"]}}}}]"#
                ),
                "unknown value \"SUBSCRIPTION_RENEW\"",
            ),
            (
                format!(
                    r#"[{{"name":"a","url":"https://x/","secret":"{s}","filter":{{"stores":[]}}}}]"#
                ),
                "empty",
            ),
            (
                format!(
                    r#"[{{"name":"a","url":"https://x/","secret":"{s}","filter":{{"type":["TEST"]}}}}]"#
                ),
                "unknown field",
            ),
            (
                format!(r#"[{{"name":"a","url":"https://x/","secret":"{s}","format":"xml"}}]"#),
                "unknown variant",
            ),
            (
                r#"[{"name":"a","url":"https://x/","secret":"nope"}]"#.to_owned(),
                "secret",
            ),
        ];
        for (json, why) in bad {
            let e = parse(&json).unwrap_err();
            assert!(e.contains(why), "{json}: {e}");
            assert!(!e.contains(&s), "the error never quotes a secret: {e}");
        }
        // In AWS a secret may be a Secrets Manager ARN.
        let aws = parse_endpoints(
            r#"[{"name":"a","url":"https://x/","secret_arn":"arn:aws:secretsmanager:eu-west-1:1:secret:storehook-endpoint-a"}]"#,
            true,
        )
        .unwrap();
        assert!(matches!(aws[0].secret, SecretSource::SecretsManager(_)));
    }

    #[derive(Debug)]
    struct Nobody;

    #[async_trait::async_trait]
    impl WebhookSender for Nobody {
        async fn post(&self, _: &crate::event::EventId, _: &[u8]) -> DeliveryAttempt {
            panic!("the apply stage never posts")
        }
    }

    fn dest(name: &str, filter: Filter, format: Format) -> Destination {
        Destination {
            name: name.into(),
            filter,
            format,
            sender: Arc::new(Nobody),
        }
    }

    #[test]
    fn each_endpoint_gets_its_jobs_in_its_own_groups_with_previous_sequence() {
        let renewals = Filter {
            types: Some(vec!["SUBSCRIPTION_RENEWED".into()]),
            ..Filter::default()
        };
        let f = Fanout::new(
            vec![
                dest("all", Filter::default(), Format::Event),
                dest("renewals", renewals, Format::Event),
                dest("raw", Filter::default(), Format::Store),
            ],
            Arc::new(MemoryQueue::new()),
        );
        assert!(f.needs_history());
        assert!(f.answers_refunds("all") && !f.answers_refunds("renewals"));
        // history: 1 STARTED, 2 ACCESS_GRANTED, 3 RENEWED, 4 RENEWAL_DISABLED, 5 RENEWED (this one)
        let mut history = Vec::new();
        for (i, k) in [
            EventType::SubscriptionStarted,
            EventType::AccessGranted,
            EventType::SubscriptionRenewed,
            EventType::RenewalDisabled,
            EventType::SubscriptionRenewed,
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = sub_event(&format!("n{i}"), k, "o-1", i as i64, true);
            e.sequence = i as u64 + 1;
            history.push(e);
        }
        let now = &history[4];
        let msgs = f.jobs(&[now], Some(&history)).unwrap();
        // the store endpoint gets nothing here (ingest feeds it)
        assert_eq!(msgs.len(), 2);
        let jobs: Vec<DeliveryJob> = msgs
            .iter()
            .map(|m| match DeliveryJob::parse(&m.body).unwrap().unwrap() {
                Job::Delivery(j) => *j,
                Job::Consumption(_) => panic!("not a delivery"),
            })
            .collect();
        assert_eq!(msgs[0].group_id, delivery_group("all", &now.group_key()));
        assert_eq!(
            msgs[1].group_id,
            delivery_group("renewals", &now.group_key())
        );
        assert_ne!(msgs[0].group_id, msgs[1].group_id);
        assert_eq!(msgs[0].dedup_id, format!("dlv:all:{}", now.id));
        assert_eq!(jobs[0].webhook_id, now.id.0, "webhook-id is the event id");
        // unfiltered: the previous event; filtered: the previous renewal
        assert_eq!(jobs[0].event.as_ref().unwrap().previous_sequence, Some(4));
        assert_eq!(jobs[1].event.as_ref().unwrap().previous_sequence, Some(3));
        // the first event of a subscription has none
        let first = f.jobs(&[&history[0]], Some(&history)).unwrap();
        assert_eq!(first.len(), 1, "the renewals endpoint does not get STARTED");
        let j = match DeliveryJob::parse(&first[0].body).unwrap().unwrap() {
            Job::Delivery(j) => j,
            Job::Consumption(_) => panic!(),
        };
        assert_eq!(j.event.unwrap().previous_sequence, None);
    }

    #[test]
    fn a_store_copy_is_queued_when_any_event_passes_the_filter() {
        let e = sub_event("s1", EventType::SubscriptionRenewed, "o-1", 0, true);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        headers.insert("authorization", "Bearer push-token".parse().unwrap());
        let req = StoreRequest {
            method: "POST".into(),
            query: Some("token=secret".into()),
            headers,
            body: bytes::Bytes::from_static(b"{\"signedPayload\":\"x.y.z\"}"),
        };
        let copies = [
            StoreCopy {
                name: "raw".into(),
                filter: Filter::default(),
            },
            StoreCopy {
                name: "sandbox-only".into(),
                filter: Filter {
                    environments: Some(vec!["PRODUCTION".into()]),
                    ..Filter::default()
                },
            },
        ];
        let msgs =
            store_copy_messages(&copies, "appstore", &req, std::slice::from_ref(&e)).unwrap();
        assert_eq!(
            msgs.len(),
            1,
            "the sandbox event does not pass the production filter"
        );
        assert_eq!(msgs[0].group_id, delivery_group("raw", &e.group_key()));
        let Job::Delivery(j) = DeliveryJob::parse(&msgs[0].body).unwrap().unwrap() else {
            panic!()
        };
        let copy = j.store.unwrap();
        assert_eq!(copy.bytes().unwrap(), req.body.to_vec(), "byte for byte");
        assert_eq!(
            copy.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(copy.store, "appstore");
        assert!(
            !msgs[0].body.contains("push-token") && !msgs[0].body.contains("token=secret"),
            "credentials of the push are never forwarded"
        );
        assert!(
            store_copy_messages(&copies, "appstore", &req, &[])
                .unwrap()
                .is_empty()
        );
    }
}
