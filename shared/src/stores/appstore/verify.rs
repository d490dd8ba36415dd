//! Verification of Apple-signed JWS (specs/appstore.md §2–3), as Apple's own
//! `SignedDataVerifier` does it with online checks off:
//!
//! 1. compact JWS, `alg` = ES256 only, `x5c` of exactly 3 standard-base64 DER
//!    certificates (x5c\[2\] is ignored apart from the count, as in all four
//!    official libraries);
//! 2. the chain leaf → intermediate → one of the trusted roots: issuer names
//!    match, each certificate signature verifies with its issuer's key
//!    (P-256/P-384 × SHA-256/SHA-384), the intermediate is a CA, the leaf
//!    carries OID 1.2.840.113635.100.6.11.1 and the intermediate OID
//!    1.2.840.113635.100.6.2.1, and all three are valid at the payload's
//!    `signedDate` (so old notifications verify although their leaf has since
//!    expired; "now" when there is no `signedDate`);
//! 3. the ES256 signature with the leaf key.
//!
//! A verified chain is cached per (leaf, intermediate) so a warm Lambda checks
//! the certificate signatures once per leaf certificate; the cached entry
//! keeps the chain's validity window, so the date check still runs every time.

use super::model::SignedDate;
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

/// Apple Root CA - G3, the anchor of App Store / StoreKit signatures (bundled).
pub const APPLE_ROOT_CA_G3_PEM: &str = include_str!("../../../certs/AppleRootCA-G3.pem");

/// OID of the App Store receipt-signing leaf extension.
pub const OID_LEAF: &str = "1.2.840.113635.100.6.11.1";
/// OID of the Apple WWDR intermediate extension.
pub const OID_INTERMEDIATE: &str = "1.2.840.113635.100.6.2.1";

const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_CURVE_P256: &str = "1.2.840.10045.3.1.7";

/// Most chains a warm process remembers (Apple rotates leaves every ~2 years).
const CACHE_CAPACITY: usize = 64;

/// base64url, padding optional (JWS segments carry none; tolerate it).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an Apple JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a compact JWS, bad base64url, header or payload not JSON of the expected shape.
    #[error("malformed JWS: {0}")]
    MalformedJws(String),
    /// `alg` is not ES256.
    #[error("unsupported JWS algorithm {0:?}: Apple signs with ES256 only")]
    UnsupportedAlgorithm(String),
    /// No `x5c` header.
    #[error("JWS header has no x5c certificate chain")]
    MissingChain,
    /// `x5c` does not hold exactly 3 certificates.
    #[error("x5c must hold exactly 3 certificates, found {0}")]
    InvalidChainLength(usize),
    /// A certificate is not standard base64 of a DER X.509 certificate.
    #[error("invalid certificate in x5c: {0}")]
    InvalidCertificate(String),
    /// The chain does not lead to a trusted root or lacks Apple's markers.
    #[error("untrusted certificate chain: {0}")]
    UntrustedChain(String),
    /// A certificate of the chain is not valid at the signing date.
    #[error("certificate not valid at the signing date: {0}")]
    CertificateNotValid(String),
    /// The JWS signature does not verify with the leaf key.
    #[error("JWS signature does not verify with the leaf certificate key")]
    InvalidSignature,
}

impl VerifyError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJws(_) => "malformed_jws",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::MissingChain => "missing_certificate_chain",
            Self::InvalidChainLength(_) => "invalid_chain_length",
            Self::InvalidCertificate(_) => "invalid_certificate",
            Self::UntrustedChain(_) => "untrusted_chain",
            Self::CertificateNotValid(_) => "certificate_expired",
            Self::InvalidSignature => "invalid_signature",
        }
    }

    /// HTTP status: 400 for malformed input, 401 for failed authentication.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedJws(_) => 400,
            _ => 401,
        }
    }
}

#[derive(serde::Deserialize)]
struct Header {
    alg: Option<String>,
    x5c: Option<Vec<String>>,
}

/// A trusted root, pre-parsed into owned parts.
#[derive(Clone)]
struct Root {
    subject: Vec<u8>,
    spki: Vec<u8>,
    not_before_ms: i64,
    not_after_ms: i64,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root")
            .field("subject_len", &self.subject.len())
            .finish()
    }
}

/// The cache of verified chains, keyed by the exact JWS header segment. The
/// map's key is a hash of the header's first 256 bytes (the algorithm and the
/// start of the leaf certificate, which holds its serial number) — hashing all
/// ~5 KiB on every lookup costs more than the rest of the lookup — and the
/// entry keeps the whole header, compared on every hit: a collision only
/// costs a miss, never a wrong chain. Looking up borrows the segment (no copy
/// of ~5 KiB per JWS); only a verified chain is stored.
struct ChainCache {
    hasher: std::hash::RandomState,
    entries: HashMap<u64, (Box<str>, Arc<VerifiedChain>)>,
}

impl ChainCache {
    fn new() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            entries: HashMap::new(),
        }
    }

    fn key(&self, header: &str) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let b = header.as_bytes();
        let mut h = self.hasher.build_hasher();
        h.write_usize(b.len());
        h.write(&b[..b.len().min(256)]);
        h.finish()
    }

    fn get(&self, header: &str) -> Option<Arc<VerifiedChain>> {
        match self.entries.get(&self.key(header)) {
            Some((h, chain)) if **h == *header => Some(chain.clone()),
            _ => None,
        }
    }

    fn insert(&mut self, header: &str, chain: Arc<VerifiedChain>) {
        if self.entries.len() >= CACHE_CAPACITY {
            self.entries.clear();
        }
        let key = self.key(header);
        self.entries.insert(key, (header.into(), chain));
    }
}

/// A chain that passed every check but the date, with its validity window.
struct VerifiedChain {
    leaf_key: DecodingKey,
    not_before_ms: i64,
    not_after_ms: i64,
}

/// Verifies Apple-signed JWS against a set of trusted roots.
pub struct JwsVerifier {
    roots: Vec<Root>,
    cache: Mutex<ChainCache>,
}

impl std::fmt::Debug for JwsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwsVerifier")
            .field("roots", &self.roots.len())
            .finish()
    }
}

/// A verified JWS: its decoded payload.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    /// The payload, now trusted.
    pub payload: T,
    /// The payload's JSON bytes (for `raw`; parsed only when asked for).
    pub json: Vec<u8>,
}

impl<T> Verified<T> {
    /// The payload as a JSON value.
    pub fn json_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.json).unwrap_or(serde_json::Value::Null)
    }
}

/// Errors loading trusted roots.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// Not PEM/DER of a certificate.
    #[error("trusted root is not a certificate: {0}")]
    Invalid(String),
}

/// Parses every `CERTIFICATE` block of a PEM text (or one DER certificate).
pub fn parse_roots(bytes: &[u8]) -> Result<Vec<Vec<u8>>, RootError> {
    if bytes.starts_with(b"-----") || bytes.iter().take(64).all(|b| b.is_ascii()) {
        let text =
            std::str::from_utf8(bytes).map_err(|_| RootError::Invalid("not UTF-8 PEM".into()))?;
        let mut out = Vec::new();
        let mut in_block = false;
        let mut b64 = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line == "-----BEGIN CERTIFICATE-----" {
                in_block = true;
                b64.clear();
            } else if line == "-----END CERTIFICATE-----" {
                in_block = false;
                let der = STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| RootError::Invalid(format!("bad base64 in PEM: {e}")))?;
                out.push(der);
            } else if in_block {
                b64.push_str(line);
            }
        }
        if out.is_empty() {
            return Err(RootError::Invalid("no CERTIFICATE block found".into()));
        }
        Ok(out)
    } else {
        Ok(vec![bytes.to_vec()])
    }
}

impl JwsVerifier {
    /// A verifier trusting Apple Root CA - G3 plus `extra_roots` (DER).
    pub fn new(extra_roots: &[Vec<u8>]) -> Result<Self, RootError> {
        let mut ders = parse_roots(APPLE_ROOT_CA_G3_PEM.as_bytes())?;
        ders.extend(extra_roots.iter().cloned());
        Self::with_roots(&ders)
    }

    /// A verifier trusting exactly `roots` (DER).
    pub fn with_roots(roots: &[Vec<u8>]) -> Result<Self, RootError> {
        let mut parsed = Vec::with_capacity(roots.len());
        for der in roots {
            let (_, cert) =
                X509Certificate::from_der(der).map_err(|e| RootError::Invalid(format!("{e}")))?;
            parsed.push(Root {
                subject: cert.subject().as_raw().to_vec(),
                spki: cert.public_key().raw.to_vec(),
                not_before_ms: cert.validity().not_before.timestamp().saturating_mul(1000),
                not_after_ms: cert.validity().not_after.timestamp().saturating_mul(1000),
            });
        }
        Ok(Self {
            roots: parsed,
            cache: Mutex::new(ChainCache::new()),
        })
    }

    /// Number of chains currently cached.
    pub fn cached_chains(&self) -> usize {
        self.cache.lock().map(|c| c.entries.len()).unwrap_or(0)
    }

    /// Forgets every cached chain (benchmarks of the cold path).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.entries.clear();
        }
    }

    /// Verifies `jws` and returns its payload. `now_ms` is used as the
    /// certificate-validity instant only when the payload has no `signedDate`.
    pub fn verify<T: DeserializeOwned + SignedDate>(
        &self,
        jws: &str,
        now_ms: i64,
    ) -> Result<Verified<T>, VerifyError> {
        let (h64, p64, s64) = split_jws(jws).ok_or_else(|| {
            VerifyError::MalformedJws("expected three dot-separated segments".into())
        })?;
        // Every JWS signed by one leaf carries the same header (alg + x5c), so
        // the verified chain is cached under the exact header segment: a warm
        // hit skips decoding and parsing ~4 KiB of certificates.
        let cached = self.cache.lock().ok().and_then(|c| c.get(h64));
        let payload_bytes = b64url_decode_fast(p64)
            .map_err(|_| VerifyError::MalformedJws("payload is not base64url".into()))?;
        // The strict reader: a repeated key or invalid UTF-8 anywhere (even in
        // a field the model ignores) is refused, so `raw` and the model always
        // read the same document (fuzz: appstore found a payload whose unknown
        // field held invalid UTF-8 verified, while its `raw` became null).
        let payload: T = crate::json::from_slice(&payload_bytes).map_err(|e| {
            VerifyError::MalformedJws(format!(
                "payload is not a JSON object of the expected shape: {e}"
            ))
        })?;
        let chain = match cached {
            Some(chain) => chain,
            None => {
                let header_bytes = B64URL
                    .decode(h64)
                    .map_err(|_| VerifyError::MalformedJws("header is not base64url".into()))?;
                let header: Header = serde_json::from_slice(&header_bytes).map_err(|e| {
                    VerifyError::MalformedJws(format!("header is not a JSON object: {e}"))
                })?;
                match header.alg.as_deref() {
                    Some("ES256") => {}
                    other => {
                        return Err(VerifyError::UnsupportedAlgorithm(
                            other.unwrap_or("(none)").to_owned(),
                        ));
                    }
                }
                let x5c = header.x5c.ok_or(VerifyError::MissingChain)?;
                if x5c.len() != 3 {
                    return Err(VerifyError::InvalidChainLength(x5c.len()));
                }
                let chain = Arc::new(self.check_chain(&x5c[0], &x5c[1])?);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(h64, chain.clone());
                }
                chain
            }
        };
        let sig = B64URL
            .decode(s64)
            .map_err(|_| VerifyError::MalformedJws("signature is not base64url".into()))?;
        if sig.len() != 64 {
            return Err(VerifyError::InvalidSignature);
        }
        let effective_ms = payload.signed_date().unwrap_or(now_ms);
        if effective_ms < chain.not_before_ms || effective_ms > chain.not_after_ms {
            return Err(VerifyError::CertificateNotValid(format!(
                "signing date {effective_ms} ms is outside the chain's validity [{}, {}]",
                chain.not_before_ms, chain.not_after_ms
            )));
        }
        let message_len = h64.len() + 1 + p64.len();
        let message = &jws.as_bytes()[..message_len];
        match jsonwebtoken::crypto::verify(s64, message, &chain.leaf_key, Algorithm::ES256) {
            Ok(true) => Ok(Verified {
                payload,
                json: payload_bytes,
            }),
            _ => Err(VerifyError::InvalidSignature),
        }
    }

    fn check_chain(&self, leaf_b64: &str, inter_b64: &str) -> Result<VerifiedChain, VerifyError> {
        let leaf_der = STANDARD
            .decode(leaf_b64)
            .map_err(|_| VerifyError::InvalidCertificate("x5c[0] is not standard base64".into()))?;
        let inter_der = STANDARD
            .decode(inter_b64)
            .map_err(|_| VerifyError::InvalidCertificate("x5c[1] is not standard base64".into()))?;
        let (_, leaf) = X509Certificate::from_der(&leaf_der)
            .map_err(|e| VerifyError::InvalidCertificate(format!("x5c[0]: {e}")))?;
        let (_, inter) = X509Certificate::from_der(&inter_der)
            .map_err(|e| VerifyError::InvalidCertificate(format!("x5c[1]: {e}")))?;

        // leaf ← intermediate
        if leaf.issuer().as_raw() != inter.subject().as_raw() {
            return Err(VerifyError::UntrustedChain(
                "leaf issuer is not the intermediate".into(),
            ));
        }
        check_signature_algorithm(&leaf)?;
        leaf.verify_signature(Some(inter.public_key()))
            .map_err(|_| {
                VerifyError::UntrustedChain("leaf is not signed by the intermediate".into())
            })?;
        if !inter.is_ca() {
            return Err(VerifyError::UntrustedChain(
                "intermediate is not a CA (basicConstraints)".into(),
            ));
        }
        require_extension(&leaf, OID_LEAF, "leaf")?;
        require_extension(&inter, OID_INTERMEDIATE, "intermediate")?;

        // intermediate ← trusted root
        check_signature_algorithm(&inter)?;
        let root = self
            .roots
            .iter()
            .filter(|r| r.subject.as_slice() == inter.issuer().as_raw())
            .find(|r| {
                SubjectPublicKeyInfo::from_der(&r.spki)
                    .map(|(_, spki)| inter.verify_signature(Some(&spki)).is_ok())
                    .unwrap_or(false)
            })
            .ok_or_else(|| {
                VerifyError::UntrustedChain("intermediate is not signed by a trusted root".into())
            })?;

        // ES256 needs a P-256 leaf key.
        let spki = leaf.public_key();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        if curve.as_deref() != Some(OID_CURVE_P256) {
            return Err(VerifyError::InvalidCertificate(
                "leaf key is not an EC P-256 key".into(),
            ));
        }
        let leaf_key = DecodingKey::from_ec_der(&spki.subject_public_key.data);

        let millis = |t: &x509_parser::time::ASN1Time| t.timestamp().saturating_mul(1000);
        let not_before_ms = millis(&leaf.validity().not_before)
            .max(millis(&inter.validity().not_before))
            .max(root.not_before_ms);
        let not_after_ms = millis(&leaf.validity().not_after)
            .min(millis(&inter.validity().not_after))
            .min(root.not_after_ms);
        Ok(VerifiedChain {
            leaf_key,
            not_before_ms,
            not_after_ms,
        })
    }
}

fn check_signature_algorithm(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    let alg = cert.signature_algorithm.algorithm.to_id_string();
    if alg == OID_ECDSA_SHA256 || alg == OID_ECDSA_SHA384 {
        Ok(())
    } else {
        Err(VerifyError::UntrustedChain(format!(
            "certificate signature algorithm {alg} is not ECDSA with SHA-256/384"
        )))
    }
}

fn require_extension(cert: &X509Certificate<'_>, oid: &str, what: &str) -> Result<(), VerifyError> {
    let wanted: Oid<'static> = oid
        .parse()
        .map_err(|_| VerifyError::UntrustedChain(format!("bad OID constant {oid}")))?;
    if cert.extensions().iter().any(|e| e.oid == wanted) {
        Ok(())
    } else {
        Err(VerifyError::UntrustedChain(format!(
            "{what} certificate lacks Apple extension {oid}"
        )))
    }
}

/// The three segments of a compact JWS, found with SIMD byte search: the
/// first dot from the start, the last from the end (the payload, by far the
/// longest segment, is not scanned here). A dot inside the payload is then
/// refused by its base64url decoding; a dot cannot be in the other two.
fn split_jws(jws: &str) -> Option<(&str, &str, &str)> {
    let first = memchr::memchr(b'.', jws.as_bytes())?;
    let last = memchr::memrchr(b'.', jws.as_bytes())?;
    if last == first {
        return None;
    }
    // Both are ASCII dots, so these are character boundaries.
    Some((
        jws.get(..first)?,
        jws.get(first + 1..last)?,
        jws.get(last + 1..)?,
    ))
}

/// base64url (padding optional) with the SIMD decoder: a notification's
/// payload carries two whole JWS (~17 KB of base64), the warm path's largest
/// decode. Same acceptance as [`B64URL`] (tested against it), except that
/// non-zero trailing bits are tolerated — harmless here, the signature covers
/// the base64 text itself.
fn b64url_decode_fast(s: &str) -> Result<Vec<u8>, base64_simd::Error> {
    let b = s.as_bytes();
    let unpadded = match b {
        [rest @ .., b'=', b'='] | [rest @ .., b'='] if b.len().is_multiple_of(4) => rest,
        _ => b,
    };
    base64_simd::URL_SAFE_NO_PAD.decode_to_vec(unpadded)
}

/// Decodes base64url (padding optional); used by tests and tools.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    B64URL.decode(s).ok()
}

/// Standard base64 without the URL alphabet (x5c entries).
pub fn b64_std_encode(bytes: &[u8]) -> String {
    general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn jws_segments() {
        assert_eq!(split_jws("a.b.c"), Some(("a", "b", "c")));
        assert_eq!(split_jws("..."), Some(("", ".", "")));
        assert_eq!(split_jws("a.b"), None);
        assert_eq!(split_jws("abc"), None);
        // Four segments: the dot stays in the payload, whose decoding refuses it.
        let (_, p, _) = split_jws("a.b.c.d").unwrap();
        assert_eq!(p, "b.c");
        assert!(b64url_decode_fast(p).is_err());
    }

    proptest! {
        /// The fast decoder reads exactly what the reference one reads; it may
        /// also accept a last symbol with non-zero trailing bits (nothing else).
        #[test]
        fn fast_base64url_agrees_with_the_reference(s in "[A-Za-z0-9_=+/-]{0,40}") {
            let reference = B64URL.decode(&s);
            let fast = b64url_decode_fast(&s);
            match (&reference, &fast) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(base64::DecodeError::InvalidLastSymbol(..)), _) | (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "{s:?}: reference {reference:?}, fast {fast:?}"),
            }
        }

        #[test]
        fn fast_base64url_reads_every_encoding(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
            let padded = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
            prop_assert_eq!(b64url_decode_fast(&unpadded).unwrap(), bytes.clone());
            prop_assert_eq!(b64url_decode_fast(&padded).unwrap(), bytes);
        }
    }
}
