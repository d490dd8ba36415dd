//! Event builders shared by the state, dispatch and benchmark tests.
//!
//! Also compiled into storehook-shared's own unit tests (`#[path]` module
//! `state::fixtures`, where `storehook_shared` names that crate itself), so the
//! events they build are that build's `Event`s: one source for both.

use storehook_shared::event::*;

/// Milliseconds since the epoch of a fixed base time plus `minutes`.
pub fn t(minutes: i64) -> Timestamp {
    Timestamp::from_millis(1_750_000_000_000 + minutes * 60_000)
        .unwrap_or(Timestamp(chrono::DateTime::UNIX_EPOCH))
}

/// A subscription event of `sub` (store subscription id) with `status`,
/// entitled iff `active`, occurring at `t(minute)`.
pub fn sub_event(
    notification: &str,
    kind: EventType,
    sub: &str,
    minute: i64,
    active: bool,
) -> Event {
    let status = if active {
        SubscriptionStatus::Active
    } else {
        SubscriptionStatus::Expired
    };
    Event {
        api_version: API_VERSION,
        id: EventId::derive(&["TEST_STORE", notification]),
        kind,
        occurred_at: t(minute),
        received_at: t(minute + 1),
        sequence: 0,
        store: Store::AppStore,
        environment: Environment::Sandbox,
        app_id: "com.example.app".into(),
        app_user_id: Some("user-1".into()),
        product: Some(Product {
            id: "pro.monthly".into(),
            plan_id: None,
            kind: ProductKind::AutoRenewable,
        }),
        subscription: Some(Subscription {
            id: SubscriptionId::derive(&["APP_STORE", sub]),
            store_subscription_id: sub.into(),
            status,
            auto_renew: active,
            period_type: PeriodType::Normal,
            started_at: Some(t(0)),
            current_period_started_at: Some(t(minute)),
            expires_at: Some(t(minute + 30 * 24 * 60)),
            grace_period_expires_at: None,
            renewal_product_id: Some("pro.monthly".into()),
            price: Some(Money {
                amount_micros: 4_990_000,
                currency: "EUR".into(),
            }),
            country: Some("FR".into()),
        }),
        transaction: Some(Transaction {
            id: format!("txn-{notification}"),
            original_id: Some(sub.into()),
            purchased_at: Some(t(minute)),
            price: None,
        }),
        entitlement: Entitlement {
            active,
            expires_at: active.then(|| t(minute + 30 * 24 * 60)),
        },
        details: Details::default(),
        store_notification: StoreNotification {
            kind: "DID_RENEW".into(),
            subtype: None,
            id: notification.into(),
        },
        raw: None,
        previous_sequence: None,
    }
}

/// A TEST event (no subscription, no transaction).
pub fn test_event(notification: &str) -> Event {
    let mut e = sub_event(notification, EventType::Test, "none", 0, false);
    e.subscription = None;
    e.transaction = None;
    e.product = None;
    e.app_user_id = None;
    e.entitlement = Entitlement::none();
    e
}

/// An applying instant ([`StateStore::apply`]'s `now`) before every expiry
/// of these fixtures (an hour after the base time; events expire 30 days
/// after they occur), so time ends no entitlement unless a test says so.
///
/// [`StateStore::apply`]: storehook_shared::state::StateStore::apply
pub fn apply_now() -> Timestamp {
    t(60)
}
