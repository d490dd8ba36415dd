//! Google Play notification + Play Developer API state → storehook events
//! (docs/events.md, Google Play column).
//!
//! Pure: the authenticated push, the state read from the API and the lineage
//! in; one event out. Google's RTDN only says "something changed"; the
//! snapshot (status, expiry, auto-renew, price, base plan, offer, user id,
//! country, environment) comes from `subscriptionsv2.get` / `products.get`,
//! the event type from the notification type.
//!
//! Rules beyond the mapping table:
//! - `PURCHASED` with a `linkedPurchaseToken`: `PRODUCT_CHANGED` when the
//!   previous purchase is still live or was replaced (`replacementCancellation`),
//!   `SUBSCRIPTION_RESUBSCRIBED` when it had expired (or Google no longer knows it).
//! - A notification about a purchase token that was **replaced** by a newer one
//!   of the same lineage is delivered as `STORE_NOTIFICATION` without a
//!   subscription snapshot: the old token's CANCELED/EXPIRED must not overwrite
//!   the lineage's live state.
//! - A full void's event id derives from its purchase token and order id
//!   ([`voided_event_id`]), not from the Pub/Sub message: the same refund
//!   read back by `storehook backfill` (`voidedpurchases.list`) is the same event.
//! - `REVOKED` and full voids set the status to `REVOKED` whatever the API still
//!   says (Google has been seen answering ACTIVE right after a void).
//! - A purchase the API does not know (HTTP 400/404/410) and an undecodable
//!   `message.data` become `STORE_NOTIFICATION` with `details.error`.
//! - `entitlement` is judged at `received_at` (the instant the state was read).

use super::PlayStoreConfig;
use super::links::Lineage;
use super::model::*;
use crate::event::*;
use crate::stores::appstore::translate::subscription_entitlement;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

/// Google asks for an answer to a pending refund review within 24 hours.
pub const REFUND_REVIEW_RESPONSE_WINDOW_HOURS: i64 = 24;

/// An authenticated push, decoded.
#[derive(Debug, Clone)]
pub struct Push {
    /// Pub/Sub `messageId` (the event id derives from it).
    pub message_id: String,
    /// Pub/Sub `publishTime` (ms).
    pub publish_time_ms: Option<i64>,
    /// The `DeveloperNotification`, or why `message.data` could not be decoded.
    pub notification: Result<Decoded, String>,
}

/// A decoded `DeveloperNotification`.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Parsed.
    pub notification: DeveloperNotification,
    /// As JSON (only kept when raw payloads are included).
    pub json: Option<Value>,
}

/// The state read from the Play Developer API for a notification.
#[derive(Debug, Clone)]
pub enum PlayState {
    /// No API call applies (test, pending refund review, one-time void, unknown kinds).
    NotNeeded,
    /// `subscriptionsv2.get` of the notification's token.
    Subscription(Box<SubscriptionState>),
    /// `products.get` of the notification's token.
    Product {
        /// Parsed.
        purchase: Box<ProductPurchase>,
        /// As JSON (raw).
        json: Option<Value>,
    },
    /// The API does not know the purchase; token-free reason.
    NotFound(String),
}

/// A subscription's API state with its lineage.
#[derive(Debug, Clone)]
pub struct SubscriptionState {
    /// `subscriptionsv2.get` of the notification's token.
    pub purchase: SubscriptionPurchaseV2,
    /// As JSON (raw).
    pub json: Option<Value>,
    /// The storehook subscription the token belongs to.
    pub lineage: Lineage,
    /// For `PURCHASED` with a `linkedPurchaseToken`: the linked purchase.
    pub previous: Option<Previous>,
}

/// The purchase a `linkedPurchaseToken` points at.
#[derive(Debug, Clone)]
pub enum Previous {
    /// Still known to the API.
    Found {
        /// Parsed.
        purchase: Box<SubscriptionPurchaseV2>,
        /// As JSON (raw).
        json: Option<Value>,
    },
    /// Unknown to the API (expired more than 60 days ago).
    NotFound,
}

/// Parses an RFC 3339 time of the API.
pub fn rfc3339(s: Option<&str>) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .and_then(|t| Timestamp::from_datetime(t.with_timezone(&Utc)))
}

/// Google `Money` → micros.
pub fn money(m: Option<&GoogleMoney>) -> Option<Money> {
    let m = m?;
    let currency = m.currency_code.as_deref().filter(|c| !c.is_empty())?;
    let units = m.units.unwrap_or(0);
    let nanos = m.nanos.unwrap_or(0);
    Some(Money {
        amount_micros: units.saturating_mul(1_000_000).saturating_add(nanos / 1000),
        currency: currency.to_owned(),
    })
}

/// The order a renewal order id derives from: `GPA.1-2-3-4..5` → `GPA.1-2-3-4`.
pub fn base_order(order_id: &str) -> &str {
    order_id.split_once("..").map_or(order_id, |(base, _)| base)
}

/// Translates one authenticated push and its API state. Always one event.
pub fn translate(
    push: &Push,
    state: &PlayState,
    config: &PlayStoreConfig,
    received_at: Timestamp,
) -> Vec<Event> {
    let publish = push.publish_time_ms.and_then(Timestamp::from_millis);
    let decoded = match &push.notification {
        Ok(d) => d,
        Err(error) => {
            let mut e = base_event(
                push,
                config.single_package().unwrap_or_default(),
                publish.unwrap_or(received_at),
                received_at,
                "UNDECODABLE_NOTIFICATION".into(),
            );
            e.details.error = Some(error.clone());
            e.raw = config
                .include_raw
                .then(|| json!({"message": {"messageId": push.message_id}}));
            return vec![e];
        }
    };
    let n = &decoded.notification;
    let occurred_at = n
        .event_time_millis
        .and_then(Timestamp::from_millis)
        .or(publish)
        .unwrap_or(received_at);
    let mut e = base_event(
        push,
        n.package_name.clone(),
        occurred_at,
        received_at,
        String::new(),
    );
    if let Some(s) = &n.subscription_notification {
        subscription_event(&mut e, s, state);
    } else if let Some(v) = &n.voided_purchase_notification {
        voided_event(&mut e, v, state, config);
        if let Some(id) = voided_event_id(v) {
            e.id = id;
        }
    } else if let Some(o) = &n.one_time_product_notification {
        one_time_event(&mut e, o, state);
    } else if let Some(r) = &n.pending_refund_review_notification {
        e.kind = EventType::RefundRequested;
        e.store_notification.kind = "PENDING_REFUND_REVIEW".into();
        e.app_user_id = r.obfuscated_account_id.clone();
        e.details.reason = r.refund_reason.clone();
        e.details.respond_by =
            Some(occurred_at.plus(Duration::hours(REFUND_REVIEW_RESPONSE_WINDOW_HOURS)));
    } else if n.test_notification.is_some() {
        e.kind = EventType::Test;
        e.store_notification.kind = "TEST_NOTIFICATION".into();
    } else {
        e.store_notification.kind = "UNKNOWN_NOTIFICATION".into();
    }
    e.raw = config.include_raw.then(|| raw(push, decoded, state));
    vec![e]
}

fn base_event(
    push: &Push,
    app_id: String,
    occurred_at: Timestamp,
    received_at: Timestamp,
    store_kind: String,
) -> Event {
    Event {
        api_version: API_VERSION,
        id: EventId::derive(&[Store::GooglePlay.as_str(), &push.message_id]),
        kind: EventType::StoreNotification,
        occurred_at,
        received_at,
        sequence: 0,
        store: Store::GooglePlay,
        environment: Environment::Production,
        app_id,
        app_user_id: None,
        product: None,
        subscription: None,
        transaction: None,
        entitlement: Entitlement::none(),
        details: Details::default(),
        store_notification: StoreNotification {
            kind: store_kind,
            subtype: None,
            id: push.message_id.clone(),
        },
        raw: None,
        previous_sequence: None,
    }
}

fn raw(push: &Push, decoded: &Decoded, state: &PlayState) -> Value {
    let mut raw = json!({
        "message": {"messageId": push.message_id},
        "developerNotification": decoded.json.clone().unwrap_or(Value::Null),
    });
    match state {
        PlayState::Subscription(s) => {
            raw["subscriptionPurchase"] = s.json.clone().unwrap_or(Value::Null);
            if let Some(Previous::Found { json: Some(j), .. }) = &s.previous {
                raw["linkedSubscriptionPurchase"] = j.clone();
            }
        }
        PlayState::Product { json, .. } => {
            raw["productPurchase"] = json.clone().unwrap_or(Value::Null);
        }
        PlayState::NotFound(_) | PlayState::NotNeeded => {}
    }
    raw
}

// ---------------------------------------------------------------- subscriptions

/// The line item that defines the snapshot: the one expiring last.
pub fn primary(p: &SubscriptionPurchaseV2) -> Option<&LineItem> {
    p.line_items
        .iter()
        .max_by_key(|li| rfc3339(li.expiry_time.as_deref()))
}

fn phase(li: &LineItem) -> Option<&str> {
    li.offer_phase
        .as_ref()
        .and_then(|m| m.keys().next())
        .map(String::as_str)
}

fn offer(li: Option<&LineItem>) -> Option<Offer> {
    let li = li?;
    let id = li.offer_details.as_ref().and_then(|o| o.offer_id.clone());
    let kind = match phase(li) {
        Some("freeTrial") => OfferType::FreeTrial,
        Some("introductoryPrice") => OfferType::Intro,
        Some("basePrice" | "prorationPeriod") => return None,
        _ if li.signup_promotion.is_some() => OfferType::PromoCode,
        _ if id.is_some() => OfferType::Promotional,
        _ => return None,
    };
    Some(Offer { kind, id })
}

fn period_type(li: Option<&LineItem>) -> PeriodType {
    match li.and_then(phase) {
        Some("freeTrial") => PeriodType::Trial,
        Some("introductoryPrice") => PeriodType::Intro,
        _ => PeriodType::Normal,
    }
}

fn google_status(state: Option<&str>) -> SubscriptionStatus {
    use SubscriptionStatus as S;
    match state {
        Some("SUBSCRIPTION_STATE_ACTIVE") => S::Active,
        Some("SUBSCRIPTION_STATE_CANCELED") => S::CanceledActive,
        Some("SUBSCRIPTION_STATE_IN_GRACE_PERIOD") => S::InGracePeriod,
        Some("SUBSCRIPTION_STATE_ON_HOLD") => S::OnHold,
        Some("SUBSCRIPTION_STATE_PAUSED") => S::Paused,
        Some("SUBSCRIPTION_STATE_EXPIRED" | "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED") => {
            S::Expired
        }
        Some("SUBSCRIPTION_STATE_PENDING") => S::Pending,
        Some(other) => S::Other(
            other
                .strip_prefix("SUBSCRIPTION_STATE_")
                .unwrap_or(other)
                .to_owned(),
        ),
        None => S::Other("UNSPECIFIED".into()),
    }
}

/// Whether the purchase was replaced by a newer token of its lineage.
pub fn is_replaced(p: &SubscriptionPurchaseV2) -> bool {
    p.canceled_state_context
        .as_ref()
        .is_some_and(|c| c.replacement_cancellation.is_some())
}

fn environment(p: &SubscriptionPurchaseV2) -> Environment {
    if p.test_purchase.is_some() {
        Environment::Sandbox
    } else {
        Environment::Production
    }
}

fn app_user_id(p: &SubscriptionPurchaseV2) -> Option<String> {
    let ids = p.external_account_identifiers.as_ref()?;
    ids.obfuscated_external_account_id
        .clone()
        .or_else(|| ids.external_account_id.clone())
        .filter(|s| !s.is_empty())
}

fn subscription_product(p: &SubscriptionPurchaseV2) -> Option<Product> {
    let li = primary(p)?;
    Some(Product {
        id: li.product_id.clone()?,
        plan_id: li
            .offer_details
            .as_ref()
            .and_then(|o| o.base_plan_id.clone()),
        kind: if li.prepaid_plan.is_some() {
            ProductKind::NonRenewing
        } else {
            ProductKind::AutoRenewable
        },
    })
}

/// The latest order of the subscription, as a transaction.
fn latest_transaction(p: &SubscriptionPurchaseV2) -> Option<Transaction> {
    let order = primary(p)
        .and_then(|li| li.latest_successful_order_id.clone())
        .or_else(|| p.latest_order_id.clone())?;
    Some(order_transaction(&order, rfc3339(p.start_time.as_deref())))
}

/// A transaction for `order`; `start` is its purchase time when it is the initial order.
fn order_transaction(order: &str, start: Option<Timestamp>) -> Transaction {
    let initial = base_order(order) == order;
    Transaction {
        id: order.to_owned(),
        original_id: Some(base_order(order).to_owned()),
        purchased_at: if initial { start } else { None },
        price: None,
    }
}

/// The snapshot of a subscription purchase read at `at`.
fn snapshot(
    p: &SubscriptionPurchaseV2,
    lineage: &Lineage,
    status: SubscriptionStatus,
    at: Timestamp,
) -> Subscription {
    use SubscriptionStatus as S;
    let li = primary(p);
    let expires_at = li.and_then(|li| rfc3339(li.expiry_time.as_deref()));
    // Google flips CANCELED to EXPIRED shortly after the expiry; do not wait for it.
    let status = if status == S::CanceledActive && expires_at.is_some_and(|x| x <= at) {
        S::Expired
    } else {
        status
    };
    let plan = li.and_then(|li| li.auto_renewing_plan.as_ref());
    let ends = matches!(status, S::Expired | S::Revoked | S::CanceledActive);
    let auto_renew = !ends
        && p.line_items.iter().any(|li| {
            li.auto_renewing_plan
                .as_ref()
                .is_some_and(|a| a.auto_renew_enabled == Some(true))
        });
    let started_at = rfc3339(p.start_time.as_deref());
    let initial_order =
        latest_transaction(p).is_some_and(|t| t.original_id.as_deref() == Some(t.id.as_str()));
    Subscription {
        id: lineage.subscription_id.clone(),
        store_subscription_id: lineage.first_token.as_str().to_owned(),
        grace_period_expires_at: (status == S::InGracePeriod).then_some(expires_at).flatten(),
        status,
        auto_renew,
        period_type: period_type(li),
        started_at,
        current_period_started_at: if initial_order { started_at } else { None },
        expires_at,
        renewal_product_id: li.and_then(|li| {
            li.deferred_item_replacement
                .as_ref()
                .and_then(|d| d.product_id.clone())
                .or_else(|| li.product_id.clone())
        }),
        price: money(plan.and_then(|a| a.recurring_price.as_ref())),
        country: p
            .region_code
            .as_deref()
            .filter(|c| c.len() == 2)
            .map(str::to_ascii_uppercase),
    }
}

/// Fills product, user, environment, snapshot, transaction and entitlement from the API state.
fn fill_subscription(e: &mut Event, st: &SubscriptionState, status: SubscriptionStatus) {
    let p = &st.purchase;
    let sub = snapshot(p, &st.lineage, status, e.received_at);
    e.entitlement = subscription_entitlement(&sub, e.received_at);
    e.environment = environment(p);
    e.app_user_id = app_user_id(p);
    e.product = subscription_product(p);
    e.transaction = latest_transaction(p);
    e.subscription = Some(sub);
}

/// Product, user and environment only (no snapshot: nothing for the dispatcher to apply).
fn fill_identity_only(e: &mut Event, p: &SubscriptionPurchaseV2) {
    e.environment = environment(p);
    e.app_user_id = app_user_id(p);
    e.product = subscription_product(p);
}

fn price_change(p: &SubscriptionPurchaseV2) -> Option<&PriceChangeDetails> {
    p.line_items.iter().find_map(|li| {
        li.auto_renewing_plan
            .as_ref()
            .and_then(|a| a.price_change_details.as_ref())
    })
}

fn price_increase_pending(p: &SubscriptionPurchaseV2) -> bool {
    price_change(p).is_some_and(|c| {
        c.price_change_mode.as_deref() == Some("PRICE_INCREASE")
            && c.price_change_state.as_deref() == Some("OUTSTANDING")
    })
}

fn subscription_event(e: &mut Event, s: &SubscriptionNotification, state: &PlayState) {
    use EventType as T;
    let n = s.notification_type.unwrap_or(0);
    e.store_notification.kind = subscription_type_name(n)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("SUBSCRIPTION_NOTIFICATION_{n}"));

    let st = match state {
        PlayState::Subscription(st) => st,
        PlayState::NotFound(reason) => {
            e.details.error = Some(format!("purchase not found: {reason}"));
            e.product = s.subscription_id.clone().map(|id| Product {
                id,
                plan_id: None,
                kind: ProductKind::AutoRenewable,
            });
            return;
        }
        PlayState::NotNeeded | PlayState::Product { .. } => {
            e.details.error = Some("no subscription state was read".into());
            return;
        }
    };
    let p = &st.purchase;
    if is_replaced(p) {
        // The token was replaced by a newer purchase of the same lineage.
        fill_identity_only(e, p);
        return;
    }
    let li = primary(p);
    let mut status = google_status(p.subscription_state.as_deref());
    let d = &mut e.details;
    e.kind = match n {
        1 => T::SubscriptionRecovered,
        2 => {
            d.offer = offer(li);
            T::SubscriptionRenewed
        }
        3 => {
            d.reason = Some(cancel_reason(p).into());
            T::RenewalDisabled
        }
        4 => match &st.previous {
            None => {
                d.offer = offer(li);
                T::SubscriptionStarted
            }
            Some(Previous::NotFound) => {
                d.offer = offer(li);
                T::SubscriptionResubscribed
            }
            Some(Previous::Found { purchase: old, .. }) => {
                if lineage_live(old) {
                    d.from_product_id = primary(old).and_then(|o| o.product_id.clone());
                    d.to_product_id = li.and_then(|l| l.product_id.clone());
                    d.effective = Some(
                        if old
                            .line_items
                            .iter()
                            .any(|o| o.deferred_item_replacement.is_some())
                        {
                            ChangeEffective::NextRenewal
                        } else {
                            ChangeEffective::Immediate
                        },
                    );
                    d.offer = offer(li);
                    T::ProductChanged
                } else {
                    d.offer = offer(li);
                    T::SubscriptionResubscribed
                }
            }
        },
        5 => T::BillingRetryStarted,
        6 => {
            d.grace_period_expires_at = li.and_then(|l| rfc3339(l.expiry_time.as_deref()));
            T::GracePeriodStarted
        }
        7 => T::RenewalEnabled,
        8 => {
            d.status = Some(PriceIncreaseStatus::Accepted);
            d.new_price = money(price_change(p).and_then(|c| c.new_price.as_ref()));
            T::PriceIncrease
        }
        9 => {
            d.new_expires_at = li.and_then(|l| rfc3339(l.expiry_time.as_deref()));
            T::RenewalExtended
        }
        10 => {
            d.resumes_at = resumes_at(p);
            T::SubscriptionPaused
        }
        11 => {
            d.resumes_at = resumes_at(p);
            T::SubscriptionPauseScheduled
        }
        12 => {
            status = SubscriptionStatus::Revoked;
            T::SubscriptionRevoked
        }
        13 => {
            d.reason = Some(expiry_reason(p).into());
            T::SubscriptionExpired
        }
        17 => {
            d.to_product_id = li.and_then(|l| l.product_id.clone());
            d.effective = Some(ChangeEffective::Immediate);
            T::ProductChanged
        }
        18 => {
            d.reason = Some("USER".into());
            T::RenewalDisabled
        }
        19 | 22 => {
            let change = price_change(p);
            d.status = Some(match change.and_then(|c| c.price_change_state.as_deref()) {
                Some("CONFIRMED" | "APPLIED") => PriceIncreaseStatus::Accepted,
                _ => PriceIncreaseStatus::Pending,
            });
            d.new_price = money(change.and_then(|c| c.new_price.as_ref()));
            T::PriceIncrease
        }
        20 => T::PurchasePendingCanceled,
        _ => T::StoreNotification,
    };
    fill_subscription(e, st, status);
}

/// Whether the purchase a new token links to was still running (or was
/// replaced by it): a product change rather than a re-signup.
fn lineage_live(old: &SubscriptionPurchaseV2) -> bool {
    is_replaced(old)
        || matches!(
            old.subscription_state.as_deref(),
            Some(
                "SUBSCRIPTION_STATE_ACTIVE"
                    | "SUBSCRIPTION_STATE_CANCELED"
                    | "SUBSCRIPTION_STATE_IN_GRACE_PERIOD"
                    | "SUBSCRIPTION_STATE_ON_HOLD"
                    | "SUBSCRIPTION_STATE_PAUSED"
            )
        )
}

fn resumes_at(p: &SubscriptionPurchaseV2) -> Option<Timestamp> {
    p.paused_state_context
        .as_ref()
        .and_then(|c| rfc3339(c.auto_resume_time.as_deref()))
}

/// RENEWAL_DISABLED reason from `canceledStateContext`.
fn cancel_reason(p: &SubscriptionPurchaseV2) -> &'static str {
    match &p.canceled_state_context {
        Some(c) if c.user_initiated_cancellation.is_some() => "USER",
        Some(c) if c.developer_initiated_cancellation.is_some() => "DEVELOPER",
        Some(c) if c.system_initiated_cancellation.is_some() => {
            if price_increase_pending(p) {
                "PRICE_INCREASE"
            } else {
                "BILLING"
            }
        }
        _ => "UNKNOWN",
    }
}

/// SUBSCRIPTION_EXPIRED reason from `canceledStateContext`.
fn expiry_reason(p: &SubscriptionPurchaseV2) -> &'static str {
    match &p.canceled_state_context {
        Some(c) if c.user_initiated_cancellation.is_some() => "VOLUNTARY",
        Some(c) if c.system_initiated_cancellation.is_some() => {
            if price_increase_pending(p) {
                "PRICE_INCREASE_DECLINED"
            } else {
                "BILLING_ERROR"
            }
        }
        _ => "UNKNOWN",
    }
}

// ---------------------------------------------------------------- voided purchases

/// The id of the event of a full void: derived from the purchase token and
/// the voided order (store facts both the `voidedPurchaseNotification` and
/// `voidedpurchases.list` carry), so a refund seen by the notification and by
/// `storehook backfill` is one event, delivered once. `None` (the id derives
/// from the Pub/Sub message) for a quantity-based partial refund, which can
/// happen several times for one order, and for a void without an order id.
pub fn voided_event_id(v: &VoidedPurchaseNotification) -> Option<EventId> {
    if v.refund_type == Some(2) {
        return None;
    }
    let order = v.order_id.as_deref().filter(|o| !o.is_empty())?;
    Some(EventId::derive(&[
        Store::GooglePlay.as_str(),
        "VOIDED_PURCHASE",
        v.purchase_token.as_str(),
        order,
    ]))
}

fn voided_event(
    e: &mut Event,
    v: &VoidedPurchaseNotification,
    state: &PlayState,
    config: &PlayStoreConfig,
) {
    let full = v.refund_type != Some(2);
    e.store_notification.kind = "VOIDED_PURCHASE".into();
    e.store_notification.subtype = v.refund_type.map(|t| match t {
        1 => "REFUND_TYPE_FULL_REFUND".to_owned(),
        2 => "REFUND_TYPE_QUANTITY_BASED_PARTIAL_REFUND".to_owned(),
        other => other.to_string(),
    });
    let mut refund = Refund {
        kind: v.refund_type.map(|t| match t {
            1 => RefundKind::Full,
            2 => RefundKind::Partial,
            other => RefundKind::Other(other.to_string()),
        }),
        reason: None,
        amount: None,
        refunded_at: Some(e.occurred_at),
        days_since_purchase: None,
    };
    let mut period_days = None;
    match v.product_type {
        Some(1) => {
            e.kind = EventType::SubscriptionRefunded;
            match state {
                PlayState::Subscription(st) => {
                    let p = &st.purchase;
                    let start = rfc3339(p.start_time.as_deref());
                    let order = v.order_id.as_deref().map(|o| order_transaction(o, start));
                    if let Some(purchased) = order.as_ref().and_then(|t| t.purchased_at) {
                        refund.days_since_purchase =
                            Some((e.occurred_at.0 - purchased.0).num_days());
                        period_days = primary(p)
                            .and_then(|li| rfc3339(li.expiry_time.as_deref()))
                            .map(|exp| (exp.0 - purchased.0).num_days());
                    }
                    if is_replaced(p) {
                        fill_identity_only(e, p);
                    } else {
                        let status = if full {
                            SubscriptionStatus::Revoked
                        } else {
                            google_status(p.subscription_state.as_deref())
                        };
                        fill_subscription(e, st, status);
                    }
                    if order.is_some() {
                        e.transaction = order;
                    }
                }
                PlayState::NotFound(reason) => {
                    e.details.error = Some(format!("purchase not found: {reason}"));
                    e.transaction = v.order_id.as_deref().map(|o| order_transaction(o, None));
                }
                PlayState::NotNeeded | PlayState::Product { .. } => {
                    e.transaction = v.order_id.as_deref().map(|o| order_transaction(o, None));
                }
            }
        }
        Some(2) => {
            e.kind = EventType::OneTimePurchaseRefunded;
            e.transaction = v.order_id.as_ref().map(|o| Transaction {
                id: o.clone(),
                original_id: None,
                purchased_at: None,
                price: None,
            });
            // A partial (quantity) refund leaves the remaining units entitled.
            e.entitlement = Entitlement {
                active: !full,
                expires_at: None,
            };
        }
        _ => {
            e.details.error = Some(format!(
                "voided purchase of unknown productType {}",
                v.product_type.map_or("(none)".into(), |t| t.to_string())
            ));
            return;
        }
    }
    e.details.suspicious_refund = Some(
        config
            .refund_policy
            .is_suspicious(period_days, refund.days_since_purchase),
    );
    e.details.refund = Some(refund);
}

// ---------------------------------------------------------------- one-time products

fn one_time_event(e: &mut Event, o: &OneTimeProductNotification, state: &PlayState) {
    let n = o.notification_type.unwrap_or(0);
    e.store_notification.kind = one_time_type_name(n)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("ONE_TIME_PRODUCT_NOTIFICATION_{n}"));
    let purchase = match state {
        PlayState::Product { purchase, .. } => purchase,
        PlayState::NotFound(reason) => {
            e.details.error = Some(format!("purchase not found: {reason}"));
            e.product = o.sku.clone().map(|id| Product {
                id,
                plan_id: None,
                kind: ProductKind::NonConsumable,
            });
            return;
        }
        PlayState::NotNeeded | PlayState::Subscription(_) => {
            e.details.error = Some("no product state was read".into());
            return;
        }
    };
    e.kind = match n {
        1 => EventType::OneTimePurchase,
        2 => EventType::PurchasePendingCanceled,
        _ => EventType::StoreNotification,
    };
    let consumed = purchase.consumption_state == Some(1);
    e.product = purchase
        .product_id
        .clone()
        .or_else(|| o.sku.clone())
        .map(|id| Product {
            id,
            plan_id: None,
            kind: if consumed {
                ProductKind::Consumable
            } else {
                ProductKind::NonConsumable
            },
        });
    e.environment = if purchase.purchase_type == Some(0) {
        Environment::Sandbox
    } else {
        Environment::Production
    };
    e.app_user_id = purchase
        .obfuscated_external_account_id
        .clone()
        .filter(|s| !s.is_empty());
    e.transaction = purchase.order_id.as_ref().map(|id| Transaction {
        id: id.clone(),
        original_id: None,
        purchased_at: purchase
            .purchase_time_millis
            .and_then(Timestamp::from_millis),
        price: None,
    });
    e.entitlement = Entitlement {
        active: n != 2 && purchase.purchase_state == Some(0) && !consumed,
        expires_at: None,
    };
}
