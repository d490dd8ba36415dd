//! Google Play Developer API (androidpublisher v3) client: service-account
//! OAuth (JWT bearer grant, RFC 7523, signed RS256 with the key of the JSON
//! key file; the access token is cached until shortly before it expires),
//! `purchases.subscriptionsv2.get`, `purchases.products.get` and
//! `purchases.voidedpurchases.list`.
//!
//! Purchase tokens travel only in request paths, each identifier percent-encoded
//! as exactly one path segment ([`path_segment`] refuses empty, `.`, `..` and
//! anything with a `/`); errors are rendered by the shared
//! [`crate::http::describe`] (never the URL) and without Google's
//! free-text messages, so no token can reach a log line. Answers are read with
//! [`crate::json::from_slice`]: a repeated key is an API failure (503).

use super::model::{ProductPurchase, PurchaseToken, SubscriptionPurchaseV2, VoidedPurchasesPage};
use crate::clock::Clock;
use crate::http::oauth::{Issued, TokenCache};
use crate::http::{describe, status_text};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;

/// The OAuth scope of the Play Developer API.
pub const ANDROIDPUBLISHER_SCOPE: &str = "https://www.googleapis.com/auth/androidpublisher";
/// Google's token endpoint (the key file's `token_uri` normally says the same).
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The Play Developer API.
pub const DEFAULT_API_BASE_URL: &str = "https://androidpublisher.googleapis.com";
/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// A service-account key (the JSON key file). `Debug` shows the account only.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// `client_email`.
    pub client_email: String,
    /// `private_key_id` (the assertion's `kid`).
    pub private_key_id: Option<String>,
    /// `token_uri`.
    pub token_uri: Option<String>,
    key: Arc<RsaKeyPair>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccountKey {
    /// Parses the JSON key file (`type: service_account`, RSA `private_key` PEM).
    /// Errors never contain key material.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let f: KeyFile = crate::json::from_str(json)
            .map_err(|e| format!("not a service-account JSON key file (line {})", e.line()))?;
        if f.kind.as_deref().is_some_and(|k| k != "service_account") {
            return Err("the key file's type is not service_account".into());
        }
        let client_email = f
            .client_email
            .filter(|e| !e.is_empty())
            .ok_or("the key file has no client_email")?;
        let pem = f.private_key.ok_or("the key file has no private_key")?;
        let der = pem_der(&pem.replace("\\n", "\n")).ok_or("private_key is not PEM")?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .or_else(|_| RsaKeyPair::from_der(&der))
            .map_err(|_| "private_key is not an RSA key (PKCS#8 or PKCS#1)".to_owned())?;
        Ok(Self {
            client_email,
            private_key_id: f.private_key_id.filter(|k| !k.is_empty()),
            token_uri: f.token_uri.filter(|u| !u.is_empty()),
            key: Arc::new(key),
        })
    }

    /// A signed JWT-bearer assertion for `token_url` at `now`.
    pub fn assertion(&self, token_url: &str, now: DateTime<Utc>) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let iat = now.timestamp();
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": ANDROIDPUBLISHER_SCOPE,
            "aud": token_url,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the OAuth assertion failed".to_owned())?;
        Ok(format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// The DER inside the first PEM block of `pem`.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let mut b64 = String::new();
    let mut inside = false;
    for line in pem.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            break;
        } else if inside {
            b64.push_str(line);
        }
    }
    if b64.is_empty() {
        return None;
    }
    STANDARD.decode(b64.as_bytes()).ok()
}

/// Why the Play Developer API could not answer (retryable: 503, Pub/Sub retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Google Play Developer API unavailable: {0}")]
pub struct ApiError(pub String);

/// A resource, or Google's statement that it does not exist (HTTP 400/404/410:
/// unknown, malformed or long-expired token; retrying cannot help).
#[derive(Debug, Clone)]
pub enum Fetched<T> {
    /// The resource.
    Found {
        /// Parsed.
        value: T,
        /// As JSON, when raw payloads are kept.
        json: Option<serde_json::Value>,
    },
    /// Not found, with a token-free reason.
    NotFound(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<i64>,
}

/// The Play Developer API client (one per process; caches its access token).
pub struct PlayApi {
    http: reqwest::Client,
    key: ServiceAccountKey,
    token_url: String,
    base: reqwest::Url,
    keep_json: bool,
    token: TokenCache<String>,
}

impl fmt::Debug for PlayApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlayApi")
            .field("account", &self.key.client_email)
            .field("token_url", &self.token_url)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl PlayApi {
    /// A client of `base_url` authenticating at `token_url` (default: the key
    /// file's `token_uri`, else Google's). `keep_json`: also return responses as JSON.
    pub fn new(
        http: reqwest::Client,
        key: ServiceAccountKey,
        token_url: Option<&str>,
        base_url: &str,
        clock: Arc<dyn Clock>,
        keep_json: bool,
    ) -> Result<Self, String> {
        let base =
            reqwest::Url::parse(base_url).map_err(|e| format!("API base URL {base_url:?}: {e}"))?;
        if base.cannot_be_a_base() {
            return Err(format!("API base URL {base_url:?} cannot have paths"));
        }
        let token_url = token_url
            .map(str::to_owned)
            .or_else(|| key.token_uri.clone())
            .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned());
        reqwest::Url::parse(&token_url).map_err(|e| format!("token URL {token_url:?}: {e}"))?;
        Ok(Self {
            http,
            key,
            token_url,
            base,
            keep_json,
            token: TokenCache::new(clock),
        })
    }

    /// How many access tokens were requested.
    pub fn token_fetches(&self) -> u64 {
        self.token.fetches()
    }

    /// `<base>/androidpublisher/v3/applications/<segments…>`, each segment
    /// checked by [`path_segment`] and percent-encoded as exactly one segment.
    fn url(&self, segments: &[(&'static str, &str)]) -> Result<reqwest::Url, ApiError> {
        let mut path = self.base.path().trim_end_matches('/').to_owned();
        path.push_str("/androidpublisher/v3/applications");
        for (what, value) in segments {
            path.push('/');
            path.push_str(&path_segment(what, value).map_err(ApiError)?);
        }
        let mut url = self.base.clone();
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        Ok(url)
    }

    /// `purchases.subscriptionsv2.get`.
    #[tracing::instrument(skip_all, fields(package = %package, token = %token.fingerprint()))]
    pub async fn subscription(
        &self,
        package: &str,
        token: &PurchaseToken,
    ) -> Result<Fetched<SubscriptionPurchaseV2>, ApiError> {
        let url = self.url(&[
            ("packageName", package),
            ("", "purchases"),
            ("", "subscriptionsv2"),
            ("", "tokens"),
            ("purchaseToken", token.as_str()),
        ])?;
        self.get(url, "subscriptionsv2.get").await
    }

    /// `purchases.products.get`.
    #[tracing::instrument(skip_all, fields(package = %package, product = %product_id, token = %token.fingerprint()))]
    pub async fn product(
        &self,
        package: &str,
        product_id: &str,
        token: &PurchaseToken,
    ) -> Result<Fetched<ProductPurchase>, ApiError> {
        let url = self.url(&[
            ("packageName", package),
            ("", "purchases"),
            ("", "products"),
            ("productId", product_id),
            ("", "tokens"),
            ("purchaseToken", token.as_str()),
        ])?;
        self.get(url, "products.get").await
    }

    /// One page of `purchases.voidedpurchases.list` with `type=1` (one-time
    /// products and subscriptions): voids Google recorded between `start_ms`
    /// and `end_ms` (Google keeps 30 days), `page_token` from the previous
    /// page's `tokenPagination.nextPageToken`. A 400/404 (a window Google
    /// refuses, an unknown package) is `Fetched::NotFound` with Google's enum.
    #[tracing::instrument(skip_all, fields(package = %package))]
    pub async fn voided_purchases(
        &self,
        package: &str,
        start_ms: i64,
        end_ms: i64,
        page_token: Option<&str>,
    ) -> Result<Fetched<VoidedPurchasesPage>, ApiError> {
        let mut url = self.url(&[
            ("packageName", package),
            ("", "purchases"),
            ("", "voidedpurchases"),
        ])?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("type", "1")
                .append_pair("startTime", &start_ms.to_string())
                .append_pair("endTime", &end_ms.to_string())
                .append_pair("maxResults", &VOIDED_PAGE_SIZE.to_string());
            if let Some(t) = page_token {
                q.append_pair("token", t);
            }
        }
        self.get(url, "voidedpurchases.list").await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: reqwest::Url,
        what: &'static str,
    ) -> Result<Fetched<T>, ApiError> {
        let mut rejected: Option<String> = None;
        loop {
            let token = self
                .token
                .get(rejected.as_ref(), |now| self.fetch_token(now))
                .await?;
            let resp = self
                .http
                .get(url.clone())
                .bearer_auth(&token)
                .header(http::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| ApiError(format!("{what}: {}", describe(&e))))?;
            let status = resp.status().as_u16();
            let body = crate::http::read_limited(resp, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| ApiError(format!("{what} body: {e}")))?;
            match status {
                200..=299 => {
                    let value: T = crate::json::from_slice(&body)
                        .map_err(|e| ApiError(format!("{what} answer: {}", json_error(&e))))?;
                    let json = if self.keep_json {
                        serde_json::from_slice(&body).ok()
                    } else {
                        None
                    };
                    return Ok(Fetched::Found { value, json });
                }
                // The cached token may have been revoked: one retry with a new one.
                401 if rejected.is_none() => rejected = Some(token),
                400 | 404 | 410 => {
                    return Ok(Fetched::NotFound(format!(
                        "{what} answered {}{}",
                        status_text(status),
                        google_error(&body)
                    )));
                }
                401 | 403 => {
                    tracing::error!(
                        status,
                        account = %self.key.client_email,
                        "the Play Developer API refused the service account: invite it in Play Console \
                         (Users and permissions: view financial data, manage orders and subscriptions)"
                    );
                    return Err(ApiError(format!(
                        "{what} answered {}{}",
                        status_text(status),
                        google_error(&body)
                    )));
                }
                _ => {
                    return Err(ApiError(format!(
                        "{what} answered {}{}",
                        status_text(status),
                        google_error(&body)
                    )));
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(account = %self.key.client_email))]
    async fn fetch_token(&self, now: DateTime<Utc>) -> Result<Issued<String>, ApiError> {
        let assertion = self.key.assertion(&self.token_url, now).map_err(ApiError)?;
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let resp = self
            .http
            .post(&self.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| ApiError(format!("OAuth token request: {}", describe(&e))))?;
        let status = resp.status().as_u16();
        let bytes = crate::http::read_limited(resp, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ApiError(format!("OAuth token body: {e}")))?;
        if !(200..300).contains(&status) {
            let code = crate::json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v["error"]
                        .as_str()
                        .map(|s| s.chars().take(64).collect::<String>())
                })
                .unwrap_or_default();
            return Err(ApiError(format!(
                "OAuth token endpoint answered {} {code}",
                status_text(status)
            )));
        }
        let t: TokenResponse = crate::json::from_slice(&bytes)
            .map_err(|e| ApiError(format!("OAuth token response: {}", json_error(&e))))?;
        let value = t
            .access_token
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError("OAuth token response has no access_token".into()))?;
        Ok(Issued {
            value,
            expires_in: t.expires_in,
        })
    }
}

/// Why the identifier `value` (`what`: `purchaseToken`, `productId`,
/// `packageName`) cannot be one path segment of an API URL: empty, `.`, `..`
/// (which a URL resolves away, silently calling another resource) or
/// containing `/`. Otherwise the segment, percent-encoded so that it stays
/// exactly one segment (only `A-Z a-z 0-9 - . _ ~` are left as they are).
/// Constant segments (`what` empty) go through the same check. The error
/// never contains the value.
pub fn path_segment(what: &str, value: &str) -> Result<String, String> {
    let what = if what.is_empty() {
        "path segment"
    } else {
        what
    };
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value == "." || value == ".." {
        return Err(format!("{what} is a dot segment"));
    }
    if value.contains('/') {
        return Err(format!("{what} contains '/'"));
    }
    Ok(percent_encoding::utf8_percent_encode(value, SEGMENT).to_string())
}

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `maxResults` of `voidedpurchases.list` (Google's maximum is 1000).
pub const VOIDED_PAGE_SIZE: usize = 1000;

/// Largest API answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why an answer could not be read, without its content (a repeated key says so).
fn json_error(e: &serde_json::Error) -> String {
    if let Some(refusal) = crate::json::repeated_key_refusal(e) {
        refusal
    } else if e.is_data() {
        format!("unexpected shape (line {} column {})", e.line(), e.column())
    } else {
        format!("not JSON (line {} column {})", e.line(), e.column())
    }
}

/// ` (STATUS/reason)` from Google's error envelope; never the free-text message.
fn google_error(body: &[u8]) -> String {
    let Ok(v) = crate::json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect()
    };
    let status = v["error"]["status"].as_str().map(clean);
    let reason = v["error"]["errors"][0]["reason"].as_str().map(clean);
    match (status, reason) {
        (Some(s), Some(r)) => format!(" ({s}/{r})"),
        (Some(s), None) | (None, Some(s)) => format!(" ({s})"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_key_files_are_refused_without_echoing_them() {
        for (json, want) in [
            ("nope", "not a service-account JSON key file"),
            (r#"{"type":"authorized_user"}"#, "not service_account"),
            (
                r#"{"type":"service_account","private_key":"x"}"#,
                "no client_email",
            ),
            (
                r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
                "not an RSA key",
            ),
        ] {
            let err = ServiceAccountKey::from_json(json).unwrap_err();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("AAAA"));
        }
    }

    #[test]
    fn google_errors_keep_only_enums() {
        let body = br#"{"error":{"code":404,"message":"token abc.def not found","status":"NOT_FOUND","errors":[{"reason":"purchaseTokenNotFound","message":"abc.def"}]}}"#;
        assert_eq!(google_error(body), " (NOT_FOUND/purchaseTokenNotFound)");
        assert_eq!(google_error(b"<html>"), "");
    }
}
