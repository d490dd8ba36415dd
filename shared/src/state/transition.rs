//! The state rule: the pure transition of one subscription's group state by
//! one event. No I/O; every [`super::StateStore`] adapter calls [`transition`]
//! inside its atomic "claim + apply + history" write.
//!
//! # Transition rules
//! - **Sequence**: per group key ([`Event::group_key`]), gap-free from 1; derived
//!   events take the numbers right after their cause.
//! - **Events with neither subscription nor transaction** (TEST, store-level
//!   STORE_NOTIFICATION) get a sequence number and are otherwise delivered as
//!   translated: they never touch the snapshot, the entitlement or the
//!   last-applied time, and derive nothing.
//! - **Order key**: events are ranked by `(occurred_at, ends access, event id)`.
//!   `occurred_at` is the store's authenticated time, never later than
//!   `received_at` + 5 min (ingest clamps it, see
//!   [`crate::ingest::clamp_store_time`]).
//! - **Out of order**: an event ranked below the group's last applied event
//!   (older `occurred_at`, or a tie it loses) leaves the snapshot untouched; it
//!   is delivered carrying the stored snapshot (subscription, product,
//!   app_user_id, entitlement judged at `now`, see **Time**) and
//!   `details.out_of_order = true`. It derives nothing, unless time ended the
//!   stored entitlement (then `ACCESS_REVOKED`).
//! - **In order** (ranked at or above the last applied event, or first event):
//!   the event's subscription, product, app_user_id and entitlement become the
//!   snapshot.
//! - **Ties** (equal `occurred_at`, which the store does not order): the event
//!   whose entitlement is inactive wins over an entitled one (fail closed: a
//!   refund or revocation is never undone by an event of the same time);
//!   otherwise the greater event id wins. Event ids derive from the store's
//!   notification id, so every arrival order of the same events ends in the
//!   same snapshot (property-tested below). Before this rule, the event that
//!   arrived last won a tie.
//! - **Time**: [`transition`] is given the applying instant `now` (the
//!   dispatcher's clock). Every snapshot it computes reports
//!   `entitlement.active: false` once the entitlement's end has passed
//!   ([`entitlement_end`]: `entitlement.expires_at`, or the subscription's
//!   `grace_period_expires_at` when later and the status is
//!   `IN_GRACE_PERIOD`), whatever the store's status said; the status stays
//!   what the store said (the store or the sweeper closes it). Time never
//!   grants, and never orders: order uses store-signed times only. An
//!   out-of-order event carries the stored snapshot judged at `now`; if that
//!   turns the stored entitlement inactive, the flip is stored and derives
//!   `ACCESS_REVOKED` like any other.
//! - **Due**: a group whose subscription status is not closed (`EXPIRED`,
//!   `REVOKED`) is due for the sweeper at its entitlement end
//!   ([`GroupState::due_at`]).
//! - **REFUND_CONSUMPTION_SENT** (storehook's report of its answer to an App
//!   Store refund request, [`crate::consumption`]) never changes the snapshot:
//!   it carries the stored snapshot judged at `now`, like an out-of-order
//!   event but without `details.out_of_order`.
//! - **ACCESS_GRANTED / ACCESS_REVOKED** are derived when `entitlement.active`
//!   flips (a new group starts "not entitled"): id =
//!   `EventId::derive(&[cause_id, "ACCESS_GRANTED" | "ACCESS_REVOKED"])`,
//!   `details.cause_event_id` / `cause_type`, the cause's snapshot, transaction,
//!   times and store notification; no `raw`.
//!
//! # Enrichment from state (only fills fields the translator left empty)
//! - `PRODUCT_CHANGED` (in order) without `details.from_product_id` gets the
//!   previous snapshot's product id.
//! - `SUBSCRIPTION_RENEWED` / `SUBSCRIPTION_RECOVERED` (in order) whose previous
//!   snapshot was in a `TRIAL` period, into a non-trial period, gets
//!   `details.trial_converted = true` (a billing-retry recovery straight out of
//!   a trial is a conversion too).
//! - `details.renewal_number`: the number of paid renewals (`SUBSCRIPTION_RENEWED`
//!   and `SUBSCRIPTION_RECOVERED`, in order or not) storehook has applied for the
//!   group, this one included. It counts from storehook's first event of the
//!   group, not from the store's original purchase.
//! - `app_user_id`: an in-order event without one keeps the stored one.

use crate::event::{
    Details, Entitlement, Environment, Event, EventId, EventType, PeriodType, Product, Store,
    Subscription, SubscriptionStatus, Timestamp, Transaction,
};
use serde::{Deserialize, Serialize};

/// What the store keeps per group key (`SUB#<group key>` / `STATE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Last sequence number assigned (0 = none yet).
    pub sequence: u64,
    /// `occurred_at` of the last event applied to the snapshot.
    pub applied_at: Option<Timestamp>,
    /// Id of the last event applied to the snapshot: breaks ties of equal
    /// `occurred_at` (see [`supersedes`]). `None` in states stored before the
    /// tie rule existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_id: Option<EventId>,
    /// Snapshot: the subscription after the last applied event.
    pub subscription: Option<Subscription>,
    /// Snapshot: the product.
    pub product: Option<Product>,
    /// Snapshot: the app's user id.
    pub app_user_id: Option<String>,
    /// Snapshot: the entitlement (starts "not entitled").
    pub entitlement: Entitlement,
    /// Paid renewals applied so far.
    pub renewals: u32,
    /// Store, environment and app of the group: set by every event with a
    /// subscription or a transaction (the sweeper needs them to ask the
    /// store). `None` in states stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Snapshot: the transaction of the last applied event (the Play purchase
    /// token lineage and Apple's transaction ids live here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<Transaction>,
}

/// Where a group's events come from (see [`GroupState::origin`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub store: Store,
    pub environment: Environment,
    pub app_id: String,
}

impl Default for GroupState {
    fn default() -> Self {
        Self {
            sequence: 0,
            applied_at: None,
            applied_id: None,
            subscription: None,
            product: None,
            app_user_id: None,
            entitlement: Entitlement::none(),
            renewals: 0,
            origin: None,
            transaction: None,
        }
    }
}

/// The result of the pure [`transition`].
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The event as it will be delivered (sequence assigned, snapshot/enrichment applied).
    pub event: Event,
    /// Events derived from it (`ACCESS_*`), in delivery order.
    pub derived: Vec<Event>,
    /// The group's state afterwards.
    pub next: GroupState,
}

fn is_paid_renewal(kind: &EventType) -> bool {
    matches!(
        kind,
        EventType::SubscriptionRenewed | EventType::SubscriptionRecovered
    )
}

/// When the entitlement described by `entitlement` and `subscription` ends by
/// time: `entitlement.expires_at` (or, failing that, the subscription's
/// `expires_at`), or the subscription's `grace_period_expires_at` when it is
/// later and the status is `IN_GRACE_PERIOD`. `None`: no end known (e.g. a
/// non-consumable), nothing ends by time.
///
/// These times come from the store's signed data (or its authenticated API
/// answer): they are the only times that may end access.
pub fn entitlement_end(
    entitlement: &Entitlement,
    subscription: Option<&Subscription>,
) -> Option<Timestamp> {
    let base = entitlement
        .expires_at
        .or_else(|| subscription.and_then(|s| s.expires_at));
    let grace = subscription
        .filter(|s| s.status == SubscriptionStatus::InGracePeriod)
        .and_then(|s| s.grace_period_expires_at);
    match (base, grace) {
        (Some(b), Some(g)) => Some(b.max(g)),
        (b, g) => b.or(g),
    }
}

/// `entitlement` judged at `now`: inactive once its [`entitlement_end`] has
/// passed (`end <= now`), whatever the store's status said. Never turns an
/// inactive entitlement active.
pub fn entitlement_at(
    entitlement: &Entitlement,
    subscription: Option<&Subscription>,
    now: Timestamp,
) -> Entitlement {
    let mut e = entitlement.clone();
    if e.active && entitlement_end(entitlement, subscription).is_some_and(|end| end <= now) {
        e.active = false;
    }
    e
}

/// Whether a subscription status is closed (the store or the sweeper said
/// the subscription ended): `EXPIRED` or `REVOKED`. A group whose status is
/// not closed is due for the sweeper at its [`entitlement_end`].
pub fn is_closed(status: &SubscriptionStatus) -> bool {
    matches!(
        status,
        SubscriptionStatus::Expired | SubscriptionStatus::Revoked
    )
}

impl GroupState {
    /// When the sweeper should look at this group: the end of its
    /// entitlement ([`entitlement_end`]) while its subscription status is not
    /// closed ([`is_closed`]); `None` otherwise (no subscription, closed, or
    /// no end known). Whether the entitlement is still active does not
    /// matter: a subscription whose access ended by time without a closing
    /// event gets one from the sweeper.
    pub fn due_at(&self) -> Option<Timestamp> {
        let sub = self.subscription.as_ref()?;
        if is_closed(&sub.status) {
            return None;
        }
        entitlement_end(&self.entitlement, Some(sub))
    }
}

/// Applies `event` to the group state `prev` (`None` = a group never seen),
/// at `now` (the applying dispatcher's clock: it only decides whether an
/// entitlement has ended by time, never order). Pure: see the module docs for
/// the rules.
pub fn transition(prev: Option<&GroupState>, mut event: Event, now: Timestamp) -> Applied {
    let mut next = prev.cloned().unwrap_or_default();
    next.sequence = next.sequence.saturating_add(1);
    event.sequence = next.sequence;

    if event.subscription.is_none() && event.transaction.is_none() {
        return Applied {
            event,
            derived: Vec::new(),
            next,
        };
    }

    if is_paid_renewal(&event.kind) {
        next.renewals = next.renewals.saturating_add(1);
        event.details.renewal_number.get_or_insert(next.renewals);
    }

    event.entitlement = entitlement_at(&event.entitlement, event.subscription.as_ref(), now);
    let was_entitled = next.entitlement.active;

    // storehook's own report on a store event (REFUND_CONSUMPTION_SENT) never
    // changes the snapshot: it carries the stored one, like an out-of-order
    // event, without being one.
    let report = event.kind == EventType::RefundConsumptionSent;
    if report || !supersedes(&event, &next, now) {
        if !report {
            event.details.out_of_order = Some(true);
        }
        event.subscription = next.subscription.clone();
        event.product = next.product.clone();
        event.app_user_id = next.app_user_id.clone();
        // The stored snapshot judged at `now`: an entitlement that ended by
        // time since it was stored is delivered inactive, and that flip is
        // recorded (and derives ACCESS_REVOKED) like any other.
        next.entitlement = entitlement_at(&next.entitlement, next.subscription.as_ref(), now);
        event.entitlement = next.entitlement.clone();
        let derived = access_flip(&event, was_entitled, &mut next);
        return Applied {
            event,
            derived,
            next,
        };
    }

    if event.kind == EventType::ProductChanged && event.details.from_product_id.is_none() {
        event.details.from_product_id = next.product.as_ref().map(|p| p.id.clone());
    }
    if is_paid_renewal(&event.kind) && event.details.trial_converted.is_none() {
        let was_trial = next
            .subscription
            .as_ref()
            .is_some_and(|s| s.period_type == PeriodType::Trial);
        let now_trial = event
            .subscription
            .as_ref()
            .is_some_and(|s| s.period_type == PeriodType::Trial);
        if was_trial && !now_trial {
            event.details.trial_converted = Some(true);
        }
    }
    if event.app_user_id.is_none() {
        event.app_user_id = next.app_user_id.clone();
    }

    next.origin = Some(Origin {
        store: event.store.clone(),
        environment: event.environment.clone(),
        app_id: event.app_id.clone(),
    });
    next.transaction = event.transaction.clone().or(next.transaction.take());
    next.applied_at = Some(event.occurred_at);
    next.applied_id = Some(event.id.clone());
    next.subscription = event.subscription.clone();
    next.product = event.product.clone();
    next.app_user_id = event.app_user_id.clone();
    next.entitlement = event.entitlement.clone();

    let derived = access_flip(&event, was_entitled, &mut next);
    Applied {
        event,
        derived,
        next,
    }
}

/// The ACCESS_GRANTED / ACCESS_REVOKED that `event` derives when its
/// entitlement differs from `was_entitled`, numbered right after it in `next`.
fn access_flip(event: &Event, was_entitled: bool, next: &mut GroupState) -> Vec<Event> {
    if event.entitlement.active == was_entitled {
        return Vec::new();
    }
    next.sequence = next.sequence.saturating_add(1);
    vec![access_event(event, event.entitlement.active, next.sequence)]
}

/// Whether `event` replaces the snapshot of `state` (is "in order"): every
/// event is ranked by `(occurred_at, ends access, id)` and replaces the
/// snapshot when its rank is not below that of the last applied event.
///
/// - A later `occurred_at` wins; an earlier one is out of order.
/// - Equal `occurred_at` (the store gives no order): an event whose
///   entitlement is inactive wins over one whose entitlement is active (fail
///   closed: a refund or revocation is never undone by an event of the same
///   time), otherwise the greater event id wins. Event ids are derived from
///   the store's own notification id, so the choice is deterministic and
///   every arrival order ends in the same snapshot.
/// - A group state stored before `applied_id` existed lets a tie with equal
///   entitlement in (the earlier rule).
/// - Both entitlements of a tie are judged at `now` ([`entitlement_at`]).
fn supersedes(event: &Event, state: &GroupState, now: Timestamp) -> bool {
    let Some(last) = state.applied_at else {
        return true;
    };
    if event.occurred_at != last {
        return event.occurred_at > last;
    }
    let stored = entitlement_at(&state.entitlement, state.subscription.as_ref(), now);
    match (event.entitlement.active, stored.active) {
        (false, true) => true,
        (true, false) => false,
        _ => state
            .applied_id
            .as_ref()
            .is_none_or(|applied| event.id >= *applied),
    }
}

/// The `ACCESS_GRANTED` / `ACCESS_REVOKED` event caused by `cause`.
fn access_event(cause: &Event, granted: bool, sequence: u64) -> Event {
    let kind = if granted {
        EventType::AccessGranted
    } else {
        EventType::AccessRevoked
    };
    Event {
        api_version: cause.api_version,
        id: EventId::derive(&[cause.id.as_str(), kind.as_str()]),
        kind,
        occurred_at: cause.occurred_at,
        received_at: cause.received_at,
        sequence,
        store: cause.store.clone(),
        environment: cause.environment.clone(),
        app_id: cause.app_id.clone(),
        app_user_id: cause.app_user_id.clone(),
        product: cause.product.clone(),
        subscription: cause.subscription.clone(),
        transaction: cause.transaction.clone(),
        entitlement: cause.entitlement.clone(),
        details: Details {
            cause_event_id: Some(cause.id.clone()),
            cause_type: Some(cause.kind.clone()),
            ..Details::default()
        },
        store_notification: cause.store_notification.clone(),
        raw: None,
        previous_sequence: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::event::{PeriodType, SubscriptionStatus};
    use crate::state::fixtures::*;
    use crate::state::{MemoryState, StateStore};

    /// The applying instant of these tests: an hour after the fixtures' base
    /// time, before any fixture expiry (30 days after its event), so time
    /// ends no entitlement unless a test says so.
    const NOW_MINUTE: i64 = 60;

    fn now() -> Timestamp {
        t(NOW_MINUTE)
    }

    /// [`super::transition`] at [`now`].
    fn transition(prev: Option<&GroupState>, event: Event) -> Applied {
        super::transition(prev, event, now())
    }

    fn apply_all(events: Vec<Event>) -> (Vec<Applied>, GroupState) {
        let mut state: Option<GroupState> = None;
        let mut out = Vec::new();
        for e in events {
            let a = transition(state.as_ref(), e);
            state = Some(a.next.clone());
            out.push(a);
        }
        (out, state.unwrap_or_default())
    }

    #[test]
    fn sequences_are_gap_free_and_derived_events_follow_their_cause() {
        // GIVEN start (entitled), renew, expire (not entitled), resubscribe (entitled)
        let (a, s) = apply_all(vec![
            sub_event("1", EventType::SubscriptionStarted, "o", 0, true),
            sub_event("2", EventType::SubscriptionRenewed, "o", 10, true),
            sub_event("3", EventType::SubscriptionExpired, "o", 20, false),
            sub_event("4", EventType::SubscriptionResubscribed, "o", 30, true),
        ]);
        // THEN sequences: 1 (+2 granted), 3, 4 (+5 revoked), 6 (+7 granted)
        let seqs: Vec<(u64, Vec<u64>)> = a
            .iter()
            .map(|x| {
                (
                    x.event.sequence,
                    x.derived.iter().map(|d| d.sequence).collect(),
                )
            })
            .collect();
        assert_eq!(
            seqs,
            vec![(1, vec![2]), (3, vec![]), (4, vec![5]), (6, vec![7])]
        );
        assert_eq!(s.sequence, 7);
        assert_eq!(a[2].derived[0].kind, EventType::AccessRevoked);
        assert_eq!(a[3].derived[0].kind, EventType::AccessGranted);
    }

    #[test]
    fn a_consumption_report_carries_the_stored_snapshot_and_changes_nothing() {
        // GIVEN an entitled subscription
        let (_, s) = apply_all(vec![sub_event(
            "1",
            EventType::SubscriptionStarted,
            "o",
            0,
            true,
        )]);
        // WHEN storehook's REFUND_CONSUMPTION_SENT arrives, later and with another snapshot
        let mut report = sub_event("2", EventType::RefundConsumptionSent, "o", 50, false);
        report.app_user_id = Some("someone-else".into());
        let a = transition(Some(&s), report);
        // THEN it carries the stored snapshot, is not flagged out of order, derives nothing
        assert!(a.event.entitlement.active);
        assert_eq!(a.event.app_user_id.as_deref(), Some("user-1"));
        assert_eq!(a.event.details.out_of_order, None);
        assert!(a.derived.is_empty());
        // AND the state is unchanged but for the sequence
        assert_eq!(a.next.sequence, s.sequence + 1);
        assert_eq!(a.next.applied_at, s.applied_at);
        assert_eq!(a.next.entitlement, s.entitlement);
        assert_eq!(a.next.subscription, s.subscription);
    }

    #[test]
    fn derived_access_events_carry_cause_and_snapshot() {
        // GIVEN a first entitled event (the initial state is "not entitled")
        let mut e = sub_event("n1", EventType::SubscriptionStarted, "o", 0, true);
        e.raw = Some(serde_json::json!({"big": "payload"}));
        let a = transition(None, e.clone());
        // THEN one ACCESS_GRANTED is derived with a deterministic id and the cause's snapshot
        assert_eq!(a.derived.len(), 1);
        let d = &a.derived[0];
        assert_eq!(d.kind, EventType::AccessGranted);
        assert_eq!(d.id, EventId::derive(&[e.id.as_str(), "ACCESS_GRANTED"]));
        assert_eq!(d.details.cause_event_id, Some(e.id.clone()));
        assert_eq!(d.details.cause_type, Some(EventType::SubscriptionStarted));
        assert_eq!(d.occurred_at, e.occurred_at);
        assert_eq!(d.subscription, a.event.subscription);
        assert_eq!(d.entitlement, a.event.entitlement);
        assert_eq!(d.app_user_id, a.event.app_user_id);
        assert_eq!(d.product, a.event.product);
        assert_eq!(d.raw, None);
        // AND a first non-entitled event derives nothing
        let b = transition(
            None,
            sub_event("n2", EventType::SubscriptionExpired, "p", 0, false),
        );
        assert!(b.derived.is_empty());
        // AND an unchanged entitlement derives nothing
        let c = transition(
            Some(&a.next),
            sub_event("n3", EventType::SubscriptionRenewed, "o", 5, true),
        );
        assert!(c.derived.is_empty());
        // AND ACCESS_REVOKED has its own id
        let r = transition(
            Some(&a.next),
            sub_event("n4", EventType::SubscriptionRevoked, "o", 5, false),
        );
        assert_eq!(
            r.derived[0].id,
            EventId::derive(&[r.event.id.as_str(), "ACCESS_REVOKED"])
        );
    }

    #[test]
    fn out_of_order_events_keep_the_snapshot_and_are_flagged() {
        // GIVEN a group whose last applied event (expired, at minute 20) is newer
        let (_, s) = apply_all(vec![
            sub_event("1", EventType::SubscriptionStarted, "o", 0, true),
            sub_event("3", EventType::SubscriptionExpired, "o", 20, false),
        ]);
        // WHEN an older renewal (minute 10, entitled, other product) arrives late
        let mut late = sub_event("2", EventType::SubscriptionRenewed, "o", 10, true);
        late.product.as_mut().unwrap().id = "pro.yearly".into();
        late.app_user_id = Some("user-2".into());
        let a = transition(Some(&s), late);
        // THEN the snapshot is unchanged, no access is re-granted
        assert_eq!(a.next.entitlement, s.entitlement);
        assert_eq!(a.next.subscription, s.subscription);
        assert_eq!(a.next.applied_at, s.applied_at);
        assert!(a.derived.is_empty());
        // AND the event carries the stored snapshot and out_of_order=true
        assert_eq!(a.event.details.out_of_order, Some(true));
        assert!(!a.event.entitlement.active);
        assert_eq!(a.event.subscription, s.subscription);
        assert_eq!(a.event.product, s.product);
        assert_eq!(a.event.app_user_id, s.app_user_id);
        assert_eq!(
            a.event.subscription.as_ref().unwrap().status,
            SubscriptionStatus::Expired
        );
        // AND it still gets the next sequence number
        assert_eq!(a.event.sequence, s.sequence + 1);
        // AND an event at exactly the last applied time is a tie the store does
        // not order: an entitled one loses it against the applied non-entitled
        // one (fail closed; see `ties_of_equal_time_are_decided_the_same_in_any_arrival_order`)
        let same = transition(
            Some(&s),
            sub_event("4", EventType::RenewalEnabled, "o", 20, true),
        );
        assert_eq!(same.event.details.out_of_order, Some(true));
        assert!(same.derived.is_empty());
    }

    #[test]
    fn ties_of_equal_time_are_decided_the_same_in_any_arrival_order() {
        let start = sub_event("1", EventType::SubscriptionStarted, "o", 0, true);
        let renew = sub_event("2", EventType::SubscriptionRenewed, "o", 20, true);
        let mut refund = sub_event("3", EventType::SubscriptionRefunded, "o", 20, false);
        refund.subscription.as_mut().unwrap().status = SubscriptionStatus::Revoked;
        // GIVEN a renewal and a refund with the same occurred_at, in both arrival orders
        for order in [
            vec![start.clone(), renew.clone(), refund.clone()],
            vec![start.clone(), refund.clone(), renew.clone()],
        ] {
            let (a, s) = apply_all(order.clone());
            // THEN the refund wins the tie: access ends, whatever came last
            assert!(!s.entitlement.active, "{:?}", order.last().unwrap().kind);
            assert_eq!(s.applied_id, Some(refund.id.clone()));
            assert_eq!(
                s.subscription.as_ref().unwrap().status,
                SubscriptionStatus::Revoked
            );
            // AND the renewal is delivered out of order when it comes second
            let r = a.iter().find(|x| x.event.id == renew.id).unwrap();
            assert_eq!(
                r.event.details.out_of_order,
                (order[2].id == renew.id).then_some(true)
            );
        }
        // GIVEN two entitled events of the same time, in both orders
        let mut other = sub_event("4", EventType::ProductChanged, "o", 20, true);
        other.product.as_mut().unwrap().id = "pro.yearly".into();
        let winner = if other.id > renew.id { &other } else { &renew };
        for order in [
            vec![start.clone(), renew.clone(), other.clone()],
            vec![start.clone(), other.clone(), renew.clone()],
        ] {
            let (_, s) = apply_all(order);
            // THEN the greater event id wins, whatever came last
            assert_eq!(s.applied_id.as_ref(), Some(&winner.id));
            assert_eq!(s.product, winner.product);
        }
        // AND a state stored before applied_id existed lets an equal-entitlement tie in
        let (_, mut old) = apply_all(vec![start.clone(), renew.clone()]);
        old.applied_id = None;
        let legacy: GroupState =
            serde_json::from_str(&serde_json::to_string(&old).unwrap()).unwrap();
        assert_eq!(legacy.applied_id, None);
        let a = transition(Some(&legacy), other.clone());
        assert_eq!(a.event.details.out_of_order, None);
        assert_eq!(a.next.applied_id, Some(other.id.clone()));
    }

    #[test]
    fn in_order_events_replace_the_snapshot() {
        // GIVEN a group
        let (_, s) = apply_all(vec![sub_event(
            "1",
            EventType::SubscriptionStarted,
            "o",
            0,
            true,
        )]);
        // WHEN a newer event with another product/user arrives
        let mut e = sub_event("2", EventType::SubscriptionRenewed, "o", 10, true);
        e.product.as_mut().unwrap().id = "pro.yearly".into();
        e.app_user_id = Some("user-2".into());
        let a = transition(Some(&s), e.clone());
        // THEN the snapshot is the event's
        assert_eq!(a.next.product, e.product);
        assert_eq!(a.next.subscription, e.subscription);
        assert_eq!(a.next.app_user_id.as_deref(), Some("user-2"));
        assert_eq!(a.next.applied_at, Some(e.occurred_at));
        assert_eq!(a.event.details.out_of_order, None);
        // AND an event without app_user_id keeps the stored one
        let mut anon = sub_event("3", EventType::RenewalDisabled, "o", 20, true);
        anon.app_user_id = None;
        let b = transition(Some(&a.next), anon);
        assert_eq!(b.event.app_user_id.as_deref(), Some("user-2"));
    }

    #[test]
    fn events_without_subscription_or_transaction_never_touch_entitlement() {
        // GIVEN an entitled group state
        let (_, s) = apply_all(vec![sub_event(
            "1",
            EventType::SubscriptionStarted,
            "o",
            0,
            true,
        )]);
        // WHEN a TEST event (no subscription, no transaction) is applied to it
        let a = transition(Some(&s), test_event("t1"));
        // THEN only the sequence moves; nothing derived; event delivered as translated
        assert_eq!(a.next.sequence, s.sequence + 1);
        assert_eq!(
            GroupState {
                sequence: s.sequence,
                ..a.next.clone()
            },
            s
        );
        assert!(a.derived.is_empty());
        assert!(!a.event.entitlement.active);
        assert_eq!(a.event.details.out_of_order, None);
        // AND on a fresh group: sequence 1, no ACCESS_* even though nothing was entitled
        let b = transition(None, test_event("t2"));
        assert_eq!(b.event.sequence, 1);
        assert!(b.derived.is_empty());
        assert_eq!(b.next.applied_at, None);
        // AND a store-level STORE_NOTIFICATION claiming entitlement changes nothing
        let mut sn = test_event("t3");
        sn.kind = EventType::StoreNotification;
        sn.entitlement.active = true;
        let c = transition(None, sn);
        assert!(c.derived.is_empty());
        assert!(!c.next.entitlement.active);
    }

    #[test]
    fn product_changed_gets_from_product_id() {
        // GIVEN a group on pro.monthly
        let (_, s) = apply_all(vec![sub_event(
            "1",
            EventType::SubscriptionStarted,
            "o",
            0,
            true,
        )]);
        // WHEN a PRODUCT_CHANGED to pro.yearly arrives without from_product_id
        let mut e = sub_event("2", EventType::ProductChanged, "o", 5, true);
        e.product.as_mut().unwrap().id = "pro.yearly".into();
        let a = transition(Some(&s), e.clone());
        // THEN from_product_id is the previous snapshot's product
        assert_eq!(
            a.event.details.from_product_id.as_deref(),
            Some("pro.monthly")
        );
        // AND a translator-provided value is kept
        e.details.from_product_id = Some("pro.weekly".into());
        let b = transition(Some(&s), e);
        assert_eq!(
            b.event.details.from_product_id.as_deref(),
            Some("pro.weekly")
        );
        // AND with no previous snapshot it stays empty
        let c = transition(
            None,
            sub_event("3", EventType::ProductChanged, "q", 0, true),
        );
        assert_eq!(c.event.details.from_product_id, None);
    }

    #[test]
    fn renewal_after_trial_is_a_conversion_and_renewals_are_counted() {
        // GIVEN a subscription started in a trial
        let mut start = sub_event("1", EventType::SubscriptionStarted, "o", 0, true);
        start.subscription.as_mut().unwrap().period_type = PeriodType::Trial;
        let (_, s) = apply_all(vec![start]);
        // WHEN the first paid renewal arrives
        let a = transition(
            Some(&s),
            sub_event("2", EventType::SubscriptionRenewed, "o", 10, true),
        );
        // THEN trial_converted=true and renewal_number=1
        assert_eq!(a.event.details.trial_converted, Some(true));
        assert_eq!(a.event.details.renewal_number, Some(1));
        // WHEN the next renewal arrives THEN no conversion, renewal_number=2
        let b = transition(
            Some(&a.next),
            sub_event("3", EventType::SubscriptionRenewed, "o", 20, true),
        );
        assert_eq!(b.event.details.trial_converted, None);
        assert_eq!(b.event.details.renewal_number, Some(2));
        // AND a billing recovery counts as a renewal too
        let c = transition(
            Some(&b.next),
            sub_event("4", EventType::SubscriptionRecovered, "o", 30, true),
        );
        assert_eq!(c.event.details.renewal_number, Some(3));
        // AND non-renewal events carry no renewal_number
        let d = transition(
            Some(&c.next),
            sub_event("5", EventType::RenewalDisabled, "o", 40, true),
        );
        assert_eq!(d.event.details.renewal_number, None);
        assert_eq!(d.next.renewals, 3);
        // AND a renewal into another trial period is not a conversion
        let mut trial_again = sub_event("6", EventType::SubscriptionRenewed, "o", 10, true);
        trial_again.subscription.as_mut().unwrap().period_type = PeriodType::Trial;
        let e = transition(Some(&s), trial_again);
        assert_eq!(e.event.details.trial_converted, None);
        // AND a recovery straight out of the trial is a conversion
        let f = transition(
            Some(&s),
            sub_event("7", EventType::SubscriptionRecovered, "o", 10, true),
        );
        assert_eq!(f.event.details.trial_converted, Some(true));
    }

    /// `2025-07-15T10:00:00Z` plus `days`.
    fn day_2025(days: i64) -> Timestamp {
        Timestamp::from_millis(1_752_573_600_000 + days * 86_400_000).unwrap()
    }

    /// A DID_RENEW as the App Store translator builds it: renewed on
    /// 2025-07-15 for a month, entitled, status ACTIVE.
    fn did_renew_2025(notification: &str) -> Event {
        let mut e = sub_event(
            notification,
            EventType::SubscriptionRenewed,
            "2000000",
            0,
            true,
        );
        e.occurred_at = day_2025(0);
        e.received_at = day_2025(0);
        let sub = e.subscription.as_mut().unwrap();
        sub.current_period_started_at = Some(day_2025(0));
        sub.expires_at = Some(day_2025(31));
        e.entitlement.expires_at = Some(day_2025(31));
        e
    }

    #[test]
    fn an_entitlement_whose_end_has_passed_is_inactive_whatever_the_status() {
        let renew = did_renew_2025("r1");
        // GIVEN a genuine DID_RENEW whose expiry (2025-08-15) is long past at apply time
        let now = day_2025(500);
        // WHEN it is applied to a new group
        let a = super::transition(None, renew.clone(), now);
        // THEN it is delivered inactive, its status and expiry as the store said
        assert!(!a.event.entitlement.active);
        assert_eq!(a.event.entitlement.expires_at, Some(day_2025(31)));
        assert_eq!(
            a.event.subscription.as_ref().unwrap().status,
            SubscriptionStatus::Active
        );
        // AND no access is granted (a new group starts "not entitled")
        assert!(a.derived.is_empty());
        assert!(!a.next.entitlement.active);
        // AND the group is due for the sweeper at that expiry
        assert_eq!(a.next.due_at(), Some(day_2025(31)));

        // GIVEN the same group entitled by an earlier start (applied in time)
        let mut start = renew.clone();
        start.id = EventId::derive(&["TEST_STORE", "start"]);
        start.kind = EventType::SubscriptionStarted;
        start.occurred_at = day_2025(-31);
        let s = super::transition(None, start, day_2025(-31)).next;
        assert!(s.entitlement.active);
        // WHEN the renewal is applied after its expiry
        let b = super::transition(Some(&s), renew.clone(), now);
        // THEN it is inactive and ACCESS_REVOKED is derived right after it
        assert!(!b.event.entitlement.active);
        assert_eq!(b.derived.len(), 1);
        assert_eq!(b.derived[0].kind, EventType::AccessRevoked);
        assert_eq!(b.derived[0].sequence, b.event.sequence + 1);
        assert!(!b.derived[0].entitlement.active);
        assert_eq!(b.derived[0].occurred_at, renew.occurred_at);
        // AND applied before its expiry, it stays active and derives nothing
        let c = super::transition(Some(&s), renew.clone(), day_2025(30));
        assert!(c.event.entitlement.active);
        assert!(c.derived.is_empty());
        // AND at exactly its end it is over
        let d = super::transition(Some(&s), renew, day_2025(31));
        assert!(!d.event.entitlement.active);
    }

    #[test]
    fn the_grace_period_extends_the_entitlement_only_in_grace() {
        // GIVEN a subscription in grace: paid period over on day 31, grace until day 47
        let mut grace = did_renew_2025("g1");
        grace.kind = EventType::GracePeriodStarted;
        let sub = grace.subscription.as_mut().unwrap();
        sub.status = SubscriptionStatus::InGracePeriod;
        sub.grace_period_expires_at = Some(day_2025(47));
        // THEN between the two ends it is still entitled
        let a = super::transition(None, grace.clone(), day_2025(40));
        assert!(a.event.entitlement.active);
        assert_eq!(a.next.due_at(), Some(day_2025(47)));
        // AND after the grace end it is not
        let b = super::transition(None, grace.clone(), day_2025(47));
        assert!(!b.event.entitlement.active);
        // AND a grace end on a status that is not IN_GRACE_PERIOD does not extend it
        let mut active = grace;
        active.subscription.as_mut().unwrap().status = SubscriptionStatus::Active;
        let c = super::transition(None, active, day_2025(40));
        assert!(!c.event.entitlement.active);
        assert_eq!(c.next.due_at(), Some(day_2025(31)));
    }

    #[test]
    fn time_never_grants_and_closed_or_endless_groups_are_never_due() {
        // GIVEN an inactive entitlement with a future end
        let e = Entitlement {
            active: false,
            expires_at: Some(day_2025(31)),
        };
        // THEN judging it earlier does not activate it
        assert!(!entitlement_at(&e, None, day_2025(0)).active);
        // AND an entitlement without any end stays as the store said
        let forever = Entitlement {
            active: true,
            expires_at: None,
        };
        assert!(entitlement_at(&forever, None, day_2025(10_000)).active);
        // AND a closed subscription is not due, an open one is
        let mut expired = did_renew_2025("x1");
        expired.kind = EventType::SubscriptionExpired;
        expired.subscription.as_mut().unwrap().status = SubscriptionStatus::Expired;
        let a = super::transition(None, expired.clone(), day_2025(0));
        assert_eq!(a.next.due_at(), None);
        expired.subscription.as_mut().unwrap().status = SubscriptionStatus::Revoked;
        assert_eq!(
            super::transition(None, expired, day_2025(0)).next.due_at(),
            None
        );
        let mut retry = did_renew_2025("x2");
        retry.subscription.as_mut().unwrap().status = SubscriptionStatus::InBillingRetry;
        retry.entitlement = Entitlement::none();
        let b = super::transition(None, retry, day_2025(0));
        // (inactive already, but not closed: due at the subscription's expiry)
        assert_eq!(b.next.due_at(), Some(day_2025(31)));
        // AND a group without a subscription is never due
        assert_eq!(transition(None, test_event("t")).next.due_at(), None);
    }

    #[test]
    fn an_out_of_order_event_carries_the_stored_snapshot_judged_at_now() {
        // GIVEN an entitled group whose last applied renewal ends on day 31
        let renew = did_renew_2025("o1");
        let s = super::transition(None, renew.clone(), day_2025(1)).next;
        assert!(s.entitlement.active);
        // WHEN an older event arrives after that end
        let mut older = renew.clone();
        older.id = EventId::derive(&["TEST_STORE", "older"]);
        older.kind = EventType::RenewalEnabled;
        older.occurred_at = day_2025(-5);
        let a = super::transition(Some(&s), older.clone(), day_2025(40));
        // THEN it keeps the stored snapshot, out of order, judged inactive
        assert_eq!(a.event.details.out_of_order, Some(true));
        assert!(!a.event.entitlement.active);
        assert_eq!(a.event.subscription, s.subscription);
        assert_eq!(a.next.applied_at, s.applied_at);
        // AND that flip is recorded and derives ACCESS_REVOKED, as any flip
        assert!(!a.next.entitlement.active);
        assert_eq!(a.derived.len(), 1);
        assert_eq!(a.derived[0].kind, EventType::AccessRevoked);
        assert_eq!(a.next.sequence, s.sequence + 2);
        // AND before that end it stays entitled and derives nothing
        let b = super::transition(Some(&s), older, day_2025(20));
        assert!(b.event.entitlement.active);
        assert!(b.derived.is_empty());
    }

    #[test]
    fn group_state_round_trips_json() {
        let (_, s) = apply_all(vec![sub_event(
            "1",
            EventType::SubscriptionStarted,
            "o",
            0,
            true,
        )]);
        let back: GroupState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    /// Property tests of the transition over [`MemoryState`] (which dedupes by
    /// event id): any arrival order and duplication of one subscription's
    /// events converges to the store-order result.
    mod properties {
        use super::*;
        use crate::event::SubscriptionStatus as St;
        use proptest::prelude::*;

        /// One step of a lifecycle: what the store reports and whether it entitles.
        #[derive(Debug, Clone, Copy)]
        enum Step {
            Start,
            Renew,
            AutoRenewOff,
            AutoRenewOn,
            BillingRetry,
            Grace,
            Recover,
            Expire,
            Refund,
            Revoke,
            Resubscribe,
            ChangeProduct,
        }

        impl Step {
            fn shape(self) -> (EventType, St, bool, bool) {
                // (type, status, entitled, auto_renew)
                match self {
                    Self::Start => (EventType::SubscriptionStarted, St::Active, true, true),
                    Self::Renew => (EventType::SubscriptionRenewed, St::Active, true, true),
                    Self::AutoRenewOff => {
                        (EventType::RenewalDisabled, St::CanceledActive, true, false)
                    }
                    Self::AutoRenewOn => (EventType::RenewalEnabled, St::Active, true, true),
                    Self::BillingRetry => (
                        EventType::BillingRetryStarted,
                        St::InBillingRetry,
                        false,
                        true,
                    ),
                    Self::Grace => (EventType::GracePeriodStarted, St::InGracePeriod, true, true),
                    Self::Recover => (EventType::SubscriptionRecovered, St::Active, true, true),
                    Self::Expire => (EventType::SubscriptionExpired, St::Expired, false, false),
                    Self::Refund => (EventType::SubscriptionRefunded, St::Revoked, false, false),
                    Self::Revoke => (EventType::SubscriptionRevoked, St::Revoked, false, false),
                    Self::Resubscribe => {
                        (EventType::SubscriptionResubscribed, St::Active, true, true)
                    }
                    Self::ChangeProduct => (EventType::ProductChanged, St::Active, true, true),
                }
            }

            fn ends_access(self) -> bool {
                matches!(self, Self::Refund | Self::Revoke)
            }
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                Just(Step::Renew),
                Just(Step::AutoRenewOff),
                Just(Step::AutoRenewOn),
                Just(Step::BillingRetry),
                Just(Step::Grace),
                Just(Step::Recover),
                Just(Step::Expire),
                Just(Step::Refund),
                Just(Step::Revoke),
                Just(Step::Resubscribe),
                Just(Step::ChangeProduct),
            ]
        }

        /// One generated store event: its step, minutes after the previous one
        /// (0 = the same store time, a tie), whether the store time is
        /// unauthenticated/from the future (then ingest clamps it to
        /// received_at), and the delivery delay in minutes.
        type Spec = (Step, i64, bool, i64);

        fn lifecycle() -> impl Strategy<Value = Vec<Spec>> {
            prop::collection::vec((step(), 0i64..3, prop::bool::weighted(0.2), 0i64..4), 0..10)
                .prop_map(|mut rest| {
                    rest.insert(0, (Step::Start, 0, false, 0));
                    rest
                })
        }

        /// The events as ingest queues them (future store times clamped).
        fn events(specs: &[Spec]) -> Vec<(Step, Event)> {
            let mut minute = 0;
            specs
                .iter()
                .enumerate()
                .map(|(i, &(step, gap, future, delay))| {
                    minute += gap;
                    let (kind, status, active, auto_renew) = step.shape();
                    let mut e = sub_event(&format!("p{i}"), kind, "o", minute, active);
                    let sub = e.subscription.as_mut().unwrap();
                    sub.status = status;
                    sub.auto_renew = auto_renew;
                    if matches!(step, Step::ChangeProduct) {
                        e.product.as_mut().unwrap().id = format!("pro.plan{i}");
                        sub.renewal_product_id = Some(format!("pro.plan{i}"));
                    }
                    e.received_at = t(minute + delay);
                    if future {
                        e.occurred_at = t(minute + 10 * 365 * 24 * 60);
                    }
                    let received_at_ms = e.received_at.millis();
                    let clamped = crate::ingest::clamp_store_time(&mut e, received_at_ms);
                    assert_eq!(clamped, future);
                    (step, e)
                })
                .collect()
        }

        /// Store order: by authenticated (clamped) time; a tie, which the store
        /// does not order, puts an access-ending event last, then orders by id.
        fn store_order(mut events: Vec<(Step, Event)>) -> Vec<(Step, Event)> {
            events.sort_by(|(_, a), (_, b)| {
                (a.occurred_at, !a.entitlement.active, &a.id).cmp(&(
                    b.occurred_at,
                    !b.entitlement.active,
                    &b.id,
                ))
            });
            events
        }

        /// An arrival order: every event at least once, some twice or three
        /// times, shuffled by the generated keys.
        fn arrivals(n: usize, dups: &[usize], keys: &[u32]) -> Vec<usize> {
            let mut order: Vec<usize> = (0..n).chain(dups.iter().map(|d| d % n)).collect();
            let mut keyed: Vec<(u32, usize, usize)> = order
                .iter()
                .enumerate()
                .map(|(pos, &i)| (keys.get(pos).copied().unwrap_or(0), pos, i))
                .collect();
            keyed.sort();
            order = keyed.into_iter().map(|(_, _, i)| i).collect();
            order
        }

        fn apply_in(
            rt: &tokio::runtime::Runtime,
            events: impl IntoIterator<Item = Event>,
        ) -> (MemoryState, String) {
            let store = MemoryState::new();
            let mut group = String::new();
            for e in events {
                group = e.group_key();
                rt.block_on(store.apply(e, now())).unwrap();
            }
            (store, group)
        }

        proptest! {
            #[test]
            fn any_arrival_order_converges_to_store_order(
                specs in lifecycle(),
                dups in prop::collection::vec(0usize..64, 0..6),
                keys in prop::collection::vec(any::<u32>(), 16),
            ) {
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let evs = events(&specs);
                let order = arrivals(evs.len(), &dups, &keys);
                // WHEN the events arrive in that order, some more than once
                let (got, group) =
                    apply_in(&rt, order.iter().map(|&i| evs[i].1.clone()));
                // AND, for reference, once each in store order
                let sorted = store_order(evs.clone());
                let (want, _) = apply_in(&rt, sorted.iter().map(|(_, e)| e.clone()));
                let g = rt.block_on(got.group(&group)).unwrap().unwrap();
                let w = rt.block_on(want.group(&group)).unwrap().unwrap();

                // THEN the final snapshot is the store-order one
                prop_assert_eq!(&g.subscription, &w.subscription);
                prop_assert_eq!(&g.product, &w.product);
                prop_assert_eq!(&g.entitlement, &w.entitlement);
                // (which is the snapshot of the last event in store order)
                let (last_step, last) = sorted.last().unwrap();
                prop_assert_eq!(&g.subscription, &last.subscription);
                prop_assert_eq!(&g.entitlement, &last.entitlement);

                // AND sequences are gap-free from 1 over everything delivered
                let history = rt.block_on(got.history(&group)).unwrap();
                let seqs: Vec<u64> = history.iter().map(|e| e.sequence).collect();
                prop_assert_eq!(seqs, (1..=history.len() as u64).collect::<Vec<_>>());
                prop_assert_eq!(g.sequence, history.len() as u64);
                // AND each store event was delivered exactly once
                let mut ids: Vec<&EventId> = history
                    .iter()
                    .filter(|e| e.details.cause_event_id.is_none())
                    .map(|e| &e.id)
                    .collect();
                ids.sort();
                let mut distinct: Vec<&EventId> = evs.iter().map(|(_, e)| &e.id).collect();
                distinct.sort();
                prop_assert_eq!(ids, distinct);

                // AND ACCESS_* follow exactly the flips of the delivered entitlement:
                // they alternate, start with GRANTED, each right after its cause
                let mut entitled = false;
                let mut pending: Option<(bool, EventId)> = None;
                for e in &history {
                    match e.kind {
                        EventType::AccessGranted | EventType::AccessRevoked => {
                            let granted = e.kind == EventType::AccessGranted;
                            prop_assert_eq!(
                                pending.take(),
                                Some((granted, e.details.cause_event_id.clone().unwrap())),
                                "ACCESS_* without a flip right before it"
                            );
                        }
                        _ => {
                            prop_assert!(pending.is_none(), "a flip without its ACCESS_*");
                            if e.entitlement.active != entitled {
                                entitled = e.entitlement.active;
                                pending = Some((entitled, e.id.clone()));
                            }
                        }
                    }
                }
                prop_assert!(pending.is_none(), "a final flip without its ACCESS_*");
                prop_assert_eq!(entitled, g.entitlement.active);

                // AND a refund or revocation last in store order ends the entitlement,
                // as does one sharing the latest store time with other events
                if last_step.ends_access() {
                    prop_assert!(!g.entitlement.active);
                }
                let latest = sorted.iter().map(|(_, e)| e.occurred_at).max().unwrap();
                if sorted.iter().any(|(s, e)| s.ends_access() && e.occurred_at == latest) {
                    prop_assert!(!g.entitlement.active);
                }
            }
        }
    }
}
