//! Google Play wire models: the Pub/Sub push body, the `DeveloperNotification`
//! carried in `message.data`, and the Play Developer API resources
//! (`SubscriptionPurchaseV2`, `ProductPurchase`).
//!
//! Every field is optional unless Google documents it as always present, and
//! unknown fields are ignored: Google adds fields over time. Integers that
//! Google documents as `int64` are accepted as JSON strings or numbers.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// A Google Play purchase token. It is a bearer credential for the purchase:
/// its `Debug` is redacted and it has no `Display`, so it cannot end up in a
/// log line by accident. Use [`PurchaseToken::fingerprint`] to correlate logs.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PurchaseToken(String);

impl PurchaseToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself (for API calls and the event's `store_subscription_id` only).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, non-reversible fingerprint (first 12 hex of SHA-256) for logs.
    pub fn fingerprint(&self) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_bytes());
        d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for PurchaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PurchaseToken(<redacted, {}>)", self.fingerprint())
    }
}

/// An `int64` sent as a JSON string (Google's usual encoding) or a number.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Num(i64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<Int>::deserialize(d)? {
        None => None,
        Some(Int::Num(n)) => Some(n),
        // Integral floats only; anything else is not a time or a count.
        Some(Int::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        Some(Int::Float(_)) => None,
        Some(Int::Text(s)) => s.trim().parse().ok(),
    })
}

/// A string that some producers send as a number (ids).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

// ---------------------------------------------------------------- Pub/Sub push

/// The body of a Pub/Sub push request ("wrapped" format).
#[derive(Debug, Clone, Deserialize)]
pub struct PushBody {
    /// The message; a push without one is not a Pub/Sub push.
    pub message: Option<PushMessage>,
    /// `projects/<project>/subscriptions/<name>`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub subscription: Option<String>,
    /// Only with a dead-letter policy.
    #[serde(default, rename = "deliveryAttempt", deserialize_with = "lenient_i64")]
    pub delivery_attempt: Option<i64>,
}

/// `message` of a push body (camelCase and snake_case duplicates both read).
#[derive(Debug, Clone, Deserialize)]
pub struct PushMessage {
    /// Base64 of the `DeveloperNotification` JSON.
    #[serde(default, deserialize_with = "lenient_string")]
    pub data: Option<String>,
    /// Pub/Sub message id (the deduplication key).
    #[serde(default, rename = "messageId", deserialize_with = "lenient_string")]
    pub message_id: Option<String>,
    /// Same, snake_case.
    #[serde(default, rename = "message_id", deserialize_with = "lenient_string")]
    pub message_id_snake: Option<String>,
    /// RFC 3339 publish time.
    #[serde(default, rename = "publishTime", deserialize_with = "lenient_string")]
    pub publish_time: Option<String>,
    /// Same, snake_case.
    #[serde(default, rename = "publish_time", deserialize_with = "lenient_string")]
    pub publish_time_snake: Option<String>,
}

impl PushMessage {
    /// `messageId`, else `message_id` (non-empty).
    pub fn id(&self) -> Option<&str> {
        self.message_id
            .as_deref()
            .or(self.message_id_snake.as_deref())
            .filter(|s| !s.trim().is_empty())
    }

    /// `publishTime`, else `publish_time`.
    pub fn published(&self) -> Option<&str> {
        self.publish_time
            .as_deref()
            .or(self.publish_time_snake.as_deref())
    }
}

// ---------------------------------------------------------------- DeveloperNotification

/// The decoded `message.data`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeveloperNotification {
    /// `"1.0"`.
    #[serde(default)]
    pub version: Option<String>,
    /// The app.
    pub package_name: String,
    /// When the event happened (ms; Google sends a string).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub event_time_millis: Option<i64>,
    /// Subscription events.
    #[serde(default)]
    pub subscription_notification: Option<SubscriptionNotification>,
    /// One-time product events.
    #[serde(default)]
    pub one_time_product_notification: Option<OneTimeProductNotification>,
    /// Refunds, chargebacks, revocations.
    #[serde(default)]
    pub voided_purchase_notification: Option<VoidedPurchaseNotification>,
    /// A refund request awaiting the developer's evidence.
    #[serde(default)]
    pub pending_refund_review_notification: Option<PendingRefundReviewNotification>,
    /// Play Console test message.
    #[serde(default)]
    pub test_notification: Option<serde_json::Value>,
}

/// `subscriptionNotification`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionNotification {
    /// `"1.0"`.
    #[serde(default)]
    pub version: Option<String>,
    /// The type number (see [`subscription_type_name`]).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub notification_type: Option<i64>,
    /// The purchase concerned.
    pub purchase_token: PurchaseToken,
    /// Legacy: the product id (not relied upon).
    #[serde(default)]
    pub subscription_id: Option<String>,
}

/// `oneTimeProductNotification`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OneTimeProductNotification {
    /// `"1.0"`.
    #[serde(default)]
    pub version: Option<String>,
    /// 1 purchased, 2 canceled (pending purchase).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub notification_type: Option<i64>,
    /// The purchase concerned.
    pub purchase_token: PurchaseToken,
    /// The product id.
    #[serde(default)]
    pub sku: Option<String>,
}

/// `voidedPurchaseNotification`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoidedPurchaseNotification {
    /// The voided purchase.
    pub purchase_token: PurchaseToken,
    /// The voided order (`GPA.…`; renewals end in `..N`).
    #[serde(default)]
    pub order_id: Option<String>,
    /// 1 subscription, 2 one-time.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub product_type: Option<i64>,
    /// 1 full, 2 quantity-based partial.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub refund_type: Option<i64>,
}

/// `pendingRefundReviewNotification` (newer; fields as seen in Google's docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRefundReviewNotification {
    /// `"1.0"`.
    #[serde(default)]
    pub version: Option<String>,
    /// Token to answer the review with (not a purchase token, still kept out of logs).
    #[serde(default)]
    pub pending_refund_token: Option<String>,
    /// The order under review.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Reason number.
    #[serde(default, deserialize_with = "lenient_string")]
    pub refund_reason: Option<String>,
    /// The account id the app set on the purchase.
    #[serde(default)]
    pub obfuscated_account_id: Option<String>,
    /// The profile id the app set on the purchase.
    #[serde(default)]
    pub obfuscated_profile_id: Option<String>,
}

/// Google's name of a `subscriptionNotification.notificationType`.
pub fn subscription_type_name(n: i64) -> Option<&'static str> {
    Some(match n {
        1 => "SUBSCRIPTION_RECOVERED",
        2 => "SUBSCRIPTION_RENEWED",
        3 => "SUBSCRIPTION_CANCELED",
        4 => "SUBSCRIPTION_PURCHASED",
        5 => "SUBSCRIPTION_ON_HOLD",
        6 => "SUBSCRIPTION_IN_GRACE_PERIOD",
        7 => "SUBSCRIPTION_RESTARTED",
        8 => "SUBSCRIPTION_PRICE_CHANGE_CONFIRMED",
        9 => "SUBSCRIPTION_DEFERRED",
        10 => "SUBSCRIPTION_PAUSED",
        11 => "SUBSCRIPTION_PAUSE_SCHEDULE_CHANGED",
        12 => "SUBSCRIPTION_REVOKED",
        13 => "SUBSCRIPTION_EXPIRED",
        17 => "SUBSCRIPTION_ITEMS_CHANGED",
        18 => "SUBSCRIPTION_CANCELLATION_SCHEDULED",
        19 => "SUBSCRIPTION_PRICE_CHANGE_UPDATED",
        20 => "SUBSCRIPTION_PENDING_PURCHASE_CANCELED",
        22 => "SUBSCRIPTION_PRICE_STEP_UP_CONSENT_UPDATED",
        _ => return None,
    })
}

/// Google's name of a `oneTimeProductNotification.notificationType`.
pub fn one_time_type_name(n: i64) -> Option<&'static str> {
    match n {
        1 => Some("ONE_TIME_PRODUCT_PURCHASED"),
        2 => Some("ONE_TIME_PRODUCT_CANCELED"),
        _ => None,
    }
}

// ---------------------------------------------------------------- Play Developer API

/// `Money` of the Play Developer API.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleMoney {
    /// ISO 4217.
    #[serde(default)]
    pub currency_code: Option<String>,
    /// Whole units (int64 as a string).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub units: Option<i64>,
    /// Nano units (same sign as `units`).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub nanos: Option<i64>,
}

/// `purchases.subscriptionsv2.get` response.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionPurchaseV2 {
    /// `androidpublisher#subscriptionPurchaseV2`.
    #[serde(default)]
    pub kind: Option<String>,
    /// ISO 3166-1 alpha-2 billing country.
    #[serde(default)]
    pub region_code: Option<String>,
    /// Grant time (RFC 3339); absent while pending.
    #[serde(default)]
    pub start_time: Option<String>,
    /// `SUBSCRIPTION_STATE_*`.
    #[serde(default)]
    pub subscription_state: Option<String>,
    /// Latest order id (deprecated in favour of the line items' `latestSuccessfulOrderId`).
    #[serde(default)]
    pub latest_order_id: Option<String>,
    /// The previous purchase of the same lineage (upgrade, downgrade, re-signup).
    #[serde(default)]
    pub linked_purchase_token: Option<PurchaseToken>,
    /// Only when paused.
    #[serde(default)]
    pub paused_state_context: Option<PausedStateContext>,
    /// Only when canceled.
    #[serde(default)]
    pub canceled_state_context: Option<CanceledStateContext>,
    /// Present (`{}`) for license-tester purchases.
    #[serde(default)]
    pub test_purchase: Option<serde_json::Value>,
    /// `ACKNOWLEDGEMENT_STATE_*`.
    #[serde(default)]
    pub acknowledgement_state: Option<String>,
    /// Ids the app set on the purchase.
    #[serde(default)]
    pub external_account_identifiers: Option<ExternalAccountIdentifiers>,
    /// The items (one unless add-ons are used).
    #[serde(default)]
    pub line_items: Vec<LineItem>,
}

/// `pausedStateContext`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PausedStateContext {
    /// When the subscription resumes (RFC 3339).
    #[serde(default)]
    pub auto_resume_time: Option<String>,
}

/// `canceledStateContext`: exactly one of the four is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanceledStateContext {
    /// The user canceled (`cancelSurveyResult`, `cancelTime`).
    #[serde(default)]
    pub user_initiated_cancellation: Option<serde_json::Value>,
    /// The system canceled (e.g. a billing problem).
    #[serde(default)]
    pub system_initiated_cancellation: Option<serde_json::Value>,
    /// The developer canceled (API).
    #[serde(default)]
    pub developer_initiated_cancellation: Option<serde_json::Value>,
    /// Replaced by a new purchase (upgrade/downgrade).
    #[serde(default)]
    pub replacement_cancellation: Option<serde_json::Value>,
}

/// `externalAccountIdentifiers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountIdentifiers {
    /// Set by Subscribe with Google / linked accounts.
    #[serde(default)]
    pub external_account_id: Option<String>,
    /// `setObfuscatedAccountId`.
    #[serde(default)]
    pub obfuscated_external_account_id: Option<String>,
    /// `setObfuscatedProfileId`.
    #[serde(default)]
    pub obfuscated_external_profile_id: Option<String>,
}

/// `SubscriptionPurchaseLineItem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    /// Subscription product id.
    #[serde(default)]
    pub product_id: Option<String>,
    /// Expiry (RFC 3339).
    #[serde(default)]
    pub expiry_time: Option<String>,
    /// Auto-renewing base plan.
    #[serde(default)]
    pub auto_renewing_plan: Option<AutoRenewingPlan>,
    /// Prepaid base plan.
    #[serde(default)]
    pub prepaid_plan: Option<serde_json::Value>,
    /// Base plan and offer.
    #[serde(default)]
    pub offer_details: Option<OfferDetails>,
    /// A deferred replacement of this item.
    #[serde(default)]
    pub deferred_item_replacement: Option<DeferredItemReplacement>,
    /// Latest successful order of this item (newer API revisions).
    #[serde(default)]
    pub latest_successful_order_id: Option<String>,
    /// The current pricing phase (newer): one key of `freeTrial`, `introductoryPrice`,
    /// `prorationPeriod`, `basePrice`, ...
    #[serde(default)]
    pub offer_phase: Option<serde_json::Map<String, serde_json::Value>>,
    /// A promo code applied at signup (newer).
    #[serde(default)]
    pub signup_promotion: Option<serde_json::Value>,
}

/// `AutoRenewingPlan`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRenewingPlan {
    /// Whether it renews.
    #[serde(default)]
    pub auto_renew_enabled: Option<bool>,
    /// The recurring price.
    #[serde(default)]
    pub recurring_price: Option<GoogleMoney>,
    /// A pending or applied price change.
    #[serde(default)]
    pub price_change_details: Option<PriceChangeDetails>,
    /// Installment plans.
    #[serde(default)]
    pub installment_details: Option<serde_json::Value>,
}

/// `SubscriptionItemPriceChangeDetails`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceChangeDetails {
    /// The new price.
    #[serde(default)]
    pub new_price: Option<GoogleMoney>,
    /// `PRICE_DECREASE` | `PRICE_INCREASE` | `OPT_OUT_PRICE_INCREASE`.
    #[serde(default)]
    pub price_change_mode: Option<String>,
    /// `OUTSTANDING` | `CONFIRMED` | `APPLIED`.
    #[serde(default)]
    pub price_change_state: Option<String>,
    /// When the new price is first charged (RFC 3339).
    #[serde(default)]
    pub expected_new_price_charge_time: Option<String>,
}

/// `OfferDetails`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferDetails {
    /// Always present.
    #[serde(default)]
    pub base_plan_id: Option<String>,
    /// Discounted offers only.
    #[serde(default)]
    pub offer_id: Option<String>,
    /// Developer tags.
    #[serde(default)]
    pub offer_tags: Vec<String>,
}

/// `deferredItemReplacement`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeferredItemReplacement {
    /// The product that replaces this item at its next renewal.
    #[serde(default)]
    pub product_id: Option<String>,
}

/// `purchases.products.get` response (`ProductPurchase`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductPurchase {
    /// `androidpublisher#productPurchase`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Purchase time (ms; int64 as a string).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub purchase_time_millis: Option<i64>,
    /// 0 purchased, 1 canceled, 2 pending.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub purchase_state: Option<i64>,
    /// 0 not consumed, 1 consumed.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub consumption_state: Option<i64>,
    /// The order.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Only for non-standard purchases: 0 test, 1 promo, 2 rewarded.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub purchase_type: Option<i64>,
    /// 0 not yet, 1 acknowledged.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub acknowledgement_state: Option<i64>,
    /// The product (often absent; the notification's `sku` is used then).
    #[serde(default)]
    pub product_id: Option<String>,
    /// Absent means 1.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub quantity: Option<i64>,
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    pub region_code: Option<String>,
    /// `setObfuscatedAccountId`.
    #[serde(default)]
    pub obfuscated_external_account_id: Option<String>,
    /// `setObfuscatedProfileId`.
    #[serde(default)]
    pub obfuscated_external_profile_id: Option<String>,
    /// Units that can still be refunded (newer).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub refundable_quantity: Option<i64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn int64_fields_accept_strings_and_numbers() {
        let a: DeveloperNotification = serde_json::from_str(
            r#"{"packageName":"p","eventTimeMillis":"1503349566168","testNotification":{"version":"1.0"}}"#,
        )
        .unwrap();
        let b: DeveloperNotification =
            serde_json::from_str(r#"{"packageName":"p","eventTimeMillis":1503349566168}"#).unwrap();
        assert_eq!(a.event_time_millis, Some(1_503_349_566_168));
        assert_eq!(b.event_time_millis, a.event_time_millis);
        let m: GoogleMoney =
            serde_json::from_str(r#"{"currencyCode":"USD","units":"12","nanos":990000000}"#)
                .unwrap();
        assert_eq!((m.units, m.nanos), (Some(12), Some(990_000_000)));
    }

    #[test]
    fn purchase_tokens_never_print() {
        let t = PurchaseToken::new("secret-token-value.AO-J1O");
        let d = format!("{t:?}");
        assert!(!d.contains("secret"), "{d}");
        assert_eq!(t.fingerprint().len(), 12);
        let n: SubscriptionNotification = serde_json::from_str(
            r#"{"version":"1.0","notificationType":4,"purchaseToken":"secret-token-value"}"#,
        )
        .unwrap();
        assert!(!format!("{n:?}").contains("secret"));
    }
}

/// A `VoidedPurchase` of `purchases.voidedpurchases.list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoidedPurchase {
    /// `androidpublisher#voidedPurchase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The voided purchase.
    pub purchase_token: PurchaseToken,
    /// The voided order (the key with `type=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// When the purchase was made (ms).
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub purchase_time_millis: Option<i64>,
    /// When Google recorded the void (ms).
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub voided_time_millis: Option<i64>,
    /// 0 user, 1 developer, 2 Google.
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub voided_source: Option<i64>,
    /// 0 other, 1 remorse, 2 not received, 3 defective, 4 accidental purchase,
    /// 5 fraud, 6 friendly fraud, 7 chargeback.
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub voided_reason: Option<i64>,
    /// Units refunded (quantity-based partial refunds only).
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub voided_quantity: Option<i64>,
}

/// `tokenPagination`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPagination {
    /// The next page's `token`.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// One page of `purchases.voidedpurchases.list`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoidedPurchasesPage {
    /// The voided purchases of the page (absent when none).
    #[serde(default)]
    pub voided_purchases: Vec<VoidedPurchase>,
    /// Paging.
    #[serde(default)]
    pub token_pagination: Option<TokenPagination>,
}
