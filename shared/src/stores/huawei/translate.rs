//! Huawei notification → storehook events (docs/events.md, Huawei column).
//!
//! Pure: a verified notification and the configuration in, events out. The
//! snapshot comes from the receipt (`InAppPurchaseData`): the subscription
//! API's answer when the API is configured, else the notification's
//! `latestReceiptInfo`. Huawei sends no notification when a subscription simply
//! lapses: its `EXPIRED` status appears in the snapshot of the next
//! notification (and `entitlement.expires_at` says when access ends).

use super::model::{InAppPurchaseData, StatusUpdateNotification};
use super::{HuaweiConfig, ReceiptSource, VerifiedOrder, VerifiedSubscription};
use crate::country;
use crate::event::*;
use crate::stores::appstore::translate::subscription_entitlement;

const DAY_MS: i64 = 86_400_000;

/// Huawei's name of a subscription `notificationType` (§4.1).
pub fn type_name(n: i64) -> Option<&'static str> {
    Some(match n {
        0 => "INITIAL_BUY",
        1 => "CANCEL",
        2 => "RENEWAL",
        3 => "INTERACTIVE_RENEWAL",
        4 => "NEW_RENEWAL_PREF",
        5 => "RENEWAL_STOPPED",
        6 => "RENEWAL_RESTORED",
        7 => "RENEWAL_RECURRING",
        8 => "IN_GRACE_PERIOD",
        9 => "ON_HOLD",
        10 => "PAUSED",
        11 => "PAUSE_PLAN_CHANGED",
        12 => "PRICE_CHANGE_CONFIRMED",
        13 => "DEFERRED",
        _ => return None,
    })
}

/// The event type of a subscription `notificationType` (events.md).
pub fn event_type(n: Option<i64>) -> EventType {
    use EventType as T;
    match n {
        Some(0) => T::SubscriptionStarted,
        Some(1) => T::SubscriptionRefunded,
        Some(2) => T::SubscriptionRecovered,
        Some(3) => T::SubscriptionResubscribed,
        Some(4) => T::ProductChanged,
        Some(5) => T::RenewalDisabled,
        Some(6) => T::RenewalEnabled,
        Some(7) => T::SubscriptionRenewed,
        Some(8) => T::GracePeriodStarted,
        Some(9) => T::BillingRetryStarted,
        Some(10) => T::SubscriptionPaused,
        Some(11) => T::SubscriptionPauseScheduled,
        Some(12) => T::PriceIncrease,
        Some(13) => T::RenewalExtended,
        _ => T::StoreNotification,
    }
}

/// The state of a one-time purchase as the order API's signed receipt gives
/// it (`purchaseState`): what an ORDER notification means. The notification's
/// own `notificationType` is unsigned and never decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// `purchaseState` 0.
    Purchased,
    /// `purchaseState` 1 (canceled) or 2 (refunded): access ends.
    Refunded,
    /// `-1` (initialized, not paid), another value, or none.
    Other(Option<i64>),
}

impl OrderState {
    /// From the confirmed receipt.
    pub fn of(r: &InAppPurchaseData) -> Self {
        match r.purchase_state {
            Some(0) => Self::Purchased,
            Some(1 | 2) => Self::Refunded,
            other => Self::Other(other),
        }
    }

    /// The event type (events.md: ORDER payment success / refund).
    pub fn event_type(self) -> EventType {
        match self {
            Self::Purchased => EventType::OneTimePurchase,
            Self::Refunded => EventType::OneTimePurchaseRefunded,
            Self::Other(_) => EventType::StoreNotification,
        }
    }

    /// The ORDER `notificationType` this state corresponds to (1 payment, 2 refund).
    pub fn notification_type(self) -> Option<i64> {
        match self {
            Self::Purchased => Some(1),
            Self::Refunded => Some(2),
            Self::Other(_) => None,
        }
    }

    /// `store_notification.subtype`, and part of the event id.
    pub fn name(self) -> String {
        match self {
            Self::Purchased => "PAYMENT_SUCCESS".to_owned(),
            Self::Refunded => "REFUND_SUCCESS".to_owned(),
            Self::Other(Some(n)) => format!("PURCHASE_STATE_{n}"),
            Self::Other(None) => "UNKNOWN".to_owned(),
        }
    }
}

/// The event type of an ORDER `notificationType` as Huawei documents it. Not
/// used to translate (the confirmed receipt decides, see [`OrderState`]).
pub fn order_event_type(n: Option<i64>) -> EventType {
    match n {
        Some(1) => EventType::OneTimePurchase,
        Some(2) => EventType::OneTimePurchaseRefunded,
        _ => EventType::StoreNotification,
    }
}

/// The event time a subscription notification's signed content gives, by
/// type: CANCEL its `cancellationDate` (else the receipt's cancel time); a
/// purchase or renewal its receipt's `purchaseTime` (the period's start).
/// Other types carry no signed time of their own.
pub fn signed_time(
    ntype: Option<i64>,
    n: &StatusUpdateNotification,
    r: Option<&InAppPurchaseData>,
) -> Option<i64> {
    match ntype {
        Some(1) => n
            .cancellation_date
            .or_else(|| r.and_then(|r| r.cancel_time.or(r.cancellation_time))),
        Some(0 | 2 | 3 | 7) => r.and_then(InAppPurchaseData::purchased_at_ms),
        _ => None,
    }
}

/// SHA-256 of the parts, first 16 bytes hex: the notification id Huawei does not send.
fn digest_hex(parts: &[&str]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p.as_bytes());
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Huawei prices are in hundredths (501 = 5.01); the event language uses micros.
fn money(hundredths: Option<i64>, currency: Option<&String>) -> Option<Money> {
    match (hundredths, non_empty(currency)) {
        (Some(p), Some(c)) => Some(Money {
            amount_micros: p.saturating_mul(10_000),
            currency: c.to_ascii_uppercase(),
        }),
        _ => None,
    }
}

fn product_kind(kind: Option<i64>) -> ProductKind {
    match kind {
        Some(0) => ProductKind::Consumable,
        Some(1) => ProductKind::NonConsumable,
        Some(2) => ProductKind::AutoRenewable,
        Some(3) => ProductKind::NonRenewing,
        Some(other) => ProductKind::Other(format!("HUAWEI_KIND_{other}")),
        None => ProductKind::Other("UNKNOWN".into()),
    }
}

/// Translates a verified subscription notification. Always one event: what
/// has no mapping becomes `STORE_NOTIFICATION`.
pub fn subscription(
    v: &VerifiedSubscription,
    config: &HuaweiConfig,
    received_at: Timestamp,
) -> Vec<Event> {
    let n = &v.notification;
    let r = v.receipt.as_ref();
    let ntype = n.notification_type;
    let from_api = v.receipt_source == Some(ReceiptSource::StoreApi);

    // Only authenticated data orders (the outer notifyTime is not signed): the
    // API's answer is the state when storehook asked, i.e. at reception; the
    // notification's own receipt is as old as its signed time, if it has one.
    let occurred_at = if from_api {
        received_at
    } else {
        signed_time(ntype, n, r)
            .and_then(Timestamp::from_millis)
            .unwrap_or(received_at)
    };
    // Expiry is judged when storehook learns the state (a renewal processed
    // after its period ended is expired, whatever its signed time).
    let snapshot_at = received_at;

    let product_id = r
        .and_then(|r| non_empty(r.product_id.as_ref()))
        .or_else(|| non_empty(n.product_id.as_ref()));
    let product = product_id.clone().map(|id| Product {
        id,
        plan_id: None,
        kind: ProductKind::AutoRenewable,
    });
    let store_subscription_id = non_empty(n.subscription_id.as_ref())
        .or_else(|| r.and_then(|r| non_empty(r.subscription_id.as_ref())));

    // Without a receipt only CANCEL, ON_HOLD and PAUSED tell the state; any
    // other type would claim "no access" on no evidence, so the event then
    // carries no snapshot (it can neither grant nor revoke).
    let decisive_without_receipt = matches!(ntype, Some(1 | 9 | 10));
    let subscription = match (&store_subscription_id, r) {
        (Some(id), Some(r)) => Some(snapshot(id, n, Some(r), from_api, snapshot_at)),
        (Some(id), None) if decisive_without_receipt => {
            Some(snapshot(id, n, None, from_api, snapshot_at))
        }
        _ => None,
    };
    let entitlement = subscription
        .as_ref()
        .map(|s| subscription_entitlement(s, snapshot_at))
        .unwrap_or_else(Entitlement::none);

    let mut details = details(ntype, n, r, config);
    details.error = v.receipt_error.clone();

    let transaction = subscription.as_ref().and_then(|s| {
        r.and_then(|r| non_empty(r.order_id.as_ref()))
            .or_else(|| non_empty(n.order_id.as_ref()))
            .map(|id| Transaction {
                id,
                original_id: Some(s.store_subscription_id.clone()),
                purchased_at: r
                    .and_then(InAppPurchaseData::purchased_at_ms)
                    .and_then(Timestamp::from_millis),
                price: r.and_then(|r| money(r.price, r.currency.as_ref())),
            })
    });

    let kind_name = match ntype {
        Some(t) => type_name(t).map_or_else(|| t.to_string(), str::to_owned),
        None => "UNKNOWN".to_owned(),
    };
    let signed = v.signed.expose();
    let event = Event {
        api_version: API_VERSION,
        id: EventId::derive(&[Store::HuaweiAppGallery.as_str(), signed]),
        kind: event_type(ntype),
        occurred_at,
        received_at,
        sequence: 0,
        store: Store::HuaweiAppGallery,
        environment: v.environment.clone(),
        app_id: v.app_id.clone(),
        app_user_id: r.and_then(|r| non_empty(r.developer_payload.as_ref())),
        product,
        subscription,
        transaction,
        entitlement,
        details,
        store_notification: StoreNotification {
            kind: kind_name,
            subtype: None,
            id: digest_hex(&[signed]),
        },
        raw: config.include_raw.then(|| v.raw.clone()),
        previous_sequence: None,
    };
    vec![event]
}

/// The subscription's state after the notification.
fn snapshot(
    store_subscription_id: &str,
    n: &StatusUpdateNotification,
    r: Option<&InAppPurchaseData>,
    from_api: bool,
    at: Timestamp,
) -> Subscription {
    let ntype = n.notification_type;
    let from_receipt = r.and_then(|r| r.auto_renewing.or(r.renew_status.map(|s| s == 1)));
    let from_notification = n.auto_renew_status.map(|s| s == 1);
    let implied = match ntype {
        Some(1 | 5) => Some(false),
        Some(6) => Some(true),
        _ => None,
    };
    // The API's answer is newer than the notification; the notification's
    // receipt is as old as its type, which is then the better witness.
    let auto_renew = if from_api {
        from_receipt.or(implied).or(from_notification)
    } else {
        implied.or(from_receipt).or(from_notification)
    }
    .unwrap_or(false);
    let expires_at = r
        .and_then(|r| r.expiration_date)
        .and_then(Timestamp::from_millis);
    let grace = r
        .and_then(|r| r.grace_expiration_time)
        .and_then(Timestamp::from_millis);
    let product_id = r
        .and_then(|r| non_empty(r.product_id.as_ref()))
        .or_else(|| non_empty(n.product_id.as_ref()));
    Subscription {
        id: SubscriptionId::derive(&[Store::HuaweiAppGallery.as_str(), store_subscription_id]),
        store_subscription_id: store_subscription_id.to_owned(),
        status: status(ntype, r, auto_renew, expires_at, grace, at),
        auto_renew,
        period_type: period_type(r),
        started_at: r
            .and_then(|r| r.ori_purchase_time)
            .and_then(Timestamp::from_millis),
        current_period_started_at: r
            .and_then(InAppPurchaseData::purchased_at_ms)
            .and_then(Timestamp::from_millis),
        expires_at,
        grace_period_expires_at: grace,
        renewal_product_id: if ntype == Some(4) {
            new_product(n, r).or(product_id)
        } else {
            product_id
        },
        price: r.and_then(|r| money(r.price, r.currency.as_ref())),
        country: r
            .and_then(|r| r.country.as_deref())
            .and_then(country::to_alpha2),
    }
}

/// NEW_RENEWAL_PREF: the notification's product when it differs from the receipt's.
fn new_product(n: &StatusUpdateNotification, r: Option<&InAppPurchaseData>) -> Option<String> {
    let to = non_empty(n.product_id.as_ref())?;
    let current = r.and_then(|r| non_empty(r.product_id.as_ref()));
    (current.as_deref() != Some(to.as_str())).then_some(to)
}

fn status(
    ntype: Option<i64>,
    r: Option<&InAppPurchaseData>,
    auto_renew: bool,
    expires_at: Option<Timestamp>,
    grace: Option<Timestamp>,
    at: Timestamp,
) -> SubscriptionStatus {
    use SubscriptionStatus as S;
    match ntype {
        Some(1) => return S::Revoked,
        Some(8) => return S::InGracePeriod,
        Some(9) => return S::OnHold,
        Some(10) => return S::Paused,
        _ => {}
    }
    let active = || {
        if auto_renew {
            S::Active
        } else {
            S::CanceledActive
        }
    };
    let Some(r) = r else {
        return active();
    };
    let valid = r.sub_isvalid;
    if r.purchase_state == Some(2) || (r.cancel_time.is_some() && valid == Some(false)) {
        return S::Revoked;
    }
    match expires_at {
        // Inside the paid period, but Huawei says no longer valid: withdrawn early.
        Some(e) if e > at && valid == Some(false) => S::Revoked,
        Some(e) if e > at => active(),
        Some(_) if grace.is_some_and(|g| g > at) => S::InGracePeriod,
        Some(_) if r.retry_flag == Some(1) => S::OnHold,
        Some(_) => S::Expired,
        None if valid == Some(false) => S::Expired,
        None => active(),
    }
}

fn period_type(r: Option<&InAppPurchaseData>) -> PeriodType {
    match r {
        Some(r) if r.trial_flag == Some(1) => PeriodType::Trial,
        Some(r) if r.introductory_flag == Some(1) => PeriodType::Intro,
        _ => PeriodType::Normal,
    }
}

fn offer(r: Option<&InAppPurchaseData>) -> Option<Offer> {
    match period_type(r) {
        PeriodType::Trial => Some(Offer {
            kind: OfferType::FreeTrial,
            id: None,
        }),
        PeriodType::Intro => Some(Offer {
            kind: OfferType::Intro,
            id: None,
        }),
        _ => None,
    }
}

fn details(
    ntype: Option<i64>,
    n: &StatusUpdateNotification,
    r: Option<&InAppPurchaseData>,
    config: &HuaweiConfig,
) -> Details {
    let mut d = Details::default();
    match ntype {
        Some(0 | 3 | 7) => d.offer = offer(r),
        Some(1) => {
            let refunded_ms = n
                .cancellation_date
                .or_else(|| r.and_then(|r| r.cancel_time.or(r.cancellation_time)));
            let purchase_ms = r.and_then(InAppPurchaseData::purchased_at_ms);
            let period_days = match (r.and_then(|r| r.expiration_date), purchase_ms) {
                (Some(e), Some(p)) if e > p => Some((e - p + DAY_MS / 2) / DAY_MS),
                _ => None,
            };
            let days_since_purchase = days_between(purchase_ms, refunded_ms);
            d.refund = Some(Refund {
                // Huawei does not say whether customer service refunded in full.
                kind: None,
                reason: Some(refund_reason(
                    r.and_then(|r| r.cancel_reason),
                    "CUSTOMER_SERVICE",
                )),
                amount: r.and_then(|r| money(r.price, r.currency.as_ref())),
                refunded_at: refunded_ms.and_then(Timestamp::from_millis),
                days_since_purchase,
            });
            d.suspicious_refund = Some(
                config
                    .refund_policy
                    .is_suspicious(period_days, days_since_purchase),
            );
        }
        Some(4) => {
            d.from_product_id = r.and_then(|r| non_empty(r.product_id.as_ref()));
            d.to_product_id = new_product(n, r);
            d.effective = Some(ChangeEffective::NextRenewal);
        }
        Some(5) => {
            let intent = r.and_then(|r| r.expiration_intent).or(n.expiration_intent);
            d.reason = Some(
                match (intent, r.and_then(|r| r.cancel_way)) {
                    (Some(5), _) => "PRICE_INCREASE",
                    (Some(4), _) => "BILLING",
                    (_, Some(0)) => "USER",
                    (_, Some(1)) => "DEVELOPER",
                    (_, Some(2)) => "SYSTEM",
                    (Some(1), _) => "USER",
                    _ => "UNKNOWN",
                }
                .to_owned(),
            );
        }
        Some(8) => {
            d.grace_period_expires_at = r
                .and_then(|r| r.grace_expiration_time)
                .and_then(Timestamp::from_millis)
        }
        Some(10 | 11) => {
            d.resumes_at = r
                .and_then(|r| r.resume_time)
                .and_then(Timestamp::from_millis)
        }
        Some(12) => {
            d.status = Some(PriceIncreaseStatus::Accepted);
            d.new_price = r.and_then(|r| money(r.renew_price, r.currency.as_ref()));
        }
        Some(13) => {
            d.new_expires_at = r
                .and_then(|r| r.expiration_date)
                .and_then(Timestamp::from_millis)
        }
        _ => {}
    }
    d
}

fn days_between(from_ms: Option<i64>, to_ms: Option<i64>) -> Option<i64> {
    match (from_ms, to_ms) {
        (Some(f), Some(t)) if t >= f => Some((t - f) / DAY_MS),
        _ => None,
    }
}

fn refund_reason(cancel_reason: Option<i64>, default: &str) -> String {
    match cancel_reason {
        Some(0) => "OTHER",
        Some(1) => "APP_ISSUE",
        Some(2) => "PRODUCT_CHANGE",
        _ => default,
    }
    .to_owned()
}

/// Translates an ORDER notification confirmed by the order API. Everything
/// that decides (type, time, entitlement, id) comes from the API's signed
/// receipt; the notification only said which purchase to ask about.
pub fn order(v: &VerifiedOrder, config: &HuaweiConfig, received_at: Timestamp) -> Vec<Event> {
    let r = &v.receipt;
    let n = &v.notice.notification;
    let state = OrderState::of(r);
    let refunded_ms = r.cancel_time.or(r.cancellation_time);
    let purchase_ms = r.purchased_at_ms();
    let signed_at = match state {
        OrderState::Purchased => purchase_ms,
        OrderState::Refunded => refunded_ms,
        OrderState::Other(_) => None,
    };
    let occurred_at = signed_at
        .and_then(Timestamp::from_millis)
        .unwrap_or(received_at);
    let kind = product_kind(r.kind);
    let product_id = non_empty(r.product_id.as_ref()).or_else(|| non_empty(n.product_id.as_ref()));
    let expires_at = r.expiration_date.and_then(Timestamp::from_millis);
    // The receipt is the state when storehook asked: entitlement as of then.
    let entitlement = match kind {
        ProductKind::NonConsumable | ProductKind::NonRenewing => Entitlement {
            active: state == OrderState::Purchased && expires_at.is_none_or(|e| e > received_at),
            expires_at,
        },
        _ => Entitlement::none(),
    };
    let price = money(r.price, r.currency.as_ref());
    let mut details = Details::default();
    if state == OrderState::Refunded {
        let period_days = match (r.expiration_date, purchase_ms) {
            (Some(e), Some(p)) if e > p => Some((e - p + DAY_MS / 2) / DAY_MS),
            _ => None,
        };
        let days_since_purchase =
            days_between(purchase_ms, refunded_ms.or(Some(occurred_at.millis())));
        details.refund = Some(Refund {
            kind: None,
            reason: r.cancel_reason.map(|c| refund_reason(Some(c), "UNKNOWN")),
            amount: price.clone(),
            refunded_at: Some(
                refunded_ms
                    .and_then(Timestamp::from_millis)
                    .unwrap_or(occurred_at),
            ),
            days_since_purchase,
        });
        details.suspicious_refund = Some(
            config
                .refund_policy
                .is_suspicious(period_days, days_since_purchase),
        );
    }
    // A receipt in no known state can neither grant nor revoke: no transaction,
    // so it touches no purchase's snapshot.
    let transaction = match state {
        OrderState::Other(_) => None,
        _ => non_empty(r.order_id.as_ref())
            .or_else(|| non_empty(r.pay_order_id.as_ref()))
            .map(|id| Transaction {
                id,
                original_id: None,
                purchased_at: purchase_ms.and_then(Timestamp::from_millis),
                price,
            }),
    };
    // The token the order API answered for (the receipt's own when it has one).
    let token = r
        .purchase_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .or(n.purchase_token.as_ref())
        .map(|t| t.expose())
        .unwrap_or_default();
    let state_name = state.name();
    let product_text = product_id.clone().unwrap_or_default();
    let order_text = non_empty(r.order_id.as_ref()).unwrap_or_default();
    // Confirmed fields only: an unsigned copy with another notifyTime or
    // notificationType gets the same id as Huawei's own for the same state.
    let parts = [
        Store::HuaweiAppGallery.as_str(),
        "ORDER",
        state_name.as_str(),
        product_text.as_str(),
        token,
        order_text.as_str(),
    ];
    let event = Event {
        api_version: API_VERSION,
        id: EventId::derive(&parts),
        kind: state.event_type(),
        occurred_at,
        received_at,
        sequence: 0,
        store: Store::HuaweiAppGallery,
        environment: v.environment.clone(),
        app_id: v.app_id.clone(),
        app_user_id: non_empty(r.developer_payload.as_ref()),
        product: product_id.map(|id| Product {
            id,
            plan_id: None,
            kind,
        }),
        subscription: None,
        transaction,
        entitlement,
        details,
        store_notification: StoreNotification {
            kind: "ORDER".to_owned(),
            subtype: Some(state_name.clone()),
            id: digest_hex(&parts),
        },
        raw: config.include_raw.then(|| v.raw.clone()),
        previous_sequence: None,
    };
    vec![event]
}
