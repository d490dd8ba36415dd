//! storehook's metrics: one process-wide registry of counters and latency
//! histograms with low-cardinality labels, written two ways:
//!
//! - **CloudWatch Embedded Metric Format** (the Lambdas): [`Registry::emf_lines`]
//!   returns, once per invocation, one JSON line per metric that changed
//!   since the last flush (counters as the delta, latencies as their values),
//!   namespace [`NAMESPACE`], each with two dimension sets: its labels, and
//!   none (the total an alarm can watch). Printed to standard output, where
//!   Lambda's log agent hands them to CloudWatch, which extracts the metrics.
//!   No crate: the format is a documented JSON object (`_aws.CloudWatchMetrics`)
//!   and this writer is its whole use.
//! - **Prometheus text format** (`storehook serve`'s `GET /metrics`):
//!   [`Registry::prometheus`], the same names prefixed `storehook_`.
//!
//! Labels are only ever store names, refusal codes, event types, outcomes,
//! attempt numbers and sweeper actions: never an id, a token, a URL or
//! anything a sender chooses (a refusal code is storehook's own constant).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `notifications_received_total` | `store` | store requests handled |
//! | `notifications_accepted_total` | `store` | … answered 2xx (events queued) |
//! | `notifications_refused_total` | `store`, `code` | … refused (4xx/5xx), by error code |
//! | `authentication_failures_total` | `store` | … refused 401: not authentic (forgery, or a store key rotated) |
//! | `events_total` | `store`, `type` | events queued by ingest |
//! | `queue_send_failures_total` | `store` | events that could not be queued (503) |
//! | `deliveries_total` | `outcome`, `attempt` | webhook attempts: `delivered`, `failed`, `gone` |
//! | `delivery_failures_total` | – | webhook attempts that did not succeed (the failure-rate alarm's numerator) |
//! | `delivery_latency_ms` | `outcome` | webhook attempt latency (histogram) |
//! | `dead_letters_total` | `reason` | messages moved to the dead-letter queue: `gone`, `exhausted`, `undecodable`, `other` |
//! | `sweeper_actions_total` | `store`, `action` | the expiry sweeper: `asked`, `emitted`, `snoozed`, `failed` |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// The CloudWatch namespace.
pub const NAMESPACE: &str = "storehook";

/// Upper bounds (ms) of the latency histogram's buckets (and `+Inf`).
pub const LATENCY_BUCKETS_MS: [f64; 11] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Latency observations kept between two EMF flushes (beyond: counted in the
/// histogram, not listed).
const MAX_PENDING_VALUES: usize = 100;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    name: &'static str,
    labels: Labels,
}

#[derive(Debug, Clone, Default)]
struct Counter {
    value: u64,
    flushed: u64,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_MS.len()],
    count: u64,
    sum: f64,
    pending: Vec<f64>,
}

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<Key, Counter>,
    histograms: BTreeMap<Key, Histogram>,
}

/// A registry of metrics.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key {
        name,
        labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `by` to the counter `name` with `labels`.
    pub fn incr(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let mut g = self.lock();
        let c = g.counters.entry(key(name, labels)).or_default();
        c.value = c.value.saturating_add(by);
    }

    /// Records one latency observation (ms) of `name` with `labels`.
    pub fn observe_ms(&self, name: &'static str, labels: &[(&'static str, &str)], ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        let mut g = self.lock();
        let h = g.histograms.entry(key(name, labels)).or_default();
        h.count += 1;
        h.sum += ms;
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b) {
            h.buckets[i] += 1;
        }
        if h.pending.len() < MAX_PENDING_VALUES {
            h.pending.push(ms);
        }
    }

    /// The counter's current value (tests, the console).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let g = self.lock();
        g.counters
            .iter()
            .find(|(k, _)| {
                k.name == name
                    && k.labels.len() == labels.len()
                    && k.labels
                        .iter()
                        .zip(labels)
                        .all(|((a, b), (c, d))| a == c && b == d)
            })
            .map_or(0, |(_, c)| c.value)
    }

    /// The Prometheus text exposition of every metric (names prefixed `storehook_`).
    pub fn prometheus(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        let mut last = "";
        for (k, c) in &g.counters {
            if k.name != last {
                let _ = writeln!(out, "# TYPE storehook_{} counter", k.name);
                last = k.name;
            }
            let _ = writeln!(
                out,
                "storehook_{}{} {}",
                k.name,
                prom_labels(&k.labels, None),
                c.value
            );
        }
        last = "";
        for (k, h) in &g.histograms {
            if k.name != last {
                let _ = writeln!(out, "# TYPE storehook_{} histogram", k.name);
                last = k.name;
            }
            let mut cumulative = 0;
            for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
                cumulative += h.buckets[i];
                let le = format!("{b}");
                let _ = writeln!(
                    out,
                    "storehook_{}_bucket{} {cumulative}",
                    k.name,
                    prom_labels(&k.labels, Some(&le))
                );
            }
            let _ = writeln!(
                out,
                "storehook_{}_bucket{} {}",
                k.name,
                prom_labels(&k.labels, Some("+Inf")),
                h.count
            );
            let _ = writeln!(
                out,
                "storehook_{}_sum{} {}",
                k.name,
                prom_labels(&k.labels, None),
                h.sum
            );
            let _ = writeln!(
                out,
                "storehook_{}_count{} {}",
                k.name,
                prom_labels(&k.labels, None),
                h.count
            );
        }
        out
    }

    /// EMF lines for what changed since the last call (then marked flushed).
    pub fn emf_lines(&self, timestamp_ms: i64) -> Vec<String> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for (k, c) in &mut g.counters {
            let delta = c.value - c.flushed;
            if delta == 0 {
                continue;
            }
            c.flushed = c.value;
            out.push(emf(timestamp_ms, k, "Count", serde_json::json!(delta)));
        }
        for (k, h) in &mut g.histograms {
            if h.pending.is_empty() {
                continue;
            }
            let values = std::mem::take(&mut h.pending);
            out.push(emf(
                timestamp_ms,
                k,
                "Milliseconds",
                serde_json::json!(values),
            ));
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prom_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn emf(timestamp_ms: i64, k: &Key, unit: &str, value: serde_json::Value) -> String {
    let dims: Vec<&str> = k.labels.iter().map(|(n, _)| *n).collect();
    let sets = if dims.is_empty() {
        serde_json::json!([[]])
    } else {
        serde_json::json!([dims, []])
    };
    let mut o = serde_json::Map::new();
    o.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": sets,
                "Metrics": [{"Name": k.name, "Unit": unit}],
            }],
        }),
    );
    for (n, v) in &k.labels {
        o.insert((*n).to_owned(), serde_json::Value::String(v.clone()));
    }
    o.insert(k.name.to_owned(), value);
    serde_json::Value::Object(o).to_string()
}

/// Prints the EMF lines of what changed (the Lambdas, after each invocation).
pub fn flush_emf() {
    let now = chrono::Utc::now().timestamp_millis();
    let lines = global().emf_lines(now);
    if lines.is_empty() {
        return;
    }
    let mut text = lines.join("\n");
    text.push('\n');
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

// ------------------------------------------------------------- what is counted

/// Ingest: a store request's outcome (`status`, `code` on a refusal) and the
/// types of the events it queued.
pub fn notification(store: &str, status: u16, code: Option<&str>, event_types: &[&str]) {
    let r = global();
    r.incr("notifications_received_total", &[("store", store)], 1);
    if (200..300).contains(&status) {
        r.incr("notifications_accepted_total", &[("store", store)], 1);
        for t in event_types {
            r.incr("events_total", &[("store", store), ("type", t)], 1);
        }
        return;
    }
    let code = code.unwrap_or("unknown");
    r.incr(
        "notifications_refused_total",
        &[("store", store), ("code", code)],
        1,
    );
    if status == 401 {
        r.incr("authentication_failures_total", &[("store", store)], 1);
    }
    if code == "queue_unavailable" {
        r.incr("queue_send_failures_total", &[("store", store)], 1);
    }
}

/// Dispatch: one webhook attempt.
pub fn delivery(outcome: &'static str, attempt: u32, latency_ms: u64) {
    let r = global();
    let attempt = attempt.min(99).to_string();
    r.incr(
        "deliveries_total",
        &[("outcome", outcome), ("attempt", &attempt)],
        1,
    );
    r.observe_ms(
        "delivery_latency_ms",
        &[("outcome", outcome)],
        latency_ms as f64,
    );
    if outcome != "delivered" {
        r.incr("delivery_failures_total", &[], 1);
    }
}

/// The kind of a dead-letter reason (the dispatcher's own texts).
pub fn dead_letter_kind(reason: &str) -> &'static str {
    if reason.contains("exhausted after") {
        "exhausted"
    } else if reason.contains("410 Gone") {
        "gone"
    } else if reason.contains("not a storehook event") || reason.contains("does not serialize") {
        "undecodable"
    } else {
        "other"
    }
}

/// Dispatch: a message moved to the dead-letter queue, by the kind of reason.
pub fn dead_letter(reason: &str) {
    let kind = dead_letter_kind(reason);
    global().incr("dead_letters_total", &[("reason", kind)], 1);
}

/// The sweeper: one action about a subscription of `store`.
pub fn sweeper(store: &str, action: &'static str) {
    global().incr(
        "sweeper_actions_total",
        &[("store", store), ("action", action)],
        1,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_as_prometheus_text() {
        let r = Registry::default();
        r.incr(
            "events_total",
            &[("store", "APP_STORE"), ("type", "SUBSCRIPTION_STARTED")],
            2,
        );
        r.incr(
            "events_total",
            &[("store", "HUAWEI_APPGALLERY"), ("type", "TEST")],
            1,
        );
        r.observe_ms("delivery_latency_ms", &[("outcome", "delivered")], 7.0);
        r.observe_ms("delivery_latency_ms", &[("outcome", "delivered")], 700.0);
        let text = r.prometheus();
        assert!(
            text.contains("# TYPE storehook_events_total counter\n"),
            "{text}"
        );
        assert!(text.contains(
            "storehook_events_total{store=\"APP_STORE\",type=\"SUBSCRIPTION_STARTED\"} 2\n"
        ));
        assert_eq!(text.matches("# TYPE storehook_events_total").count(), 1);
        assert!(
            text.contains(
                "storehook_delivery_latency_ms_bucket{outcome=\"delivered\",le=\"5\"} 0\n"
            )
        );
        assert!(
            text.contains(
                "storehook_delivery_latency_ms_bucket{outcome=\"delivered\",le=\"10\"} 1\n"
            )
        );
        assert!(text.contains(
            "storehook_delivery_latency_ms_bucket{outcome=\"delivered\",le=\"1000\"} 2\n"
        ));
        assert!(text.contains(
            "storehook_delivery_latency_ms_bucket{outcome=\"delivered\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("storehook_delivery_latency_ms_sum{outcome=\"delivered\"} 707\n"));
        assert!(text.contains("storehook_delivery_latency_ms_count{outcome=\"delivered\"} 2\n"));
        assert_eq!(
            r.counter(
                "events_total",
                &[("store", "APP_STORE"), ("type", "SUBSCRIPTION_STARTED")]
            ),
            2
        );
    }

    #[test]
    fn emf_lines_carry_deltas_with_both_dimension_sets_once() {
        let r = Registry::default();
        r.incr(
            "notifications_refused_total",
            &[("store", "amazon"), ("code", "signature_invalid")],
            3,
        );
        r.observe_ms("delivery_latency_ms", &[("outcome", "failed")], 12.5);
        let lines = r.emf_lines(1_700_000_000_000);
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "storehook");
        assert_eq!(m["Dimensions"], serde_json::json!([["store", "code"], []]));
        assert_eq!(
            m["Metrics"][0],
            serde_json::json!({"Name": "notifications_refused_total", "Unit": "Count"})
        );
        assert_eq!(v["store"], "amazon");
        assert_eq!(v["code"], "signature_invalid");
        assert_eq!(v["notifications_refused_total"], 3);
        let h: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(h["delivery_latency_ms"], serde_json::json!([12.5]));
        assert_eq!(
            h["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        // Flushed: nothing again until something changes; then only the delta.
        assert!(r.emf_lines(1).is_empty());
        r.incr(
            "notifications_refused_total",
            &[("store", "amazon"), ("code", "signature_invalid")],
            1,
        );
        let again: serde_json::Value = serde_json::from_str(&r.emf_lines(2)[0]).unwrap();
        assert_eq!(again["notifications_refused_total"], 1);
    }

    #[test]
    fn label_values_are_escaped() {
        let r = Registry::default();
        r.incr("x_total", &[("code", "a\"b\\c\nd")], 1);
        assert!(
            r.prometheus()
                .contains("storehook_x_total{code=\"a\\\"b\\\\c\\nd\"} 1")
        );
    }
}
