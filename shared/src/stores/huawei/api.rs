//! Huawei's IAP server APIs (specs/huawei.md §5.2): an app-level OAuth token
//! (client credentials, cached until shortly before it expires) and the
//! subscription and order status queries whose signed answers storehook uses
//! as the authoritative state.
//!
//! This module is transport only: it returns the signed receipt as received;
//! the caller verifies `dataSignature` with the IAP public key. Every failure
//! is an [`ApiError`], which the endpoint answers with 503 so Huawei resends
//! the notification. Neither tokens, the client secret nor response bodies are
//! ever logged or put in an error message.

use super::model::{ApiAnswer, Opaque, OrderQuery, SubscriptionQuery, TokenAnswer};
use crate::clock::Clock;
use crate::http::oauth::{Issued, TokenCache};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Huawei's OAuth 2.0 token endpoint.
pub const DEFAULT_OAUTH_URL: &str = "https://oauth-login.cloud.huawei.com/oauth2/v3/token";
/// Subscription API site root (Europe). China: `https://subscr-drcn.iap.cloud.huawei.com.cn`,
/// Asia/Africa/Latin America: `https://subscr-dra.iap.cloud.huawei.asia`,
/// Russia: `https://subscr-drru.iap.cloud.huawei.ru`.
pub const DEFAULT_SUBSCRIPTION_API_URL: &str = "https://subscr-dre.iap.cloud.huawei.eu";
/// Order API site root (Europe); other regions as for subscriptions with `orders-`.
pub const DEFAULT_ORDER_API_URL: &str = "https://orders-dre.iap.cloud.huawei.eu";
/// Subscription API site of AppTouch accounts (`accountFlag` = 1), per Huawei's server demo.
pub const DEFAULT_APPTOUCH_SUBSCRIPTION_API_URL: &str = "https://subscr-at-dre.iap.cloud.huawei.eu";
/// Per-request timeout (the Lambda has 15 s; at most three requests per notification).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);

/// Path of the subscription status query under the subscription site root.
pub const SUBSCRIPTION_PATH: &str = "/sub/applications/v2/purchases/get";
/// Path of the order status query under the order site root.
pub const ORDER_PATH: &str = "/applications/purchases/tokens/verify";

/// Largest API answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Where and how to call Huawei's APIs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// OAuth client id of the app (AppGallery Connect › project › app › OAuth 2.0 client).
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Opaque,
    /// Token endpoint.
    pub oauth_url: String,
    /// Subscription API site root.
    pub subscription_url: String,
    /// Subscription API site root for AppTouch accounts.
    pub apptouch_subscription_url: String,
    /// Order API site root.
    pub order_url: String,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
}

impl ApiConfig {
    /// Credentials with Huawei's default (European) sites.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: Opaque::new(client_secret),
            oauth_url: DEFAULT_OAUTH_URL.into(),
            subscription_url: DEFAULT_SUBSCRIPTION_API_URL.into(),
            apptouch_subscription_url: DEFAULT_APPTOUCH_SUBSCRIPTION_API_URL.into(),
            order_url: DEFAULT_ORDER_API_URL.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Points every URL at one root (tests: a fake server on 127.0.0.1).
    pub fn with_base_url(mut self, base: &str) -> Self {
        let base = base.trim_end_matches('/');
        self.oauth_url = format!("{base}/oauth2/v3/token");
        self.subscription_url = base.to_owned();
        self.apptouch_subscription_url = format!("{base}/apptouch");
        self.order_url = base.to_owned();
        self
    }
}

/// Checks a configured URL: absolute, https (http only to a loopback host, for tests).
pub fn check_url(name: &str, url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{name}: not a URL: {e}"))?;
    let loopback = matches!(
        u.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match u.scheme() {
        "https" if u.host_str().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{name}: must be an https URL (http only to a loopback host)"
        )),
    }
}

/// Why an API call failed. Every variant is answered with 503 (Huawei resends).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Network error, timeout, an HTTP status other than 200, or no token.
    #[error("Huawei API unavailable: {0}")]
    Unavailable(String),
    /// Huawei answered with a `responseCode` other than 0.
    #[error("Huawei API answered responseCode {code}: {message}")]
    Refused {
        /// `responseCode`.
        code: String,
        /// `responseMessage` (Huawei's text, never a token).
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("Huawei API answer malformed: {0}")]
    Malformed(String),
    /// The receipt in the answer does not verify with the IAP public key.
    #[error("Huawei API answer signature: {0}")]
    InvalidSignature(String),
    /// The receipt is for another subscription, product or app than the notification.
    #[error("Huawei API answer does not match the notification: {0}")]
    Mismatch(String),
}

impl ApiError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "store_api_unavailable",
            Self::Refused { .. } => "store_api_refused",
            Self::Malformed(_) => "store_api_malformed",
            Self::InvalidSignature(_) => "store_api_invalid_signature",
            Self::Mismatch(_) => "store_api_mismatch",
        }
    }
}

/// A receipt as an API returned it, not yet verified.
#[derive(Debug, Clone)]
pub struct SignedReceipt {
    /// `InAppPurchaseData` JSON.
    pub data: Opaque,
    /// `dataSignature`.
    pub signature: String,
    /// `signatureAlgorithm`.
    pub algorithm: Option<String>,
}

/// The API client: one per process, built at cold start.
pub struct HuaweiApi {
    client: reqwest::Client,
    config: ApiConfig,
    token: TokenCache<Opaque>,
}

impl fmt::Debug for HuaweiApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HuaweiApi")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HuaweiApi {
    /// A client for `config` (checks the URLs, builds the HTTP client once).
    pub fn new(config: ApiConfig, clock: Arc<dyn Clock>) -> Result<Self, String> {
        check_url("oauth_url", &config.oauth_url)?;
        check_url("subscription_url", &config.subscription_url)?;
        check_url(
            "apptouch_subscription_url",
            &config.apptouch_subscription_url,
        )?;
        check_url("order_url", &config.order_url)?;
        let client = crate::http::client(crate::http::Timeouts::both(config.timeout))
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            client,
            config,
            token: TokenCache::new(clock),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// The current subscription state (`inappPurchaseData`) of a subscription.
    #[tracing::instrument(skip_all, fields(api = "subscription", apptouch = apptouch))]
    pub async fn subscription(
        &self,
        subscription_id: &str,
        purchase_token: &str,
        apptouch: bool,
    ) -> Result<SignedReceipt, ApiError> {
        let root = if apptouch {
            &self.config.apptouch_subscription_url
        } else {
            &self.config.subscription_url
        };
        let url = format!("{}{SUBSCRIPTION_PATH}", root.trim_end_matches('/'));
        let body = serde_json::to_vec(&SubscriptionQuery {
            subscription_id,
            purchase_token,
        })
        .map_err(|e| ApiError::Malformed(format!("request: {e}")))?;
        let answer = self.post_iap(&url, body).await?;
        signed(
            answer.inapp_purchase_data,
            answer.data_signature,
            answer.signature_algorithm,
            "inappPurchaseData",
        )
    }

    /// The state (`purchaseTokenData`) of a one-time purchase.
    #[tracing::instrument(skip_all, fields(api = "order"))]
    pub async fn order(
        &self,
        product_id: &str,
        purchase_token: &str,
    ) -> Result<SignedReceipt, ApiError> {
        let url = format!(
            "{}{ORDER_PATH}",
            self.config.order_url.trim_end_matches('/')
        );
        let body = serde_json::to_vec(&OrderQuery {
            purchase_token,
            product_id,
        })
        .map_err(|e| ApiError::Malformed(format!("request: {e}")))?;
        let answer = self.post_iap(&url, body).await?;
        signed(
            answer.purchase_token_data,
            answer.data_signature,
            answer.signature_algorithm,
            "purchaseTokenData",
        )
    }

    /// POSTs to an IAP API with the app token; on 401 the token is renewed
    /// once and the call repeated.
    async fn post_iap(&self, url: &str, body: Vec<u8>) -> Result<ApiAnswer, ApiError> {
        let mut rejected: Option<Opaque> = None;
        for attempt in 0..2 {
            let token = self
                .token
                .get(rejected.as_ref(), |_| self.fetch_token())
                .await?;
            let auth = format!(
                "Basic {}",
                STANDARD.encode(format!("APPAT:{}", token.expose()))
            );
            let resp = self
                .client
                .post(url)
                .header(http::header::AUTHORIZATION, auth)
                .header(
                    http::header::CONTENT_TYPE,
                    "application/json; charset=UTF-8",
                )
                .body(body.clone())
                .send()
                .await
                .map_err(|e| ApiError::Unavailable(describe(&e)))?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                tracing::info!("Huawei API refused the cached token; renewing it");
                rejected = Some(token);
                continue;
            }
            if status != reqwest::StatusCode::OK {
                return Err(ApiError::Unavailable(crate::http::status_text(
                    status.as_u16(),
                )));
            }
            let bytes = read_limited(resp).await?;
            let answer: ApiAnswer =
                crate::json::from_slice(&bytes).map_err(|e| ApiError::Malformed(json_error(&e)))?;
            return match answer.response_code.as_deref().map(str::trim) {
                Some("0") => Ok(answer),
                code => Err(ApiError::Refused {
                    code: code.unwrap_or("(none)").chars().take(16).collect(),
                    message: scrub(answer.response_message.as_deref().unwrap_or("")),
                }),
            };
        }
        Err(ApiError::Unavailable(
            "HTTP 401 with a freshly issued token".into(),
        ))
    }

    #[tracing::instrument(skip_all, fields(api = "oauth"))]
    async fn fetch_token(&self) -> Result<Issued<Opaque>, ApiError> {
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            form_encode(&self.config.client_id),
            form_encode(self.config.client_secret.expose())
        );
        let resp = self
            .client
            .post(&self.config.oauth_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("OAuth: {}", describe(&e))))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(ApiError::Unavailable(format!(
                "OAuth token request answered {} (check HUAWEI_CLIENT_ID/HUAWEI_CLIENT_SECRET)",
                crate::http::status_text(status.as_u16())
            )));
        }
        let bytes = read_limited(resp).await?;
        let answer: TokenAnswer = crate::json::from_slice(&bytes)
            .map_err(|e| ApiError::Malformed(format!("OAuth answer: {}", json_error(&e))))?;
        let value = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Malformed("OAuth answer without access_token".into()))?;
        tracing::debug!(
            expires_in = answer.expires_in,
            "Huawei app access token issued"
        );
        Ok(Issued {
            value,
            expires_in: answer.expires_in,
        })
    }
}

fn signed(
    data: Option<Opaque>,
    signature: Option<String>,
    algorithm: Option<String>,
    field: &str,
) -> Result<SignedReceipt, ApiError> {
    let data = data
        .filter(|d| !d.is_empty())
        .ok_or_else(|| ApiError::Malformed(format!("no {field}")))?;
    let signature = signature
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::Malformed("no dataSignature".into()))?;
    Ok(SignedReceipt {
        data,
        signature,
        algorithm,
    })
}

/// Huawei's `responseMessage` through the shared sanitizer (anything URL- or
/// token-like blanked), at most 200 characters: it is logged and returned.
fn scrub(message: &str) -> String {
    crate::http::sanitize(message).chars().take(200).collect()
}

/// Reads an answer of at most [`MAX_ANSWER_BYTES`].
async fn read_limited(resp: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    crate::http::read_limited(resp, MAX_ANSWER_BYTES)
        .await
        .map_err(ApiError::Unavailable)
}

/// Why an answer could not be read, without its content. A repeated key is
/// refused like any malformed answer (503: Huawei resends), never read twice.
fn json_error(e: &serde_json::Error) -> String {
    crate::json::repeated_key_refusal(e).unwrap_or_else(|| super::model::describe_json_error(e))
}

/// A transport error as a short, URL-free description (the shared sanitizer).
fn describe(e: &reqwest::Error) -> String {
    crate::http::describe(e)
}

/// `application/x-www-form-urlencoded` encoding of one value (WHATWG URL
/// standard: unreserved bytes as is, space as `+`, everything else `%XX`).
pub(crate) fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::clock::ManualClock;
    use storehook_testkit::loopback::{Seen, Server, response};

    /// A Huawei API on loopback: OAuth issues `tok`, the IAP APIs answer `iap`.
    async fn huawei(
        oauth: impl Fn() -> String + Send + Sync + 'static,
        iap: impl Fn(&Seen) -> Option<String> + Send + Sync + 'static,
    ) -> (Server, HuaweiApi) {
        let server = Server::start(move |seen| {
            if seen.target == "/oauth2/v3/token" {
                Some(oauth())
            } else {
                iap(seen)
            }
        })
        .await;
        let mut config = ApiConfig::new("104", "s3cr3t-client").with_base_url(&server.url);
        config.timeout = Duration::from_millis(500);
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let api = HuaweiApi::new(config, clock).unwrap();
        (server, api)
    }

    fn token_ok() -> String {
        response(200, &[], r#"{"access_token":"tok","expires_in":3600}"#)
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let elsewhere = Server::start(|_| Some(token_ok())).await;
        let location = format!("{}{SUBSCRIPTION_PATH}", elsewhere.url);
        let (server, api) = huawei(token_ok, move |_| {
            Some(response(302, &[("location", location.as_str())], ""))
        })
        .await;
        let err = api
            .subscription("sub", "purchase-token", false)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::Unavailable(m) if m.contains("302")),
            "{err}"
        );
        assert_eq!(super::super::HuaweiError::from(err).status(), 503);
        let seen = server.seen();
        assert_eq!(seen.len(), 2); // OAuth + the one API call
        assert_eq!(seen[1].method, "POST");
        assert!(String::from_utf8_lossy(&seen[1].body).contains("\"subscriptionId\":\"sub\""));
        assert!(elsewhere.seen().is_empty(), "the redirect was followed");
    }

    #[tokio::test]
    async fn a_repeated_key_in_an_answer_is_a_malformed_answer_503() {
        // the IAP answer repeats responseCode
        let (_s, api) = huawei(token_ok, |_| {
            Some(response(
                200,
                &[],
                r#"{"responseCode":"5","responseCode":"0","inappPurchaseData":"{}","dataSignature":"x"}"#,
            ))
        })
        .await;
        let err = api
            .subscription("sub", "purchase-token", false)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::Malformed(m) if m.contains("repeated")),
            "{err}"
        );
        let e = super::super::HuaweiError::from(err);
        assert_eq!((e.status(), e.code()), (503, "store_api_malformed"));
        // the OAuth answer repeats access_token
        let (_s, api) = huawei(
            || {
                response(
                    200,
                    &[],
                    r#"{"access_token":"a","access_token":"b","expires_in":3600}"#,
                )
            },
            |_| None,
        )
        .await;
        let err = api.order("product", "purchase-token").await.unwrap_err();
        assert!(
            matches!(&err, ApiError::Malformed(m) if m.contains("repeated")),
            "{err}"
        );
        // the same answers without the repeated key are read
        let (_s, api) = huawei(token_ok, |_| {
            Some(response(
                200,
                &[],
                r#"{"responseCode":"0","inappPurchaseData":"{}","dataSignature":"x"}"#,
            ))
        })
        .await;
        assert!(
            api.subscription("sub", "purchase-token", false)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_silent_api_times_out_without_leaking_the_secret() {
        let (_s, api) = huawei(token_ok, |_| None).await;
        let started = std::time::Instant::now();
        let err = api
            .subscription("sub", "purchase-token", false)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        let text = err.to_string();
        assert!(text.contains("timeout"), "{text}");
        for secret in ["tok", "purchase-token", "s3cr3t", "127.0.0.1"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("abc-_.*XYZ019"), "abc-_.*XYZ019");
        assert_eq!(form_encode("a b&c=d+e/é"), "a+b%26c%3Dd%2Be%2F%C3%A9");
    }

    #[test]
    fn response_messages_lose_anything_token_like() {
        let token = "00000173741056a37eef310dff9c6a86fec57efafe318ae478e52d9c4d994a8a6e1bd1a7d70b0a9e.1.3456";
        assert_eq!(
            scrub(&format!("purchaseToken {token} is invalid")),
            "purchaseToken <redacted> is invalid"
        );
        assert_eq!(scrub(&"x ".repeat(500)).len(), 200);
    }

    #[test]
    fn urls_must_be_https_except_to_loopback() {
        assert!(check_url("x", "https://subscr-dre.iap.cloud.huawei.eu").is_ok());
        assert!(check_url("x", "http://127.0.0.1:8080").is_ok());
        assert!(check_url("x", "http://localhost:1/x").is_ok());
        assert!(check_url("x", "http://example.com").is_err());
        assert!(check_url("x", "ftp://example.com").is_err());
        assert!(check_url("x", "not a url").is_err());
    }
}
