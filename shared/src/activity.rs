//! A recent-activity feed for `storehook serve`'s console: what each store
//! request became (its events, or its refusal) and each webhook attempt, kept
//! in a bounded in-memory ring. Off unless [`enable`]d (the Lambdas never
//! enable it: their record is CloudWatch's logs and metrics).
//!
//! Nothing secret is kept: ids, types, groups, statuses and refusal codes —
//! never a body, a token, a signature or a URL.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

/// One event a notification became.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EventRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub group: String,
    pub store_notification_id: String,
}

/// What happened.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A store request: accepted with its events, or refused.
    Notification {
        store: String,
        status: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        events: Vec<EventRef>,
    },
    /// A webhook attempt.
    Delivery {
        event_id: String,
        #[serde(rename = "type")]
        kind: String,
        group: String,
        sequence: u64,
        /// The webhook's HTTP status; none on a transport error or timeout.
        status: Option<u16>,
        attempt: u32,
        outcome: String,
    },
}

/// An entry with its position and time.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Item {
    /// Increases by one per entry (the feed's cursor).
    pub seq: u64,
    /// Unix ms.
    pub at: i64,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Default)]
struct Ring {
    next: u64,
    items: VecDeque<Item>,
    capacity: usize,
}

fn ring() -> &'static OnceLock<Mutex<Ring>> {
    static R: OnceLock<Mutex<Ring>> = OnceLock::new();
    &R
}

/// Keeps the last `capacity` entries from now on.
pub fn enable(capacity: usize) {
    let _ = ring().set(Mutex::new(Ring {
        next: 1,
        items: VecDeque::new(),
        capacity: capacity.max(1),
    }));
}

/// Records an entry (nothing when not enabled).
pub fn record(entry: Entry) {
    let Some(r) = ring().get() else {
        return;
    };
    let mut r = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let item = Item {
        seq: r.next,
        at: chrono::Utc::now().timestamp_millis(),
        entry,
    };
    r.next += 1;
    if r.items.len() == r.capacity {
        r.items.pop_front();
    }
    r.items.push_back(item);
}

/// The entries after `after` (oldest first), at most `limit`.
pub fn since(after: u64, limit: usize) -> Vec<Item> {
    let Some(r) = ring().get() else {
        return Vec::new();
    };
    let r = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let newer: Vec<&Item> = r.items.iter().filter(|i| i.seq > after).collect();
    let skip = newer.len().saturating_sub(limit);
    newer.into_iter().skip(skip).cloned().collect()
}

/// Whether the feed is on.
pub fn enabled() -> bool {
    ring().get().is_some()
}
