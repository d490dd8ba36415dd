//! Google Play Real-time developer notifications (RTDN) through a Cloud
//! Pub/Sub push subscription: authenticate the push (OIDC token or URL
//! token), decode `message.data`, read the authoritative state from the Play
//! Developer API, keep one subscription id across `linkedPurchaseToken`
//! chains, and translate into the event language.
//!
//! Answers (through [`crate::ingest::Ingest`]):
//! - 200 once the event is queued; the event id derives from the Pub/Sub
//!   `messageId`, so redeliveries deduplicate;
//! - 401/403 when authentication fails, 400 when the body is not a Pub/Sub
//!   push, 403 when the `packageName` is not configured, 400
//!   `malformed_notification` when a purchase token, product id or package
//!   name cannot be one path segment of an API URL (empty, `.`, `..`, or with
//!   a `/`) — nothing is queued and no API call is made;
//! - an authentic push whose `message.data` cannot be decoded is queued as
//!   `STORE_NOTIFICATION` with `details.error` (never dropped);
//! - 503 when Google's JWKS, the OAuth endpoint, the Play Developer API or the
//!   link store fail, so Pub/Sub redelivers.
//!
//! Purchase tokens never appear in logs or refusal messages (see
//! [`model::PurchaseToken`]).

pub mod api;
pub mod auth;
pub mod config;
pub mod lineage;
pub mod links;
pub mod model;
pub mod sweep;
pub mod translate;
pub mod voided;

pub use config::{
    DEFAULT_JWKS_URL, MIN_PUSH_TOKEN_LEN, PlayStoreConfig, SERVICE_ACCOUNT, playstore_config,
};

use crate::clock::Clock;
use crate::config::ConfigError;
use crate::error::Rejection;
use crate::event::Event;
use crate::ingest::{StoreEndpoint, StoreRequest};
use api::{ApiError, Fetched, PlayApi};
use async_trait::async_trait;
use auth::{AuthError, PushAuthenticator};
use base64::Engine;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use lineage::{WalkError, walk_lineage};
use links::{LinkError, LinkStore};
use model::{PurchaseToken, PushBody};
use std::sync::Arc;
use translate::{Decoded, PlayState, Previous, Push, SubscriptionState, translate};

/// Timeout of one request to Google.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const HTTP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a push was refused or could not be handled now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayStoreError {
    /// Push authentication failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Not a Pub/Sub push body.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// Authentic, but for a package that is not configured.
    #[error("notification is for another app: {0}")]
    WrongApp(String),
    /// The OAuth endpoint or the Play Developer API failed (retryable).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The link store failed (retryable).
    #[error(transparent)]
    Links(#[from] LinkError),
    /// `message.data` that reads two ways (a repeated key: refused, never
    /// translated with one of its values), or an identifier that cannot be one
    /// segment of an API URL (empty, `.`, `..`, or containing `/`: no Play
    /// purchase looks so).
    #[error("malformed notification: {0}")]
    MalformedNotification(String),
    /// The notification needs the Play Developer API but no service account is configured.
    #[error("PLAY_SERVICE_ACCOUNT_JSON is not configured: the Play Developer API cannot be called")]
    ApiNotConfigured,
}

impl From<WalkError> for PlayStoreError {
    fn from(e: WalkError) -> Self {
        match e {
            WalkError::Api(e) => Self::Api(e),
            WalkError::Links(e) => Self::Links(e),
        }
    }
}

impl PlayStoreError {
    /// The HTTP refusal.
    pub fn rejection(&self) -> Rejection {
        let (status, code) = match self {
            Self::Auth(e) => (e.status(), e.code()),
            Self::MalformedBody(_) => (400, "malformed_body"),
            Self::MalformedNotification(_) => (400, "malformed_notification"),
            Self::WrongApp(_) => (403, "wrong_app"),
            Self::Api(_) => (503, "play_api_unavailable"),
            Self::Links(_) => (503, "link_store_unavailable"),
            Self::ApiNotConfigured => (503, "play_api_not_configured"),
        };
        Rejection::new(status, code, self.to_string())
    }
}

/// The Google Play endpoint (route `playstore`): push in, events out.
#[derive(Debug)]
pub struct PlayStoreEndpoint {
    config: PlayStoreConfig,
    auth: PushAuthenticator,
    api: Option<PlayApi>,
    links: Arc<dyn LinkStore>,
}

impl PlayStoreEndpoint {
    /// Builds the HTTP client, the JWKS cache and the API client once (cold start).
    pub fn new(
        config: PlayStoreConfig,
        links: Arc<dyn LinkStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let setup = |reason: String| ConfigError::Endpoint {
            store: "Google Play",
            reason,
        };
        let http = crate::http::client(crate::http::Timeouts::new(
            HTTP_CONNECT_TIMEOUT,
            HTTP_TIMEOUT,
        ))
        .map_err(|e| setup(format!("HTTP client: {e}")))?;
        let auth = PushAuthenticator::new(
            config.push_auth.clone(),
            &config.jwks_url,
            http.clone(),
            clock.clone(),
        );
        let api = config
            .service_account
            .clone()
            .map(|key| {
                PlayApi::new(
                    http,
                    key,
                    config.oauth_token_url.as_deref(),
                    &config.api_base_url,
                    clock,
                    config.include_raw,
                )
                .map_err(setup)
            })
            .transpose()?;
        if config.push_auth.is_open() {
            tracing::warn!(
                "Google Play pushes are NOT authenticated (no OIDC, no push token): local use only"
            );
        }
        Ok(Self {
            config,
            auth,
            api,
            links,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PlayStoreConfig {
        &self.config
    }

    /// The push authenticator (benchmarks, cache inspection).
    pub fn authenticator(&self) -> &PushAuthenticator {
        &self.auth
    }

    /// The Play Developer API client, when configured.
    pub fn api(&self) -> Option<&PlayApi> {
        self.api.as_ref()
    }

    /// Authenticates, decodes, checks the app, reads the state, translates.
    pub async fn process(
        &self,
        req: &StoreRequest,
        received_at_ms: i64,
    ) -> Result<Vec<Event>, PlayStoreError> {
        self.auth.authenticate(req).await?;
        let push = self.decode(&req.body)?;
        self.check_app(&push)?;
        check_identifiers(&push)?;
        let state = self.state(&push).await?;
        Ok(translate(
            &push,
            &state,
            &self.config,
            crate::event::Timestamp::from_millis_clamped(received_at_ms),
        ))
    }

    /// Parses a Pub/Sub push body and decodes `message.data`. A body that is
    /// not a push is an error; undecodable data is not (it is forwarded).
    pub fn decode(&self, body: &[u8]) -> Result<Push, PlayStoreError> {
        let body: PushBody = crate::json::from_slice(body).map_err(|e| {
            PlayStoreError::MalformedBody(format!(
                "expected a Pub/Sub push {{\"message\": {{\"data\", \"messageId\"}}, \"subscription\"}}: {}",
                json_error(&e)
            ))
        })?;
        let message = body.message.ok_or_else(|| {
            PlayStoreError::MalformedBody("not a Pub/Sub push: no message".into())
        })?;
        let message_id = message
            .id()
            .ok_or_else(|| {
                PlayStoreError::MalformedBody("not a Pub/Sub push: no message.messageId".into())
            })?
            .to_owned();
        let publish_time_ms = translate::rfc3339(message.published()).map(|t| t.millis());
        Ok(Push {
            message_id,
            publish_time_ms,
            notification: decode_data(message.data.as_deref(), self.config.include_raw)?,
        })
    }

    /// 403 unless the notification's package is configured.
    pub fn check_app(&self, push: &Push) -> Result<(), PlayStoreError> {
        match &push.notification {
            Ok(d) if !self.config.accepts(&d.notification.package_name) => {
                Err(PlayStoreError::WrongApp(format!(
                    "packageName {:?} is not in PLAY_PACKAGE_NAMES",
                    d.notification
                        .package_name
                        .chars()
                        .take(100)
                        .collect::<String>()
                )))
            }
            _ => Ok(()),
        }
    }

    fn play_api(&self) -> Result<&PlayApi, PlayStoreError> {
        self.api.as_ref().ok_or(PlayStoreError::ApiNotConfigured)
    }

    /// Reads what the notification needs from the Play Developer API.
    pub async fn state(&self, push: &Push) -> Result<PlayState, PlayStoreError> {
        let Ok(d) = &push.notification else {
            return Ok(PlayState::NotNeeded);
        };
        let n = &d.notification;
        let package = n.package_name.as_str();
        let state = if let Some(s) = &n.subscription_notification {
            self.subscription_state(package, &s.purchase_token, s.notification_type == Some(4))
                .await?
        } else if let Some(v) = &n.voided_purchase_notification {
            if v.product_type == Some(1) {
                self.subscription_state(package, &v.purchase_token, false)
                    .await?
            } else {
                PlayState::NotNeeded
            }
        } else if let Some(o) = &n.one_time_product_notification {
            match o.sku.as_deref().filter(|s| !s.is_empty()) {
                None => PlayState::NotFound("the notification has no sku".into()),
                Some(sku) => match self
                    .play_api()?
                    .product(package, sku, &o.purchase_token)
                    .await?
                {
                    Fetched::Found { value, json } => PlayState::Product {
                        purchase: Box::new(value),
                        json,
                    },
                    Fetched::NotFound(reason) => PlayState::NotFound(reason),
                },
            }
        } else {
            PlayState::NotNeeded
        };
        if let PlayState::NotFound(reason) = &state {
            tracing::warn!(message_id = %push.message_id, reason = %reason, "purchase unknown to the Play Developer API");
        }
        Ok(state)
    }

    async fn subscription_state(
        &self,
        package: &str,
        token: &PurchaseToken,
        purchased: bool,
    ) -> Result<PlayState, PlayStoreError> {
        let api = self.play_api()?;
        let (purchase, json) = match api.subscription(package, token).await? {
            Fetched::Found { value, json } => (value, json),
            Fetched::NotFound(reason) => return Ok(PlayState::NotFound(reason)),
        };
        let linked = purchase.linked_purchase_token.clone();
        let walked =
            walk_lineage(api, self.links.as_ref(), package, token, linked.as_ref()).await?;
        let lineage = walked.lineage;
        if !translate::is_replaced(&purchase) {
            // The sweeper asks the API about a subscription's newest live token.
            let started =
                translate::rfc3339(purchase.start_time.as_deref()).map_or(0, |t| t.millis());
            // Best effort: the sweeper falls back to the first token.
            if let Err(e) = self
                .links
                .record_latest(&lineage.subscription_id, token, started)
                .await
            {
                tracing::warn!(error = %e, token = %token.fingerprint(), "could not record the newest purchase token for the sweeper");
            }
        }
        let previous = match (&linked, purchased) {
            (Some(previous), true) => {
                let fetched = match walked.predecessor {
                    Some(f) => f,
                    None => api.subscription(package, previous).await?,
                };
                Some(match fetched {
                    Fetched::Found { value, json } => Previous::Found {
                        purchase: Box::new(value),
                        json,
                    },
                    Fetched::NotFound(_) => Previous::NotFound,
                })
            }
            _ => None,
        };
        Ok(PlayState::Subscription(Box::new(SubscriptionState {
            purchase,
            json,
            lineage,
            previous,
        })))
    }
}

/// 400 `malformed_notification` unless every identifier that goes into an API
/// URL (package name, purchase tokens, a present product id) can be exactly one
/// path segment. Checked before any API call.
pub fn check_identifiers(push: &Push) -> Result<(), PlayStoreError> {
    let Ok(d) = &push.notification else {
        return Ok(());
    };
    let n = &d.notification;
    let mut ids: Vec<(&'static str, &str)> = vec![("packageName", n.package_name.as_str())];
    if let Some(s) = &n.subscription_notification {
        ids.push((
            "subscriptionNotification.purchaseToken",
            s.purchase_token.as_str(),
        ));
    }
    if let Some(o) = &n.one_time_product_notification {
        ids.push((
            "oneTimeProductNotification.purchaseToken",
            o.purchase_token.as_str(),
        ));
        if let Some(sku) = &o.sku {
            ids.push(("oneTimeProductNotification.sku", sku.as_str()));
        }
    }
    if let Some(v) = &n.voided_purchase_notification {
        ids.push((
            "voidedPurchaseNotification.purchaseToken",
            v.purchase_token.as_str(),
        ));
    }
    for (what, value) in ids {
        api::path_segment(what, value).map_err(PlayStoreError::MalformedNotification)?;
    }
    Ok(())
}

/// A serde_json error without any of the input's content.
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let text = e.to_string();
            if text.starts_with("missing field") {
                text
            } else {
                format!(
                    "unexpected JSON shape at line {}, column {}",
                    e.line(),
                    e.column()
                )
            }
        }
        Category::Syntax | Category::Eof => {
            format!("not JSON (line {}, column {})", e.line(), e.column())
        }
        Category::Io => "unreadable".into(),
    }
}

/// Decodes `message.data` (standard base64, URL-safe accepted) into a
/// notification. Data that cannot be decoded is the inner error (the push is
/// forwarded); JSON with a repeated key is refused (the outer error).
fn decode_data(
    data: Option<&str>,
    keep_json: bool,
) -> Result<Result<Decoded, String>, PlayStoreError> {
    let Some(data) = data.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(Err("message.data is missing or empty".to_owned()));
    };
    let Ok(bytes) = B64.decode(data).or_else(|_| B64URL.decode(data)) else {
        return Ok(Err("message.data is not base64".to_owned()));
    };
    // One strict reading: JSON that reads two ways is refused, not translated
    // with whichever value a parser keeps.
    if let Err(e) = crate::json::check_unique_keys(&bytes)
        && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok()
    {
        let why = if crate::json::is_strict_refusal(&e) {
            e.to_string()
        } else {
            json_error(&e)
        };
        return Err(PlayStoreError::MalformedNotification(format!(
            "message.data: {why}"
        )));
    }
    let notification = match crate::json::from_slice(&bytes) {
        Ok(n) => n,
        Err(e) => {
            return Ok(Err(format!(
                "message.data is not a DeveloperNotification: {}",
                json_error(&e)
            )));
        }
    };
    let json = if keep_json {
        crate::json::from_slice(&bytes).ok()
    } else {
        None
    };
    Ok(Ok(Decoded { notification, json }))
}

#[async_trait]
impl StoreEndpoint for PlayStoreEndpoint {
    fn route(&self) -> &'static str {
        "playstore"
    }

    async fn events(
        &self,
        req: &StoreRequest,
        received_at_ms: i64,
    ) -> Result<Vec<Event>, Rejection> {
        self.process(req, received_at_ms)
            .await
            .map_err(|e| e.rejection())
    }
}
