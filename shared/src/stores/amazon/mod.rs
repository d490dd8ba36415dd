//! Amazon Appstore Real-Time Notifications (specs/amazon.md): Amazon SNS
//! HTTP(S) deliveries whose `Message` is the RTN payload.
//!
//! Every message is authenticated before anything else is believed
//! ([`sns`]): the topic must be one of `AMAZON_TOPIC_ARNS`, the signing
//! certificate must come over HTTPS from `sns.<region>.amazonaws.com` and
//! chain to a trusted root, and the signature (v1 SHA-1, v2 SHA-256) must
//! verify over SNS's canonical string. The RTN payload only says *that*
//! something happened to a receipt: the state comes from the Receipt
//! Verification Service ([`rvs`]), which is required (503 `rvs_unavailable`
//! without it, so Amazon resends once it is configured).
//!
//! Answers: 200 once queued (or for a confirmation message); 400 malformed;
//! 401 not authentic (bad or unsupported signature, untrusted certificate or
//! certificate URL); 403 another topic or app; 503 when the certificate
//! download, RVS or the queue fails (Amazon retries 5xx, never 4xx).
//! An authentic message whose payload cannot be read is forwarded as
//! `STORE_NOTIFICATION` with `details.error`, never dropped.

pub mod config;
pub mod rvs;
pub mod sns;
pub mod sweep;
pub mod translate;

pub use config::{AmazonConfig, RVS_SHARED_SECRET, amazon_config};

use crate::clock::Clock;
use crate::config::ConfigError;
use crate::error::Rejection;
use crate::event::{Event, Timestamp};
use crate::ingest::{StoreEndpoint, StoreRequest};
use async_trait::async_trait;
use rvs::{Answer, Rvs, RvsError};
use serde::Deserialize;
use sns::{CertStore, SnsError, SnsMessage};
use std::sync::Arc;

/// The RTN payload (the SNS `Message`, JSON). Parsed by name; unknown fields ignored.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rtn {
    pub app_package_name: Option<String>,
    pub notification_type: Option<String>,
    pub app_user_id: Option<String>,
    pub receipt_id: Option<String>,
    #[serde(default)]
    pub related_receipts: Option<serde_json::Map<String, serde_json::Value>>,
    pub timestamp: Option<i64>,
    pub beta_product_transaction: Option<bool>,
}

impl Rtn {
    /// `relatedReceipts.cancelledReceiptId` (SUBSCRIPTION_MODIFIED_IMMEDIATE).
    pub fn cancelled_receipt_id(&self) -> Option<&str> {
        self.related_receipts
            .as_ref()?
            .get("cancelledReceiptId")?
            .as_str()
            .filter(|s| !s.trim().is_empty())
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmazonError {
    /// Not JSON, not an SNS message, or a required field missing.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// An SNS `Type` storehook does not know.
    #[error("unsupported SNS message type {0:?}")]
    UnsupportedType(String),
    /// Not authentic.
    #[error("{0}")]
    Sns(SnsError),
    /// A topic not in `AMAZON_TOPIC_ARNS`.
    #[error("message of SNS topic {0:?}, which this endpoint does not accept (AMAZON_TOPIC_ARNS)")]
    WrongTopic(String),
    /// An app not in `AMAZON_APP_PACKAGES`.
    #[error("notification is for another app: {0}")]
    WrongApp(String),
    /// No RVS configured.
    #[error(
        "Amazon notifications carry no state and are only accepted with the Receipt \
         Verification Service: set AMAZON_RVS_SHARED_SECRET (Amazon will resend)"
    )]
    RvsNotConfigured,
    /// RVS failed.
    #[error("{0}")]
    Rvs(RvsError),
    /// The subscription could not be confirmed (auto confirmation).
    #[error("subscription confirmation failed: {0}")]
    ConfirmationFailed(String),
}

impl AmazonError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedBody(_) => "malformed_body",
            Self::UnsupportedType(_) => "unsupported_message_type",
            Self::Sns(e) => e.code(),
            Self::WrongTopic(_) => "wrong_topic",
            Self::WrongApp(_) => "wrong_app",
            Self::RvsNotConfigured => "rvs_unavailable",
            Self::Rvs(e) => e.code(),
            Self::ConfirmationFailed(_) => "subscription_confirmation_failed",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedBody(_) | Self::UnsupportedType(_) => 400,
            Self::Sns(e) => e.status(),
            Self::WrongTopic(_) | Self::WrongApp(_) => 403,
            Self::RvsNotConfigured | Self::Rvs(_) | Self::ConfirmationFailed(_) => 503,
        }
    }

    /// The HTTP refusal.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(self.status(), self.code(), self.to_string())
    }
}

/// An authenticated RTN notification, before RVS.
#[derive(Debug, Clone)]
pub struct VerifiedNotification {
    /// SNS `MessageId` (the same on SNS retries).
    pub message_id: String,
    /// SNS `TopicArn`.
    pub topic_arn: String,
    /// SNS `Timestamp` (signed), ms.
    pub sns_timestamp_ms: Option<i64>,
    /// The signed `Message` text.
    pub message: String,
    /// Its payload, or why it could not be read.
    pub rtn: Result<Rtn, String>,
}

/// What RVS said about the notification's receipts.
#[derive(Debug, Clone)]
pub struct Confirmed {
    /// About `receiptId`; `None` when the payload names none.
    pub receipt: Option<Answer>,
    /// About `relatedReceipts.cancelledReceiptId` (modified immediately).
    pub replaced: Option<(String, Answer)>,
}

/// The Amazon store: SNS authentication, RVS, translation.
#[derive(Debug)]
pub struct Amazon {
    config: AmazonConfig,
    certs: CertStore,
    rvs: Option<Rvs>,
    clock: Arc<dyn Clock>,
}

impl Amazon {
    /// The store for `config`.
    pub fn new(config: AmazonConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let certs =
            CertStore::new(config.certs.clone()).map_err(|reason| ConfigError::Invalid {
                var: "AMAZON_SNS_TRUST_ROOTS",
                reason,
            })?;
        let rvs = match &config.rvs {
            Some(c) => Some(Rvs::new(c.clone()).map_err(|reason| ConfigError::Invalid {
                var: "AMAZON_RVS_URL",
                reason,
            })?),
            None => None,
        };
        Ok(Self {
            config,
            certs,
            rvs,
            clock,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AmazonConfig {
        &self.config
    }

    /// The certificate store (tests: downloads are cached).
    pub fn certs(&self) -> &CertStore {
        &self.certs
    }

    /// Parses and authenticates an SNS message.
    pub async fn authenticate(
        &self,
        body: &[u8],
        header_type: Option<&str>,
    ) -> Result<SnsMessage, AmazonError> {
        let m: SnsMessage = crate::json::from_slice(body).map_err(|e| {
            AmazonError::MalformedBody(crate::stores::huawei::model::describe_json_error(&e))
        })?;
        if !matches!(
            m.kind.as_str(),
            "Notification" | "SubscriptionConfirmation" | "UnsubscribeConfirmation"
        ) {
            return Err(AmazonError::UnsupportedType(
                m.kind.chars().take(64).collect(),
            ));
        }
        if let Some(h) = header_type
            && h != m.kind
        {
            return Err(AmazonError::MalformedBody(format!(
                "x-amz-sns-message-type {:?} does not match Type {:?}",
                h.chars().take(64).collect::<String>(),
                m.kind
            )));
        }
        // Cheap refusals first: nothing is fetched for a foreign topic.
        if !self.config.topic_arns.is_empty() && !self.config.topic_arns.contains(&m.topic_arn) {
            return Err(AmazonError::WrongTopic(
                m.topic_arn.chars().take(256).collect(),
            ));
        }
        let now = self.clock.now().timestamp();
        sns::authenticate(&self.certs, &m, now)
            .await
            .map_err(AmazonError::Sns)?;
        Ok(m)
    }

    /// Handles one SNS delivery: the events of a notification, none for a
    /// (un)subscription confirmation.
    pub async fn process(
        &self,
        body: &[u8],
        header_type: Option<&str>,
        received_at_ms: i64,
    ) -> Result<Vec<Event>, AmazonError> {
        let m = self.authenticate(body, header_type).await?;
        match m.kind.as_str() {
            "SubscriptionConfirmation" => {
                self.confirm(&m).await?;
                Ok(Vec::new())
            }
            "UnsubscribeConfirmation" => {
                tracing::warn!(
                    topic_arn = %m.topic_arn,
                    message_id = %m.message_id,
                    "Amazon SNS: this endpoint was unsubscribed from the topic; notifications stop \
                     until it is added again in the Amazon Developer Console"
                );
                Ok(Vec::new())
            }
            _ => {
                let v = self.verified(m)?;
                let confirmed = self.confirm_receipts(&v).await?;
                Ok(translate::notification(
                    &v,
                    &confirmed,
                    &self.config,
                    Timestamp::from_millis_clamped(received_at_ms),
                ))
            }
        }
    }

    fn verified(&self, m: SnsMessage) -> Result<VerifiedNotification, AmazonError> {
        let rtn = match crate::json::from_str::<Rtn>(&m.message) {
            Ok(r) => Ok(r),
            Err(e) => Err(format!(
                "Message is not an RTN payload: {}",
                crate::stores::huawei::model::describe_json_error(&e)
            )),
        };
        if let Ok(r) = &rtn
            && !self.config.app_packages.is_empty()
        {
            let app = r.app_package_name.clone().unwrap_or_default();
            if !self.config.app_packages.contains(&app) {
                return Err(AmazonError::WrongApp(app.chars().take(256).collect()));
            }
        }
        let sns_timestamp_ms = chrono::DateTime::parse_from_rfc3339(&m.timestamp)
            .ok()
            .map(|t| t.timestamp_millis());
        Ok(VerifiedNotification {
            message_id: m.message_id,
            topic_arn: m.topic_arn,
            sns_timestamp_ms,
            message: m.message,
            rtn,
        })
    }

    async fn confirm_receipts(&self, v: &VerifiedNotification) -> Result<Confirmed, AmazonError> {
        let Ok(rtn) = &v.rtn else {
            return Ok(Confirmed {
                receipt: None,
                replaced: None,
            });
        };
        let rvs = self.rvs.as_ref().ok_or(AmazonError::RvsNotConfigured)?;
        let (Some(user), Some(receipt)) = (
            rtn.app_user_id.as_deref().filter(|s| !s.trim().is_empty()),
            rtn.receipt_id.as_deref().filter(|s| !s.trim().is_empty()),
        ) else {
            return Ok(Confirmed {
                receipt: None,
                replaced: None,
            });
        };
        let answer = rvs.verify(user, receipt).await.map_err(AmazonError::Rvs)?;
        let replaced = match rtn.cancelled_receipt_id() {
            Some(old) if old != receipt => Some((
                old.to_owned(),
                rvs.verify(user, old).await.map_err(AmazonError::Rvs)?,
            )),
            _ => None,
        };
        Ok(Confirmed {
            receipt: Some(answer),
            replaced,
        })
    }

    async fn confirm(&self, m: &SnsMessage) -> Result<(), AmazonError> {
        let token = m.token.as_deref().unwrap_or("");
        if !self.config.auto_confirm {
            // The console step needs the token: it is not a credential for
            // anything but confirming this subscription.
            tracing::warn!(
                topic_arn = %m.topic_arn,
                message_id = %m.message_id,
                token = %token,
                "Amazon SNS subscription confirmation: paste this token into the Amazon Developer \
                 Console (Real-Time Notifications › Confirmation token), or set \
                 AMAZON_SNS_AUTO_CONFIRM=true"
            );
            return Ok(());
        }
        let url = m.subscribe_url.as_deref().unwrap_or("");
        let u = self
            .certs
            .policy()
            .check_url("SubscribeURL", url, false)
            .map_err(AmazonError::Sns)?;
        self.certs
            .confirm_subscription(u)
            .await
            .map_err(AmazonError::ConfirmationFailed)?;
        tracing::warn!(topic_arn = %m.topic_arn, "Amazon SNS subscription confirmed");
        Ok(())
    }
}

/// The Amazon endpoint (route `amazon`).
#[derive(Debug)]
pub struct AmazonEndpoint(pub Amazon);

impl AmazonEndpoint {
    /// The endpoint for `config`.
    pub fn new(config: AmazonConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        Ok(Self(Amazon::new(config, clock)?))
    }
}

#[async_trait]
impl StoreEndpoint for AmazonEndpoint {
    fn route(&self) -> &'static str {
        "amazon"
    }

    async fn events(
        &self,
        req: &StoreRequest,
        received_at_ms: i64,
    ) -> Result<Vec<Event>, Rejection> {
        let header = req
            .headers
            .get("x-amz-sns-message-type")
            .and_then(|v| v.to_str().ok());
        self.0
            .process(&req.body, header, received_at_ms)
            .await
            .map_err(|e| e.rejection())
    }
}
