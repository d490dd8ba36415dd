//! App Store notification → storehook events (docs/events.md mapping table).
//!
//! Pure: a verified notification and the configuration in, events out. The
//! snapshot is built from the transaction, the renewal info and `data.status`.

use super::model::{NotificationPayload, RenewalInfo, TransactionInfo};
use super::{AppStoreConfig, VerifiedNotification};
use crate::country;
use crate::event::*;
use chrono::Duration;

const DAY_MS: i64 = 86_400_000;

/// Apple asks for consumption data within 12 hours of a CONSUMPTION_REQUEST.
pub const CONSUMPTION_RESPONSE_WINDOW_HOURS: i64 = 12;

/// Translates one verified notification. Always yields at least one event:
/// what has no mapping becomes `STORE_NOTIFICATION`.
pub fn translate(
    v: &VerifiedNotification,
    config: &AppStoreConfig,
    received_at: Timestamp,
) -> Vec<Event> {
    let p = &v.payload;
    let tx = v.transaction.as_ref();
    let renewal = v.renewal.as_ref();
    let ntype = p.notification_type.as_deref().unwrap_or("UNKNOWN");
    let subtype = p.subtype.as_deref();

    let occurred_at = p
        .signed_date
        .and_then(Timestamp::from_millis)
        .unwrap_or(received_at);
    let notification_id = p
        .notification_uuid
        .clone()
        .unwrap_or_else(|| fallback_id(v));
    let (bundle_id, environment) = app_and_environment(p);

    let kind = product_kind(tx, renewal);
    let product = tx
        .and_then(|t| t.product_id.clone())
        .or_else(|| renewal.and_then(|r| r.product_id.clone()))
        .map(|id| Product {
            id,
            plan_id: None,
            kind: kind.clone().unwrap_or(ProductKind::Other("UNKNOWN".into())),
        });

    let subscription = match kind {
        Some(ProductKind::AutoRenewable) => subscription(p, tx, renewal, occurred_at),
        _ => None,
    };
    let entitlement = match (&subscription, &kind) {
        (Some(s), _) => subscription_entitlement(s, occurred_at),
        (None, Some(k)) => one_time_entitlement(k, tx, occurred_at),
        (None, None) => Entitlement::none(),
    };
    let is_subscription = matches!(kind, Some(ProductKind::AutoRenewable));
    let (event_type, details) = map_type(ntype, subtype, p, tx, renewal, is_subscription, config);

    let transaction = tx.and_then(|t| {
        t.transaction_id.clone().map(|id| Transaction {
            id,
            original_id: t.original_transaction_id.clone(),
            purchased_at: t.purchase_date.and_then(Timestamp::from_millis),
            price: money(t.price, t.currency.as_deref()),
        })
    });

    let event = Event {
        api_version: API_VERSION,
        id: EventId::derive(&[Store::AppStore.as_str(), &notification_id]),
        kind: event_type,
        occurred_at,
        received_at,
        sequence: 0,
        store: Store::AppStore,
        environment,
        app_id: bundle_id,
        app_user_id: tx
            .and_then(|t| t.app_account_token.clone())
            .or_else(|| renewal.and_then(|r| r.app_account_token.clone())),
        product,
        subscription,
        transaction,
        entitlement,
        details,
        store_notification: StoreNotification {
            kind: ntype.to_owned(),
            subtype: subtype.map(str::to_owned),
            id: notification_id,
        },
        raw: config.include_raw.then(|| v.raw.clone()),
        previous_sequence: None,
    };
    vec![event]
}

fn fallback_id(v: &VerifiedNotification) -> String {
    // Apple always sends notificationUUID; should it be missing, use the
    // payload's signature, which a retry of the same notification repeats.
    format!("sig:{}", v.signature)
}

fn app_and_environment(p: &NotificationPayload) -> (String, Environment) {
    let (bundle, env) = if let Some(d) = &p.data {
        (d.bundle_id.clone(), d.environment.clone())
    } else if let Some(s) = &p.summary {
        (s.bundle_id.clone(), s.environment.clone())
    } else if let Some(t) = &p.external_purchase_token {
        let sandbox = t
            .external_purchase_id
            .as_deref()
            .is_some_and(|i| i.starts_with("SANDBOX"));
        (
            t.bundle_id.clone(),
            Some(if sandbox { "Sandbox" } else { "Production" }.to_owned()),
        )
    } else if let Some(a) = &p.app_data {
        (a.bundle_id.clone(), a.environment.clone())
    } else {
        (None, None)
    };
    let environment = match env.as_deref() {
        Some("Production") => Environment::Production,
        _ => Environment::Sandbox,
    };
    (bundle.unwrap_or_default(), environment)
}

fn product_kind(
    tx: Option<&TransactionInfo>,
    renewal: Option<&RenewalInfo>,
) -> Option<ProductKind> {
    match tx.and_then(|t| t.kind.as_deref()) {
        Some("Auto-Renewable Subscription") => Some(ProductKind::AutoRenewable),
        Some("Non-Renewing Subscription") => Some(ProductKind::NonRenewing),
        Some("Consumable") => Some(ProductKind::Consumable),
        Some("Non-Consumable") => Some(ProductKind::NonConsumable),
        Some(other) => Some(ProductKind::Other(other.to_owned())),
        None if renewal.is_some() => Some(ProductKind::AutoRenewable),
        None => None,
    }
}

/// Apple prices are milliunits; the event language uses micros.
fn money(milliunits: Option<i64>, currency: Option<&str>) -> Option<Money> {
    match (milliunits, currency) {
        (Some(p), Some(c)) if !c.is_empty() => Some(Money {
            amount_micros: p.saturating_mul(1000),
            currency: c.to_owned(),
        }),
        _ => None,
    }
}

fn subscription(
    p: &NotificationPayload,
    tx: Option<&TransactionInfo>,
    renewal: Option<&RenewalInfo>,
    occurred_at: Timestamp,
) -> Option<Subscription> {
    let original = tx
        .and_then(|t| t.original_transaction_id.clone())
        .or_else(|| renewal.and_then(|r| r.original_transaction_id.clone()))?;
    let auto_renew = renewal.is_some_and(|r| r.auto_renew_status == Some(1));
    let expires_at = tx
        .and_then(|t| t.expires_date)
        .and_then(Timestamp::from_millis);
    let grace = renewal
        .and_then(|r| r.grace_period_expires_date)
        .and_then(Timestamp::from_millis);
    let status = status(p, tx, renewal, auto_renew, expires_at, grace, occurred_at);
    Some(Subscription {
        id: SubscriptionId::derive(&[Store::AppStore.as_str(), &original]),
        store_subscription_id: original,
        status,
        auto_renew,
        period_type: period_type(tx),
        started_at: tx
            .and_then(|t| t.original_purchase_date)
            .and_then(Timestamp::from_millis),
        current_period_started_at: tx
            .and_then(|t| t.purchase_date)
            .and_then(Timestamp::from_millis),
        expires_at,
        grace_period_expires_at: grace,
        renewal_product_id: renewal.and_then(|r| r.auto_renew_product_id.clone()),
        price: tx
            .and_then(|t| money(t.price, t.currency.as_deref()))
            .or_else(|| renewal.and_then(|r| money(r.renewal_price, r.currency.as_deref()))),
        country: tx
            .and_then(|t| t.storefront.as_deref())
            .and_then(country::to_alpha2),
    })
}

fn status(
    p: &NotificationPayload,
    tx: Option<&TransactionInfo>,
    renewal: Option<&RenewalInfo>,
    auto_renew: bool,
    expires_at: Option<Timestamp>,
    grace: Option<Timestamp>,
    occurred_at: Timestamp,
) -> SubscriptionStatus {
    use SubscriptionStatus as S;
    let base = match p.data.as_ref().and_then(|d| d.status) {
        Some(1) => S::Active,
        Some(2) => S::Expired,
        Some(3) => S::InBillingRetry,
        Some(4) => S::InGracePeriod,
        Some(5) => S::Revoked,
        _ => {
            // No `status` (older payloads): derive it from the signed facts.
            let in_retry = renewal.is_some_and(|r| r.is_in_billing_retry_period == Some(true));
            if tx.is_some_and(|t| t.revocation_date.is_some()) {
                S::Revoked
            } else if in_retry && grace.is_some_and(|g| g > occurred_at) {
                S::InGracePeriod
            } else if in_retry {
                S::InBillingRetry
            } else if expires_at.is_some_and(|e| e <= occurred_at)
                || p.notification_type.as_deref() == Some("EXPIRED")
            {
                S::Expired
            } else {
                S::Active
            }
        }
    };
    if base == S::Active && !auto_renew {
        S::CanceledActive
    } else {
        base
    }
}

fn period_type(tx: Option<&TransactionInfo>) -> PeriodType {
    let free = tx.and_then(|t| t.offer_discount_type.as_deref()) == Some("FREE_TRIAL");
    match tx.and_then(|t| t.offer_type) {
        Some(1) if free => PeriodType::Trial,
        Some(1) => PeriodType::Intro,
        Some(3) if free => PeriodType::Trial,
        Some(2..=4) => PeriodType::Promotional,
        _ => PeriodType::Normal,
    }
}

fn offer(tx: Option<&TransactionInfo>) -> Option<Offer> {
    let t = tx?;
    let kind = match t.offer_type? {
        1 if t.offer_discount_type.as_deref() == Some("FREE_TRIAL") => OfferType::FreeTrial,
        1 => OfferType::Intro,
        2 => OfferType::Promotional,
        3 => OfferType::PromoCode,
        4 => OfferType::WinBack,
        other => OfferType::Other(other.to_string()),
    };
    Some(Offer {
        kind,
        id: t.offer_identifier.clone(),
    })
}

/// `entitlement.active`: ACTIVE, CANCELED_ACTIVE or IN_GRACE_PERIOD with an
/// expiry after the event time.
pub fn subscription_entitlement(s: &Subscription, at: Timestamp) -> Entitlement {
    let until = match s.status {
        SubscriptionStatus::InGracePeriod => s.grace_period_expires_at.or(s.expires_at),
        _ => s.expires_at,
    };
    let entitled_status = matches!(
        s.status,
        SubscriptionStatus::Active
            | SubscriptionStatus::CanceledActive
            | SubscriptionStatus::InGracePeriod
    );
    Entitlement {
        active: entitled_status && until.is_some_and(|u| u > at),
        expires_at: until,
    }
}

/// Non-consumables and non-renewing subscriptions grant access until revoked
/// (or until their expiry); consumables grant nothing lasting.
fn one_time_entitlement(
    kind: &ProductKind,
    tx: Option<&TransactionInfo>,
    at: Timestamp,
) -> Entitlement {
    let revoked = tx.is_some_and(|t| t.revocation_date.is_some());
    let expires_at = tx
        .and_then(|t| t.expires_date)
        .and_then(Timestamp::from_millis);
    match kind {
        ProductKind::NonConsumable | ProductKind::NonRenewing if tx.is_some() => Entitlement {
            active: !revoked && expires_at.is_none_or(|e| e > at),
            expires_at,
        },
        _ => Entitlement::none(),
    }
}

fn map_type(
    ntype: &str,
    subtype: Option<&str>,
    p: &NotificationPayload,
    tx: Option<&TransactionInfo>,
    renewal: Option<&RenewalInfo>,
    is_subscription: bool,
    config: &AppStoreConfig,
) -> (EventType, Details) {
    use EventType as T;
    let mut d = Details::default();
    let t = match (ntype, subtype) {
        ("SUBSCRIBED" | "OFFER_REDEEMED", Some("INITIAL_BUY")) => {
            d.offer = offer(tx);
            T::SubscriptionStarted
        }
        ("SUBSCRIBED" | "OFFER_REDEEMED", Some("RESUBSCRIBE")) => {
            d.offer = offer(tx);
            T::SubscriptionResubscribed
        }
        ("DID_RENEW", None) => {
            d.offer = offer(tx);
            T::SubscriptionRenewed
        }
        ("DID_RENEW", Some("BILLING_RECOVERY")) => T::SubscriptionRecovered,
        ("DID_CHANGE_RENEWAL_STATUS", Some("AUTO_RENEW_DISABLED")) => {
            d.reason = Some(
                match renewal.and_then(|r| r.expiration_intent) {
                    Some(2) => "BILLING",
                    Some(3) => "PRICE_INCREASE",
                    Some(4) => "SYSTEM",
                    // Apple documents this subtype as the customer's own action.
                    _ => "USER",
                }
                .to_owned(),
            );
            T::RenewalDisabled
        }
        ("DID_CHANGE_RENEWAL_STATUS", Some("AUTO_RENEW_ENABLED")) => T::RenewalEnabled,
        ("DID_CHANGE_RENEWAL_PREF" | "OFFER_REDEEMED", Some("UPGRADE")) => {
            d.to_product_id = tx.and_then(|t| t.product_id.clone());
            d.effective = Some(ChangeEffective::Immediate);
            d.direction = Some(ChangeDirection::Upgrade);
            if ntype == "OFFER_REDEEMED" {
                d.offer = offer(tx);
            }
            T::ProductChanged
        }
        ("DID_CHANGE_RENEWAL_PREF" | "OFFER_REDEEMED", Some("DOWNGRADE")) => {
            d.from_product_id = tx.and_then(|t| t.product_id.clone());
            d.to_product_id = renewal.and_then(|r| r.auto_renew_product_id.clone());
            d.effective = Some(ChangeEffective::NextRenewal);
            d.direction = Some(ChangeDirection::Downgrade);
            if ntype == "OFFER_REDEEMED" {
                d.offer = offer(tx);
            }
            T::ProductChanged
        }
        ("DID_CHANGE_RENEWAL_PREF", None) => {
            d.to_product_id = renewal
                .and_then(|r| r.auto_renew_product_id.clone())
                .or_else(|| tx.and_then(|t| t.product_id.clone()));
            d.effective = Some(ChangeEffective::Reverted);
            T::ProductChanged
        }
        ("OFFER_REDEEMED", None) => {
            d.offer = offer(tx);
            T::OfferRedeemed
        }
        ("DID_FAIL_TO_RENEW", Some("GRACE_PERIOD")) => {
            d.grace_period_expires_at = renewal
                .and_then(|r| r.grace_period_expires_date)
                .and_then(Timestamp::from_millis);
            T::GracePeriodStarted
        }
        ("DID_FAIL_TO_RENEW", None) | ("GRACE_PERIOD_EXPIRED", None) => T::BillingRetryStarted,
        ("EXPIRED", sub) => {
            d.reason = Some(
                match sub {
                    Some("VOLUNTARY") => "VOLUNTARY",
                    Some("BILLING_RETRY") => "BILLING_ERROR",
                    Some("PRICE_INCREASE") => "PRICE_INCREASE_DECLINED",
                    Some("PRODUCT_NOT_FOR_SALE") => "PRODUCT_UNAVAILABLE",
                    _ => match renewal.and_then(|r| r.expiration_intent) {
                        Some(1) => "VOLUNTARY",
                        Some(2) => "BILLING_ERROR",
                        Some(3) => "PRICE_INCREASE_DECLINED",
                        Some(4) => "PRODUCT_UNAVAILABLE",
                        _ => "UNKNOWN",
                    },
                }
                .to_owned(),
            );
            T::SubscriptionExpired
        }
        ("PRICE_INCREASE", Some(s @ ("PENDING" | "ACCEPTED"))) => {
            d.status = Some(PriceIncreaseStatus::parse(s));
            d.new_price = renewal.and_then(|r| money(r.renewal_price, r.currency.as_deref()));
            T::PriceIncrease
        }
        ("REFUND", None) => {
            refund_details(&mut d, tx, config);
            if is_subscription {
                T::SubscriptionRefunded
            } else {
                T::OneTimePurchaseRefunded
            }
        }
        ("REFUND_DECLINED", None) => T::RefundDeclined,
        ("REFUND_REVERSED", None) => T::RefundReversed,
        ("CONSUMPTION_REQUEST", None) => {
            d.respond_by = p
                .signed_date
                .and_then(Timestamp::from_millis)
                .map(|t| t.plus(Duration::hours(CONSUMPTION_RESPONSE_WINDOW_HOURS)));
            d.reason = p
                .data
                .as_ref()
                .and_then(|x| x.consumption_request_reason.clone());
            // The same judgement as on a refund, as of the request (Apple's
            // signed date): a long period asked back soon after purchase. It may
            // decide the default answer to Apple (`crate::consumption`).
            if let Some(t) = tx {
                let days_since_purchase = match (p.signed_date, t.purchase_date) {
                    (Some(s), Some(b)) if s >= b => Some((s - b) / DAY_MS),
                    _ => None,
                };
                let period_days = match (t.expires_date, t.purchase_date) {
                    (Some(e), Some(b)) if e > b => Some((e - b + DAY_MS / 2) / DAY_MS),
                    _ => None,
                };
                d.suspicious_refund = Some(
                    config
                        .refund_policy
                        .is_suspicious(period_days, days_since_purchase),
                );
            }
            T::RefundRequested
        }
        ("RENEWAL_EXTENDED", None) | ("RENEWAL_EXTENSION", Some("FAILURE")) => {
            d.new_expires_at = tx
                .and_then(|t| t.expires_date)
                .and_then(Timestamp::from_millis);
            if subtype == Some("FAILURE") {
                d.reason = Some("EXTENSION_FAILED".to_owned());
            }
            T::RenewalExtended
        }
        ("REVOKE", None) if is_subscription => T::SubscriptionRevoked,
        ("REVOKE", None) => {
            // Family Sharing access to a non-consumable ended: access is revoked
            // like a refund, without money moving.
            d.refund = Some(Refund {
                kind: Some(RefundKind::Full),
                reason: Some("FAMILY_SHARING_REVOKED".to_owned()),
                refunded_at: tx
                    .and_then(|t| t.revocation_date)
                    .and_then(Timestamp::from_millis),
                ..Refund::default()
            });
            T::OneTimePurchaseRefunded
        }
        ("ONE_TIME_CHARGE", None) => T::OneTimePurchase,
        ("TEST", None) => T::Test,
        _ => T::StoreNotification,
    };
    (t, d)
}

fn refund_details(d: &mut Details, tx: Option<&TransactionInfo>, config: &AppStoreConfig) {
    let Some(t) = tx else {
        return;
    };
    let partial = t.revocation_type.as_deref() == Some("REFUND_PRORATED")
        || t.revocation_percentage.is_some_and(|p| p < 100_000);
    let amount = money(t.price, t.currency.as_deref()).map(|mut m| {
        if let Some(pct) = t.revocation_percentage.filter(|p| (0..100_000).contains(p)) {
            m.amount_micros = (i128::from(m.amount_micros) * i128::from(pct) / 100_000) as i64;
        }
        m
    });
    let days_since_purchase = match (t.revocation_date, t.purchase_date) {
        (Some(r), Some(p)) if r >= p => Some((r - p) / DAY_MS),
        _ => None,
    };
    let period_days = match (t.expires_date, t.purchase_date) {
        (Some(e), Some(p)) if e > p => Some((e - p + DAY_MS / 2) / DAY_MS),
        _ => None,
    };
    d.refund = Some(Refund {
        kind: Some(if partial {
            RefundKind::Partial
        } else {
            RefundKind::Full
        }),
        reason: t.revocation_reason.map(|r| {
            match r {
                1 => "APP_ISSUE",
                0 => "OTHER",
                _ => "UNKNOWN",
            }
            .to_owned()
        }),
        amount,
        refunded_at: t.revocation_date.and_then(Timestamp::from_millis),
        days_since_purchase,
    });
    d.suspicious_refund = Some(
        config
            .refund_policy
            .is_suspicious(period_days, days_since_purchase),
    );
}

/// The snapshot parts of a verified transaction and renewal info with Apple's
/// subscription `status` (1 active … 5 revoked), as the translator builds
/// them for a notification: the sweeper's answers of Get All Subscription
/// Statuses ([`super::status`]) go through the same code.
#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    /// The product.
    pub product: Option<Product>,
    /// The subscription (auto-renewable products only).
    pub subscription: Option<Subscription>,
    /// The entitlement at the given time.
    pub entitlement: Entitlement,
    /// The transaction.
    pub transaction: Option<Transaction>,
    /// The app's user id (`appAccountToken`).
    pub app_user_id: Option<String>,
}

/// See [`StatusSnapshot`].
pub fn status_snapshot(
    tx: &TransactionInfo,
    renewal: Option<&RenewalInfo>,
    status: i32,
    at: Timestamp,
) -> StatusSnapshot {
    let p = NotificationPayload {
        data: Some(super::model::NotificationData {
            status: Some(status),
            ..Default::default()
        }),
        ..Default::default()
    };
    let kind = product_kind(Some(tx), renewal);
    let product = tx
        .product_id
        .clone()
        .or_else(|| renewal.and_then(|r| r.product_id.clone()))
        .map(|id| Product {
            id,
            plan_id: None,
            kind: kind.clone().unwrap_or(ProductKind::Other("UNKNOWN".into())),
        });
    let subscription = match kind {
        Some(ProductKind::AutoRenewable) => subscription(&p, Some(tx), renewal, at),
        _ => None,
    };
    let entitlement = match (&subscription, &kind) {
        (Some(s), _) => subscription_entitlement(s, at),
        (None, Some(k)) => one_time_entitlement(k, Some(tx), at),
        (None, None) => Entitlement::none(),
    };
    StatusSnapshot {
        product,
        subscription,
        entitlement,
        transaction: tx.transaction_id.clone().map(|id| Transaction {
            id,
            original_id: tx.original_transaction_id.clone(),
            purchased_at: tx.purchase_date.and_then(Timestamp::from_millis),
            price: money(tx.price, tx.currency.as_deref()),
        }),
        app_user_id: tx
            .app_account_token
            .clone()
            .or_else(|| renewal.and_then(|r| r.app_account_token.clone())),
    }
}

/// `details.offer` of a transaction (as on `SUBSCRIPTION_RENEWED`).
pub fn transaction_offer(tx: &TransactionInfo) -> Option<Offer> {
    offer(Some(tx))
}

/// `details.refund` and `details.suspicious_refund` of a revoked transaction
/// (as on `SUBSCRIPTION_REFUNDED`).
pub fn refund(d: &mut Details, tx: &TransactionInfo, config: &AppStoreConfig) {
    refund_details(d, Some(tx), config);
}

/// `details.reason` of an expiry from the renewal info's `expirationIntent`
/// (as on `EXPIRED` without a subtype).
pub fn expiration_reason(renewal: Option<&RenewalInfo>) -> &'static str {
    match renewal.and_then(|r| r.expiration_intent) {
        Some(1) => "VOLUNTARY",
        Some(2) => "BILLING_ERROR",
        Some(3) => "PRICE_INCREASE_DECLINED",
        Some(4) => "PRODUCT_UNAVAILABLE",
        _ => "UNKNOWN",
    }
}
