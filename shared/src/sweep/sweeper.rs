//! [`Sweeper`]: finds the groups whose entitlement ended by time without a
//! closing event (the state store's due index, no scan) and closes them —
//! through the store's API when a [`StatusSource`] for the store is
//! registered, otherwise with a `SUBSCRIPTION_EXPIRED` after the leeway.
//!
//! What it emits goes to the event queue like any notification, so the
//! dispatcher applies it (sequence, `ACCESS_*`, delivery) with the same rules;
//! ids are deterministic, so a repeated sweep is deduplicated by the queue and
//! the state's claims and never delivered twice.
//!
//! Trust: the sweeper never decides order with its own clock. Its
//! `SUBSCRIPTION_EXPIRED` occurs at the entitlement end the store signed
//! (just after the last applied store time when that is later, so it is
//! applied in order); its clock only decides *whether* the end has passed,
//! like the dispatcher's.

use super::{SOURCE_SWEEPER, SourceError, StatusSource, sweep_event_id};
use crate::clock::Clock;
use crate::event::{
    API_VERSION, Details, Entitlement, Event, EventType, Store, StoreNotification,
    SubscriptionStatus, Timestamp,
};
use crate::queue::{EventQueue, MAX_BATCH, QueueError, QueueMessage};
use crate::state::{Due, Origin, StateError, StateStore};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Default leeway before a group without a store API source is expired:
/// 24 hours. Stores retry late notifications for hours to days (App Store:
/// up to 5 retries over ~3 days; Google Play Pub/Sub: redelivery for up to
/// 7 days; Huawei: retries for about a day), and a renewal that arrives
/// during the leeway keeps the subscription open without a spurious
/// EXPIRED + re-grant. The leeway delays only the closing event: the
/// entitlement is already `active: false` once its end has passed.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(86_400);
/// How long a group is left alone after a sweep asked its store (answer with
/// nothing new, or an error) or emitted its events: the store's API is not
/// hammered, and the dispatcher has time to apply what was queued.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// Due groups handled per sweep (the rest wait for the next sweep).
pub const DEFAULT_BATCH: usize = 500;
/// `store_notification.type` of the sweeper's own `SUBSCRIPTION_EXPIRED`.
pub const SWEEP_NOTIFICATION_TYPE: &str = "STOREHOOK_SWEEP";

/// What one [`Sweeper::sweep_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Groups listed as due.
    pub due: usize,
    /// Groups whose store was asked through a [`StatusSource`].
    pub asked: usize,
    /// Events queued (store answers and leeway expiries).
    pub emitted: usize,
    /// `SUBSCRIPTION_EXPIRED` emitted without a source, after the leeway.
    pub expired_by_leeway: usize,
    /// Groups postponed (nothing new, an error, or inside the leeway).
    pub snoozed: usize,
    /// Groups that failed (source, queue or state errors); tried again later.
    pub errors: usize,
}

impl SweepReport {
    /// Adds the counts of `other` (several sweeps of one invocation).
    pub fn add(&mut self, other: &SweepReport) {
        self.due += other.due;
        self.asked += other.asked;
        self.emitted += other.emitted;
        self.expired_by_leeway += other.expired_by_leeway;
        self.snoozed += other.snoozed;
        self.errors += other.errors;
    }
}

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "due={} asked={} emitted={} expired_by_leeway={} snoozed={} errors={}",
            self.due, self.asked, self.emitted, self.expired_by_leeway, self.snoozed, self.errors
        )
    }
}

/// Why a whole sweep failed (the due index could not be read).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("sweep: {0}")]
pub struct SweepError(#[from] pub StateError);

/// The expiry sweeper (see the module docs).
#[derive(Clone)]
pub struct Sweeper {
    state: Arc<dyn StateStore>,
    queue: Arc<dyn EventQueue>,
    clock: Arc<dyn Clock>,
    leeway: Duration,
    retry_after: Duration,
    batch: usize,
    sources: HashMap<Store, Arc<dyn StatusSource>>,
}

impl fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sweeper")
            .field("state", &self.state)
            .field("queue", &self.queue)
            .field("leeway", &self.leeway)
            .field("retry_after", &self.retry_after)
            .field("batch", &self.batch)
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What to do with one due group.
enum Step {
    /// Nothing (closed or renewed meanwhile: the index already moved).
    Skip,
    /// Queue these events.
    Emit(Vec<Event>, bool),
    /// Postpone to this time.
    Snooze(Timestamp),
}

impl Sweeper {
    /// A sweeper with the default leeway and no store API source.
    pub fn new(
        state: Arc<dyn StateStore>,
        queue: Arc<dyn EventQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            state,
            queue,
            clock,
            leeway: DEFAULT_LEEWAY,
            retry_after: DEFAULT_RETRY_AFTER,
            batch: DEFAULT_BATCH,
            sources: HashMap::new(),
        }
    }

    /// How long after the entitlement end a group without a source is expired.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How long a group is left alone after its store was asked.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Due groups handled per sweep (at least 1).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Registers the store API source of `source.store()` (replaces one).
    pub fn with_source(mut self, source: Arc<dyn StatusSource>) -> Self {
        self.sources.insert(source.store(), source);
        self
    }

    /// The leeway.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Due groups handled per sweep.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// One sweep: every group due now (up to the batch size).
    #[tracing::instrument(skip_all)]
    pub async fn sweep_once(&self) -> Result<SweepReport, SweepError> {
        let now = Timestamp(self.clock.now());
        let due = self.state.due(now, self.batch).await?;
        let mut report = SweepReport {
            due: due.len(),
            ..SweepReport::default()
        };
        for d in due {
            self.sweep_group(&d, now, &mut report).await;
        }
        if report.due > 0 {
            tracing::info!(%report, "sweep");
        }
        Ok(report)
    }

    async fn sweep_group(&self, d: &Due, now: Timestamp, report: &mut SweepReport) {
        let store = d
            .state
            .origin
            .as_ref()
            .map_or("UNKNOWN", |o| o.store.as_str());
        let step = match self.decide(d, now, report).await {
            Ok(step) => step,
            Err(e) => {
                crate::metrics::sweeper(store, "failed");
                report.errors += 1;
                tracing::warn!(group = %d.group_key, error = %e, "sweep of a group failed");
                Step::Snooze(self.later(now))
            }
        };
        let until = match step {
            Step::Skip => return,
            Step::Snooze(until) => until,
            Step::Emit(events, by_leeway) => match self.enqueue(&events).await {
                Ok(()) => {
                    report.emitted += events.len();
                    crate::metrics::sweeper(
                        store,
                        if by_leeway {
                            "expired_by_leeway"
                        } else {
                            "emitted"
                        },
                    );
                    if by_leeway {
                        report.expired_by_leeway += 1;
                    }
                    // Left alone while the dispatcher applies them (which
                    // moves or removes the entry); a repeat is deduplicated.
                    self.later(now)
                }
                Err(e) => {
                    crate::metrics::sweeper(store, "failed");
                    report.errors += 1;
                    tracing::warn!(group = %d.group_key, error = %e, "sweep could not queue");
                    return;
                }
            },
        };
        report.snoozed += 1;
        if let Err(e) = self.state.snooze(&d.group_key, until).await {
            report.errors += 1;
            tracing::warn!(group = %d.group_key, error = %e, "sweep could not snooze");
        }
    }

    fn later(&self, now: Timestamp) -> Timestamp {
        after(now, self.retry_after)
    }

    async fn decide(
        &self,
        d: &Due,
        now: Timestamp,
        report: &mut SweepReport,
    ) -> Result<Step, String> {
        // The index may be behind the state (DynamoDB's index is eventually
        // consistent): judge by the state itself.
        let Some(end) = d.state.due_at() else {
            return Ok(Step::Skip);
        };
        if end > now {
            return Ok(Step::Skip);
        }
        let origin = match &d.state.origin {
            Some(o) => o.clone(),
            None => self.origin_from_history(&d.group_key).await?,
        };
        if let Some(source) = self.sources.get(&origin.store) {
            report.asked += 1;
            crate::metrics::sweeper(origin.store.as_str(), "asked");
            return match source.refresh(&d.group_key, &d.state, now).await {
                Ok(events) if events.iter().any(|e| e.group_key() != d.group_key) => Err(format!(
                    "the {} source answered events of another subscription: none queued",
                    origin.store
                )),
                Ok(events) if !events.is_empty() => Ok(Step::Emit(events, false)),
                Ok(_) => Ok(Step::Snooze(self.later(now))),
                Err(e @ (SourceError::Unavailable(_) | SourceError::Refused(_))) => {
                    Err(e.to_string())
                }
            };
        }
        let expire_at = after(end, self.leeway);
        if now < expire_at {
            return Ok(Step::Snooze(expire_at));
        }
        match expired_event(&d.group_key, &d.state, &origin, end, now) {
            Some(e) => Ok(Step::Emit(vec![e], true)),
            None => Ok(Step::Skip),
        }
    }

    /// The origin of a group stored before `GroupState::origin` existed:
    /// the last event of its history with a subscription.
    async fn origin_from_history(&self, group: &str) -> Result<Origin, String> {
        let history = self.state.history(group).await.map_err(|e| e.to_string())?;
        history
            .iter()
            .rev()
            .find(|e| e.subscription.is_some())
            .map(|e| Origin {
                store: e.store.clone(),
                environment: e.environment.clone(),
                app_id: e.app_id.clone(),
            })
            .ok_or_else(|| "the group's store is unknown (no origin, no history)".to_owned())
    }

    async fn enqueue(&self, events: &[Event]) -> Result<(), QueueError> {
        let messages = events
            .iter()
            .map(QueueMessage::for_event)
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in messages.chunks(MAX_BATCH) {
            self.queue.send(chunk).await?;
        }
        Ok(())
    }
}

/// `t + d`, `d` capped at 100 years.
fn after(t: Timestamp, d: Duration) -> Timestamp {
    const CAP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let d = chrono::Duration::from_std(d.min(CAP)).unwrap_or(chrono::Duration::zero());
    t.plus(d)
}

/// The sweeper's `SUBSCRIPTION_EXPIRED` of `group`, built from its snapshot
/// `state` whose entitlement ended at `end` (`None` without a subscription).
///
/// - id: [`sweep_event_id`]`(group, "SUBSCRIPTION_EXPIRED", [end ms])`: the
///   same on every sweep of the same end;
/// - `occurred_at`: `end`, the store-signed end; when the last applied event
///   occurred at or after it, 1 ms after that event (still store time, never
///   the sweeper's clock), so the closing event is applied in order;
/// - `received_at`: `now`;
/// - the snapshot with status `EXPIRED`, entitlement inactive (its
///   `expires_at` kept), `details.source = "sweeper"`,
///   `store_notification = {type: "STOREHOOK_SWEEP", id: <event id>}`.
pub fn expired_event(
    group: &str,
    state: &crate::state::GroupState,
    origin: &Origin,
    end: Timestamp,
    now: Timestamp,
) -> Option<Event> {
    let mut subscription = state.subscription.clone()?;
    subscription.status = SubscriptionStatus::Expired;
    let kind = EventType::SubscriptionExpired;
    let end_ms = end.millis().to_string();
    let id = sweep_event_id(group, kind.as_str(), &[end_ms.as_str()]);
    let occurred_at = match state.applied_at {
        Some(last) if last >= end => last.plus(chrono::Duration::milliseconds(1)),
        _ => end,
    };
    Some(Event {
        api_version: API_VERSION,
        store_notification: StoreNotification {
            kind: SWEEP_NOTIFICATION_TYPE.into(),
            subtype: None,
            id: id.0.clone(),
        },
        id,
        kind,
        occurred_at,
        received_at: now,
        sequence: 0,
        store: origin.store.clone(),
        environment: origin.environment.clone(),
        app_id: origin.app_id.clone(),
        app_user_id: state.app_user_id.clone(),
        product: state.product.clone(),
        subscription: Some(subscription),
        transaction: state.transaction.clone(),
        entitlement: Entitlement {
            active: false,
            expires_at: state.entitlement.expires_at,
        },
        details: Details {
            source: Some(SOURCE_SWEEPER.into()),
            ..Details::default()
        },
        raw: None,
        previous_sequence: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::queue::MemoryQueue;
    use crate::state::fixtures::*;
    use crate::state::{GroupState, MemoryState};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DAY: i64 = 24 * 60;
    const HOUR: Duration = Duration::from_secs(3600);

    /// A store API source answering what the test scripts (a test double of
    /// the port; the real sources are tested against their fake APIs).
    #[derive(Debug)]
    struct Scripted {
        answer: Mutex<Result<Vec<Event>, SourceError>>,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl StatusSource for Scripted {
        fn store(&self) -> Store {
            Store::AppStore
        }

        async fn refresh(
            &self,
            _group_key: &str,
            _state: &GroupState,
            _now: Timestamp,
        ) -> Result<Vec<Event>, SourceError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.answer.lock().unwrap().clone()
        }
    }

    struct Rig {
        state: Arc<MemoryState>,
        queue: Arc<MemoryQueue>,
        clock: Arc<ManualClock>,
        sweeper: Sweeper,
        group: String,
        end: Timestamp,
    }

    /// A subscription started at t(0), entitled until t(30 days), applied in time.
    async fn rig() -> Rig {
        let state = Arc::new(MemoryState::new());
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(ManualClock::new(apply_now().0));
        let start = sub_event("s1", EventType::SubscriptionStarted, "sw-1", 0, true);
        let end = start.entitlement.expires_at.unwrap();
        let group = start.group_key();
        state.apply(start, apply_now()).await.unwrap();
        let sweeper = Sweeper::new(state.clone(), queue.clone(), clock.clone());
        Rig {
            state,
            queue,
            clock,
            sweeper,
            group,
            end,
        }
    }

    fn queued(q: &MemoryQueue) -> Vec<Event> {
        q.sent()
            .iter()
            .map(|m| serde_json::from_str(&m.body).unwrap())
            .collect()
    }

    fn at(end: Timestamp, d: Duration) -> chrono::DateTime<chrono::Utc> {
        after(end, d).0
    }

    #[tokio::test]
    async fn without_a_source_a_lapsed_group_is_expired_after_the_leeway_and_delivered_once() {
        let r = rig().await;
        // WHEN the sweeper runs before the end
        let rep = r.sweeper.sweep_once().await.unwrap();
        // THEN nothing is due
        assert_eq!(rep, SweepReport::default());
        // WHEN it runs an hour after the end (default leeway 24 h)
        r.clock.set(at(r.end, HOUR));
        let rep = r.sweeper.sweep_once().await.unwrap();
        // THEN the group is due but postponed to the end of the leeway, nothing queued
        assert_eq!((rep.due, rep.emitted, rep.snoozed), (1, 0, 1));
        assert!(r.queue.sent().is_empty());
        let now = Timestamp(r.clock.now());
        assert!(r.state.due(now, 10).await.unwrap().is_empty());
        let leeway_end = after(r.end, DEFAULT_LEEWAY);
        assert_eq!(r.state.due(leeway_end, 10).await.unwrap().len(), 1);

        // WHEN it runs once the leeway has passed
        r.clock.set(leeway_end.0);
        let rep = r.sweeper.sweep_once().await.unwrap();
        // THEN it queues one SUBSCRIPTION_EXPIRED built from the snapshot
        assert_eq!((rep.due, rep.emitted, rep.expired_by_leeway), (1, 1, 1));
        let msgs = r.queue.sent();
        assert_eq!(msgs.len(), 1);
        let e = &queued(&r.queue)[0];
        assert_eq!(msgs[0].group_id, r.group);
        assert_eq!(msgs[0].dedup_id, e.id.0);
        assert_eq!(e.kind, EventType::SubscriptionExpired);
        let end_ms = r.end.millis().to_string();
        assert_eq!(
            e.id,
            sweep_event_id(&r.group, "SUBSCRIPTION_EXPIRED", &[end_ms.as_str()])
        );
        // (store-signed time, not the sweeper's clock)
        assert_eq!(e.occurred_at, r.end);
        assert_eq!(e.received_at, leeway_end);
        assert_eq!(e.group_key(), r.group);
        let sub = e.subscription.as_ref().unwrap();
        assert_eq!(sub.status, SubscriptionStatus::Expired);
        assert_eq!(sub.store_subscription_id, "sw-1");
        assert!(!e.entitlement.active);
        assert_eq!(e.entitlement.expires_at, Some(r.end));
        assert_eq!(e.details.source.as_deref(), Some(SOURCE_SWEEPER));
        assert_eq!(e.store_notification.kind, SWEEP_NOTIFICATION_TYPE);
        assert_eq!(e.store_notification.id, e.id.0);
        assert_eq!(e.store, Store::AppStore);
        assert_eq!(e.app_id, "com.example.app");
        assert_eq!(e.app_user_id.as_deref(), Some("user-1"));

        // WHEN the sweep repeats before the dispatcher applied it (after the retry pause)
        r.clock.set(at(leeway_end, DEFAULT_RETRY_AFTER));
        let rep = r.sweeper.sweep_once().await.unwrap();
        // THEN the same id is queued again (FIFO dedup id = event id)
        assert_eq!(rep.emitted, 1);
        let again = queued(&r.queue);
        assert_eq!(again.len(), 2);
        assert_eq!(again[1].id, again[0].id);
        // AND the state applies it once: the next sequence, ACCESS_REVOKED derived
        let now = Timestamp(r.clock.now());
        let first = r.state.apply(again[0].clone(), now).await.unwrap();
        let second = r.state.apply(again[1].clone(), now).await.unwrap();
        assert!(first.first_time && !second.first_time);
        assert_eq!(first.event.sequence, 3);
        assert_eq!(first.event.details.out_of_order, None);
        assert_eq!(first.derived.len(), 1);
        assert_eq!(first.derived[0].kind, EventType::AccessRevoked);
        assert_eq!(r.state.history(&r.group).await.unwrap().len(), 4);
        // AND the closed group is never due again
        r.clock.set(at(leeway_end, 100 * HOUR));
        let rep = r.sweeper.sweep_once().await.unwrap();
        assert_eq!(rep, SweepReport::default());
    }

    #[tokio::test]
    async fn a_group_already_inactive_by_time_still_gets_its_closing_event() {
        // GIVEN a renewal applied after its own expiry (delivered active: false)
        let r = rig().await;
        let mut late = sub_event("s2", EventType::SubscriptionRenewed, "sw-1", 10, true);
        late.entitlement.expires_at = Some(t(20));
        late.subscription.as_mut().unwrap().expires_at = Some(t(20));
        let applied = r.state.apply(late, t(30)).await.unwrap();
        assert!(!applied.event.entitlement.active);
        // WHEN the sweeper runs with no leeway
        let sweeper = r.sweeper.clone().with_leeway(Duration::ZERO);
        r.clock.set(t(30).0);
        let rep = sweeper.sweep_once().await.unwrap();
        // THEN it closes the subscription at the signed end
        assert_eq!(rep.expired_by_leeway, 1);
        let e = &queued(&r.queue)[0];
        assert_eq!(e.occurred_at, t(20));
        // AND, that end preceding the last applied store time, just after it (in order)
        let mut early = sub_event("s3", EventType::RenewalDisabled, "sw-2", 10, true);
        early.entitlement.expires_at = Some(t(5));
        let st = r.state.apply(early.clone(), t(30)).await.unwrap();
        let g = r.state.group(&early.group_key()).await.unwrap().unwrap();
        let x = expired_event(
            &early.group_key(),
            &g,
            g.origin.as_ref().unwrap(),
            g.due_at().unwrap(),
            t(30),
        )
        .unwrap();
        assert_eq!(x.occurred_at.millis(), t(10).millis() + 1);
        let applied = r.state.apply(x, t(30)).await.unwrap();
        assert_eq!(applied.event.details.out_of_order, None);
        assert_eq!(applied.event.sequence, st.event.sequence + 1);
        assert_eq!(
            r.state
                .group(&early.group_key())
                .await
                .unwrap()
                .unwrap()
                .due_at(),
            None
        );
    }

    #[tokio::test]
    async fn with_a_source_its_answer_is_queued_and_silence_or_errors_postpone() {
        let r = rig().await;
        let renewal = {
            let mut e = sub_event(
                "api-1",
                EventType::SubscriptionRenewed,
                "sw-1",
                30 * DAY,
                true,
            );
            e.details.source = Some(SOURCE_SWEEPER.into());
            e
        };
        let source = Arc::new(Scripted {
            answer: Mutex::new(Ok(vec![renewal.clone()])),
            calls: AtomicUsize::new(0),
        });
        let sweeper = r
            .sweeper
            .clone()
            .with_leeway(Duration::ZERO)
            .with_source(source.clone());
        // WHEN the group is due and the store answers a missed renewal
        r.clock.set(at(r.end, HOUR));
        let rep = sweeper.sweep_once().await.unwrap();
        // THEN that answer is queued (no leeway expiry)
        assert_eq!(
            (rep.due, rep.asked, rep.emitted, rep.expired_by_leeway),
            (1, 1, 1, 0)
        );
        assert_eq!(queued(&r.queue)[0].id, renewal.id);
        // AND the group is left alone for the retry pause
        assert_eq!(sweeper.sweep_once().await.unwrap().due, 0);

        // WHEN the store has nothing new
        *source.answer.lock().unwrap() = Ok(vec![]);
        r.clock.set(at(r.end, HOUR + DEFAULT_RETRY_AFTER));
        let rep = sweeper.sweep_once().await.unwrap();
        // THEN nothing is queued, not even an expiry, and it is postponed
        assert_eq!((rep.asked, rep.emitted, rep.snoozed), (1, 0, 1));
        assert_eq!(r.queue.sent().len(), 1);
        assert_eq!(sweeper.sweep_once().await.unwrap().due, 0);

        // WHEN the store cannot be reached
        *source.answer.lock().unwrap() = Err(SourceError::Unavailable("503".into()));
        r.clock.set(at(r.end, HOUR + 2 * DEFAULT_RETRY_AFTER));
        let rep = sweeper.sweep_once().await.unwrap();
        // THEN it is an error, postponed (the API is not hammered)
        assert_eq!(
            (rep.asked, rep.errors, rep.snoozed, rep.emitted),
            (1, 1, 1, 0)
        );
        assert_eq!(sweeper.sweep_once().await.unwrap().due, 0);
        assert_eq!(source.calls.load(Ordering::SeqCst), 3);

        // AND an answer about another subscription is refused whole (an error, nothing queued)
        let mut stranger = renewal.clone();
        stranger.subscription.as_mut().unwrap().id =
            crate::event::SubscriptionId::derive(&["APP_STORE", "someone-else"]);
        *source.answer.lock().unwrap() = Ok(vec![renewal.clone(), stranger]);
        r.clock.set(at(r.end, HOUR + 3 * DEFAULT_RETRY_AFTER));
        let rep = sweeper.sweep_once().await.unwrap();
        assert_eq!((rep.asked, rep.errors, rep.emitted), (1, 1, 0));
        assert_eq!(r.queue.sent().len(), 1);

        // AND a source of another store is not asked: the leeway rule applies
        let other = Sweeper::new(r.state.clone(), r.queue.clone(), r.clock.clone())
            .with_leeway(Duration::ZERO);
        r.clock.set(at(r.end, HOUR + 4 * DEFAULT_RETRY_AFTER));
        assert_eq!(other.sweep_once().await.unwrap().expired_by_leeway, 1);
        assert_eq!(source.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_queue_failure_keeps_the_group_due_and_a_state_failure_fails_the_sweep() {
        let r = rig().await;
        let sweeper = r.sweeper.clone().with_leeway(Duration::ZERO);
        r.clock.set(at(r.end, HOUR));
        // WHEN the queue refuses
        r.queue
            .fail_with(Some(QueueError::Unavailable("down".into())));
        let rep = sweeper.sweep_once().await.unwrap();
        // THEN it is an error and the group stays due (not snoozed)
        assert_eq!((rep.errors, rep.emitted, rep.snoozed), (1, 0, 0));
        r.queue.fail_with(None);
        let rep = sweeper.sweep_once().await.unwrap();
        assert_eq!(rep.emitted, 1);
        // AND an unreadable state store fails the whole sweep
        r.state
            .fail_with(Some(StateError::Unavailable("down".into())));
        assert!(sweeper.sweep_once().await.is_err());
    }
}
