//! The storehook event language, v1 (see docs/events.md).
//!
//! This is the product's public contract. Every store notification is
//! translated into [`Event`]s of this shape before it reaches the app maker's
//! webhook. Changes within v1 are additive only.
//!
//! Forward compatibility: every enum here deserializes values it does not know
//! into an `Other(String)` variant instead of failing, and the JSON Schema
//! documents the known values without forbidding new ones.

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// The only API version this crate emits.
pub const API_VERSION: u32 = 1;

/// Declares a string enum that keeps unknown values (`Other(String)`).
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// Every value this version knows.
            pub const KNOWN: &'static [&'static str] = &[$($text),+];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Other(s) => s.as_str(),
                }
            }

            /// Parses a wire string; unknown values become `Other`.
            pub fn parse(s: &str) -> Self {
                match s {
                    $( $text => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = Cow::<'de, str>::deserialize(d)?;
                Ok(Self::parse(&s))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": concat!("Known values: ", $($text, " "),+, "(unknown values may appear in later versions of v1 and must be tolerated)."),
                    "examples": [$($text),+]
                })
            }
        }
    };
}

string_enum! {
    /// What happened.
    pub enum EventType {
        SubscriptionStarted = "SUBSCRIPTION_STARTED",
        SubscriptionResubscribed = "SUBSCRIPTION_RESUBSCRIBED",
        SubscriptionRenewed = "SUBSCRIPTION_RENEWED",
        SubscriptionRecovered = "SUBSCRIPTION_RECOVERED",
        RenewalDisabled = "RENEWAL_DISABLED",
        RenewalEnabled = "RENEWAL_ENABLED",
        ProductChanged = "PRODUCT_CHANGED",
        GracePeriodStarted = "GRACE_PERIOD_STARTED",
        BillingRetryStarted = "BILLING_RETRY_STARTED",
        SubscriptionExpired = "SUBSCRIPTION_EXPIRED",
        SubscriptionPauseScheduled = "SUBSCRIPTION_PAUSE_SCHEDULED",
        SubscriptionPaused = "SUBSCRIPTION_PAUSED",
        SubscriptionRefunded = "SUBSCRIPTION_REFUNDED",
        SubscriptionRevoked = "SUBSCRIPTION_REVOKED",
        RefundRequested = "REFUND_REQUESTED",
        RefundDeclined = "REFUND_DECLINED",
        RefundReversed = "REFUND_REVERSED",
        RefundConsumptionSent = "REFUND_CONSUMPTION_SENT",
        PriceIncrease = "PRICE_INCREASE",
        OfferRedeemed = "OFFER_REDEEMED",
        RenewalExtended = "RENEWAL_EXTENDED",
        OneTimePurchase = "ONE_TIME_PURCHASE",
        OneTimePurchaseRefunded = "ONE_TIME_PURCHASE_REFUNDED",
        PurchasePendingCanceled = "PURCHASE_PENDING_CANCELED",
        Test = "TEST",
        StoreNotification = "STORE_NOTIFICATION",
        AccessGranted = "ACCESS_GRANTED",
        AccessRevoked = "ACCESS_REVOKED",
    }
}

string_enum! {
    /// Which store sent the notification.
    pub enum Store {
        AppStore = "APP_STORE",
        GooglePlay = "GOOGLE_PLAY",
        HuaweiAppGallery = "HUAWEI_APPGALLERY",
        AmazonAppstore = "AMAZON_APPSTORE",
    }
}

string_enum! {
    /// Production or sandbox (test purchases).
    pub enum Environment {
        Production = "PRODUCTION",
        Sandbox = "SANDBOX",
    }
}

string_enum! {
    /// What kind of product was bought.
    pub enum ProductKind {
        AutoRenewable = "AUTO_RENEWABLE",
        NonRenewing = "NON_RENEWING",
        Consumable = "CONSUMABLE",
        NonConsumable = "NON_CONSUMABLE",
    }
}

string_enum! {
    /// The subscription's state after the event.
    pub enum SubscriptionStatus {
        Active = "ACTIVE",
        /// Auto-renew off, still inside the paid period (entitled).
        CanceledActive = "CANCELED_ACTIVE",
        InGracePeriod = "IN_GRACE_PERIOD",
        InBillingRetry = "IN_BILLING_RETRY",
        OnHold = "ON_HOLD",
        Paused = "PAUSED",
        Expired = "EXPIRED",
        Revoked = "REVOKED",
        Pending = "PENDING",
    }
}

string_enum! {
    /// Kind of the current billing period.
    pub enum PeriodType {
        Trial = "TRIAL",
        Intro = "INTRO",
        Promotional = "PROMOTIONAL",
        Normal = "NORMAL",
    }
}

string_enum! {
    /// Kind of an offer applied to a purchase or renewal.
    pub enum OfferType {
        FreeTrial = "FREE_TRIAL",
        Intro = "INTRO",
        PromoCode = "PROMO_CODE",
        Promotional = "PROMOTIONAL",
        WinBack = "WIN_BACK",
    }
}

string_enum! {
    /// When a product change takes effect.
    pub enum ChangeEffective {
        Immediate = "IMMEDIATE",
        NextRenewal = "NEXT_RENEWAL",
        Reverted = "REVERTED",
    }
}

string_enum! {
    /// Direction of a product change.
    pub enum ChangeDirection {
        Upgrade = "UPGRADE",
        Downgrade = "DOWNGRADE",
        Crossgrade = "CROSSGRADE",
    }
}

string_enum! {
    /// Full or partial refund.
    pub enum RefundKind {
        Full = "FULL",
        Partial = "PARTIAL",
    }
}

string_enum! {
    /// Price increase consent status.
    pub enum PriceIncreaseStatus {
        Pending = "PENDING",
        Accepted = "ACCEPTED",
    }
}

/// A point in time, serialized as RFC 3339 UTC with milliseconds
/// (`2025-07-28T08:05:12.307Z`). Built through [`Timestamp::from_millis`] or
/// parsed, it holds whole milliseconds of a year 0000..=9999, so what is
/// serialized always parses back equal (found by the `event_roundtrip` and
/// store fuzz targets).
/// 0000-01-01T00:00:00Z, the first instant RFC 3339 can write.
const MIN_MILLIS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z, the last.
const MAX_MILLIS: i64 = 253_402_300_799_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// From UNIX epoch milliseconds; `None` outside the years 0000..=9999
    /// that RFC 3339 can write (a later store date would serialize as
    /// `+10000-…`, which no reader, storehook's included, parses back).
    pub fn from_millis(ms: i64) -> Option<Self> {
        Utc.timestamp_millis_opt(ms)
            .single()
            .filter(|t| (0..=9999).contains(&t.year()))
            .map(Self)
    }

    /// From UNIX epoch milliseconds, clamped into the years 0000..=9999: the
    /// receipt time the stores' translators are given (storehook's own clock,
    /// never a store's date, so clamping cannot hide a store's bad date).
    pub fn from_millis_clamped(ms: i64) -> Self {
        Self(
            Utc.timestamp_millis_opt(ms.clamp(MIN_MILLIS, MAX_MILLIS))
                .single()
                .unwrap_or_default(),
        )
    }

    /// From a time, truncated to whole milliseconds; `None` outside 0000..=9999.
    pub fn from_datetime(t: DateTime<Utc>) -> Option<Self> {
        Self::from_millis(t.timestamp_millis())
    }

    /// UNIX epoch milliseconds.
    pub fn millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Adds a duration (saturating at the representable range).
    pub fn plus(&self, d: chrono::Duration) -> Self {
        Self(self.0.checked_add_signed(d).unwrap_or(self.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        let t = DateTime::parse_from_rfc3339(&s).map_err(serde::de::Error::custom)?;
        // Sub-millisecond digits are dropped, as serialization drops them.
        Self::from_datetime(t.with_timezone(&Utc))
            .ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339, UTC, with milliseconds"
        })
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The prefix every generated id carries.
            pub const PREFIX: &'static str = $prefix;

            /// Derives the id deterministically from its parts (SHA-256, 128 bits kept).
            pub fn derive(parts: &[&str]) -> Self {
                Self(format!("{}{}", $prefix, digest_hex(parts)))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Event id: `evt_` + 32 hex characters derived from the store's own
    /// notification id, so a store retry yields the same id.
    EventId,
    "evt_"
);
id_type!(
    /// Subscription id: `sub_` + 32 hex characters derived from the store and
    /// the store's original id of the subscription lineage.
    SubscriptionId,
    "sub_"
);

/// SHA-256 over the length-prefixed parts, first 16 bytes in hex.
fn digest_hex(parts: &[&str]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"storehook/v1");
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p.as_bytes());
    }
    let d = ctx.finish();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in &d.as_ref()[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// An amount of money: integer micros of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    /// 4.99 EUR = 4990000.
    pub amount_micros: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// The product concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Product {
    /// Store product id (App Store productId, Play product/subscription id, Huawei productId, Amazon SKU).
    pub id: String,
    /// Play base plan id; null elsewhere.
    pub plan_id: Option<String>,
    pub kind: ProductKind,
}

/// The subscription's current state after the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subscription {
    /// Stable storehook id (`sub_…`).
    pub id: SubscriptionId,
    /// originalTransactionId / first purchaseToken of the lineage / subscriptionId / receiptId.
    pub store_subscription_id: String,
    pub status: SubscriptionStatus,
    pub auto_renew: bool,
    pub period_type: PeriodType,
    pub started_at: Option<Timestamp>,
    pub current_period_started_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub grace_period_expires_at: Option<Timestamp>,
    pub renewal_product_id: Option<String>,
    pub price: Option<Money>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
}

/// The store transaction behind the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Transaction {
    pub id: String,
    pub original_id: Option<String>,
    pub purchased_at: Option<Timestamp>,
    pub price: Option<Money>,
}

/// Whether the user should have access now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Entitlement {
    pub active: bool,
    pub expires_at: Option<Timestamp>,
}

impl Entitlement {
    /// No access.
    pub fn none() -> Self {
        Self {
            active: false,
            expires_at: None,
        }
    }
}

/// An offer applied to a purchase or renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Offer {
    #[serde(rename = "type")]
    pub kind: OfferType,
    pub id: Option<String>,
}

/// Refund facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Refund {
    pub kind: Option<RefundKind>,
    /// Store reason, normalized where possible (`APP_ISSUE`, `OTHER`, `CUSTOMER_REQUEST`, …).
    pub reason: Option<String>,
    pub amount: Option<Money>,
    pub refunded_at: Option<Timestamp>,
    pub days_since_purchase: Option<i64>,
}

/// Type-specific details; every field is optional and only present where it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Details {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<Offer>,
    /// On the first paid renewal after a free trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_converted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_number: Option<u32>,
    /// RENEWAL_DISABLED: USER | BILLING | DEVELOPER | PRICE_INCREASE | REFUND_REQUEST | SYSTEM | UNKNOWN.
    /// SUBSCRIPTION_EXPIRED: VOLUNTARY | BILLING_ERROR | PRICE_INCREASE_DECLINED | PRODUCT_UNAVAILABLE | UNKNOWN.
    /// REFUND_REQUESTED: the store's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<ChangeEffective>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<ChangeDirection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumes_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Refund>,
    /// A long period refunded soon after purchase (thresholds configurable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicious_refund: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond_by: Option<Timestamp>,
    /// PRICE_INCREASE consent status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PriceIncreaseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_price: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_expires_at: Option<Timestamp>,
    /// ACCESS_*: the event whose state change caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause_event_id: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause_type: Option<EventType>,
    /// The store event is older than the last one applied; the snapshot was left as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<bool>,
    /// STORE_NOTIFICATION of an authentic notification that could not be decoded: why.
    /// (Additive to v1.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The store's own event time, when it was later than `received_at` plus the
    /// allowed clock skew: `occurred_at` was then set to `received_at` (a store
    /// time from the future cannot order state). (Additive to v1.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at_clamped_from: Option<Timestamp>,
    /// Who produced the event when it was not a store notification: `"sweeper"`
    /// (the expiry sweeper, from the store's API answer or, without API
    /// credentials, from the expiry time itself) or `"backfill"` (`storehook
    /// backfill`). Absent for events translated from a store notification.
    /// (Additive to v1.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// REFUND_CONSUMPTION_SENT: what storehook sent to Apple for the refund
    /// request `cause_event_id`, and Apple's answer. (Additive to v1.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumption: Option<ConsumptionOutcome>,
}

/// The outcome of answering one App Store refund request (`CONSUMPTION_REQUEST`)
/// with consumption information. (Additive to v1.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConsumptionOutcome {
    /// `ACCEPTED` (Apple took it), `REFUSED` (Apple answered with an error that
    /// asking again cannot fix), `EXPIRED` (the 12-hour window closed before
    /// Apple took it), `INVALID` (the backend's answer was not valid: nothing
    /// was sent).
    pub result: String,
    /// Whose answer it was: `backend` (the webhook's answer) or `default` (the
    /// configured default policy).
    pub origin: String,
    /// The body sent (or that would have been sent), in Apple's field names.
    pub sent: Option<serde_json::Value>,
    /// Apple's HTTP status of the last attempt, when one was made.
    pub apple_status: Option<u16>,
    /// Apple's `errorCode` of the last attempt, when it gave one.
    pub apple_error_code: Option<i64>,
    /// Why it was not accepted, in words (no secrets).
    pub error: Option<String>,
    /// Calls made to Apple.
    pub attempts: u32,
}

/// The store's own identification of the notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoreNotification {
    #[serde(rename = "type")]
    pub kind: String,
    pub subtype: Option<String>,
    pub id: String,
}

/// One event of the storehook event language, v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "storehook event v1")]
pub struct Event {
    /// Always 1 in v1.
    pub api_version: u32,
    /// Stable across store retries and duplicate deliveries; also the `webhook-id` header.
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The store's event time.
    pub occurred_at: Timestamp,
    /// When storehook received the notification.
    pub received_at: Timestamp,
    /// Per subscription, gap-free, starting at 1 (0 only before the dispatcher assigned it,
    /// e.g. in `storehook translate` output).
    pub sequence: u64,
    pub store: Store,
    pub environment: Environment,
    /// bundleId / packageName / applicationId / appPackageName.
    pub app_id: String,
    pub app_user_id: Option<String>,
    pub product: Option<Product>,
    /// Null for one-time purchases and store-level notifications.
    pub subscription: Option<Subscription>,
    pub transaction: Option<Transaction>,
    pub entitlement: Entitlement,
    pub details: Details,
    pub store_notification: StoreNotification,
    /// Decoded store payloads, when the endpoint is configured to include them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Value>,
    /// With several endpoints configured (`WEBHOOK_ENDPOINTS`): the `sequence`
    /// of the last event of this subscription that passed the receiving
    /// endpoint's filter before this one (`sequence - 1` without a filter);
    /// absent for its first. A smaller number than the last one received means
    /// a delivery is missing. (Additive to v1.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_sequence: Option<u64>,
}

impl Event {
    /// The ordering key: events with the same key are applied and delivered
    /// strictly in order (the SQS FIFO message group). The subscription id
    /// where there is one; otherwise a key derived from the transaction
    /// lineage; otherwise the event's own id.
    pub fn group_key(&self) -> String {
        if let Some(s) = &self.subscription {
            return s.id.0.clone();
        }
        if let Some(t) = &self.transaction {
            let original = t.original_id.as_deref().unwrap_or(&t.id);
            return format!(
                "txn_{}",
                digest_hex(&[self.store.as_str(), self.app_id.as_str(), original])
            );
        }
        self.id.0.clone()
    }
}

/// The JSON Schema of [`Event`], as committed in `schema/event.v1.schema.json`.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Event);
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_times_are_clamped_to_the_writable_years_and_kept_inside_them() {
        // GIVEN the first and last writable instants THEN they are exactly the bounds
        assert_eq!(
            Timestamp::from_millis(MIN_MILLIS).map(|t| t.millis()),
            Some(MIN_MILLIS)
        );
        assert_eq!(
            Timestamp::from_millis(MAX_MILLIS).map(|t| t.millis()),
            Some(MAX_MILLIS)
        );
        assert_eq!(Timestamp::from_millis(MAX_MILLIS + 1), None);
        assert_eq!(Timestamp::from_millis(MIN_MILLIS - 1), None);
        // AND a receipt time inside is kept, outside is clamped (no wall clock involved)
        assert_eq!(
            Timestamp::from_millis_clamped(1_700_000_000_123).millis(),
            1_700_000_000_123
        );
        assert_eq!(
            Timestamp::from_millis_clamped(i64::MAX).millis(),
            MAX_MILLIS
        );
        assert_eq!(
            Timestamp::from_millis_clamped(i64::MIN).millis(),
            MIN_MILLIS
        );
    }

    #[test]
    fn unknown_enum_values_are_kept() {
        // GIVEN a value from a future version
        let t: EventType = serde_json::from_str("\"SUBSCRIPTION_TELEPORTED\"").unwrap();
        // THEN it round-trips verbatim
        assert_eq!(t, EventType::Other("SUBSCRIPTION_TELEPORTED".into()));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"SUBSCRIPTION_TELEPORTED\""
        );
        let k: EventType = serde_json::from_str("\"SUBSCRIPTION_RENEWED\"").unwrap();
        assert_eq!(k, EventType::SubscriptionRenewed);
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = Timestamp::from_millis(1_753_689_912_307).unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2025-07-28T08:05:12.307Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2025-07-28T08:05:12.307Z\"").unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn timestamps_round_trip_exactly() {
        // Sub-millisecond digits (Pub/Sub publish times have nanoseconds) are
        // truncated on parse, so a parsed timestamp serializes to what it was read as.
        let t: Timestamp = serde_json::from_str("\"2025-07-28T09:05:33.0002Z\"").unwrap();
        assert_eq!(t, Timestamp::from_millis(1_753_693_533_000).unwrap());
        let again: Timestamp = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(again, t);
        // Years RFC 3339 cannot write are not timestamps.
        assert!(Timestamp::from_millis(253_402_300_799_999).is_some()); // 9999-12-31T23:59:59.999Z
        assert!(Timestamp::from_millis(253_402_300_800_000).is_none()); // year 10000
        assert!(Timestamp::from_millis(-62_167_219_200_001).is_none()); // before year 0
        assert!(Timestamp::from_millis(i64::MAX).is_none());
    }

    #[test]
    fn raw_store_floats_round_trip_exactly() {
        // serde_json without `float_roundtrip` reads this 1 ulp off, so an
        // event's `raw` changed between the queue and the webhook.
        let text = r#"{"recentSubscriptionStartDate":1.7536538888888888e+89,"x":0.1}"#;
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        assert_eq!(serde_json::to_string(&v).unwrap(), text);
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = EventId::derive(&["APP_STORE", "uuid-1"]);
        assert_eq!(a, EventId::derive(&["APP_STORE", "uuid-1"]));
        assert_ne!(a, EventId::derive(&["APP_STORE", "uuid-2"]));
        // length prefixing: ("ab","c") != ("a","bc")
        assert_ne!(EventId::derive(&["ab", "c"]), EventId::derive(&["a", "bc"]));
        assert!(a.as_str().starts_with("evt_"));
        assert_eq!(a.as_str().len(), 4 + 32);
        // Pinned: ids are how a redelivery is recognised across deploys, so
        // the derivation never changes (SHA-256 over "storehook/v1" and each
        // part with its u64 big-endian length, first 16 bytes in lowercase hex).
        assert_eq!(a.as_str(), "evt_57469adde87a515175042d2dae41120d");
    }

    #[test]
    fn committed_schema_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schema/event.v1.schema.json"
        );
        let want = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        if std::env::var_os("STOREHOOK_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "schema/event.v1.schema.json is stale: run `STOREHOOK_BLESS=1 cargo test -p storehook-shared committed_schema_is_current` and commit it"
        );
    }
}
