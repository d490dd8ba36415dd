//! App Store Server API client (specs/appstore.md §9): the calls storehook
//! needs when Apple's notifications are not enough — request a test
//! notification and read its status (`storehook test-notification`), page
//! through the notification history (`storehook backfill`), and read every
//! subscription status of a customer (the sweeper's [`super::status`]).
//!
//! Authentication: an ES256 JWT (header `kid`, `typ: JWT`; claims `iss`,
//! `iat`, `exp` = `iat` + 5 minutes, `aud: appstoreconnect-v1`, `bid`) signed
//! with the In-App Purchase key (`.p8`, PKCS#8 EC P-256), cached until one
//! minute before it expires.
//!
//! Trust: every signed object in an answer (`signedPayload`,
//! `signedTransactionInfo`, `signedRenewalInfo`) is verified with the same
//! [`JwsVerifier`] as live notifications, and its app and environment are
//! checked against what was asked, before anything is returned as verified.
//!
//! Errors never carry the URL (paths hold transaction ids, queries pagination
//! tokens), the JWT, or the key.

use super::AppleEnvironment;
use super::model::{NotificationPayload, RenewalInfo, TransactionInfo};
use super::verify::{JwsVerifier, VerifyError};
use crate::clock::Clock;
use crate::config::{ConfigError, Lookup, SecretSetting};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Production host of the App Store Server API.
pub const PRODUCTION_URL: &str = "https://api.storekit.apple.com";
/// Sandbox host of the App Store Server API.
pub const SANDBOX_URL: &str = "https://api.storekit-sandbox.apple.com";
/// `aud` of every token.
pub const AUDIENCE: &str = "appstoreconnect-v1";
/// Lifetime of a token (Apple's libraries use 5 minutes; Apple refuses > 60).
pub const TOKEN_LIFETIME_SECS: i64 = 300;
/// A cached token is renewed this long before it expires.
const TOKEN_RENEW_BEFORE_SECS: i64 = 60;
/// Per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// Largest answer read (a history page holds at most 20 notifications; a
/// status answer one transaction + renewal per subscription group).
const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;

/// Path of Request a Test Notification.
pub const TEST_NOTIFICATION_PATH: &str = "/inApps/v1/notifications/test";
/// Send Consumption Information (v2; the v1 body is for Advanced Commerce only).
pub const CONSUMPTION_PATH: &str = "/inApps/v2/transactions/consumption";
/// Path of Get Notification History.
pub const HISTORY_PATH: &str = "/inApps/v1/notifications/history";
/// Path prefix of Get All Subscription Statuses.
pub const SUBSCRIPTIONS_PATH: &str = "/inApps/v1/subscriptions";

/// The In-App Purchase key: `APPLE_API_PRIVATE_KEY` (the `.p8` PEM) or, in a
/// deployment, the Secrets Manager secret named by
/// `APPLE_API_PRIVATE_KEY_SECRET_ARN` (which wins).
pub const PRIVATE_KEY: SecretSetting = SecretSetting {
    inline: "APPLE_API_PRIVATE_KEY",
    arn: "APPLE_API_PRIVATE_KEY_SECRET_ARN",
};

/// The settings of the App Store Server API client.
#[derive(Clone)]
pub struct ApiSettings {
    /// `APPLE_API_KEY_ID`: the key's id (the JWT's `kid`).
    pub key_id: String,
    /// `APPLE_API_ISSUER_ID`: the issuer id (`iss`).
    pub issuer_id: String,
    /// `APPLE_BUNDLE_ID`: the app (`bid`); answers for another app are refused.
    pub bundle_id: String,
    /// The `.p8` PEM (never shown).
    private_key_pem: String,
    /// `APPLE_API_BASE_URL`: replaces both hosts (tests: a loopback fake).
    pub base_url: Option<String>,
    /// Timeout of each request.
    pub timeout: Duration,
}

impl fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiSettings")
            .field("key_id", &self.key_id)
            .field("issuer_id", &self.issuer_id)
            .field("bundle_id", &self.bundle_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ApiSettings {
    /// Settings given directly (tests, the CLI).
    pub fn new(
        key_id: impl Into<String>,
        issuer_id: impl Into<String>,
        bundle_id: impl Into<String>,
        private_key_pem: impl Into<String>,
    ) -> Self {
        Self {
            key_id: key_id.into(),
            issuer_id: issuer_id.into(),
            bundle_id: bundle_id.into(),
            private_key_pem: private_key_pem.into(),
            base_url: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Points both environments at `url`.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
}

/// Reads the App Store Server API settings:
///
/// | variable | meaning |
/// |---|---|
/// | `APPLE_API_KEY_ID` | the In-App Purchase key's id |
/// | `APPLE_API_ISSUER_ID` | the issuer id (App Store Connect › Users and Access › Integrations) |
/// | `APPLE_API_PRIVATE_KEY` | the key's `.p8` PEM; in a deployment `APPLE_API_PRIVATE_KEY_SECRET_ARN` names a Secrets Manager secret holding it ([`PRIVATE_KEY`]) |
/// | `APPLE_BUNDLE_ID` | the app |
/// | `APPLE_API_BASE_URL` | optional: replaces the production and sandbox hosts (https, or http to loopback) |
///
/// `Ok(None)` when none of the key id, issuer id and key is set (the API is
/// not configured); an error when only some are, or a value is unusable.
/// With a `*_SECRET_ARN`, `l` must be a [`crate::config::WithSecrets`] that
/// resolved [`PRIVATE_KEY`].
pub fn api_settings(l: &impl Lookup) -> Result<Option<ApiSettings>, ConfigError> {
    let key_id = l.get("APPLE_API_KEY_ID").map(|v| v.trim().to_owned());
    let issuer_id = l.get("APPLE_API_ISSUER_ID").map(|v| v.trim().to_owned());
    let key_source = PRIVATE_KEY.source(l);
    if key_id.is_none() && issuer_id.is_none() && key_source.is_none() {
        return Ok(None);
    }
    const WHY: &str = "the App Store Server API needs APPLE_API_KEY_ID, APPLE_API_ISSUER_ID, \
                       APPLE_API_PRIVATE_KEY (or APPLE_API_PRIVATE_KEY_SECRET_ARN) and APPLE_BUNDLE_ID";
    let key_id = key_id.ok_or(ConfigError::Required {
        var: "APPLE_API_KEY_ID",
        why: WHY,
    })?;
    let issuer_id = issuer_id.ok_or(ConfigError::Required {
        var: "APPLE_API_ISSUER_ID",
        why: WHY,
    })?;
    let bundle_id = l
        .get("APPLE_BUNDLE_ID")
        .map(|v| v.trim().to_owned())
        .ok_or(ConfigError::Required {
            var: "APPLE_BUNDLE_ID",
            why: WHY,
        })?;
    let pem = match key_source {
        None => {
            return Err(ConfigError::Required {
                var: "APPLE_API_PRIVATE_KEY",
                why: WHY,
            });
        }
        // `WithSecrets` answers the resolved secret under the inline name.
        Some(_) => l.get(PRIVATE_KEY.inline).ok_or(ConfigError::Secret {
            var: PRIVATE_KEY.arn,
            reason: "the secret was not resolved at start".into(),
        })?,
    };
    // A PEM given through an environment variable may carry literal `\n`.
    let pem = pem.trim().replace("\\n", "\n");
    EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| ConfigError::Invalid {
        var: "APPLE_API_PRIVATE_KEY",
        reason: "not a PKCS#8 EC P-256 private key in PEM (the .p8 file App Store Connect gives)"
            .into(),
    })?;
    let base_url = l
        .get("APPLE_API_BASE_URL")
        .map(|v| v.trim().trim_end_matches('/').to_owned());
    if let Some(url) = &base_url {
        crate::stores::huawei::api::check_url("APPLE_API_BASE_URL", url).map_err(|reason| {
            ConfigError::Invalid {
                var: "APPLE_API_BASE_URL",
                reason,
            }
        })?;
    }
    Ok(Some(ApiSettings {
        key_id,
        issuer_id,
        bundle_id,
        private_key_pem: pem,
        base_url,
        timeout: DEFAULT_TIMEOUT,
    }))
}

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401: Apple refused the token.
    #[error(
        "App Store Server API refused the request token (HTTP 401): check APPLE_API_KEY_ID, \
         APPLE_API_ISSUER_ID, APPLE_API_PRIVATE_KEY and APPLE_BUNDLE_ID, and that the key is an \
         In-App Purchase key of this app's account"
    )]
    Unauthorized,
    /// 429: rate limited (retryable).
    #[error("App Store Server API rate limit reached (HTTP 429){}", apple_text(*.code, .message))]
    RateLimited {
        /// Apple's `errorCode`.
        code: Option<i64>,
        /// Apple's `errorMessage` (sanitized).
        message: String,
    },
    /// Another 4xx: Apple refused the request (not retryable).
    #[error("App Store Server API refused the request (HTTP {status}){}", apple_text(*.code, .message))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Apple's `errorCode`.
        code: Option<i64>,
        /// Apple's `errorMessage` (sanitized).
        message: String,
    },
    /// Transport error, timeout, 5xx or another unexpected status (retryable).
    #[error("App Store Server API unavailable: {0}")]
    Unavailable(String),
    /// The answer is not what the API documents.
    #[error("App Store Server API answer malformed: {0}")]
    Malformed(String),
    /// A signed object of the answer failed verification.
    #[error("App Store Server API answer: {what}: {err}")]
    Verify {
        /// Which object.
        what: &'static str,
        /// Why.
        err: VerifyError,
    },
    /// A verified object is for another app, environment or subscription.
    #[error("App Store Server API answer does not match the request: {0}")]
    Mismatch(String),
}

fn apple_text(code: Option<i64>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(c), false) => format!(": errorCode {c}: {message}"),
        (Some(c), true) => format!(": errorCode {c}"),
        (None, false) => format!(": {message}"),
        (None, true) => String::new(),
    }
}

impl ApiError {
    /// Asking again later may succeed (429, 5xx, transport).
    pub fn retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable(_))
    }
}

/// One send attempt of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendAttempt {
    /// When (ms).
    #[serde(default)]
    pub attempt_date: Option<i64>,
    /// `SUCCESS`, `TIMED_OUT`, … (§9.2).
    #[serde(default)]
    pub send_attempt_result: Option<String>,
}

/// One notification of a history page.
#[derive(Debug, Clone)]
pub struct HistoryItem {
    /// The notification's `signedPayload`, as Apple sent it.
    pub signed_payload: String,
    /// Its send attempts.
    pub send_attempts: Vec<SendAttempt>,
    /// The verified payload, or why it failed verification (app, environment
    /// and signature, as for a live notification).
    pub verified: Result<NotificationPayload, String>,
}

/// One page of Get Notification History.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The notifications.
    pub items: Vec<HistoryItem>,
    /// More pages follow.
    pub has_more: bool,
    /// The token of the next page.
    pub pagination_token: Option<String>,
}

/// The status of a requested test notification.
#[derive(Debug, Clone)]
pub struct TestNotificationStatus {
    /// The TEST notification, verified like a live one, or why it is not
    /// (absent, forged, another app or environment). The send attempts do not
    /// depend on it: they are Apple's answer to the authenticated request.
    pub payload: Result<NotificationPayload, String>,
    /// Apple's send attempts so far (`firstSendAttemptResult` of older
    /// versions becomes one attempt).
    pub send_attempts: Vec<SendAttempt>,
}

/// One verified `lastTransactions` entry of Get All Subscription Statuses.
#[derive(Debug, Clone)]
pub struct LastTransaction {
    /// `status` (1 active, 2 expired, 3 billing retry, 4 grace, 5 revoked).
    pub status: i32,
    /// `originalTransactionId`.
    pub original_transaction_id: String,
    /// The verified transaction.
    pub transaction: TransactionInfo,
    /// The verified renewal info, when present.
    pub renewal: Option<RenewalInfo>,
}

/// A verified answer of Get All Subscription Statuses.
#[derive(Debug, Clone)]
pub struct SubscriptionStatuses {
    /// `environment` of the answer.
    pub environment: AppleEnvironment,
    /// Every `lastTransactions` entry of every subscription group.
    pub last_transactions: Vec<LastTransaction>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
    exp: i64,
    aud: &'a str,
    bid: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppleErrorBody {
    error_code: Option<i64>,
    error_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestTokenAnswer {
    test_notification_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestStatusAnswer {
    signed_payload: Option<String>,
    #[serde(default)]
    send_attempts: Option<Vec<SendAttempt>>,
    first_send_attempt_result: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryAnswer {
    #[serde(default)]
    notification_history: Vec<HistoryEntry>,
    #[serde(default)]
    has_more: bool,
    pagination_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryEntry {
    signed_payload: Option<String>,
    #[serde(default)]
    send_attempts: Vec<SendAttempt>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusAnswer {
    environment: Option<String>,
    bundle_id: Option<String>,
    #[serde(default)]
    data: Vec<StatusGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusGroup {
    #[serde(default)]
    last_transactions: Vec<StatusEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusEntry {
    status: Option<i32>,
    original_transaction_id: Option<String>,
    signed_transaction_info: Option<String>,
    signed_renewal_info: Option<String>,
}

/// The body of Get Notification History.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRequest {
    /// Start of the window (ms).
    pub start_date: i64,
    /// End of the window (ms).
    pub end_date: i64,
}

/// The App Store Server API client: one per process.
pub struct AppleApi {
    client: reqwest::Client,
    settings: ApiSettings,
    key: EncodingKey,
    verifier: Arc<JwsVerifier>,
    clock: Arc<dyn Clock>,
    token: Mutex<Option<(String, i64)>>,
}

impl fmt::Debug for AppleApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppleApi")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AppleApi {
    /// A client for `settings`; signed answers are verified with `verifier`
    /// (build it as the App Store endpoint does: [`JwsVerifier::new`]).
    pub fn new(
        settings: ApiSettings,
        verifier: Arc<JwsVerifier>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let endpoint = |reason: String| ConfigError::Endpoint {
            store: "App Store",
            reason,
        };
        let key = EncodingKey::from_ec_pem(settings.private_key_pem.as_bytes()).map_err(|_| {
            ConfigError::Invalid {
                var: "APPLE_API_PRIVATE_KEY",
                reason: "not a PKCS#8 EC P-256 private key in PEM".into(),
            }
        })?;
        if let Some(url) = &settings.base_url {
            crate::stores::huawei::api::check_url("APPLE_API_BASE_URL", url).map_err(endpoint)?;
        }
        let client = crate::http::client(crate::http::Timeouts::new(
            CONNECT_TIMEOUT,
            settings.timeout,
        ))
        .map_err(|e| endpoint(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            settings,
            key,
            verifier,
            clock,
            token: Mutex::new(None),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ApiSettings {
        &self.settings
    }

    /// The base URL of `env`.
    pub fn base_url(&self, env: AppleEnvironment) -> String {
        match (&self.settings.base_url, env) {
            (Some(u), _) => u.trim_end_matches('/').to_owned(),
            (None, AppleEnvironment::Production) => PRODUCTION_URL.to_owned(),
            (None, AppleEnvironment::Sandbox) => SANDBOX_URL.to_owned(),
        }
    }

    /// The bearer token: cached until a minute before it expires.
    fn token(&self) -> Result<String, ApiError> {
        let now = self.clock.now().timestamp();
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, exp)) = cached.as_ref()
            && now < exp - TOKEN_RENEW_BEFORE_SECS
            && now >= exp - TOKEN_LIFETIME_SECS
        {
            return Ok(token.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.settings.key_id.clone());
        header.typ = Some("JWT".into());
        let exp = now + TOKEN_LIFETIME_SECS;
        let claims = Claims {
            iss: &self.settings.issuer_id,
            iat: now,
            exp,
            aud: AUDIENCE,
            bid: &self.settings.bundle_id,
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|_| ApiError::Unavailable("cannot sign the request token".into()))?;
        *cached = Some((token.clone(), exp));
        Ok(token)
    }

    /// Sends a request and reads a 200 answer's body; every other status is an [`ApiError`].
    async fn call(
        &self,
        method: reqwest::Method,
        env: AppleEnvironment,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ApiError> {
        let url = format!("{}{path_and_query}", self.base_url(env));
        let mut req = self
            .client
            .request(method, &url)
            .bearer_auth(self.token()?)
            .header(http::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(crate::http::describe(&e)))?;
        let status = resp.status().as_u16();
        // 200 with a body; 202 Accepted (Send Consumption Information) without.
        if (200..300).contains(&status) {
            return crate::http::read_limited(resp, MAX_ANSWER_BYTES)
                .await
                .map_err(ApiError::Unavailable);
        }
        if status == 401 {
            // A refused token is not reused.
            *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(ApiError::Unauthorized);
        }
        let body = crate::http::read_limited(resp, 64 * 1024)
            .await
            .unwrap_or_default();
        let apple: Option<AppleErrorBody> = serde_json::from_slice(&body).ok();
        let code = apple.as_ref().and_then(|a| a.error_code);
        let message = apple
            .and_then(|a| a.error_message)
            .map(|m| crate::http::sanitize(&m).chars().take(200).collect())
            .unwrap_or_default();
        Err(match status {
            429 => ApiError::RateLimited { code, message },
            400..=499 => ApiError::Refused {
                status,
                code,
                message,
            },
            500..=599 => ApiError::Unavailable(format!(
                "{}{}",
                crate::http::status_text(status),
                apple_text(code, &message)
            )),
            _ => ApiError::Unavailable(crate::http::status_text(status)),
        })
    }

    /// `PUT /inApps/v2/transactions/consumption/{transactionId}` (Send
    /// Consumption Information, API 1.19+): answers a `CONSUMPTION_REQUEST`.
    /// `body` is the `ConsumptionRequest` JSON ([`crate::consumption`]
    /// validates it). Apple answers 202 Accepted.
    pub async fn send_consumption_information(
        &self,
        env: AppleEnvironment,
        transaction_id: &str,
        body: Vec<u8>,
    ) -> Result<(), ApiError> {
        let path = format!(
            "{CONSUMPTION_PATH}/{}",
            percent_encoding::utf8_percent_encode(transaction_id, PATH_SEGMENT)
        );
        self.call(reqwest::Method::PUT, env, &path, Some(body))
            .await
            .map(|_| ())
    }

    /// `POST /inApps/v1/notifications/test`: asks Apple to send a TEST
    /// notification to the URL configured for `env`; returns its token.
    pub async fn request_test_notification(
        &self,
        env: AppleEnvironment,
    ) -> Result<String, ApiError> {
        let bytes = self
            .call(reqwest::Method::POST, env, TEST_NOTIFICATION_PATH, None)
            .await?;
        let answer: TestTokenAnswer =
            crate::json::from_slice(&bytes).map_err(|e| ApiError::Malformed(json_error(&e)))?;
        answer
            .test_notification_token
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ApiError::Malformed("no testNotificationToken".into()))
    }

    /// `GET /inApps/v1/notifications/test/{token}`: the test notification
    /// (verified) and Apple's send attempts so far.
    pub async fn test_notification_status(
        &self,
        env: AppleEnvironment,
        token: &str,
    ) -> Result<TestNotificationStatus, ApiError> {
        let path = format!(
            "{TEST_NOTIFICATION_PATH}/{}",
            percent_encoding::utf8_percent_encode(token, PATH_SEGMENT)
        );
        let bytes = self.call(reqwest::Method::GET, env, &path, None).await?;
        let answer: TestStatusAnswer =
            crate::json::from_slice(&bytes).map_err(|e| ApiError::Malformed(json_error(&e)))?;
        let payload = match answer.signed_payload {
            None => Err("the answer has no signedPayload".to_owned()),
            Some(jws) => self.verify_notification(&jws, env).map_err(|e| match e {
                NotificationProblem::Verify(err) => format!("signedPayload: {err}"),
                NotificationProblem::Mismatch(m) => m,
            }),
        };
        let mut send_attempts = answer.send_attempts.unwrap_or_default();
        if send_attempts.is_empty()
            && let Some(first) = answer.first_send_attempt_result
        {
            send_attempts.push(SendAttempt {
                attempt_date: None,
                send_attempt_result: Some(first),
            });
        }
        Ok(TestNotificationStatus {
            payload,
            send_attempts,
        })
    }

    /// `POST /inApps/v1/notifications/history[?paginationToken=…]`: one page
    /// of the notifications Apple sent (or tried to send) in the window.
    /// Each item is verified like a live notification; an item that fails
    /// carries why ([`HistoryItem::verified`]) and is never treated as Apple's.
    pub async fn notification_history(
        &self,
        env: AppleEnvironment,
        request: HistoryRequest,
        pagination_token: Option<&str>,
    ) -> Result<HistoryPage, ApiError> {
        let path = match pagination_token {
            Some(t) => format!(
                "{HISTORY_PATH}?paginationToken={}",
                percent_encoding::utf8_percent_encode(t, PATH_SEGMENT)
            ),
            None => HISTORY_PATH.to_owned(),
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| ApiError::Malformed(format!("request: {e}")))?;
        let bytes = self
            .call(reqwest::Method::POST, env, &path, Some(body))
            .await?;
        let answer: HistoryAnswer =
            crate::json::from_slice(&bytes).map_err(|e| ApiError::Malformed(json_error(&e)))?;
        let items = answer
            .notification_history
            .into_iter()
            .map(|entry| {
                let signed_payload = entry.signed_payload.unwrap_or_default();
                let verified =
                    self.verify_notification(&signed_payload, env)
                        .map_err(|e| match e {
                            NotificationProblem::Verify(err) => format!("signedPayload: {err}"),
                            NotificationProblem::Mismatch(m) => m,
                        });
                HistoryItem {
                    signed_payload,
                    send_attempts: entry.send_attempts,
                    verified,
                }
            })
            .collect();
        let pagination_token = answer.pagination_token.filter(|t| !t.is_empty());
        if answer.has_more && pagination_token.is_none() {
            return Err(ApiError::Malformed(
                "hasMore without a paginationToken".into(),
            ));
        }
        Ok(HistoryPage {
            items,
            has_more: answer.has_more,
            pagination_token,
        })
    }

    /// `GET /inApps/v1/subscriptions/{transactionId}`: every subscription
    /// status of the customer, each transaction and renewal info verified and
    /// checked against the app and `env`.
    pub async fn subscription_statuses(
        &self,
        env: AppleEnvironment,
        transaction_id: &str,
    ) -> Result<SubscriptionStatuses, ApiError> {
        let path = format!(
            "{SUBSCRIPTIONS_PATH}/{}",
            percent_encoding::utf8_percent_encode(transaction_id, PATH_SEGMENT)
        );
        let bytes = self.call(reqwest::Method::GET, env, &path, None).await?;
        let answer: StatusAnswer =
            crate::json::from_slice(&bytes).map_err(|e| ApiError::Malformed(json_error(&e)))?;
        if answer.environment.as_deref() != Some(env.as_str()) {
            return Err(ApiError::Mismatch(format!(
                "environment {:?} is not {}",
                answer.environment.as_deref().unwrap_or("(none)"),
                env.as_str()
            )));
        }
        if answer.bundle_id.as_deref() != Some(self.settings.bundle_id.as_str()) {
            return Err(ApiError::Mismatch(format!(
                "bundleId {:?} is not {:?}",
                answer.bundle_id.as_deref().unwrap_or(""),
                self.settings.bundle_id
            )));
        }
        let now_ms = self.clock.now().timestamp_millis();
        let mut last_transactions = Vec::new();
        for entry in answer.data.into_iter().flat_map(|g| g.last_transactions) {
            let jws = entry
                .signed_transaction_info
                .ok_or_else(|| ApiError::Malformed("no signedTransactionInfo".into()))?;
            let transaction = self
                .verifier
                .verify::<TransactionInfo>(&jws, now_ms)
                .map_err(|err| ApiError::Verify {
                    what: "signedTransactionInfo",
                    err,
                })?
                .payload;
            if transaction.bundle_id.as_deref() != Some(self.settings.bundle_id.as_str()) {
                return Err(ApiError::Mismatch(format!(
                    "signedTransactionInfo bundleId {:?} is not {:?}",
                    transaction.bundle_id.as_deref().unwrap_or(""),
                    self.settings.bundle_id
                )));
            }
            check_env(
                "signedTransactionInfo",
                transaction.environment.as_deref(),
                env,
            )?;
            let renewal = match entry.signed_renewal_info {
                Some(jws) => {
                    let r = self
                        .verifier
                        .verify::<RenewalInfo>(&jws, now_ms)
                        .map_err(|err| ApiError::Verify {
                            what: "signedRenewalInfo",
                            err,
                        })?
                        .payload;
                    check_env("signedRenewalInfo", r.environment.as_deref(), env)?;
                    if r.original_transaction_id != transaction.original_transaction_id {
                        return Err(ApiError::Mismatch(
                            "signedRenewalInfo is for another subscription than its transaction"
                                .into(),
                        ));
                    }
                    Some(r)
                }
                None => None,
            };
            // The unsigned `originalTransactionId` and `status` must agree
            // with the signed facts; `status` itself is Apple's answer over TLS.
            let original = transaction.original_transaction_id.clone().ok_or_else(|| {
                ApiError::Malformed("transaction without originalTransactionId".into())
            })?;
            if entry.original_transaction_id.as_deref() != Some(original.as_str()) {
                return Err(ApiError::Mismatch(
                    "originalTransactionId differs from the signed transaction's".into(),
                ));
            }
            let status = entry
                .status
                .filter(|s| (1..=5).contains(s))
                .ok_or_else(|| ApiError::Malformed("status is not 1..5".into()))?;
            last_transactions.push(LastTransaction {
                status,
                original_transaction_id: original,
                transaction,
                renewal,
            });
        }
        Ok(SubscriptionStatuses {
            environment: env,
            last_transactions,
        })
    }

    /// Verifies a notification's `signedPayload` and checks its app and environment.
    fn verify_notification(
        &self,
        jws: &str,
        env: AppleEnvironment,
    ) -> Result<NotificationPayload, NotificationProblem> {
        let now_ms = self.clock.now().timestamp_millis();
        let p = self
            .verifier
            .verify::<NotificationPayload>(jws, now_ms)
            .map_err(NotificationProblem::Verify)?
            .payload;
        let (bundle, environment) = match (&p.data, &p.summary, &p.app_data) {
            (Some(d), _, _) => (d.bundle_id.clone(), d.environment.clone()),
            (None, Some(s), _) => (s.bundle_id.clone(), s.environment.clone()),
            (None, None, Some(a)) => (a.bundle_id.clone(), a.environment.clone()),
            _ => match &p.external_purchase_token {
                Some(t) => (t.bundle_id.clone(), None),
                None => (None, None),
            },
        };
        if bundle.as_deref() != Some(self.settings.bundle_id.as_str()) {
            return Err(NotificationProblem::Mismatch(format!(
                "notification for another app ({:?})",
                bundle.as_deref().unwrap_or("")
            )));
        }
        if let Some(e) = environment
            && e != env.as_str()
        {
            return Err(NotificationProblem::Mismatch(format!(
                "notification environment {e:?} is not {}",
                env.as_str()
            )));
        }
        Ok(p)
    }
}

enum NotificationProblem {
    Verify(VerifyError),
    Mismatch(String),
}

fn check_env(what: &str, got: Option<&str>, env: AppleEnvironment) -> Result<(), ApiError> {
    if got == Some(env.as_str()) {
        Ok(())
    } else {
        Err(ApiError::Mismatch(format!(
            "{what} environment {:?} is not {}",
            got.unwrap_or("(none)"),
            env.as_str()
        )))
    }
}

/// Everything but unreserved characters is escaped in a path segment or query value.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn json_error(e: &serde_json::Error) -> String {
    crate::json::repeated_key_refusal(e).unwrap_or_else(|| {
        format!(
            "not the documented JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::clock::ManualClock;
    use serde_json::json;
    use storehook_testkit::apple_api::{ApiKey, FakeAppleApi, status_answer};
    use storehook_testkit::appstore::TestPki;
    use storehook_testkit::appstore::payloads::{self, BUNDLE_ID, DAY};

    struct Setup {
        fake: FakeAppleApi,
        pki: Arc<TestPki>,
        key: ApiKey,
        clock: Arc<ManualClock>,
    }

    async fn setup() -> Setup {
        let pki = TestPki::new();
        let signer = TestPki {
            root_der: pki.root_der.clone(),
            intermediate_der: pki.intermediate_der.clone(),
            leaf_der: pki.leaf_der.clone(),
            leaf_key_pem: pki.leaf_key_pem.clone(),
        };
        let key = ApiKey::generate();
        let fake = FakeAppleApi::start(key.clone(), BUNDLE_ID, signer).await;
        Setup {
            fake,
            pki: Arc::new(pki),
            key,
            clock: Arc::new(ManualClock::new(chrono::Utc::now())),
        }
    }

    impl Setup {
        fn api_with(&self, key_pem: &str, bundle: &str) -> AppleApi {
            let settings = ApiSettings::new(&self.key.key_id, &self.key.issuer_id, bundle, key_pem)
                .with_base_url(self.fake.url());
            let verifier =
                Arc::new(JwsVerifier::new(std::slice::from_ref(&self.pki.root_der)).unwrap());
            AppleApi::new(settings, verifier, self.clock.clone()).unwrap()
        }
        fn api(&self) -> AppleApi {
            self.api_with(&self.key.private_key_pem, BUNDLE_ID)
        }
    }

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn notification(pki: &TestPki, uuid: &str, at: i64, env: &str) -> String {
        let p = payloads::notification("DID_RENEW", None, uuid, at, env, Some(1));
        let body: serde_json::Value =
            serde_json::from_slice(&pki.notification_body(p, None, None)).unwrap();
        body["signedPayload"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn the_token_is_es256_with_apples_header_and_claims_and_is_cached() {
        let s = setup().await;
        let api = s.api();
        let t1 = api.token().unwrap();
        let header = jsonwebtoken::decode_header(&t1).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(s.key.key_id.as_str()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_audience(&[AUDIENCE]);
        v.validate_exp = false;
        let key = jsonwebtoken::DecodingKey::from_ec_pem(s.key.public_key_pem.as_bytes()).unwrap();
        let c = jsonwebtoken::decode::<serde_json::Value>(&t1, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(c["iss"], json!(s.key.issuer_id));
        assert_eq!(c["bid"], json!(BUNDLE_ID));
        assert_eq!(c["aud"], json!("appstoreconnect-v1"));
        assert_eq!(c["iat"], json!(s.clock.now().timestamp()));
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
        // cached while more than a minute is left, renewed after
        s.clock.advance(chrono::Duration::seconds(200));
        assert_eq!(api.token().unwrap(), t1);
        s.clock.advance(chrono::Duration::seconds(50));
        assert_ne!(api.token().unwrap(), t1);
    }

    #[tokio::test]
    async fn a_valid_token_is_accepted_and_signed_statuses_are_verified() {
        let s = setup().await;
        let now = now_ms();
        let tx = payloads::transaction("1000", "1001", "pro.monthly", now - DAY, 30, "Sandbox");
        let renewal = payloads::renewal("1000", "pro.monthly", true, now - DAY, "Sandbox");
        s.fake.set_statuses(
            "1000",
            status_answer(&s.pki, "Sandbox", BUNDLE_ID, &[(1, tx, Some(renewal))]),
        );
        let answer = s
            .api()
            .subscription_statuses(AppleEnvironment::Sandbox, "1000")
            .await
            .unwrap();
        assert!(s.fake.refused().is_empty(), "{:?}", s.fake.refused());
        assert_eq!(answer.last_transactions.len(), 1);
        let last = &answer.last_transactions[0];
        assert_eq!(last.status, 1);
        assert_eq!(last.transaction.transaction_id.as_deref(), Some("1001"));
        assert_eq!(last.renewal.as_ref().unwrap().auto_renew_status, Some(1));
        // unknown transaction: Apple's 404 with its error code, not retryable
        let err = s
            .api()
            .subscription_statuses(AppleEnvironment::Sandbox, "999")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Refused {
                    status: 404,
                    code: Some(4040010),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.retryable());
        assert!(err.to_string().contains("4040010"), "{err}");
    }

    #[tokio::test]
    async fn a_token_apple_refuses_is_reported_as_401_clearly() {
        let s = setup().await;
        // signed with another key
        let other = ApiKey::generate();
        let err = s
            .api_with(&other.private_key_pem, BUNDLE_ID)
            .request_test_notification(AppleEnvironment::Sandbox)
            .await
            .unwrap_err();
        assert_eq!(err, ApiError::Unauthorized);
        assert!(!err.retryable());
        let text = err.to_string();
        assert!(
            text.contains("401") && text.contains("APPLE_API_KEY_ID"),
            "{text}"
        );
        // for another app
        let err = s
            .api_with(&s.key.private_key_pem, "com.other.app")
            .request_test_notification(AppleEnvironment::Sandbox)
            .await
            .unwrap_err();
        assert_eq!(err, ApiError::Unauthorized);
        // expired: made two hours ago
        let api = s.api();
        s.clock.set(chrono::Utc::now() - chrono::Duration::hours(2));
        let err = api
            .request_test_notification(AppleEnvironment::Sandbox)
            .await
            .unwrap_err();
        assert_eq!(err, ApiError::Unauthorized);
        let refused = s.fake.refused();
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused[0].contains("Signature"), "{refused:?}");
        assert!(refused[1].contains("bid"), "{refused:?}");
        assert_eq!(refused[2], "expired");
        // and the same client works again once its clock is right
        s.clock.set(chrono::Utc::now());
        api.request_test_notification(AppleEnvironment::Sandbox)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_fake_refuses_tokens_apple_would_refuse() {
        // the fake's own checks (aud, kid, typ, lifetime), with tokens made by hand
        let s = setup().await;
        let key = EncodingKey::from_ec_pem(s.key.private_key_pem.as_bytes()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let token = |kid: &str, typ: Option<&str>, aud: &str, lifetime: i64| {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(kid.into());
            h.typ = typ.map(str::to_owned);
            let c = json!({"iss": s.key.issuer_id, "iat": now, "exp": now + lifetime,
                           "aud": aud, "bid": BUNDLE_ID});
            jsonwebtoken::encode(&h, &c, &key).unwrap()
        };
        let client = reqwest::Client::new();
        let url = format!("{}{TEST_NOTIFICATION_PATH}", s.fake.url());
        let status = |t: String| {
            let req = client.post(&url).bearer_auth(t);
            async move { req.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(
            status(token(&s.key.key_id, Some("JWT"), AUDIENCE, 300)).await,
            200
        );
        assert_eq!(
            status(token(&s.key.key_id, Some("JWT"), "appstoreconnect-v2", 300)).await,
            401
        );
        assert_eq!(
            status(token("OTHERKEY", Some("JWT"), AUDIENCE, 300)).await,
            401
        );
        assert_eq!(status(token(&s.key.key_id, None, AUDIENCE, 300)).await, 401);
        assert_eq!(
            status(token(&s.key.key_id, Some("JWT"), AUDIENCE, 3601)).await,
            401
        );
        assert_eq!(s.fake.refused().len(), 4, "{:?}", s.fake.refused());
    }

    #[tokio::test]
    async fn history_is_paged_and_every_payload_verified() {
        let s = setup().await;
        s.fake.set_page_size(2);
        let now = now_ms();
        for i in 0..4 {
            let jws = notification(
                &s.pki,
                &format!("uuid-{i}"),
                now - (10 - i) * DAY / 10,
                "Sandbox",
            );
            s.fake
                .add_history(now - (10 - i) * DAY / 10, &jws, "SUCCESS");
        }
        // forged: signed by an untrusted chain
        let forger = TestPki::new();
        s.fake.add_history(
            now - DAY / 100,
            &notification(&forger, "uuid-f", now - DAY / 100, "Sandbox"),
            "SUCCESS",
        );
        let api = s.api();
        let request = HistoryRequest {
            start_date: now - 2 * DAY,
            end_date: now,
        };
        let mut token: Option<String> = None;
        let mut items = Vec::new();
        let mut pages = 0;
        loop {
            let page = api
                .notification_history(AppleEnvironment::Sandbox, request, token.as_deref())
                .await
                .unwrap();
            pages += 1;
            items.extend(page.items);
            if !page.has_more {
                break;
            }
            token = page.pagination_token;
        }
        assert_eq!(pages, 3);
        assert_eq!(items.len(), 5);
        let ok: Vec<String> = items
            .iter()
            .filter_map(|i| i.verified.as_ref().ok())
            .map(|p| p.notification_uuid.clone().unwrap())
            .collect();
        assert_eq!(ok, ["uuid-0", "uuid-1", "uuid-2", "uuid-3"]);
        let bad = items[4].verified.as_ref().unwrap_err();
        assert!(bad.contains("signedPayload"), "{bad}");
        // the window went to Apple as given
        let sent = s.fake.history_requests();
        assert_eq!(sent.len(), 3);
        assert_eq!(
            sent[0],
            json!({"startDate": request.start_date, "endDate": request.end_date})
        );
    }

    #[tokio::test]
    async fn apples_errors_are_typed_and_retryable_only_when_they_should_be() {
        let s = setup().await;
        let api = s.api();
        let now = now_ms();
        // Apple's own window limit (sandbox: 30 days)
        let err = api
            .notification_history(
                AppleEnvironment::Sandbox,
                HistoryRequest {
                    start_date: now - 40 * DAY,
                    end_date: now,
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Refused {
                    status: 400,
                    code: Some(4000030),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("further in the past"), "{err}");
        s.fake.push_reply(
            429,
            json!({"errorCode": 4290000, "errorMessage": "Rate limit exceeded."}),
        );
        let err = api
            .request_test_notification(AppleEnvironment::Sandbox)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::RateLimited {
                    code: Some(4290000),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.retryable());
        s.fake.push_reply(
            500,
            json!({"errorCode": 5000000, "errorMessage": "An unknown error occurred."}),
        );
        let err = api
            .request_test_notification(AppleEnvironment::Sandbox)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Unavailable(_)), "{err:?}");
        assert!(err.retryable());
        assert!(err.to_string().contains("HTTP 500"), "{err}");
        // errors never carry the URL, its path or the token
        s.fake.push_reply(503, json!({}));
        let err = api
            .subscription_statuses(AppleEnvironment::Sandbox, "s3cretTx")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("s3cretTx") && !text.contains("127.0.0.1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_forged_or_mismatched_status_answer_is_refused() {
        let s = setup().await;
        let now = now_ms();
        let tx = payloads::transaction("1000", "1001", "pro.monthly", now - DAY, 30, "Sandbox");
        let forger = TestPki::new();
        s.fake.set_statuses(
            "1000",
            status_answer(&forger, "Sandbox", BUNDLE_ID, &[(1, tx.clone(), None)]),
        );
        let err = s
            .api()
            .subscription_statuses(AppleEnvironment::Sandbox, "1000")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Verify {
                    what: "signedTransactionInfo",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.retryable());
        // a production transaction in an answer for the sandbox
        let prod =
            payloads::transaction("1000", "1001", "pro.monthly", now - DAY, 30, "Production");
        s.fake.set_statuses(
            "1000",
            status_answer(&s.pki, "Sandbox", BUNDLE_ID, &[(1, prod, None)]),
        );
        let err = s
            .api()
            .subscription_statuses(AppleEnvironment::Sandbox, "1000")
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Mismatch(_)), "{err:?}");
        // the unsigned status must be Apple's 1..5
        s.fake.set_statuses(
            "1000",
            status_answer(&s.pki, "Sandbox", BUNDLE_ID, &[(9, tx, None)]),
        );
        let err = s
            .api()
            .subscription_statuses(AppleEnvironment::Sandbox, "1000")
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Malformed(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_test_notification_is_requested_and_its_status_verified() {
        let s = setup().await;
        s.fake.set_test_result("NO_RESPONSE", 1);
        let api = s.api();
        let token = api
            .request_test_notification(AppleEnvironment::Sandbox)
            .await
            .unwrap();
        let first = api
            .test_notification_status(AppleEnvironment::Sandbox, &token)
            .await
            .unwrap();
        assert!(first.send_attempts.is_empty());
        assert_eq!(
            first.payload.as_ref().unwrap().notification_type.as_deref(),
            Some("TEST")
        );
        let second = api
            .test_notification_status(AppleEnvironment::Sandbox, &token)
            .await
            .unwrap();
        assert_eq!(
            second.send_attempts[0].send_attempt_result.as_deref(),
            Some("NO_RESPONSE")
        );
        // a sandbox TEST notification read as production's is reported, not trusted
        let prod = api
            .test_notification_status(AppleEnvironment::Production, &token)
            .await
            .unwrap();
        let why = prod.payload.unwrap_err();
        assert!(why.contains("environment"), "{why}");
    }

    fn lookup(pairs: Vec<(&'static str, String)>) -> impl Lookup {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn settings_are_all_or_nothing_and_the_key_must_be_a_p8() {
        assert!(api_settings(&lookup(vec![])).unwrap().is_none());
        let key = ApiKey::generate();
        let full = |extra: Vec<(&'static str, String)>| {
            let mut v = vec![
                ("APPLE_API_KEY_ID", key.key_id.clone()),
                ("APPLE_API_ISSUER_ID", key.issuer_id.clone()),
                ("APPLE_BUNDLE_ID", BUNDLE_ID.to_owned()),
                (
                    "APPLE_API_PRIVATE_KEY",
                    key.private_key_pem.replace('\n', "\\n"),
                ),
            ];
            for (k, val) in extra {
                v.retain(|(n, _)| *n != k);
                v.push((k, val));
            }
            v
        };
        let s = api_settings(&lookup(full(vec![]))).unwrap().unwrap();
        assert_eq!(s.key_id, key.key_id);
        assert!(s.base_url.is_none());
        assert!(!format!("{s:?}").contains("PRIVATE KEY"));
        let err =
            api_settings(&lookup(full(vec![("APPLE_API_ISSUER_ID", String::new())]))).unwrap_err();
        assert!(err.to_string().contains("APPLE_API_ISSUER_ID"), "{err}");
        let err = api_settings(&lookup(vec![("APPLE_API_KEY_ID", "K".into())])).unwrap_err();
        assert!(err.to_string().contains("APPLE_API_ISSUER_ID"), "{err}");
        let err = api_settings(&lookup(full(vec![(
            "APPLE_API_PRIVATE_KEY",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into(),
        )])))
        .unwrap_err();
        assert!(
            err.to_string().contains("APPLE_API_PRIVATE_KEY") && !err.to_string().contains("AAAA"),
            "{err}"
        );
        // an unresolved secret ARN is an error, not a silent "not configured"
        let mut v = full(vec![(
            "APPLE_API_PRIVATE_KEY_SECRET_ARN",
            "arn:aws:secretsmanager:x".into(),
        )]);
        v.retain(|(n, _)| *n != "APPLE_API_PRIVATE_KEY");
        let err = api_settings(&lookup(v)).unwrap_err();
        assert!(
            err.to_string().contains("APPLE_API_PRIVATE_KEY_SECRET_ARN"),
            "{err}"
        );
        let err = api_settings(&lookup(full(vec![(
            "APPLE_API_BASE_URL",
            "http://api.example.com".into(),
        )])))
        .unwrap_err();
        assert!(err.to_string().contains("APPLE_API_BASE_URL"), "{err}");
        let s = api_settings(&lookup(full(vec![(
            "APPLE_API_BASE_URL",
            "http://127.0.0.1:9/".into(),
        )])))
        .unwrap()
        .unwrap();
        assert_eq!(s.base_url.as_deref(), Some("http://127.0.0.1:9"));
    }

    /// `APPLE_API_PRIVATE_KEY_SECRET_ARN`: the key is read from Secrets Manager
    /// once ([`crate::config::WithSecrets`], as a Lambda's cold start does) and
    /// the client signs with it (emulator at `STOREHOOK_TEST_AWS_ENDPOINT`).
    #[cfg(feature = "aws")]
    #[tokio::test]
    async fn the_key_is_read_from_its_secrets_manager_secret() {
        let Some(sdk) = storehook_testkit::emulator::test_sdk_config().await else {
            eprintln!(
                "SKIP the_key_is_read_from_its_secrets_manager_secret: STOREHOOK_TEST_AWS_ENDPOINT is not set"
            );
            return;
        };
        let s = setup().await;
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);
        let arn = storehook_testkit::provision::create_webhook_secret(
            &sm,
            &format!("storehook-apple-key-{}", fastrand::u64(..)),
            &s.key.private_key_pem,
        )
        .await
        .unwrap();
        let base = lookup(vec![
            ("APPLE_API_KEY_ID", s.key.key_id.clone()),
            ("APPLE_API_ISSUER_ID", s.key.issuer_id.clone()),
            ("APPLE_BUNDLE_ID", BUNDLE_ID.to_owned()),
            ("APPLE_API_BASE_URL", s.fake.url()),
            ("APPLE_API_PRIVATE_KEY_SECRET_ARN", arn),
        ]);
        let resolved = crate::config::WithSecrets::resolve(base, &sdk, &[PRIVATE_KEY])
            .await
            .unwrap();
        let settings = api_settings(&resolved).unwrap().unwrap();
        let verifier = Arc::new(JwsVerifier::new(std::slice::from_ref(&s.pki.root_der)).unwrap());
        let api = AppleApi::new(settings, verifier, s.clock.clone()).unwrap();
        api.request_test_notification(AppleEnvironment::Sandbox)
            .await
            .unwrap();
        assert!(s.fake.refused().is_empty(), "{:?}", s.fake.refused());
    }
}
