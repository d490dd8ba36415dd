//! Standard Webhooks signing and verification
//! (<https://www.standardwebhooks.com/>): the secrets, the `webhook-*` headers
//! storehook sends, and [`verify`] for receivers (and storehook's own tests).

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chrono::{DateTime, Utc};
use http::HeaderMap;
use std::fmt;
use std::time::Duration;

/// Header carrying the message (event) id.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the unix timestamp (seconds) of the signature.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Prefix of Standard Webhooks secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Default time a receiver accepts between signing and verifying (Standard Webhooks: 5 minutes).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Shortest accepted key (bytes). Standard Webhooks recommends 24 to 64.
pub const MIN_KEY_LEN: usize = 16;

/// Why a secret list could not be parsed or a sender not built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WebhookError {
    /// No secret was given.
    #[error("no webhook secret configured")]
    NoSecret,
    /// The n-th secret (1-based) is not valid base64 (the secret itself is never shown).
    #[error("webhook secret #{0} is not valid base64 (expected whsec_<base64> or bare base64)")]
    InvalidSecret(usize),
    /// The n-th secret (1-based) is too short.
    #[error("webhook secret #{0} is too short: at least {MIN_KEY_LEN} bytes of key are required")]
    SecretTooShort(usize),
    /// The webhook URL is not an absolute http(s) URL.
    #[error("invalid webhook url: {0}")]
    InvalidUrl(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
}

/// One HMAC key. `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookSecret {
    key: hmac::Key,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` or bare `<base64>`; `index` (1-based) only labels errors.
    fn parse(s: &str, index: usize) -> Result<Self, WebhookError> {
        let b64 = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        let key = STANDARD
            .decode(b64)
            .or_else(|_| STANDARD_NO_PAD.decode(b64))
            .map_err(|_| WebhookError::InvalidSecret(index))?;
        if key.len() < MIN_KEY_LEN {
            return Err(WebhookError::SecretTooShort(index));
        }
        Ok(Self::from_key(&key))
    }

    /// A secret from raw key bytes.
    pub fn from_key(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// Generates a fresh random secret, returned in its `whsec_<base64>` text form
    /// (24 random bytes, as the Standard Webhooks libraries do).
    pub fn generate() -> Result<String, WebhookError> {
        let mut key = [0u8; 24];
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|_| WebhookError::Client("random generator failed".into()))?;
        Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
    }

    /// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = hmac::sign(&self.key, &signed_content(id, timestamp, body));
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }

    /// Constant-time check of a raw signature (the decoded base64 of a `v1,` entry).
    fn verify_raw(&self, id: &str, timestamp: i64, body: &[u8], signature: &[u8]) -> bool {
        hmac::verify(&self.key, &signed_content(id, timestamp, body), signature).is_ok()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut v = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
    v.extend_from_slice(id.as_bytes());
    v.push(b'.');
    v.extend_from_slice(ts.as_bytes());
    v.push(b'.');
    v.extend_from_slice(body);
    v
}

/// The configured secrets, newest first. Every delivery is signed with all of
/// them, so a receiver can roll its key without losing messages. `Debug` shows
/// only how many there are.
#[derive(Clone)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

impl WebhookSecrets {
    /// Parses a whitespace- and/or comma-separated list of `whsec_<base64>` or
    /// bare base64 secrets. Errors name the position, never the secret.
    pub fn parse(list: &str) -> Result<Self, WebhookError> {
        let secrets = list
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, s)| WebhookSecret::parse(s, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(secrets)
    }

    /// From already built secrets (at least one).
    pub fn new(secrets: Vec<WebhookSecret>) -> Result<Self, WebhookError> {
        if secrets.is_empty() {
            return Err(WebhookError::NoSecret);
        }
        Ok(Self(secrets))
    }

    /// How many secrets are configured.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true (construction requires one secret); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `webhook-signature` header value: one `v1,<sig>` per secret, space separated.
    pub fn signature_header(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.0
            .iter()
            .map(|s| s.sign(id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The three Standard Webhooks headers for `body`.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            (HEADER_ID, id.to_owned()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_SIGNATURE, self.signature_header(id, timestamp, body)),
        ] {
            // Ids are `evt_<hex>`, timestamps digits, signatures base64: always valid values.
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        h
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecrets(<{} redacted>)", self.0.len())
    }
}

/// Why a received webhook was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// A required header is absent or not ASCII.
    #[error("missing or invalid header {0}")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("invalid webhook-timestamp")]
    InvalidTimestamp,
    /// The timestamp is further from now than the tolerance (replay protection).
    #[error("webhook-timestamp outside the tolerance")]
    TimestampOutOfTolerance,
    /// No `v1` signature matched any secret.
    #[error("no matching signature")]
    NoMatchingSignature,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The `webhook-id` (the event id: deduplicate on it).
    pub id: String,
    /// The signed timestamp (unix seconds).
    pub timestamp: i64,
}

/// Verifies a received Standard Webhooks request, as a receiver would: the
/// timestamp must be within `tolerance` of `now` (both directions), and at
/// least one `v1` signature must match one of `secrets` (constant-time HMAC
/// comparison).
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    let get = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let id = get(HEADER_ID)?;
    let timestamp: i64 = get(HEADER_TIMESTAMP)?
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    let signatures = get(HEADER_SIGNATURE)?;

    let tolerance_s = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.timestamp().abs_diff(timestamp) > tolerance_s.unsigned_abs() {
        return Err(VerifyError::TimestampOutOfTolerance);
    }

    for entry in signatures.split(' ').filter(|s| !s.is_empty()) {
        let Some(b64) = entry.strip_prefix("v1,") else {
            continue; // other schemes (v1a, …) are not ours to check
        };
        let Ok(raw) = STANDARD.decode(b64) else {
            continue;
        };
        if secrets
            .0
            .iter()
            .any(|s| s.verify_raw(id, timestamp, body, &raw))
        {
            return Ok(Verified {
                id: id.to_owned(),
                timestamp,
            });
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    /// The Standard Webhooks test vector (also the sender tests' secret).
    pub(crate) const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // GIVEN the reference vector of the Standard Webhooks / svix libraries
        let secrets = WebhookSecrets::parse(VECTOR_SECRET).unwrap();
        // WHEN signing
        let sig = secrets.signature_header(VECTOR_ID, VECTOR_TS, VECTOR_BODY);
        // THEN the reference signature comes out
        assert_eq!(sig, VECTOR_SIG);
        // AND verify accepts the reference headers
        let h = secrets.headers(VECTOR_ID, VECTOR_TS, VECTOR_BODY);
        let v = verify(
            &h,
            VECTOR_BODY,
            &secrets,
            at(VECTOR_TS + 10),
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        assert_eq!(v.id, VECTOR_ID);
        assert_eq!(v.timestamp, VECTOR_TS);
    }

    #[test]
    fn bare_base64_secret_equals_prefixed_secret() {
        // GIVEN the same key with and without the whsec_ prefix, and a SAM-style alphanumeric 32-char secret
        let a = WebhookSecrets::parse(VECTOR_SECRET).unwrap();
        let b = WebhookSecrets::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sam = WebhookSecrets::parse("Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z").unwrap();
        // THEN they sign identically / the alphanumeric one is a valid key
        assert_eq!(
            a.signature_header("id", 1, b"x"),
            b.signature_header("id", 1, b"x")
        );
        assert!(sam.signature_header("id", 1, b"x").starts_with("v1,"));
    }

    #[test]
    fn rejects_bad_secrets_without_echoing_them() {
        // GIVEN invalid secret lists
        // THEN each is rejected with its position only
        assert_eq!(
            WebhookSecrets::parse("  , ").unwrap_err(),
            WebhookError::NoSecret
        );
        let e = WebhookSecrets::parse(&format!("{VECTOR_SECRET} whsec_!!notbase64!!")).unwrap_err();
        assert_eq!(e, WebhookError::InvalidSecret(2));
        assert!(!e.to_string().contains("notbase64"));
        assert_eq!(
            WebhookSecrets::parse("whsec_dGVzdA==").unwrap_err(),
            WebhookError::SecretTooShort(1)
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        // GIVEN secrets
        let s = WebhookSecrets::parse(&format!("{VECTOR_SECRET},{VECTOR_SECRET}")).unwrap();
        // WHEN debug-printed
        let d = format!("{s:?} {:?}", s.0[0]);
        // THEN no key material appears
        assert!(!d.contains("MfKQ9r8"), "{d}");
        assert!(d.contains("2 redacted"));
    }

    #[test]
    fn rotation_signs_with_every_secret_and_either_verifies() {
        // GIVEN old and new secrets configured together (comma and whitespace separated)
        let old = WebhookSecret::generate().unwrap();
        let new = WebhookSecret::generate().unwrap();
        let both = WebhookSecrets::parse(&format!("{new},\n {old}")).unwrap();
        assert_eq!(both.len(), 2);
        let body = br#"{"id":"evt_1"}"#;
        // WHEN a delivery is signed
        let h = both.headers("evt_1", 1_700_000_000, body);
        let sig = h.get(HEADER_SIGNATURE).unwrap().to_str().unwrap();
        // THEN it carries two v1 signatures
        assert_eq!(sig.split(' ').filter(|s| s.starts_with("v1,")).count(), 2);
        // AND a receiver knowing only the old or only the new secret accepts it
        for only in [&old, &new] {
            let s = WebhookSecrets::parse(only).unwrap();
            verify(&h, body, &s, at(1_700_000_000), DEFAULT_TOLERANCE).unwrap();
        }
        // AND a receiver with an unrelated secret rejects it
        let other = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
        assert_eq!(
            verify(&h, body, &other, at(1_700_000_000), DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn tampering_is_detected() {
        // GIVEN a correctly signed request
        let s = WebhookSecrets::parse(VECTOR_SECRET).unwrap();
        let body = br#"{"amount":1}"#;
        let now = at(1_700_000_000);
        let h = s.headers("evt_a", now.timestamp(), body);
        assert!(verify(&h, body, &s, now, DEFAULT_TOLERANCE).is_ok());

        // WHEN the body changes THEN it is rejected
        assert_eq!(
            verify(&h, br#"{"amount":2}"#, &s, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
        // WHEN the id changes
        let mut h2 = h.clone();
        h2.insert(HEADER_ID, "evt_b".parse().unwrap());
        assert_eq!(
            verify(&h2, body, &s, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
        // WHEN the timestamp changes (still inside the tolerance)
        let mut h3 = h.clone();
        h3.insert(
            HEADER_TIMESTAMP,
            (now.timestamp() + 1).to_string().parse().unwrap(),
        );
        assert_eq!(
            verify(&h3, body, &s, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
        // WHEN the signature is garbage / another scheme
        let mut h4 = h.clone();
        h4.insert(HEADER_SIGNATURE, "v1,@@@ v2,abc".parse().unwrap());
        assert_eq!(
            verify(&h4, body, &s, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
        // WHEN a header is missing
        let mut h5 = h.clone();
        h5.remove(HEADER_SIGNATURE);
        assert_eq!(
            verify(&h5, body, &s, now, DEFAULT_TOLERANCE),
            Err(VerifyError::MissingHeader(HEADER_SIGNATURE))
        );
        let mut h6 = h.clone();
        h6.insert(HEADER_TIMESTAMP, "soon".parse().unwrap());
        assert_eq!(
            verify(&h6, body, &s, now, DEFAULT_TOLERANCE),
            Err(VerifyError::InvalidTimestamp)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_rejected() {
        // GIVEN a request signed at t
        let s = WebhookSecrets::parse(VECTOR_SECRET).unwrap();
        let h = s.headers("evt_a", 1_700_000_000, b"{}");
        // THEN exactly the tolerance is accepted, one second more is not, in both directions
        assert!(verify(&h, b"{}", &s, at(1_700_000_300), DEFAULT_TOLERANCE).is_ok());
        assert!(verify(&h, b"{}", &s, at(1_699_999_700), DEFAULT_TOLERANCE).is_ok());
        assert_eq!(
            verify(&h, b"{}", &s, at(1_700_000_301), DEFAULT_TOLERANCE),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(&h, b"{}", &s, at(1_699_999_699), DEFAULT_TOLERANCE),
            Err(VerifyError::TimestampOutOfTolerance)
        );
    }
}
