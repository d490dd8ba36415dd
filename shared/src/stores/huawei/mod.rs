//! Huawei AppGallery (HMS Core IAP) key event notifications, legacy (v1) and
//! v2 bodies (specs/huawei.md): verify `statusUpdateNotification` with the
//! app's IAP public key, check the app and environment, optionally replace the
//! notification's receipt with the current state from Huawei's subscription
//! API, and translate into the event language.
//!
//! ORDER notifications (v2, one-time products) carry no signature: they are
//! only accepted when the API credentials are configured, after the order API
//! confirmed them with a receipt signed by the IAP key. Without credentials
//! they are answered 503 `order_verification_unavailable` (Huawei resends, and
//! the 5xx alarm tells the operator to configure the credentials). An ORDER
//! notification is only a trigger: its event type, time and id come from the
//! confirmed receipt, never from its own (unsigned) `notificationType`.
//!
//! Only authenticated data decides: the outer body (v2 `notifyTime`,
//! `applicationId`, `eventType`) is not signed, so `notifyTime` is kept only
//! in `raw`; `occurred_at` comes from signed or API-confirmed times, else
//! `received_at` (see `translate`). Signed content must be a notification
//! (an integer `notificationType`, no receipt fields), and every piece of
//! signed JSON is read strictly (a repeated key refuses it).
//!
//! Answers: 200 `{"errorCode":"0","errorMsg":"success"}` once queued; 400
//! malformed; 401 bad or missing signature, unknown algorithm; 403 another app
//! or an unknown environment; 503 when Huawei's API fails (or the queue does),
//! so Huawei resends.

pub mod api;
pub mod config;
pub mod model;
pub mod sweep;
pub mod translate;
pub mod verify;

pub use config::{CLIENT_SECRET, HuaweiConfig, huawei_config};

use crate::clock::Clock;
use crate::config::ConfigError;
use crate::error::Rejection;
use crate::event::{Environment, Event};
use crate::ingest::{StoreEndpoint, StoreRequest, StoreResponse};
use crate::stores::playstore::links::LinkStore;
use api::{ApiError, HuaweiApi, SignedReceipt};
use async_trait::async_trait;
use model::{
    InAppPurchaseData, NotificationBody, Opaque, OrderNotification, StatusUpdateNotification,
    describe_json_error,
};
use serde_json::{Value, json};
use std::sync::Arc;
use verify::{SignatureAlgorithm, VerifyError, verify_signature};

/// The body Huawei's demos answer on success (Huawei only checks the 200).
pub const SUCCESS_BODY: &str = r#"{"errorCode":"0","errorMsg":"success"}"#;

/// Why a notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HuaweiError {
    /// Not JSON, neither body version, or a required field missing.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// A v2 `eventType` this version does not know (it cannot be authenticated).
    #[error("unsupported eventType {0:?}: expected SUBSCRIPTION or ORDER")]
    UnsupportedEventType(String),
    /// No signature at all.
    #[error("the notification carries no {0}")]
    MissingSignature(&'static str),
    /// The signature failed.
    #[error("statusUpdateNotification: {0}")]
    Verify(VerifyError),
    /// Authentic, but the signed content is not a notification (not a JSON
    /// object, no integer `notificationType`, a receipt's own fields) or it, or
    /// a receipt inside it, repeats a key.
    #[error("malformed statusUpdateNotification: {0}")]
    MalformedNotification(String),
    /// For an app this endpoint does not serve.
    #[error("notification is for another app: {0}")]
    WrongApp(String),
    /// An environment Huawei does not document.
    #[error("notification environment not recognised: {0:?} (expected PROD or SandBox)")]
    WrongEnvironment(String),
    /// An ORDER notification, and no API credentials to confirm it.
    #[error(
        "ORDER notifications are unsigned and can only be accepted after the order API confirms \
         them: set HUAWEI_CLIENT_ID and HUAWEI_CLIENT_SECRET (Huawei will resend)"
    )]
    OrderVerificationUnavailable,
    /// Huawei's API failed (Huawei will resend).
    #[error("{0}")]
    Api(ApiError),
}

impl HuaweiError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedBody(_) => "malformed_body",
            Self::UnsupportedEventType(_) => "unsupported_event_type",
            Self::MissingSignature(_) => "missing_signature",
            Self::Verify(e) => e.code(),
            Self::MalformedNotification(_) => "malformed_notification",
            Self::WrongApp(_) => "wrong_app",
            Self::WrongEnvironment(_) => "wrong_environment",
            Self::OrderVerificationUnavailable => "order_verification_unavailable",
            Self::Api(e) => e.code(),
        }
    }

    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedBody(_)
            | Self::UnsupportedEventType(_)
            | Self::MalformedNotification(_) => 400,
            Self::MissingSignature(_) => 401,
            Self::Verify(e) => e.status(),
            Self::WrongApp(_) | Self::WrongEnvironment(_) => 403,
            Self::OrderVerificationUnavailable | Self::Api(_) => 503,
        }
    }

    /// The HTTP refusal.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(self.status(), self.code(), self.to_string())
    }
}

impl From<ApiError> for HuaweiError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

/// Which body format carried the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyVersion {
    /// Legacy: `statusUpdateNotification` + `notifycationSignature` at the top.
    V1,
    /// `version` v2 with `subNotification` / `orderNotification`.
    V2,
}

impl BodyVersion {
    /// `v1` / `v2`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// Where the subscription snapshot comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptSource {
    /// `latestReceiptInfo` (or `latestExpiredReceiptInfo`) of the notification.
    Notification,
    /// The subscription API's signed answer (the state when storehook asked).
    StoreApi,
}

/// A subscription notification whose signature verified and whose app and
/// environment are accepted.
#[derive(Debug, Clone)]
pub struct VerifiedSubscription {
    /// Body format.
    pub version: BodyVersion,
    /// v2 `notifyTime`: not covered by the signature, so information only
    /// (`raw`); it never becomes `occurred_at`, an id or an order.
    pub notify_time: Option<i64>,
    /// The signed `statusUpdateNotification` exactly as received (the event id derives from it).
    pub signed: Opaque,
    /// The scheme that verified.
    pub algorithm: SignatureAlgorithm,
    /// The decoded notification.
    pub notification: StatusUpdateNotification,
    /// The snapshot's receipt, when there is one.
    pub receipt: Option<InAppPurchaseData>,
    /// Where `receipt` comes from.
    pub receipt_source: Option<ReceiptSource>,
    /// Why an authentic receipt could not be decoded.
    pub receipt_error: Option<String>,
    /// The (accepted) app id.
    pub app_id: String,
    /// PROD / SandBox.
    pub environment: Environment,
    /// Decoded payloads for `event.raw` (only built when configured).
    pub raw: Value,
}

/// A v2 ORDER notification as received (not authenticated yet).
#[derive(Debug, Clone)]
pub struct OrderNotice {
    /// v2 `notifyTime` (unsigned: information only, in `raw`).
    pub notify_time: Option<i64>,
    /// v2 `applicationId` (unsigned).
    pub application_id: Option<String>,
    /// `orderNotification`.
    pub notification: OrderNotification,
}

/// An ORDER notification confirmed by the order API.
#[derive(Debug, Clone)]
pub struct VerifiedOrder {
    /// The notification.
    pub notice: OrderNotice,
    /// The order API's receipt (signature verified).
    pub receipt: InAppPurchaseData,
    /// The (accepted) app id.
    pub app_id: String,
    /// From the receipt's `purchaseType`.
    pub environment: Environment,
    /// Decoded payloads for `event.raw` (only built when configured).
    pub raw: Value,
}

/// A parsed body: a verified subscription notification, or an order
/// notification still to be confirmed with the order API.
#[derive(Debug, Clone)]
pub enum Notice {
    /// `eventType` SUBSCRIPTION, or a legacy body.
    Subscription(Box<VerifiedSubscription>),
    /// `eventType` ORDER.
    Order(OrderNotice),
}

/// The Huawei endpoint's logic: body in, events out.
#[derive(Debug)]
pub struct Huawei {
    config: HuaweiConfig,
    api: Option<HuaweiApi>,
    /// Where each subscription's purchase token is recorded for the sweeper.
    tokens: Option<Arc<dyn LinkStore>>,
}

impl Huawei {
    /// Builds the API client when credentials are configured.
    pub fn new(config: HuaweiConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let setup = |reason: String| ConfigError::Endpoint {
            store: "Huawei",
            reason,
        };
        if config.public_keys.is_empty() {
            return Err(setup("no IAP public key configured".into()));
        }
        let api = config
            .api
            .clone()
            .map(|a| HuaweiApi::new(a, clock).map_err(|e| setup(format!("API: {e}"))))
            .transpose()?;
        Ok(Self {
            config,
            api,
            tokens: None,
        })
    }

    /// Records each verified subscription notification's purchase token in
    /// `tokens` (by storehook subscription id), so that the sweeper can ask
    /// the subscription API about it ([`sweep::HuaweiStatusSource`]).
    pub fn with_token_store(mut self, tokens: Arc<dyn LinkStore>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The API client, when credentials are configured.
    pub fn api(&self) -> Option<&HuaweiApi> {
        self.api.as_ref()
    }

    /// Records the purchase token of a verified subscription notification
    /// (best effort: a failure is logged, the notification still processed).
    async fn record_token(&self, v: &VerifiedSubscription) {
        let Some(tokens) = &self.tokens else {
            return;
        };
        let n = &v.notification;
        let r = v.receipt.as_ref();
        let subscription_id = n
            .subscription_id
            .clone()
            .or_else(|| r.and_then(|r| r.subscription_id.clone()))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let token = n
            .purchase_token
            .clone()
            .or_else(|| r.and_then(|r| r.purchase_token.clone()))
            .or_else(|| n.latest_receipt.clone())
            .filter(|t| !t.is_empty());
        let (Some(subscription_id), Some(token)) = (subscription_id, token) else {
            return;
        };
        let id = crate::event::SubscriptionId::derive(&[
            crate::event::Store::HuaweiAppGallery.as_str(),
            &subscription_id,
        ]);
        let started = r
            .and_then(|r| r.purchased_at_ms().or(r.ori_purchase_time))
            .unwrap_or(0);
        let token = crate::stores::playstore::model::PurchaseToken::new(token.expose());
        if let Err(e) = tokens.record_latest(&id, &token, started).await {
            tracing::warn!(error = %e, "could not record the Huawei purchase token for the sweeper");
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HuaweiConfig {
        &self.config
    }

    /// Parses a body and verifies it as far as possible offline: the
    /// signature, app and environment of a subscription notification; the
    /// shape and app id of an ORDER notification.
    pub fn verify(&self, body: &[u8]) -> Result<Notice, HuaweiError> {
        let body: NotificationBody = crate::json::from_slice(body).map_err(|e| {
            HuaweiError::MalformedBody(format!(
                "expected a Huawei notification JSON object: {}",
                describe_json_error(&e)
            ))
        })?;
        if !body.is_v2() {
            let Some(signed) = body.status_update_notification else {
                return Err(HuaweiError::MalformedBody(
                    "neither a v2 body (eventType, subNotification or orderNotification) nor a \
                     legacy one (statusUpdateNotification)"
                        .into(),
                ));
            };
            let signature = body
                .notifycation_signature
                .or(body.notification_signature)
                .ok_or(HuaweiError::MissingSignature("notifycationSignature"))?;
            return self
                .verify_subscription(
                    BodyVersion::V1,
                    body.notify_time,
                    body.application_id,
                    signed,
                    &signature,
                    body.signature_algorithm.as_deref(),
                )
                .map(|v| Notice::Subscription(Box::new(v)));
        }
        let event_type = body
            .event_type
            .as_deref()
            .map(|t| t.trim().to_ascii_uppercase());
        let is_subscription = match event_type.as_deref() {
            Some("SUBSCRIPTION") => true,
            Some("ORDER") => false,
            Some(other) => {
                return Err(HuaweiError::UnsupportedEventType(
                    other.chars().take(64).collect(),
                ));
            }
            None => body.sub_notification.is_some(),
        };
        if is_subscription {
            let sub = body.sub_notification.ok_or_else(|| {
                HuaweiError::MalformedBody("eventType SUBSCRIPTION without subNotification".into())
            })?;
            let signed = sub.status_update_notification.ok_or_else(|| {
                HuaweiError::MalformedBody(
                    "subNotification without statusUpdateNotification".into(),
                )
            })?;
            let signature = sub
                .notification_signature
                .or(sub.notifycation_signature)
                .ok_or(HuaweiError::MissingSignature("notificationSignature"))?;
            self.verify_subscription(
                BodyVersion::V2,
                body.notify_time,
                body.application_id,
                signed,
                &signature,
                sub.signature_algorithm.as_deref(),
            )
            .map(|v| Notice::Subscription(Box::new(v)))
        } else {
            let notification = body.order_notification.ok_or_else(|| {
                HuaweiError::MalformedBody("eventType ORDER without orderNotification".into())
            })?;
            if notification.notification_type.is_none()
                || notification
                    .purchase_token
                    .as_ref()
                    .is_none_or(Opaque::is_empty)
                || notification
                    .product_id
                    .as_deref()
                    .is_none_or(|p| p.trim().is_empty())
            {
                return Err(HuaweiError::MalformedBody(
                    "orderNotification needs notificationType, purchaseToken and productId".into(),
                ));
            }
            self.check_app(&[("applicationId", body.application_id.as_deref())])?;
            Ok(Notice::Order(OrderNotice {
                notify_time: body.notify_time,
                application_id: body.application_id,
                notification,
            }))
        }
    }

    /// Verify, confirm/enrich with the API where configured, translate.
    pub async fn process(
        &self,
        body: &[u8],
        received_at_ms: i64,
    ) -> Result<Vec<Event>, HuaweiError> {
        match self.verify(body)? {
            Notice::Subscription(mut v) => {
                if let Some(api) = &self.api {
                    self.enrich(api, &mut v).await?;
                }
                self.record_token(&v).await;
                Ok(translate::subscription(
                    &v,
                    &self.config,
                    crate::event::Timestamp::from_millis_clamped(received_at_ms),
                ))
            }
            Notice::Order(notice) => {
                let api = self
                    .api
                    .as_ref()
                    .ok_or(HuaweiError::OrderVerificationUnavailable)?;
                let v = self.confirm_order(api, notice).await?;
                Ok(translate::order(
                    &v,
                    &self.config,
                    crate::event::Timestamp::from_millis_clamped(received_at_ms),
                ))
            }
        }
    }

    fn verify_subscription(
        &self,
        version: BodyVersion,
        notify_time: Option<i64>,
        outer_app_id: Option<String>,
        signed: String,
        signature: &str,
        algorithm: Option<&str>,
    ) -> Result<VerifiedSubscription, HuaweiError> {
        if signed.trim().is_empty() {
            return Err(HuaweiError::MalformedBody(
                "statusUpdateNotification is empty".into(),
            ));
        }
        let algorithm = verify_signature(&self.config.public_keys, algorithm, &signed, signature)
            .map_err(HuaweiError::Verify)?;
        // One strict reading of the signed bytes: a repeated key is refused,
        // so what was verified is what is translated.
        let object = match crate::json::from_str::<Value>(&signed) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                return Err(HuaweiError::MalformedNotification(
                    "not a JSON object".into(),
                ));
            }
            Err(e) => return Err(HuaweiError::MalformedNotification(describe_json_error(&e))),
        };
        check_is_notification(&object)?;
        let notification: StatusUpdateNotification = serde_json::from_value(Value::Object(object))
            .map_err(|e| HuaweiError::MalformedNotification(describe_json_error(&e)))?;

        // The receipt strings are part of the signed statusUpdateNotification, so
        // its signature already authenticates them byte for byte; their own
        // signatures add nothing and are not checked again. Both are signed
        // JSON: a repeated key in either refuses the notification (a receipt
        // that is not JSON at all is kept as an error, below).
        for (what, text) in [
            ("latestReceiptInfo", &notification.latest_receipt_info),
            (
                "latestExpiredReceiptInfo",
                &notification.latest_expired_receipt_info,
            ),
        ] {
            if let Some(text) = text.as_ref().filter(|t| !t.is_empty()) {
                refuse_ambiguous_json(what, text.expose())?;
            }
        }
        let (receipt, receipt_error) = match notification
            .latest_receipt_info
            .as_ref()
            .filter(|r| !r.is_empty())
            .map(|r| ("latestReceiptInfo", r))
            .or_else(|| {
                notification
                    .latest_expired_receipt_info
                    .as_ref()
                    .filter(|r| !r.is_empty())
                    .map(|r| ("latestExpiredReceiptInfo", r))
            }) {
            None => (None, None),
            Some((what, text)) => match crate::json::from_str::<InAppPurchaseData>(text.expose()) {
                Ok(r) => (Some(r), None),
                Err(e) => (
                    None,
                    Some(format!(
                        "{what} is not a receipt: {}",
                        describe_json_error(&e)
                    )),
                ),
            },
        };

        let receipt_app = receipt.as_ref().and_then(|r| r.application_id.clone());
        let app_id = self.check_app(&[
            (
                "statusUpdateNotification.applicationId",
                notification.application_id.as_deref(),
            ),
            ("receipt applicationId", receipt_app.as_deref()),
            ("applicationId", outer_app_id.as_deref()),
        ])?;
        let environment = environment(notification.environment.as_deref(), receipt.as_ref())?;

        let raw = if self.config.include_raw {
            raw_subscription(version, notify_time, outer_app_id.as_deref(), &signed)
        } else {
            Value::Null
        };
        let receipt_source = receipt.as_ref().map(|_| ReceiptSource::Notification);
        Ok(VerifiedSubscription {
            version,
            notify_time,
            signed: Opaque::new(signed),
            algorithm,
            notification,
            receipt,
            receipt_source,
            receipt_error,
            app_id,
            environment,
            raw,
        })
    }

    /// Replaces the notification's receipt with the subscription API's current one.
    async fn enrich(
        &self,
        api: &HuaweiApi,
        v: &mut VerifiedSubscription,
    ) -> Result<(), HuaweiError> {
        let n = &v.notification;
        let r = v.receipt.as_ref();
        let subscription_id = n
            .subscription_id
            .clone()
            .or_else(|| r.and_then(|r| r.subscription_id.clone()))
            .filter(|s| !s.trim().is_empty());
        let token = n
            .purchase_token
            .clone()
            .or_else(|| r.and_then(|r| r.purchase_token.clone()))
            .or_else(|| n.latest_receipt.clone())
            .filter(|t| !t.is_empty());
        let (Some(subscription_id), Some(token)) = (subscription_id, token) else {
            tracing::warn!(
                notification_type = ?n.notification_type,
                "no subscriptionId/purchaseToken to query the subscription API; \
                 using the notification's receipt"
            );
            return Ok(());
        };
        let apptouch = r.and_then(|r| r.account_flag) == Some(1);
        let signed = api
            .subscription(&subscription_id, token.expose(), apptouch)
            .await?;
        let (receipt, json) = self.verified_receipt(&signed)?;
        if let Some(got) = receipt.subscription_id.as_deref()
            && got != subscription_id
        {
            return Err(ApiError::Mismatch("subscriptionId differs".into()).into());
        }
        self.check_api_app(receipt.application_id.as_deref())?;
        if self.config.include_raw {
            v.raw["storeApi"] = json;
        }
        v.receipt = Some(receipt);
        v.receipt_source = Some(ReceiptSource::StoreApi);
        v.receipt_error = None;
        Ok(())
    }

    /// Confirms an ORDER notification with the order API.
    async fn confirm_order(
        &self,
        api: &HuaweiApi,
        notice: OrderNotice,
    ) -> Result<VerifiedOrder, HuaweiError> {
        let n = &notice.notification;
        let (Some(product_id), Some(token)) = (n.product_id.as_deref(), n.purchase_token.as_ref())
        else {
            return Err(HuaweiError::MalformedBody(
                "orderNotification needs purchaseToken and productId".into(),
            ));
        };
        let signed = api.order(product_id.trim(), token.expose()).await?;
        let (receipt, json) = self.verified_receipt(&signed)?;
        if let Some(got) = receipt.product_id.as_deref()
            && got != product_id.trim()
        {
            return Err(ApiError::Mismatch("productId differs".into()).into());
        }
        if let Some(got) = receipt.purchase_token.as_ref()
            && !got.is_empty()
            && got.expose() != token.expose()
        {
            return Err(ApiError::Mismatch("purchaseToken differs".into()).into());
        }
        self.check_api_app(receipt.application_id.as_deref())?;
        // The receipt's app (signed), else the only configured one; the
        // notification's own (unsigned, but already checked to be configured)
        // only when neither says.
        let app_id = receipt
            .application_id
            .clone()
            .or_else(|| self.single_app())
            .or_else(|| notice.application_id.clone())
            .unwrap_or_default();
        let confirmed = translate::OrderState::of(&receipt);
        if n.notification_type != confirmed.notification_type() {
            tracing::warn!(
                notified = ?n.notification_type,
                purchase_state = ?receipt.purchase_state,
                "ORDER notificationType disagrees with the order API's receipt; the receipt decides"
            );
        }
        let environment = if receipt.purchase_type == Some(0) {
            Environment::Sandbox
        } else {
            Environment::Production
        };
        let raw = if self.config.include_raw {
            json!({
                "version": "v2",
                "eventType": "ORDER",
                "notifyTime": notice.notify_time,
                "applicationId": notice.application_id,
                "orderNotification": {
                    "notificationType": n.notification_type,
                    "productId": n.product_id,
                    "purchaseToken": token.expose(),
                },
                "storeApi": json,
            })
        } else {
            Value::Null
        };
        Ok(VerifiedOrder {
            notice,
            receipt,
            app_id,
            environment,
            raw,
        })
    }

    /// Verifies an API receipt's `dataSignature` and decodes it.
    fn verified_receipt(
        &self,
        s: &SignedReceipt,
    ) -> Result<(InAppPurchaseData, Value), HuaweiError> {
        verify_signature(
            &self.config.public_keys,
            s.algorithm.as_deref(),
            s.data.expose(),
            &s.signature,
        )
        .map_err(|e| ApiError::InvalidSignature(e.to_string()))?;
        let json: Value = crate::json::from_str(s.data.expose())
            .map_err(|e| ApiError::Malformed(format!("receipt: {}", describe_json_error(&e))))?;
        let receipt: InAppPurchaseData = serde_json::from_value(json.clone())
            .map_err(|e| ApiError::Malformed(format!("receipt: {}", describe_json_error(&e))))?;
        Ok((receipt, json))
    }

    /// The API's signed receipt must be for a configured app.
    fn check_api_app(&self, app: Option<&str>) -> Result<(), HuaweiError> {
        match app.map(str::trim) {
            Some(a)
                if !self.config.app_ids.is_empty()
                    && !self.config.app_ids.iter().any(|x| x == a) =>
            {
                Err(
                    ApiError::Mismatch(format!("receipt applicationId {a:?} is not configured"))
                        .into(),
                )
            }
            _ => Ok(()),
        }
    }

    fn single_app(&self) -> Option<String> {
        match self.config.app_ids.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    /// Every app id present must be configured; returns the first present
    /// (or the only configured app when the notification names none: the
    /// signature with that app's key is then the proof).
    fn check_app(&self, candidates: &[(&str, Option<&str>)]) -> Result<String, HuaweiError> {
        let mut first = None;
        for (what, id) in candidates {
            let Some(id) = id.map(str::trim).filter(|s| !s.is_empty()) else {
                continue;
            };
            if !self.config.app_ids.is_empty() && !self.config.app_ids.iter().any(|a| a == id) {
                return Err(HuaweiError::WrongApp(format!(
                    "{what} {:?} is not one of HUAWEI_APP_IDS",
                    id.chars().take(64).collect::<String>()
                )));
            }
            first.get_or_insert_with(|| id.to_owned());
        }
        match first {
            Some(id) => Ok(id),
            None if self.config.app_ids.is_empty() => Ok(String::new()),
            None => self.single_app().ok_or_else(|| {
                HuaweiError::WrongApp(
                    "the notification names no applicationId and several apps are configured"
                        .into(),
                )
            }),
        }
    }
}

/// Fields of an `InAppPurchaseData` (receipt / client-side purchase data) that
/// a `statusUpdateNotification` never has at its top level (specs/huawei.md §4, §6).
const RECEIPT_ONLY_FIELDS: [&str; 4] = [
    "purchaseState",
    "purchaseTime",
    "purchaseTimeMillis",
    "kind",
];

/// The IAP key signs more than notifications (client-side purchase data,
/// receipts): signed content is only a notification when it has an integer
/// `notificationType` and none of a receipt's own fields. Anything else posted
/// as `statusUpdateNotification` is refused (400 `malformed_notification`).
fn check_is_notification(o: &serde_json::Map<String, Value>) -> Result<(), HuaweiError> {
    let has_type = match o.get("notificationType") {
        Some(Value::Number(n)) => n.as_i64().is_some(),
        Some(Value::String(s)) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    };
    if !has_type {
        return Err(HuaweiError::MalformedNotification(
            "the signed content is not a notification: it has no integer notificationType \
             (a receipt or purchase data posted as a notification is refused)"
                .into(),
        ));
    }
    if let Some(field) = RECEIPT_ONLY_FIELDS.iter().find(|f| o.contains_key(**f)) {
        return Err(HuaweiError::MalformedNotification(format!(
            "the signed content is not a notification: it has the receipt field {field} \
             (a receipt or purchase data posted as a notification is refused)"
        )));
    }
    Ok(())
}

/// Refuses signed JSON that would read differently strictly and leniently (a
/// repeated key, or nesting beyond the strict limit). Text that is not JSON at
/// all is left to the caller.
fn refuse_ambiguous_json(what: &str, text: &str) -> Result<(), HuaweiError> {
    match crate::json::check_unique_keys(text.as_bytes()) {
        Ok(()) => Ok(()),
        Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() => Ok(()),
        Err(e) => Err(HuaweiError::MalformedNotification(format!(
            "{what}: {}",
            describe_json_error(&e)
        ))),
    }
}

/// `PROD` / `SandBox` (any case); absent: the receipt's `purchaseType` 0 means sandbox.
fn environment(
    env: Option<&str>,
    receipt: Option<&InAppPurchaseData>,
) -> Result<Environment, HuaweiError> {
    match env.map(|e| e.trim().to_ascii_lowercase()) {
        Some(e) if e == "prod" || e == "production" => Ok(Environment::Production),
        Some(e) if e == "sandbox" => Ok(Environment::Sandbox),
        Some(e) if !e.is_empty() => Err(HuaweiError::WrongEnvironment(
            env.unwrap_or_default().chars().take(32).collect(),
        )),
        _ if receipt.and_then(|r| r.purchase_type) == Some(0) => Ok(Environment::Sandbox),
        _ => Ok(Environment::Production),
    }
}

/// The decoded body for `event.raw`: receipts decoded in place where they are JSON.
fn raw_subscription(
    version: BodyVersion,
    notify_time: Option<i64>,
    application_id: Option<&str>,
    signed: &str,
) -> Value {
    let mut inner: Value = serde_json::from_str(signed).unwrap_or(Value::Null);
    for field in ["latestReceiptInfo", "latestExpiredReceiptInfo"] {
        let decoded = inner
            .get(field)
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        if let Some(d) = decoded {
            inner[field] = d;
        }
    }
    json!({
        "version": version.as_str(),
        "notifyTime": notify_time,
        "applicationId": application_id,
        "statusUpdateNotification": inner,
    })
}

/// The Huawei endpoint (route `huawei`).
#[derive(Debug)]
pub struct HuaweiEndpoint(pub Huawei);

impl HuaweiEndpoint {
    /// The endpoint for `config`.
    pub fn new(config: HuaweiConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        Ok(Self(Huawei::new(config, clock)?))
    }

    /// Records purchase tokens for the sweeper (see [`Huawei::with_token_store`]).
    pub fn with_token_store(self, tokens: Arc<dyn LinkStore>) -> Self {
        Self(self.0.with_token_store(tokens))
    }
}

#[async_trait]
impl StoreEndpoint for HuaweiEndpoint {
    fn route(&self) -> &'static str {
        "huawei"
    }

    async fn events(
        &self,
        req: &StoreRequest,
        received_at_ms: i64,
    ) -> Result<Vec<Event>, Rejection> {
        self.0
            .process(&req.body, received_at_ms)
            .await
            .map_err(|e| e.rejection())
    }

    /// Huawei only looks at the 200; the body is what its demos answer.
    fn accepted(&self, _events: &[Event]) -> StoreResponse {
        StoreResponse {
            status: 200,
            body: SUCCESS_BODY.to_owned(),
        }
    }
}
