//! Huawei IAP (HMS Core) wire models (specs/huawei.md §2–6).
//!
//! Huawei is not consistent about JSON types (`applicationId` is a string in
//! notifications and a number in receipts; codes come as strings or numbers),
//! so every scalar here is read leniently: a value of an unexpected type
//! becomes `None` instead of failing, and unknown fields are ignored. A
//! notification whose signature verifies is never refused for its field types.
//!
//! Purchase tokens, and the receipt strings that contain them, are held in
//! [`Opaque`], whose `Debug` never shows the value.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;

/// A value that must never reach a log: a purchase token, an access token, a
/// client secret, or a receipt string that contains a purchase token.
/// `Debug` prints only its length.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Opaque(String);

impl Opaque {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it (a request body, a signature check).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Opaque(<{} chars>)", self.0.len())
    }
}

// ------------------------------------------------------------ lenient scalars

/// A string, or a number rendered as a string; anything else is `None`.
fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// A string (secret or token); anything else is `None`.
fn opt_opaque<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Opaque>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(Opaque(s)),
        _ => None,
    })
}

/// An integer, or a string holding one; anything else is `None`.
fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A boolean, `"true"`/`"false"`, or `1`/`0`; anything else is `None`.
fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    })
}

// ------------------------------------------------------------------ HTTP body

/// The HTTP body Huawei POSTs, either version (§2 legacy, §3 v2). Which one it
/// is follows from the fields present (see [`NotificationBody::is_v2`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationBody {
    /// v2: `"v2"`; legacy bodies may carry it too.
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    /// v2: `ORDER` or `SUBSCRIPTION`.
    #[serde(default, deserialize_with = "opt_string")]
    pub event_type: Option<String>,
    /// v2: when the notification was sent (UTC ms).
    #[serde(default, deserialize_with = "opt_i64")]
    pub notify_time: Option<i64>,
    /// v2: the app id (not covered by any signature).
    #[serde(default, deserialize_with = "opt_string")]
    pub application_id: Option<String>,
    /// v2, `eventType` ORDER.
    pub order_notification: Option<OrderNotification>,
    /// v2, `eventType` SUBSCRIPTION.
    pub sub_notification: Option<SubNotification>,
    /// Legacy: the signed notification, a JSON string.
    pub status_update_notification: Option<String>,
    /// Legacy: the signature (Huawei's spelling, with a "y").
    pub notifycation_signature: Option<String>,
    /// Legacy, tolerated: the signature spelled as in v2.
    pub notification_signature: Option<String>,
    /// Legacy: some bodies name the algorithm; absent means SHA256WithRSA.
    #[serde(default, deserialize_with = "opt_string")]
    pub signature_algorithm: Option<String>,
}

impl NotificationBody {
    /// A v2 body: it has `subNotification`, `orderNotification` or `eventType`.
    pub fn is_v2(&self) -> bool {
        self.sub_notification.is_some()
            || self.order_notification.is_some()
            || self.event_type.is_some()
    }
}

/// v2 `subNotification`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubNotification {
    /// `"v2"`.
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    /// The signed notification, a JSON string.
    pub status_update_notification: Option<String>,
    /// The signature (v2 spelling, no "y").
    pub notification_signature: Option<String>,
    /// Tolerated: the legacy spelling.
    pub notifycation_signature: Option<String>,
    /// `SHA256WithRSA` (also when absent) or `SHA256WithRSA/PSS`.
    #[serde(default, deserialize_with = "opt_string")]
    pub signature_algorithm: Option<String>,
}

/// v2 `orderNotification` (unsigned: its facts are confirmed with the order API).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderNotification {
    /// `"v2"`.
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    /// `1` payment succeeded, `2` refund succeeded.
    #[serde(default, deserialize_with = "opt_i64")]
    pub notification_type: Option<i64>,
    /// The purchase token.
    #[serde(default, deserialize_with = "opt_opaque")]
    pub purchase_token: Option<Opaque>,
    /// The product.
    #[serde(default, deserialize_with = "opt_string")]
    pub product_id: Option<String>,
}

// -------------------------------------------------- statusUpdateNotification

/// The decoded `statusUpdateNotification` (§4), v1 and v2 alike.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdateNotification {
    /// `PROD` or `SandBox`.
    #[serde(default, deserialize_with = "opt_string")]
    pub environment: Option<String>,
    /// §4.1.
    #[serde(default, deserialize_with = "opt_i64")]
    pub notification_type: Option<i64>,
    /// Stable across renewals.
    #[serde(default, deserialize_with = "opt_string")]
    pub subscription_id: Option<String>,
    /// The subscription's purchase token (v2).
    #[serde(default, deserialize_with = "opt_opaque")]
    pub purchase_token: Option<Opaque>,
    /// CANCEL only (ms).
    #[serde(default, deserialize_with = "opt_i64")]
    pub cancellation_date: Option<i64>,
    /// Order of this period's payment.
    #[serde(default, deserialize_with = "opt_string")]
    pub order_id: Option<String>,
    /// Purchase token of the latest receipt.
    #[serde(default, deserialize_with = "opt_opaque")]
    pub latest_receipt: Option<Opaque>,
    /// `InAppPurchaseData` JSON of the latest receipt.
    #[serde(default, deserialize_with = "opt_opaque")]
    pub latest_receipt_info: Option<Opaque>,
    /// Its signature.
    #[serde(default, deserialize_with = "opt_string")]
    pub latest_receipt_info_signature: Option<String>,
    /// Purchase token of the latest expired receipt.
    #[serde(default, deserialize_with = "opt_opaque")]
    pub latest_expired_receipt: Option<Opaque>,
    /// `InAppPurchaseData` JSON of the latest expired receipt.
    #[serde(default, deserialize_with = "opt_opaque")]
    pub latest_expired_receipt_info: Option<Opaque>,
    /// Its signature.
    #[serde(default, deserialize_with = "opt_string")]
    pub latest_expired_receipt_info_signature: Option<String>,
    /// Algorithm of the receipt signatures.
    #[serde(default, deserialize_with = "opt_string")]
    pub signature_algorithm: Option<String>,
    /// `1` renewing, `0` the user cancelled renewal.
    #[serde(default, deserialize_with = "opt_i64")]
    pub auto_renew_status: Option<i64>,
    /// CANCEL only.
    #[serde(default, deserialize_with = "opt_string")]
    pub refund_pay_order_id: Option<String>,
    /// The product.
    #[serde(default, deserialize_with = "opt_string")]
    pub product_id: Option<String>,
    /// The app id.
    #[serde(default, deserialize_with = "opt_string")]
    pub application_id: Option<String>,
    /// As `InAppPurchaseData.expirationIntent`.
    #[serde(default, deserialize_with = "opt_i64")]
    pub expiration_intent: Option<i64>,
}

// ------------------------------------------------------------ InAppPurchaseData

/// A receipt (`InAppPurchaseData`, §6): in `latestReceiptInfo` and in the
/// answers of the subscription and order APIs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InAppPurchaseData {
    #[serde(default, deserialize_with = "opt_string")]
    pub application_id: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub auto_renewing: Option<bool>,
    #[serde(default, deserialize_with = "opt_string")]
    pub order_id: Option<String>,
    /// `0` consumable, `1` non-consumable, `2` auto-renewable, `3` non-renewing subscription.
    #[serde(default, deserialize_with = "opt_i64")]
    pub kind: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub package_name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub product_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub product_name: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub purchase_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub purchase_time_millis: Option<i64>,
    /// `-1` initialized, `0` purchased, `1` canceled, `2` refunded.
    #[serde(default, deserialize_with = "opt_i64")]
    pub purchase_state: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub developer_payload: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub consumption_state: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub confirmed: Option<i64>,
    #[serde(default, deserialize_with = "opt_opaque")]
    pub purchase_token: Option<Opaque>,
    /// `0` sandbox, `1` promotion; absent for real purchases.
    #[serde(default, deserialize_with = "opt_i64")]
    pub purchase_type: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub currency: Option<String>,
    /// Price × 100 (501 = 5.01).
    #[serde(default, deserialize_with = "opt_i64")]
    pub price: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub country: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub pay_order_id: Option<String>,
    /// `1` = AppTouch account (another API site).
    #[serde(default, deserialize_with = "opt_i64")]
    pub account_flag: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub last_order_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub product_group: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub ori_purchase_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub subscription_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub ori_subscription_id: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub quantity: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub days_lasted: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub num_of_periods: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub num_of_discount: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub expiration_date: Option<i64>,
    /// 1 user cancelled, 2 product unavailable, 3 abnormal signing, 4 billing error,
    /// 5 price increase not accepted, 6 unknown.
    #[serde(default, deserialize_with = "opt_i64")]
    pub expiration_intent: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub retry_flag: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub introductory_flag: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub trial_flag: Option<i64>,
    /// Refund / revocation time (ms).
    #[serde(default, deserialize_with = "opt_i64")]
    pub cancel_time: Option<i64>,
    /// 0 other, 1 in-app problem, 2 upgrade/crossgrade.
    #[serde(default, deserialize_with = "opt_i64")]
    pub cancel_reason: Option<i64>,
    /// 1 normal, 0 cancelled.
    #[serde(default, deserialize_with = "opt_i64")]
    pub renew_status: Option<i64>,
    /// 1 agreed, 0 no action.
    #[serde(default, deserialize_with = "opt_i64")]
    pub price_consent_status: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub renew_price: Option<i64>,
    /// The entitlement flag: paid, unexpired and not refunded.
    #[serde(default, deserialize_with = "opt_bool")]
    pub sub_isvalid: Option<bool>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub defer_flag: Option<i64>,
    /// 0 user, 1 developer, 2 Huawei.
    #[serde(default, deserialize_with = "opt_i64")]
    pub cancel_way: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub cancellation_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub resume_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub grace_expiration_time: Option<i64>,
}

impl InAppPurchaseData {
    /// `purchaseTime`, or its legacy duplicate.
    pub fn purchased_at_ms(&self) -> Option<i64> {
        self.purchase_time.or(self.purchase_time_millis)
    }
}

// ------------------------------------------------------------------- the APIs

/// Body of the subscription status query (`/sub/applications/v2/purchases/get`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubscriptionQuery<'a> {
    pub subscription_id: &'a str,
    pub purchase_token: &'a str,
}

/// Body of the order status query (`/applications/purchases/tokens/verify`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderQuery<'a> {
    pub purchase_token: &'a str,
    pub product_id: &'a str,
}

/// Answer of the IAP APIs: the receipt comes as `inappPurchaseData`
/// (subscriptions) or `purchaseTokenData` (orders), signed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiAnswer {
    /// `"0"` = OK.
    #[serde(default, deserialize_with = "opt_string")]
    pub response_code: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub response_message: Option<String>,
    #[serde(default, deserialize_with = "opt_opaque")]
    pub inapp_purchase_data: Option<Opaque>,
    #[serde(default, deserialize_with = "opt_opaque")]
    pub purchase_token_data: Option<Opaque>,
    #[serde(default, deserialize_with = "opt_string")]
    pub data_signature: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub signature_algorithm: Option<String>,
}

/// Answer of the OAuth token endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TokenAnswer {
    #[serde(default, deserialize_with = "opt_opaque")]
    pub access_token: Option<Opaque>,
    /// Seconds.
    #[serde(default, deserialize_with = "opt_i64")]
    pub expires_in: Option<i64>,
}

/// A `serde_json` error described without the input it quotes (an input
/// may contain a purchase token): category and position only.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    // Our own strict reading's refusal names the key (at most 40 characters), never a value.
    if crate::json::is_strict_refusal(e) {
        return e.to_string();
    }
    let what = match e.classify() {
        Category::Io => "I/O error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected JSON type or shape",
        Category::Eof => "unexpected end of input",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}
