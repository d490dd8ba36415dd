//! Pub/Sub push authentication.
//!
//! - **OIDC** (recommended): the push carries `Authorization: Bearer <JWT>`, a
//!   Google-signed ID token. Verified here: RS256 only, signature with the key
//!   of Google's JWKS whose `kid` matches (cached with the HTTP `max-age` as TTL,
//!   refetched once on an unknown `kid` but at most every
//!   [`MIN_REFETCH_SECS`]; concurrent refreshes coalesce into one request; a
//!   failed fetch is remembered, so a failing endpoint is asked at most once
//!   per [`MIN_REFETCH_SECS`] — meanwhile the cached keys are used if any, else
//!   503 `jwks_unavailable`),
//!   `iss`, `aud`, `email` (the push service account), `email_verified`, `exp` and
//!   `iat` within [`CLOCK_SKEW_SECS`] of the injected clock.
//! - **Query token** (for deployments without OIDC): the push endpoint URL
//!   carries `?token=<secret>`, compared in constant time.
//!
//! When both are configured both must pass.

use crate::clock::Clock;
use crate::ingest::StoreRequest;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Tolerated clock difference for `exp` and `iat`.
pub const CLOCK_SKEW_SECS: i64 = 60;
/// An unknown `kid` refetches the JWKS only if the last fetch is at least this old.
pub const MIN_REFETCH_SECS: i64 = 30;
/// JWKS TTL when Google sends no `max-age`.
pub const DEFAULT_JWKS_TTL_SECS: i64 = 3600;
/// Bounds of the JWKS TTL taken from `max-age`.
pub const JWKS_TTL_BOUNDS_SECS: (i64, i64) = (60, 86_400);
/// How long past its TTL a JWKS is still used when Google's endpoint fails.
pub const JWKS_STALE_GRACE_SECS: i64 = 86_400;
/// Largest JWKS document read (Google's is about 2 KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Longest `Authorization` header accepted.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Issuers of Google ID tokens.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// base64url, padding optional.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A secret string: redacted in `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret (only to compare or send it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What an OIDC push token must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// `aud`: the audience configured on the push subscription.
    pub audience: String,
    /// `email`: the service account the push subscription authenticates as.
    pub service_account: String,
}

/// How pushes are authenticated (at least one in production).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushAuthConfig {
    /// OIDC token verification.
    pub oidc: Option<OidcConfig>,
    /// Shared secret in the push URL's `?token=`.
    pub query_token: Option<Secret>,
}

impl PushAuthConfig {
    /// Whether nothing is checked (local use only; the Lambda refuses to start so).
    pub fn is_open(&self) -> bool {
        self.oidc.is_none() && self.query_token.is_none()
    }
}

/// Why a push was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error(
        "missing Authorization: Bearer token (configure OIDC authentication on the push subscription)"
    )]
    MissingBearer,
    /// Not a compact JWT.
    #[error("malformed bearer token: {0}")]
    MalformedToken(String),
    /// `alg` other than RS256.
    #[error("unsupported token algorithm {0:?}: Google signs push tokens with RS256 only")]
    UnsupportedAlgorithm(String),
    /// `kid` missing or not in Google's JWKS (even after a refresh).
    #[error("token key id is not in Google's JWKS")]
    UnknownKey,
    /// Signature does not verify.
    #[error("token signature does not verify")]
    InvalidSignature,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// `iat` in the future, or no `exp`/`iat`.
    #[error("token issue time is invalid: {0}")]
    InvalidIssueTime(String),
    /// `iss` is not Google.
    #[error("token issuer is not Google")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("token audience is not the configured PLAY_PUSH_AUDIENCE")]
    WrongAudience,
    /// `email` is not the configured push service account.
    #[error("token is not for the configured push service account")]
    WrongServiceAccount,
    /// `email_verified` is not true.
    #[error("token email is not verified")]
    EmailNotVerified,
    /// No `?token=` in the push URL.
    #[error("missing push token (?token=) in the push endpoint URL")]
    MissingQueryToken,
    /// Wrong `?token=`.
    #[error("invalid push token")]
    InvalidQueryToken,
    /// Google's JWKS could not be fetched and no cached key applies.
    #[error("Google's signing keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// HTTP status: 401 unauthenticated, 403 authenticated as someone else, 503 retry.
    pub fn status(&self) -> u16 {
        match self {
            Self::WrongServiceAccount | Self::EmailNotVerified => 403,
            Self::KeysUnavailable(_) => 503,
            _ => 401,
        }
    }

    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingBearer => "missing_token",
            Self::MalformedToken(_) => "malformed_token",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "token_expired",
            Self::InvalidIssueTime(_) => "invalid_issue_time",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongServiceAccount => "wrong_service_account",
            Self::EmailNotVerified => "email_not_verified",
            Self::MissingQueryToken => "missing_push_token",
            Self::InvalidQueryToken => "invalid_push_token",
            Self::KeysUnavailable(_) => "jwks_unavailable",
        }
    }
}

/// One verification key of the JWKS.
pub struct JwksKey(ParsedPublicKey);

impl fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwksKey(RSA)")
    }
}

/// A fetched JWKS.
#[derive(Debug)]
struct KeySet {
    keys: HashMap<String, Arc<JwksKey>>,
    generation: u64,
    fetched_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl KeySet {
    fn fresh(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }

    fn may_refetch(&self, now: DateTime<Utc>) -> bool {
        now >= self.fetched_at + Duration::seconds(MIN_REFETCH_SECS)
    }

    fn usable_stale(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at + Duration::seconds(JWKS_STALE_GRACE_SECS)
    }

    fn get(&self, kid: &str) -> Option<Arc<JwksKey>> {
        self.keys.get(kid).cloned()
    }
}

#[derive(Deserialize)]
struct JwksDoc {
    #[serde(default)]
    keys: Vec<JwkDoc>,
}

#[derive(Deserialize)]
struct JwkDoc {
    kid: Option<String>,
    kty: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWKS document into its RS256 signature keys (others are skipped).
fn parse_jwks(bytes: &[u8]) -> Result<HashMap<String, Arc<JwksKey>>, String> {
    let doc: JwksDoc = crate::json::from_slice(bytes).map_err(|e| {
        if crate::json::is_repeated_key(&e) {
            format!(
                "JWKS repeats a key (line {} column {})",
                e.line(),
                e.column()
            )
        } else {
            format!(
                "JWKS is not a JWK set (line {} column {})",
                e.line(),
                e.column()
            )
        }
    })?;
    let mut keys = HashMap::new();
    for k in doc.keys {
        let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
            continue;
        };
        if k.kty.as_deref() != Some("RSA")
            || k.alg.as_deref().is_some_and(|a| a != "RS256")
            || k.usage.as_deref().is_some_and(|u| u != "sig")
        {
            continue;
        }
        let (Ok(n), Ok(e)) = (B64URL.decode(n.as_bytes()), B64URL.decode(e.as_bytes())) else {
            continue;
        };
        let strip = |v: &[u8]| -> Vec<u8> {
            let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
            v[first..].to_vec()
        };
        let components = RsaPublicKeyComponents {
            n: strip(&n),
            e: strip(&e),
        };
        if let Ok(parsed) = components.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256) {
            keys.insert(kid, Arc::new(JwksKey(parsed)));
        }
    }
    if keys.is_empty() {
        return Err("JWKS holds no usable RS256 key".into());
    }
    Ok(keys)
}

/// `max-age` of a `Cache-Control` header value.
fn max_age(cache_control: Option<&str>) -> Option<i64> {
    cache_control?.split(',').find_map(|d| {
        let d = d.trim();
        let v = d
            .strip_prefix("max-age=")
            .or_else(|| d.strip_prefix("s-maxage="))?;
        v.trim().trim_matches('"').parse::<i64>().ok()
    })
}

/// Google's JWKS, cached across invocations.
pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    current: RwLock<Option<Arc<KeySet>>>,
    /// Serializes refreshes; holds the last failed fetch (when and why) until
    /// one succeeds, so a failing endpoint is asked at most every
    /// [`MIN_REFETCH_SECS`].
    refresh: tokio::sync::Mutex<Option<(DateTime<Utc>, String)>>,
    fetches: AtomicU64,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .field("fetches", &self.fetches())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache of the JWKS at `url`.
    pub fn new(url: impl Into<String>, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        Self {
            url: url.into(),
            http,
            clock,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the JWKS was requested.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// The key with id `kid`: from the cache, or after one (coalesced) refresh.
    pub async fn key(&self, kid: &str) -> Result<Arc<JwksKey>, AuthError> {
        let now = self.clock.now();
        let seen = self.snapshot();
        if let Some(set) = &seen
            && set.fresh(now)
        {
            if let Some(k) = set.get(kid) {
                return Ok(k);
            }
            if !set.may_refetch(now) {
                return Err(AuthError::UnknownKey);
            }
        }
        let mut last_failure = self.refresh.lock().await;
        // Another request may have refreshed while this one waited for the lock.
        let latest = self.snapshot();
        if let Some(set) = &latest {
            let refreshed_meanwhile = seen.as_ref().is_none_or(|s| s.generation != set.generation);
            if set.fresh(now) && (refreshed_meanwhile || !set.may_refetch(now)) {
                return set.get(kid).ok_or(AuthError::UnknownKey);
            }
        }
        // A fetch failed less than MIN_REFETCH_SECS ago: do not ask again yet
        // (a failing endpoint would otherwise be asked once per request).
        let recent_failure = last_failure
            .as_ref()
            .filter(|(at, _)| now < *at + Duration::seconds(MIN_REFETCH_SECS) && now >= *at)
            .map(|(_, why)| why.clone());
        let result = match recent_failure {
            Some(why) => Err(format!("{why} (not retried for {MIN_REFETCH_SECS} s)")),
            None => {
                let fetched = self
                    .fetch(now, latest.as_ref().map_or(0, |s| s.generation))
                    .await;
                *last_failure = fetched.as_ref().err().map(|e| (now, e.clone()));
                fetched
            }
        };
        match result {
            Ok(set) => {
                let key = set.get(kid);
                if let Ok(mut c) = self.current.write() {
                    *c = Some(set);
                }
                key.ok_or(AuthError::UnknownKey)
            }
            Err(e) => {
                if let Some(set) = &latest
                    && set.usable_stale(now)
                    && let Some(k) = set.get(kid)
                {
                    tracing::warn!(error = %e, "JWKS refresh failed; using the cached keys");
                    return Ok(k);
                }
                Err(AuthError::KeysUnavailable(e))
            }
        }
    }

    #[tracing::instrument(skip_all, fields(url = %self.url))]
    async fn fetch(
        &self,
        now: DateTime<Utc>,
        previous_generation: u64,
    ) -> Result<Arc<KeySet>, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("JWKS request failed: {}", crate::http::describe(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!(
                "JWKS endpoint answered {}",
                crate::http::status_text(status.as_u16())
            ));
        }
        let ttl = max_age(
            resp.headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        )
        .unwrap_or(DEFAULT_JWKS_TTL_SECS)
        .clamp(JWKS_TTL_BOUNDS_SECS.0, JWKS_TTL_BOUNDS_SECS.1);
        let body = crate::http::read_limited(resp, MAX_JWKS_BYTES)
            .await
            .map_err(|e| format!("JWKS body: {e}"))?;
        let keys = parse_jwks(&body)?;
        tracing::info!(keys = keys.len(), ttl_secs = ttl, "fetched Google's JWKS");
        Ok(Arc::new(KeySet {
            keys,
            generation: previous_generation.wrapping_add(1),
            fetched_at: now,
            expires_at: now + Duration::seconds(ttl),
        }))
    }
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct IdClaims {
    iss: Option<String>,
    aud: Option<serde_json::Value>,
    email: Option<String>,
    email_verified: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
}

fn seconds(v: Option<&serde_json::Value>) -> Option<i64> {
    match v? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        _ => None,
    }
}

/// Authenticates Pub/Sub pushes.
#[derive(Debug)]
pub struct PushAuthenticator {
    config: PushAuthConfig,
    jwks: JwksCache,
    clock: Arc<dyn Clock>,
}

impl PushAuthenticator {
    /// An authenticator using the JWKS at `jwks_url`.
    pub fn new(
        config: PushAuthConfig,
        jwks_url: &str,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config,
            jwks: JwksCache::new(jwks_url, http, clock.clone()),
            clock,
        }
    }

    /// The JWKS cache.
    pub fn jwks(&self) -> &JwksCache {
        &self.jwks
    }

    /// Checks every configured mechanism.
    pub async fn authenticate(&self, req: &StoreRequest) -> Result<(), AuthError> {
        if let Some(expected) = &self.config.query_token {
            check_query_token(req.query.as_deref(), expected)?;
        }
        if let Some(oidc) = &self.config.oidc {
            let token = bearer(&req.headers)?;
            self.verify_id_token(token, oidc).await?;
        }
        Ok(())
    }

    /// Verifies a Google-signed ID token against `oidc` at the clock's now.
    pub async fn verify_id_token(&self, token: &str, oidc: &OidcConfig) -> Result<(), AuthError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::MalformedToken(
                "expected three dot-separated segments".into(),
            ));
        };
        let header: JwtHeader = B64URL
            .decode(h64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| AuthError::MalformedToken("header is not base64url JSON".into()))?;
        match header.alg.as_deref() {
            Some("RS256") => {}
            other => {
                return Err(AuthError::UnsupportedAlgorithm(
                    other.unwrap_or("(none)").chars().take(16).collect(),
                ));
            }
        }
        let signature = B64URL
            .decode(s64)
            .map_err(|_| AuthError::MalformedToken("signature is not base64url".into()))?;
        let payload = B64URL
            .decode(p64)
            .map_err(|_| AuthError::MalformedToken("payload is not base64url".into()))?;
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.jwks.key(&kid).await?;
        let message = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        key.0
            .verify_sig(message, &signature)
            .map_err(|_| AuthError::InvalidSignature)?;

        let claims: IdClaims = serde_json::from_slice(&payload)
            .map_err(|_| AuthError::MalformedToken("claims are not a JSON object".into()))?;
        let now = self.clock.now().timestamp();
        let exp = seconds(claims.exp.as_ref())
            .ok_or_else(|| AuthError::InvalidIssueTime("no exp".into()))?;
        let iat = seconds(claims.iat.as_ref())
            .ok_or_else(|| AuthError::InvalidIssueTime("no iat".into()))?;
        if now > exp.saturating_add(CLOCK_SKEW_SECS) {
            return Err(AuthError::Expired);
        }
        if iat > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(AuthError::InvalidIssueTime("issued in the future".into()));
        }
        if !claims
            .iss
            .as_deref()
            .is_some_and(|i| GOOGLE_ISSUERS.contains(&i))
        {
            return Err(AuthError::WrongIssuer);
        }
        let aud_ok = match &claims.aud {
            Some(serde_json::Value::String(a)) => *a == oidc.audience,
            Some(serde_json::Value::Array(list)) => {
                list.iter().any(|a| a.as_str() == Some(&oidc.audience))
            }
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::WrongAudience);
        }
        if !claims
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(&oidc.service_account))
        {
            return Err(AuthError::WrongServiceAccount);
        }
        let verified = match &claims.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return Err(AuthError::EmailNotVerified);
        }
        Ok(())
    }
}

/// The bearer token of the `Authorization` header.
fn bearer(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::MissingBearer)?;
    if value.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::MalformedToken("token too long".into()));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::MalformedToken("not ASCII".into()))?
        .trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::MissingBearer);
    }
    Ok(token.trim())
}

/// Checks `?token=` against `expected` in constant time (over SHA-256 digests,
/// so not even the length leaks).
fn check_query_token(query: Option<&str>, expected: &Secret) -> Result<(), AuthError> {
    let given = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(percent_decode)
        .ok_or(AuthError::MissingQueryToken)?;
    let digest = |s: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s);
    let a = digest(&given);
    let b = digest(expected.expose().as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref())
        .map_err(|_| AuthError::InvalidQueryToken)
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space).
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_tokens_are_decoded_and_compared() {
        let secret = Secret::new("s3cr3t/with+chars");
        assert_eq!(
            percent_decode("s3cr3t%2Fwith%2Bchars"),
            b"s3cr3t/with+chars"
        );
        assert_eq!(percent_decode("a%2"), b"a%2");
        assert_eq!(percent_decode("%zz"), b"%zz");
        assert!(check_query_token(Some("x=1&token=s3cr3t%2Fwith%2Bchars"), &secret).is_ok());
        assert_eq!(
            check_query_token(Some("token=s3cr3t"), &secret),
            Err(AuthError::InvalidQueryToken)
        );
        assert_eq!(
            check_query_token(None, &secret),
            Err(AuthError::MissingQueryToken)
        );
        assert_eq!(
            check_query_token(Some("xtoken=s3cr3t%2Fwith%2Bchars"), &secret),
            Err(AuthError::MissingQueryToken)
        );
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age(Some("public, max-age=19204, must-revalidate, no-transform")),
            Some(19204)
        );
        assert_eq!(max_age(Some("no-cache")), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer(&h), Err(AuthError::MissingBearer));
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Basic abc"),
        );
        assert_eq!(bearer(&h), Err(AuthError::MissingBearer));
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("bearer a.b.c"),
        );
        assert_eq!(bearer(&h), Ok("a.b.c"));
    }

    #[test]
    fn jwks_without_rsa_signature_keys_is_refused() {
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }
}
