//! Amazon RTN notification + RVS answer → storehook events (docs/events.md,
//! Amazon column).
//!
//! Pure. What decides:
//! - the event type: the SNS-signed `notificationType`, refined for
//!   `SUBSCRIPTION_CANCELLED` by RVS (`cancelDate`, `cancelReason`);
//! - the snapshot: RVS's answer (the state when storehook asked, judged at
//!   `received_at`); 410 "no longer valid" is a revoked receipt;
//! - `occurred_at`: the payload's signed `timestamp` (else the signed SNS
//!   `Timestamp`, else `received_at`);
//! - the id: the SNS `MessageId` (the same on SNS retries), so a resent
//!   message is one event.
//!
//! A notification RVS does not confirm (400, 497), or whose payload cannot
//! be read, is forwarded as `STORE_NOTIFICATION` with `details.error` and no
//! snapshot: authentic, so never dropped; unconfirmed, so it changes nothing.

use super::rvs::{Answer, Receipt};
use super::{AmazonConfig, Confirmed, Rtn, VerifiedNotification};
use crate::country;
use crate::event::*;
use crate::stores::appstore::translate::subscription_entitlement;

const DAY_MS: i64 = 86_400_000;

/// The event type of a `notificationType` (before RVS refines CANCELLED).
pub fn event_type(t: &str) -> EventType {
    use EventType as T;
    match t {
        "SUBSCRIPTION_PURCHASED" => T::SubscriptionStarted,
        "SUBSCRIPTION_RENEWED" | "SUBSCRIPTION_CONVERTED_FREE_TRIAL_TO_PAID" => {
            T::SubscriptionRenewed
        }
        "SUBSCRIPTION_AUTO_RENEWAL_ON" => T::RenewalEnabled,
        "SUBSCRIPTION_AUTO_RENEWAL_OFF" => T::RenewalDisabled,
        "SUBSCRIPTION_IN_GRACE_PERIOD" => T::GracePeriodStarted,
        "SUBSCRIPTION_OUT_OF_GRACE_PERIOD" => T::SubscriptionRecovered,
        "SUBSCRIPTION_MODIFIED_DEFERRED" | "SUBSCRIPTION_MODIFIED_IMMEDIATE" => T::ProductChanged,
        "SUBSCRIPTION_CANCELLED" => T::SubscriptionRefunded,
        "SUBSCRIPTION_EXPIRED" => T::SubscriptionExpired,
        "CONSUMABLE_PURCHASED" | "ENTITLEMENT_PURCHASED" => T::OneTimePurchase,
        "CONSUMABLE_CANCELLED" | "ENTITLEMENT_CANCELLED" => T::OneTimePurchaseRefunded,
        _ => T::StoreNotification,
    }
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.and_then(Timestamp::from_millis)
}

/// Translates an authenticated notification with RVS's answers. One event,
/// two for `SUBSCRIPTION_MODIFIED_IMMEDIATE` when RVS confirmed the replaced
/// receipt (its subscription ends: `SUBSCRIPTION_EXPIRED`, reason `REPLACED`).
pub fn notification(
    v: &VerifiedNotification,
    confirmed: &Confirmed,
    config: &AmazonConfig,
    received_at: Timestamp,
) -> Vec<Event> {
    let store_type = v
        .rtn
        .as_ref()
        .ok()
        .and_then(|r| non_empty(r.notification_type.as_ref()))
        .unwrap_or_else(|| "UNKNOWN".to_owned());
    let occurred_at = v
        .rtn
        .as_ref()
        .ok()
        .and_then(|r| ts(r.timestamp))
        .or_else(|| ts(v.sns_timestamp_ms))
        .unwrap_or(received_at);
    let raw = config.include_raw.then(|| raw(v));
    let base = |kind: EventType, suffix: &str| Event {
        api_version: API_VERSION,
        id: EventId::derive(&[Store::AmazonAppstore.as_str(), &v.message_id, suffix]),
        kind,
        occurred_at,
        received_at,
        sequence: 0,
        store: Store::AmazonAppstore,
        environment: Environment::Production,
        app_id: String::new(),
        app_user_id: None,
        product: None,
        subscription: None,
        transaction: None,
        entitlement: Entitlement::none(),
        details: Details::default(),
        store_notification: StoreNotification {
            kind: store_type.clone(),
            subtype: None,
            id: v.message_id.clone(),
        },
        raw: raw.clone(),
        previous_sequence: None,
    };

    let rtn = match &v.rtn {
        Ok(r) => r,
        Err(error) => {
            let mut e = base(EventType::StoreNotification, "");
            e.details.error = Some(error.clone());
            return vec![e];
        }
    };
    let mut e = base(event_type(&store_type), "");
    e.app_id = non_empty(rtn.app_package_name.as_ref()).unwrap_or_default();
    e.app_user_id = non_empty(rtn.app_user_id.as_ref());
    let receipt_id = non_empty(rtn.receipt_id.as_ref());

    let receipt = match (&confirmed.receipt, &receipt_id) {
        (Some(Answer::Valid(r)), Some(_)) => Some(r.as_ref()),
        (Some(Answer::NoLongerValid), Some(id)) => {
            // 410: RVS says the receipt was cancelled. Nothing else is known.
            e.environment = environment(rtn, None, config);
            return vec![revoked(e, rtn, id, received_at)];
        }
        (Some(Answer::NotConfirmed(status)), _) => {
            e.kind = EventType::StoreNotification;
            e.details.error = Some(format!(
                "the Receipt Verification Service does not confirm this receipt (HTTP {status})"
            ));
            return vec![e];
        }
        _ => {
            e.kind = EventType::StoreNotification;
            e.details.error = Some("the notification names no appUserId and receiptId".into());
            return vec![e];
        }
    };
    let (Some(r), Some(receipt_id)) = (receipt, receipt_id) else {
        return vec![e];
    };
    e.environment = environment(rtn, Some(r), config);
    let is_subscription = r.product_type.as_deref() == Some("SUBSCRIPTION");
    e.product = Some(product(r));
    e.transaction = Some(Transaction {
        id: receipt_id.clone(),
        original_id: Some(receipt_id.clone()),
        purchased_at: ts(r.purchase_date),
        price: None,
    });

    if !is_subscription {
        one_time(&mut e, r, config, received_at);
        return vec![e];
    }

    let s = snapshot(&receipt_id, r, &store_type, received_at);
    e.entitlement = subscription_entitlement(&s, received_at);
    let mut d = Details::default();
    match store_type.as_str() {
        "SUBSCRIPTION_PURCHASED" => d.offer = offer(r, received_at),
        "SUBSCRIPTION_CONVERTED_FREE_TRIAL_TO_PAID" => d.trial_converted = Some(true),
        "SUBSCRIPTION_AUTO_RENEWAL_OFF" => d.reason = Some("USER".into()),
        "SUBSCRIPTION_IN_GRACE_PERIOD" => d.grace_period_expires_at = ts(r.grace_period_end_date),
        "SUBSCRIPTION_MODIFIED_DEFERRED" => {
            d.from_product_id = non_empty(r.term_sku.as_ref());
            d.to_product_id = non_empty(r.deferred_sku.as_ref());
            d.effective = Some(ChangeEffective::NextRenewal);
        }
        "SUBSCRIPTION_MODIFIED_IMMEDIATE" => {
            d.from_product_id = match &confirmed.replaced {
                Some((_, Answer::Valid(old))) => {
                    non_empty(old.term_sku.as_ref()).or_else(|| non_empty(old.product_id.as_ref()))
                }
                _ => None,
            };
            d.to_product_id = non_empty(r.term_sku.as_ref());
            d.effective = Some(ChangeEffective::Immediate);
        }
        "SUBSCRIPTION_CANCELLED" => {
            cancelled(&mut e, &mut d, r, &s, config, received_at);
        }
        "SUBSCRIPTION_EXPIRED" => {
            d.reason = Some(
                match r.cancel_reason {
                    Some(2) => "BILLING_ERROR",
                    Some(1) => "VOLUNTARY",
                    Some(4) => "REPLACED",
                    _ if r.auto_renewing == Some(false) => "VOLUNTARY",
                    _ => "UNKNOWN",
                }
                .into(),
            );
        }
        _ => {}
    }
    e.details = d;
    e.subscription = Some(s);

    let mut out = vec![e.clone()];
    if store_type == "SUBSCRIPTION_MODIFIED_IMMEDIATE"
        && let Some((old_id, Answer::Valid(old))) = &confirmed.replaced
    {
        let mut x = e;
        x.id = EventId::derive(&[Store::AmazonAppstore.as_str(), &v.message_id, "replaced"]);
        x.kind = EventType::SubscriptionExpired;
        x.product = Some(product(old));
        x.transaction = Some(Transaction {
            id: old_id.clone(),
            original_id: Some(old_id.clone()),
            purchased_at: ts(old.purchase_date),
            price: None,
        });
        let mut s = snapshot(old_id, old, "SUBSCRIPTION_EXPIRED", received_at);
        // Replaced now, whatever its own cancelDate says.
        s.status = SubscriptionStatus::Expired;
        s.auto_renew = false;
        if s.expires_at.is_none_or(|t| t > received_at) {
            s.expires_at = Some(received_at);
        }
        x.entitlement = subscription_entitlement(&s, received_at);
        x.subscription = Some(s);
        x.details = Details {
            reason: Some("REPLACED".into()),
            to_product_id: non_empty(r.term_sku.as_ref()),
            effective: Some(ChangeEffective::Immediate),
            ..Details::default()
        };
        out.push(x);
    }
    out
}

/// SANDBOX for Live App Testing and App Tester receipts (and the RVS sandbox).
fn environment(rtn: &Rtn, r: Option<&Receipt>, config: &AmazonConfig) -> Environment {
    let sandbox = rtn.beta_product_transaction == Some(true)
        || r.is_some_and(|r| r.beta_product == Some(true) || r.test_transaction == Some(true))
        || config.rvs.as_ref().is_some_and(|c| c.sandbox);
    if sandbox {
        Environment::Sandbox
    } else {
        Environment::Production
    }
}

fn product(r: &Receipt) -> Product {
    let kind = match r.product_type.as_deref() {
        Some("SUBSCRIPTION") => ProductKind::AutoRenewable,
        Some("CONSUMABLE") => ProductKind::Consumable,
        Some("ENTITLED") => ProductKind::NonConsumable,
        Some(other) => ProductKind::Other(format!("AMAZON_{other}")),
        None => ProductKind::Other("UNKNOWN".into()),
    };
    // Subscriptions: the parent SKU is the product, the term SKU the plan.
    let is_sub = kind == ProductKind::AutoRenewable;
    Product {
        id: non_empty(r.product_id.as_ref())
            .or_else(|| non_empty(r.term_sku.as_ref()))
            .unwrap_or_default(),
        plan_id: if is_sub {
            non_empty(r.term_sku.as_ref())
        } else {
            None
        },
        kind,
    }
}

/// The subscription's state as RVS gives it, judged at `at`.
fn snapshot(receipt_id: &str, r: &Receipt, store_type: &str, at: Timestamp) -> Subscription {
    let cancel = ts(r.cancel_date);
    let renewal = ts(r.renewal_date);
    let grace = ts(r.grace_period_end_date);
    let auto_renew = r.auto_renewing.unwrap_or(false) && cancel.is_none();
    // The paid period ends at the cancel date when there is one (auto-renew
    // off: when renewal would have happened; cancelled: when access ended),
    // else at the next renewal.
    let expires_at = cancel.or(renewal);
    let status = match cancel {
        Some(c) if c <= at => {
            if store_type == "SUBSCRIPTION_CANCELLED" && matches!(r.cancel_reason, Some(1..=3)) {
                SubscriptionStatus::Revoked
            } else {
                SubscriptionStatus::Expired
            }
        }
        _ if grace.is_some_and(|g| g > at) => SubscriptionStatus::InGracePeriod,
        _ if expires_at.is_some_and(|e| e <= at) => SubscriptionStatus::Expired,
        _ if auto_renew => SubscriptionStatus::Active,
        _ => SubscriptionStatus::CanceledActive,
    };
    let trial = ts(r.free_trial_end_date).is_some_and(|t| t > at);
    let promo = |kind: &str| {
        r.promotions.iter().flatten().any(|p| {
            p.promotion_status.as_deref() == Some("InProgress")
                && p.promotion_type
                    .as_deref()
                    .is_some_and(|t| t.starts_with(kind))
        })
    };
    let period_type = if trial {
        PeriodType::Trial
    } else if promo("Introductory") {
        PeriodType::Intro
    } else if promo("Promotional") || promo("Retention") {
        PeriodType::Promotional
    } else {
        PeriodType::Normal
    };
    Subscription {
        id: SubscriptionId::derive(&[Store::AmazonAppstore.as_str(), receipt_id]),
        store_subscription_id: receipt_id.to_owned(),
        status,
        auto_renew,
        period_type,
        started_at: ts(r.purchase_date),
        current_period_started_at: None,
        expires_at,
        grace_period_expires_at: grace,
        renewal_product_id: non_empty(r.deferred_sku.as_ref())
            .or_else(|| non_empty(r.term_sku.as_ref())),
        price: None,
        country: r.country_code.as_deref().and_then(country::to_alpha2),
    }
}

fn offer(r: &Receipt, at: Timestamp) -> Option<Offer> {
    if ts(r.free_trial_end_date).is_some_and(|t| t > at) {
        return Some(Offer {
            kind: OfferType::FreeTrial,
            id: None,
        });
    }
    let in_progress =
        |p: &&super::rvs::Promotion| p.promotion_status.as_deref() == Some("InProgress");
    let p = r.promotions.iter().flatten().find(in_progress)?;
    let kind = match p.promotion_type.as_deref() {
        Some(t) if t.starts_with("Introductory") => OfferType::Intro,
        Some(t) if t.starts_with("Promotional Price - Lapsed") => OfferType::WinBack,
        _ => OfferType::Promotional,
    };
    Some(Offer {
        kind,
        id: p.promotion_type.clone(),
    })
}

fn days_between(from: Option<i64>, to: Option<i64>) -> Option<i64> {
    match (from, to) {
        (Some(f), Some(t)) if t >= f => Some((t - f) / DAY_MS),
        _ => None,
    }
}

/// SUBSCRIPTION_CANCELLED: still entitled → auto-renew turned off; ended now
/// → refunded (cancelReason 1, the customer cancelled the order), expired
/// (4, replaced by a tier change) or revoked (2 Amazon, 0/3/none unknown).
fn cancelled(
    e: &mut Event,
    d: &mut Details,
    r: &Receipt,
    s: &Subscription,
    config: &AmazonConfig,
    at: Timestamp,
) {
    let ended = r
        .cancel_date
        .and_then(Timestamp::from_millis)
        .is_some_and(|c| c <= at);
    if !ended {
        e.kind = EventType::RenewalDisabled;
        d.reason = Some(
            match r.cancel_reason {
                Some(1) => "USER",
                Some(2) => "BILLING",
                _ => "UNKNOWN",
            }
            .into(),
        );
        return;
    }
    match r.cancel_reason {
        Some(1) => {
            e.kind = EventType::SubscriptionRefunded;
            let period_days = match (r.purchase_date, s.expires_at) {
                (Some(p), Some(x)) => {
                    let x = x.0.timestamp_millis();
                    (x > p).then(|| (x - p + DAY_MS / 2) / DAY_MS)
                }
                _ => None,
            };
            let days = days_between(r.purchase_date, r.cancel_date);
            d.refund = Some(Refund {
                kind: None,
                reason: Some("CUSTOMER_REQUEST".into()),
                amount: None,
                refunded_at: ts(r.cancel_date),
                days_since_purchase: days,
            });
            d.suspicious_refund = Some(config.refund_policy.is_suspicious(period_days, days));
        }
        Some(4) => {
            e.kind = EventType::SubscriptionExpired;
            d.reason = Some("REPLACED".into());
        }
        Some(2) => {
            e.kind = EventType::SubscriptionRevoked;
            d.reason = Some("AMAZON_CANCELLED".into());
        }
        _ => {
            e.kind = EventType::SubscriptionRevoked;
            d.reason = Some("UNKNOWN".into());
        }
    }
}

/// RVS 410: the receipt is no longer valid. A subscription notification
/// revokes the subscription; a one-time one refunds the purchase.
fn revoked(mut e: Event, rtn: &Rtn, receipt_id: &str, at: Timestamp) -> Event {
    let t = rtn.notification_type.as_deref().unwrap_or("");
    e.transaction = Some(Transaction {
        id: receipt_id.to_owned(),
        original_id: Some(receipt_id.to_owned()),
        purchased_at: None,
        price: None,
    });
    e.details.reason = Some("RECEIPT_NO_LONGER_VALID".into());
    if t.starts_with("SUBSCRIPTION_") {
        e.kind = EventType::SubscriptionRevoked;
        let s = Subscription {
            id: SubscriptionId::derive(&[Store::AmazonAppstore.as_str(), receipt_id]),
            store_subscription_id: receipt_id.to_owned(),
            status: SubscriptionStatus::Revoked,
            auto_renew: false,
            period_type: PeriodType::Normal,
            started_at: None,
            current_period_started_at: None,
            expires_at: Some(at),
            grace_period_expires_at: None,
            renewal_product_id: None,
            price: None,
            country: None,
        };
        e.entitlement = subscription_entitlement(&s, at);
        e.subscription = Some(s);
    } else {
        e.kind = EventType::OneTimePurchaseRefunded;
        e.entitlement = Entitlement::none();
    }
    e
}

/// Consumables grant no lasting access; entitlements are active until cancelled.
fn one_time(e: &mut Event, r: &Receipt, config: &AmazonConfig, at: Timestamp) {
    let cancelled_at = ts(r.cancel_date).filter(|c| *c <= at);
    let cancelled_type = e.kind == EventType::OneTimePurchaseRefunded;
    let kind = e.product.as_ref().map(|p| p.kind.clone());
    e.entitlement = match kind {
        Some(ProductKind::NonConsumable) => Entitlement {
            active: !cancelled_type && cancelled_at.is_none(),
            expires_at: None,
        },
        _ => Entitlement::none(),
    };
    if cancelled_type {
        let days = days_between(r.purchase_date, r.cancel_date);
        e.details.refund = Some(Refund {
            kind: None,
            reason: Some("CUSTOMER_REQUEST".into()),
            amount: None,
            refunded_at: ts(r.cancel_date),
            days_since_purchase: days,
        });
        // One-time purchases have no period: never the subscription pattern.
        e.details.suspicious_refund = Some(config.refund_policy.is_suspicious(None, days));
    }
}

fn raw(v: &VerifiedNotification) -> serde_json::Value {
    let message = serde_json::from_str::<serde_json::Value>(&v.message)
        .unwrap_or_else(|_| serde_json::Value::String(v.message.clone()));
    serde_json::json!({
        "MessageId": v.message_id,
        "TopicArn": v.topic_arn,
        "Message": message,
    })
}
