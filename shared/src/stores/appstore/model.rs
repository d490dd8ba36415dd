//! App Store Server Notifications V2 wire models (specs/appstore.md §4–6).
//!
//! Every field is optional and unknown fields are ignored, exactly like Apple's
//! own libraries: a notification is never rejected for a field we do not know.
//! Enumerations stay strings/integers here and are interpreted in `translate`.

use serde::{Deserialize, Serialize};

/// The HTTP body Apple POSTs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationBody {
    /// The compact JWS.
    pub signed_payload: String,
}

/// `responseBodyV2DecodedPayload`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPayload {
    pub notification_type: Option<String>,
    pub subtype: Option<String>,
    #[serde(rename = "notificationUUID")]
    pub notification_uuid: Option<String>,
    pub version: Option<String>,
    pub signed_date: Option<i64>,
    pub data: Option<NotificationData>,
    pub summary: Option<Summary>,
    pub external_purchase_token: Option<ExternalPurchaseToken>,
    pub app_data: Option<AppData>,
}

/// `data`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationData {
    pub app_apple_id: Option<i64>,
    pub bundle_id: Option<String>,
    pub bundle_version: Option<String>,
    pub environment: Option<String>,
    pub signed_transaction_info: Option<String>,
    pub signed_renewal_info: Option<String>,
    pub status: Option<i32>,
    pub consumption_request_reason: Option<String>,
}

/// `summary` (RENEWAL_EXTENSION / SUMMARY).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub environment: Option<String>,
    pub app_apple_id: Option<i64>,
    pub bundle_id: Option<String>,
    pub product_id: Option<String>,
    pub request_identifier: Option<String>,
    pub storefront_country_codes: Option<Vec<String>>,
    pub succeeded_count: Option<i64>,
    pub failed_count: Option<i64>,
}

/// `externalPurchaseToken` (EXTERNAL_PURCHASE_TOKEN).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalPurchaseToken {
    pub external_purchase_id: Option<String>,
    pub token_creation_date: Option<i64>,
    pub app_apple_id: Option<i64>,
    pub bundle_id: Option<String>,
    pub token_expiration_date: Option<i64>,
    pub token_type: Option<String>,
}

/// `appData` (RESCIND_CONSENT).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppData {
    pub app_apple_id: Option<i64>,
    pub bundle_id: Option<String>,
    pub environment: Option<String>,
    pub signed_app_transaction_info: Option<String>,
}

/// `JWSTransactionDecodedPayload`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionInfo {
    pub transaction_id: Option<String>,
    pub original_transaction_id: Option<String>,
    pub web_order_line_item_id: Option<String>,
    pub bundle_id: Option<String>,
    pub product_id: Option<String>,
    pub subscription_group_identifier: Option<String>,
    pub purchase_date: Option<i64>,
    pub original_purchase_date: Option<i64>,
    pub expires_date: Option<i64>,
    pub quantity: Option<i64>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub app_account_token: Option<String>,
    pub in_app_ownership_type: Option<String>,
    pub signed_date: Option<i64>,
    pub revocation_reason: Option<i32>,
    pub revocation_date: Option<i64>,
    pub is_upgraded: Option<bool>,
    pub offer_type: Option<i32>,
    pub offer_identifier: Option<String>,
    pub environment: Option<String>,
    pub storefront: Option<String>,
    pub storefront_id: Option<String>,
    pub transaction_reason: Option<String>,
    pub currency: Option<String>,
    /// Milliunits of `currency`.
    pub price: Option<i64>,
    pub offer_discount_type: Option<String>,
    pub app_transaction_id: Option<String>,
    pub offer_period: Option<String>,
    pub revocation_type: Option<String>,
    /// Milliunits of a percent (50000 = 50 %).
    pub revocation_percentage: Option<i64>,
}

/// `JWSRenewalInfoDecodedPayload`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalInfo {
    pub original_transaction_id: Option<String>,
    pub product_id: Option<String>,
    pub auto_renew_product_id: Option<String>,
    pub auto_renew_status: Option<i32>,
    pub expiration_intent: Option<i32>,
    pub is_in_billing_retry_period: Option<bool>,
    pub grace_period_expires_date: Option<i64>,
    pub price_increase_status: Option<i32>,
    pub offer_type: Option<i32>,
    pub offer_identifier: Option<String>,
    pub offer_discount_type: Option<String>,
    pub signed_date: Option<i64>,
    pub environment: Option<String>,
    pub recent_subscription_start_date: Option<i64>,
    pub renewal_date: Option<i64>,
    pub currency: Option<String>,
    /// Milliunits of `currency`.
    pub renewal_price: Option<i64>,
    pub app_account_token: Option<String>,
    pub app_transaction_id: Option<String>,
}

/// Objects verified with their own `signedDate` as the certificate-validity instant.
pub trait SignedDate {
    /// `signedDate` in UNIX ms, if present.
    fn signed_date(&self) -> Option<i64>;
}

impl SignedDate for NotificationPayload {
    fn signed_date(&self) -> Option<i64> {
        self.signed_date
    }
}

impl SignedDate for TransactionInfo {
    fn signed_date(&self) -> Option<i64> {
        self.signed_date
    }
}

impl SignedDate for RenewalInfo {
    fn signed_date(&self) -> Option<i64> {
        self.signed_date
    }
}
