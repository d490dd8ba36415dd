//! Amazon SNS message authentication (specs/amazon.md §2.3).
//!
//! Who controls which byte: the whole body is the sender's until the
//! signature verifies, including `SigningCertURL`. So the URL is checked
//! before anything is fetched (HTTPS only, host `sns.<region>.amazonaws.com`
//! or `.amazonaws.com.cn`, a `.pem` path, no user info, no query), the
//! download follows no redirect and is bounded, and the certificate must
//! chain to a trusted root (the Mozilla roots, the same set rustls trusts),
//! be valid now, be a TLS server certificate for `sns.amazonaws.com`, and
//! carry an RSA key. A missing intermediate is fetched once from the
//! leaf's Authority Information Access URL when that URL is on Amazon's or
//! DigiCert's certificate hosts (the intermediate proves itself by the
//! chain; where it came from does not matter). Certificates are cached by
//! URL (bounded); their validity is checked again at every use.
//!
//! Then the signature: RSASSA-PKCS1-v1_5 with SHA-1 (`SignatureVersion` "1")
//! or SHA-256 ("2") over the canonical `Key\nValue\n` string of the message
//! type's fields, in SNS's fixed order.

use crate::http::{describe, read_limited, status_text};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest certificate file read.
const MAX_CERT_BYTES: usize = 64 * 1024;
/// Certificates kept (an attacker cannot grow the cache: only allowed hosts
/// are fetched, and the cache is cleared when full).
const MAX_CACHED: usize = 64;
/// Timeout of a certificate download.
const FETCH_TIMEOUT: Duration = Duration::from_secs(4);
/// The name an SNS signing certificate is issued for.
pub const SNS_CERT_NAME: &str = "sns.amazonaws.com";

/// The SNS fields storehook reads (`Type`-specific ones optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    /// `Notification`, `SubscriptionConfirmation`, `UnsubscribeConfirmation`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default, rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    #[serde(default, rename = "UnsubscribeURL")]
    pub unsubscribe_url: Option<String>,
}

/// Why a message is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsError {
    /// `SignatureVersion` other than 1 or 2.
    #[error("SignatureVersion {0:?} is not supported (1 or 2)")]
    UnsupportedSignatureVersion(String),
    /// A field the message type signs is missing.
    #[error("{0} is missing: it is part of what SNS signs")]
    MissingField(&'static str),
    /// `SigningCertURL` (or `SubscribeURL`) is not an SNS URL.
    #[error("{0}")]
    UntrustedUrl(String),
    /// The certificate does not chain, is expired, or is not SNS's.
    #[error("signing certificate refused: {0}")]
    UntrustedCertificate(String),
    /// The certificate could not be downloaded (transient).
    #[error("signing certificate unavailable: {0}")]
    CertificateUnavailable(String),
    /// The signature does not verify.
    #[error("signature does not verify: {0}")]
    BadSignature(String),
}

impl SnsError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedSignatureVersion(_) => "unsupported_signature_version",
            Self::MissingField(_) => "missing_signed_field",
            Self::UntrustedUrl(_) => "untrusted_certificate_url",
            Self::UntrustedCertificate(_) => "untrusted_certificate",
            Self::CertificateUnavailable(_) => "certificate_unavailable",
            Self::BadSignature(_) => "signature_invalid",
        }
    }

    /// HTTP status (Amazon does not resend after a 4xx; 503 when it should).
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingField(_) => 400,
            Self::CertificateUnavailable(_) => 503,
            _ => 401,
        }
    }
}

/// The canonical string SNS signs for this message's `Type`.
pub fn string_to_sign(m: &SnsMessage) -> Result<String, SnsError> {
    let mut out = String::with_capacity(m.message.len() + 256);
    let mut push = |k: &str, v: &str| {
        out.push_str(k);
        out.push('\n');
        out.push_str(v);
        out.push('\n');
    };
    match m.kind.as_str() {
        "Notification" => {
            push("Message", &m.message);
            push("MessageId", &m.message_id);
            if let Some(s) = &m.subject {
                push("Subject", s);
            }
            push("Timestamp", &m.timestamp);
            push("TopicArn", &m.topic_arn);
            push("Type", &m.kind);
        }
        _ => {
            let subscribe = m
                .subscribe_url
                .as_deref()
                .ok_or(SnsError::MissingField("SubscribeURL"))?;
            let token = m.token.as_deref().ok_or(SnsError::MissingField("Token"))?;
            push("Message", &m.message);
            push("MessageId", &m.message_id);
            push("SubscribeURL", subscribe);
            push("Timestamp", &m.timestamp);
            push("Token", token);
            push("TopicArn", &m.topic_arn);
            push("Type", &m.kind);
        }
    }
    Ok(out)
}

/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`.
pub fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
    region.is_some_and(|r| {
        !r.is_empty()
            && r.len() <= 32
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !r.starts_with('-')
    })
}

/// Where signing certificates may come from and what they must chain to.
#[derive(Clone)]
pub struct CertPolicy {
    /// Extra `host[:port]`s (tests only).
    extra_hosts: Vec<String>,
    /// Extra roots (DER; tests only): trusted for the download and the chain.
    extra_roots: Vec<Vec<u8>>,
    anchors: Arc<Vec<TrustAnchor<'static>>>,
}

impl std::fmt::Debug for CertPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPolicy")
            .field("extra_hosts", &self.extra_hosts)
            .field("extra_roots", &self.extra_roots.len())
            .field("anchors", &self.anchors.len())
            .finish()
    }
}

/// Certificates of a PEM text, DER, in order.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for p in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let p = p.map_err(|e| format!("not PEM: {e}"))?;
        if p.label == "CERTIFICATE" {
            out.push(p.contents);
        }
    }
    Ok(out)
}

impl CertPolicy {
    /// Production: SNS hosts, the Mozilla roots; plus the test extras.
    pub fn new(extra_hosts: Vec<String>, extra_roots_pem: Option<&[u8]>) -> Result<Self, String> {
        let extra_roots = match extra_roots_pem {
            None => Vec::new(),
            Some(pem) => {
                let certs = pem_certificates(pem)?;
                if certs.is_empty() {
                    return Err("holds no CERTIFICATE".into());
                }
                certs
            }
        };
        let mut anchors = Vec::new();
        for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            if let Ok(a) = webpki::anchor_from_trusted_cert(der) {
                anchors.push(a.to_owned());
            }
        }
        for der in &extra_roots {
            let der = CertificateDer::from(der.as_slice());
            let a = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| format!("extra root is not a certificate: {e}"))?;
            anchors.push(a.to_owned());
        }
        Ok(Self {
            extra_hosts: extra_hosts
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            extra_roots,
            anchors: Arc::new(anchors),
        })
    }

    /// Checks a URL storehook would fetch on the sender's word
    /// (`SigningCertURL`, `SubscribeURL`): HTTPS, an SNS host (or a test
    /// host), no user info; `pem` also requires a `.pem` path and no query.
    pub fn check_url(&self, what: &str, url: &str, pem: bool) -> Result<reqwest::Url, SnsError> {
        let refuse = |why: &str| SnsError::UntrustedUrl(format!("{what} refused: {why}"));
        let u = reqwest::Url::parse(url).map_err(|_| refuse("not a URL"))?;
        if u.scheme() != "https" {
            return Err(refuse("not https"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(refuse("carries user info"));
        }
        let host = u.host_str().unwrap_or("").to_ascii_lowercase();
        let authority = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let allowed =
            (u.port().is_none() && is_sns_host(&host)) || self.extra_hosts.contains(&authority);
        if !allowed {
            return Err(refuse("the host is not sns.<region>.amazonaws.com"));
        }
        if pem && (!u.path().ends_with(".pem") || u.query().is_some() || u.fragment().is_some()) {
            return Err(refuse("not a .pem certificate path"));
        }
        Ok(u)
    }

    /// Is this `host[:port]` an allowed Authority Information Access host
    /// (Amazon Trust Services, DigiCert; the test hosts)?
    fn aia_host_allowed(&self, u: &reqwest::Url) -> bool {
        let host = u.host_str().unwrap_or("").to_ascii_lowercase();
        let authority = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        if self.extra_hosts.contains(&authority) {
            return true;
        }
        u.port().is_none()
            && (host.ends_with(".amazontrust.com")
                || host == "cacerts.digicert.com"
                || host == "crt.sectigo.com")
    }

    fn http_client(&self, https_only: bool) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .user_agent(crate::http::USER_AGENT)
            .https_only(https_only);
        let mut roots = Vec::new();
        for der in &self.extra_roots {
            roots.push(reqwest::Certificate::from_der(der).map_err(|e| describe(&e))?);
        }
        if !roots.is_empty() {
            b = b.tls_certs_merge(roots);
        }
        b.build().map_err(|e| describe(&e))
    }
}

/// Why a certificate is refused.
#[derive(Debug)]
pub enum CertProblem {
    /// Chain, validity, usage or name.
    Chain(webpki::Error),
    /// Not an RSA key (SNS signs with RSA).
    NotRsa,
    /// Not issued for SNS.
    NotSns,
}

/// Is this an SNS name: `sns.amazonaws.com` (what SNS's signing certificates
/// are issued for) or a regional `sns.<region>.amazonaws.com[.cn]`?
fn is_sns_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == SNS_CERT_NAME || n == "sns.amazonaws.com.cn" || is_sns_host(&n)
}

/// The certificate names SNS: a DNS subject alternative name, or, only when
/// it has no such extension, the subject common name (older certificates).
fn issued_for_sns(x: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    if let Ok(Some(san)) = x.subject_alternative_name() {
        return san.value.general_names.iter().any(
            |g| matches!(g, x509_parser::extensions::GeneralName::DNSName(d) if is_sns_name(d)),
        );
    }
    x.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(is_sns_name)
}

/// A verified signing certificate: its RSA key and validity.
#[derive(Debug, Clone)]
pub struct SigningCert {
    /// PKCS#1 `RSAPublicKey` DER.
    rsa_key: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

impl SigningCert {
    /// Verifies `chain` (leaf first, then any intermediates, DER) at `now`
    /// (Unix seconds) against the policy's anchors; `extra` are further
    /// intermediates (fetched by AIA).
    pub fn verify(
        policy: &CertPolicy,
        chain: &[Vec<u8>],
        extra: &[Vec<u8>],
        now: i64,
    ) -> Result<Self, CertProblem> {
        let leaf_der = chain
            .first()
            .ok_or(CertProblem::Chain(webpki::Error::BadDer))?;
        // A test root that IS the signing certificate (a self-signed test
        // certificate given in AMAZON_SNS_TRUST_ROOTS): trusted as pinned, its
        // validity checked below. Never one of the public roots.
        let pinned = policy.extra_roots.iter().any(|r| r == leaf_der);
        let leaf_der = CertificateDer::from(leaf_der.as_slice());
        if !pinned {
            let leaf = webpki::EndEntityCert::try_from(&leaf_der).map_err(CertProblem::Chain)?;
            let intermediates: Vec<CertificateDer<'_>> = chain[1..]
                .iter()
                .chain(extra)
                .map(|d| CertificateDer::from(d.as_slice()))
                .collect();
            let time =
                UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
            leaf.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &policy.anchors,
                &intermediates,
                time,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(CertProblem::Chain)?;
        }
        let (_, x) = x509_parser::parse_x509_certificate(&leaf_der)
            .map_err(|_| CertProblem::Chain(webpki::Error::BadDer))?;
        if pinned {
            let (from, to) = (
                x.validity().not_before.timestamp(),
                x.validity().not_after.timestamp(),
            );
            if now < from {
                return Err(CertProblem::Chain(webpki::Error::CertNotValidYet {
                    time: UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64)),
                    not_before: UnixTime::since_unix_epoch(Duration::from_secs(from.max(0) as u64)),
                }));
            }
            if now > to {
                return Err(CertProblem::Chain(webpki::Error::CertExpired {
                    time: UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64)),
                    not_after: UnixTime::since_unix_epoch(Duration::from_secs(to.max(0) as u64)),
                }));
            }
        }
        if !issued_for_sns(&x) {
            return Err(CertProblem::NotSns);
        }
        let spki = &x.tbs_certificate.subject_pki;
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
            return Err(CertProblem::NotRsa);
        }
        Ok(Self {
            rsa_key: spki.subject_public_key.data.to_vec(),
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
        })
    }

    /// Valid at `now` (Unix seconds)?
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Verifies an SNS signature (`version` "1" SHA-1, "2" SHA-256).
    pub fn verify_signature(
        &self,
        version: &str,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<(), SnsError> {
        use aws_lc_rs::signature::{
            RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256,
            UnparsedPublicKey,
        };
        let alg = match version {
            "1" => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &RSA_PKCS1_2048_8192_SHA256,
            other => return Err(SnsError::UnsupportedSignatureVersion(other.to_owned())),
        };
        UnparsedPublicKey::new(alg, &self.rsa_key)
            .verify(signed, signature)
            .map_err(|_| {
                SnsError::BadSignature(format!(
                    "RSA PKCS#1 v1.5 {} over the canonical string",
                    if version == "1" { "SHA-1" } else { "SHA-256" }
                ))
            })
    }
}

/// Fetches and caches signing certificates.
pub struct CertStore {
    policy: CertPolicy,
    https: reqwest::Client,
    /// For AIA downloads only (rare): built on first use, not at cold start.
    http: std::sync::OnceLock<reqwest::Client>,
    cache: Mutex<HashMap<String, Arc<SigningCert>>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// A store for `policy`.
    pub fn new(policy: CertPolicy) -> Result<Self, String> {
        Ok(Self {
            https: policy.http_client(true)?,
            http: std::sync::OnceLock::new(),
            policy,
            cache: Mutex::new(HashMap::new()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &CertPolicy {
        &self.policy
    }

    /// Certificate downloads so far (tests: the cache works).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The verified certificate at `url`, valid at `now` (Unix seconds).
    pub async fn get(&self, url: &str, now: i64) -> Result<Arc<SigningCert>, SnsError> {
        let u = self.policy.check_url("SigningCertURL", url, true)?;
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(u.as_str())
            .cloned();
        if let Some(c) = cached {
            if c.valid_at(now) {
                return Ok(c);
            }
            return Err(SnsError::UntrustedCertificate(
                "the certificate is not valid now".into(),
            ));
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = fetch(&self.https, u.clone()).await?;
        let chain = pem_certificates(&body)
            .map_err(|e| SnsError::UntrustedCertificate(format!("the file is {e}")))?;
        if chain.is_empty() {
            return Err(SnsError::UntrustedCertificate(
                "the file holds no certificate".into(),
            ));
        }
        let cert = match SigningCert::verify(&self.policy, &chain, &[], now) {
            Ok(c) => c,
            Err(CertProblem::Chain(webpki::Error::UnknownIssuer)) => {
                // The file holds the leaf only: fetch its issuer from the
                // leaf's AIA URL (allowed hosts only), then verify again.
                let extra = self.aia_intermediates(&chain[0]).await?;
                SigningCert::verify(&self.policy, &chain, &extra, now)
                    .map_err(|e| SnsError::UntrustedCertificate(cert_error(&e)))?
            }
            Err(e) => return Err(SnsError::UntrustedCertificate(cert_error(&e))),
        };
        let cert = Arc::new(cert);
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(u.to_string(), cert.clone());
        Ok(cert)
    }

    /// Confirms an SNS subscription: `GET` of its (checked) `SubscribeURL`.
    pub async fn confirm_subscription(&self, u: reqwest::Url) -> Result<(), String> {
        let resp = self.https.get(u).send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        if status == 200 {
            Ok(())
        } else {
            Err(status_text(status))
        }
    }

    async fn aia_intermediates(&self, leaf: &[u8]) -> Result<Vec<Vec<u8>>, SnsError> {
        let unknown = || {
            SnsError::UntrustedCertificate(
                "it does not chain to a trusted root (issuer unknown)".into(),
            )
        };
        let (_, x) = x509_parser::parse_x509_certificate(leaf).map_err(|_| unknown())?;
        let mut urls = Vec::new();
        for ext in x.extensions() {
            if let x509_parser::extensions::ParsedExtension::AuthorityInfoAccess(aia) =
                ext.parsed_extension()
            {
                for d in &aia.accessdescs {
                    if d.access_method
                        == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS
                        && let x509_parser::extensions::GeneralName::URI(uri) = &d.access_location
                    {
                        urls.push((*uri).to_owned());
                    }
                }
            }
        }
        let mut out = Vec::new();
        for url in urls.into_iter().take(2) {
            let Ok(u) = reqwest::Url::parse(&url) else {
                continue;
            };
            if !matches!(u.scheme(), "http" | "https") || !self.policy.aia_host_allowed(&u) {
                continue;
            }
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let client = match self.http.get() {
                Some(c) => c,
                None => {
                    let c = self
                        .policy
                        .http_client(false)
                        .map_err(SnsError::CertificateUnavailable)?;
                    self.http.get_or_init(|| c)
                }
            };
            let body = fetch(client, u).await?;
            if body.starts_with(b"-----BEGIN") {
                out.extend(pem_certificates(&body).unwrap_or_default());
            } else {
                out.push(body);
            }
        }
        if out.is_empty() {
            return Err(unknown());
        }
        Ok(out)
    }
}

async fn fetch(client: &reqwest::Client, u: reqwest::Url) -> Result<Vec<u8>, SnsError> {
    let resp = client
        .get(u)
        .send()
        .await
        .map_err(|e| SnsError::CertificateUnavailable(describe(&e)))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(SnsError::CertificateUnavailable(status_text(status)));
    }
    read_limited(resp, MAX_CERT_BYTES)
        .await
        .map_err(SnsError::CertificateUnavailable)
}

fn cert_error(e: &CertProblem) -> String {
    let e = match e {
        CertProblem::NotRsa => return "its key is not RSA".into(),
        CertProblem::NotSns => return format!("it is not issued for {SNS_CERT_NAME}"),
        CertProblem::Chain(e) => e,
    };
    match e {
        webpki::Error::UnknownIssuer => {
            "it does not chain to a trusted root (issuer unknown)".into()
        }
        webpki::Error::CertExpired { .. } => "it has expired".into(),
        webpki::Error::CertNotValidYet { .. } => "it is not valid yet".into(),
        webpki::Error::RequiredEkuNotFoundContext(_) => "it is not a TLS server certificate".into(),
        other => format!("{other:?}").chars().take(120).collect(),
    }
}

/// Authenticates a parsed message: URL, certificate, signature.
pub async fn authenticate(store: &CertStore, m: &SnsMessage, now: i64) -> Result<(), SnsError> {
    if !matches!(m.signature_version.as_str(), "1" | "2") {
        return Err(SnsError::UnsupportedSignatureVersion(
            m.signature_version.chars().take(8).collect(),
        ));
    }
    let signed = string_to_sign(m)?;
    use base64::Engine;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(m.signature.trim())
        .map_err(|_| SnsError::BadSignature("Signature is not base64".into()))?;
    // The URL is checked before anything is fetched (also by `get`).
    store
        .policy
        .check_url("SigningCertURL", &m.signing_cert_url, true)?;
    let cert = store.get(&m.signing_cert_url, now).await?;
    cert.verify_signature(&m.signature_version, signed.as_bytes(), &signature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn sns_hosts_are_recognised_and_lookalikes_are_not() {
        for ok in [
            "sns.us-east-1.amazonaws.com",
            "sns.eu-west-1.amazonaws.com",
            "sns.cn-north-1.amazonaws.com.cn",
        ] {
            assert!(is_sns_host(ok), "{ok}");
        }
        for bad in [
            "sns.amazonaws.com",
            "sns..amazonaws.com",
            "sns.us-east-1.amazonaws.com.evil.com",
            "evil.com",
            "xsns.us-east-1.amazonaws.com",
            "sns.us_east.amazonaws.com",
            "sns.a.b.amazonaws.com",
            "sns.-x.amazonaws.com",
        ] {
            assert!(!is_sns_host(bad), "{bad}");
        }
    }

    #[test]
    fn certificate_urls_are_checked_before_any_fetch() {
        let p = CertPolicy::new(vec!["localhost:8443".into()], None).unwrap();
        let ok = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem";
        assert!(p.check_url("SigningCertURL", ok, true).is_ok());
        assert!(
            p.check_url("SigningCertURL", "https://localhost:8443/c.pem", true)
                .is_ok()
        );
        for bad in [
            "http://sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com:8443/a.pem",
            "https://evil.com/a.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/a.pem",
            "https://user@sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com/a.txt",
            "https://sns.us-east-1.amazonaws.com/a.pem?x=1",
            "https://localhost/c.pem",
            "https://localhost:9999/c.pem",
            "file:///etc/passwd.pem",
            "not a url",
        ] {
            let e = p.check_url("SigningCertURL", bad, true).unwrap_err();
            assert_eq!(e.code(), "untrusted_certificate_url", "{bad}");
            assert_eq!(e.status(), 401);
        }
    }

    #[test]
    fn the_string_to_sign_follows_the_message_type() {
        let mut m = SnsMessage {
            kind: "Notification".into(),
            message_id: "id".into(),
            topic_arn: "arn".into(),
            message: "line1\nline2".into(),
            timestamp: "t".into(),
            signature_version: "2".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subject: None,
            token: Some("ignored".into()),
            subscribe_url: Some("ignored".into()),
            unsubscribe_url: None,
        };
        assert_eq!(
            string_to_sign(&m).unwrap(),
            "Message\nline1\nline2\nMessageId\nid\nTimestamp\nt\nTopicArn\narn\nType\nNotification\n"
        );
        m.subject = Some("s".into());
        assert!(
            string_to_sign(&m)
                .unwrap()
                .contains("MessageId\nid\nSubject\ns\nTimestamp")
        );
        m.kind = "SubscriptionConfirmation".into();
        assert_eq!(
            string_to_sign(&m).unwrap(),
            "Message\nline1\nline2\nMessageId\nid\nSubscribeURL\nignored\nTimestamp\nt\nToken\nignored\nTopicArn\narn\nType\nSubscriptionConfirmation\n"
        );
        m.token = None;
        assert_eq!(
            string_to_sign(&m).unwrap_err().code(),
            "missing_signed_field"
        );
    }
}
