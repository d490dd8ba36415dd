//! Signature verification with the app's IAP public key (specs/huawei.md §5.1).
//!
//! * Key: base64 of an X.509 `SubjectPublicKeyInfo` DER of an RSA key, as
//!   AppGallery Connect shows it (PEM and a bare PKCS#1 `RSAPublicKey` are
//!   tolerated). It is parsed with `x509-parser` (no hand-written ASN.1); the
//!   `RSAPublicKey` inside is handed to aws-lc-rs, which takes PKCS#1 DER in
//!   every version (1.19 also takes SPKI). Parsed once, at cold start.
//! * Data: the UTF-8 bytes of the signed string exactly as received.
//! * Signature: standard base64.
//! * Algorithm, by `signatureAlgorithm`: absent/empty or `SHA256WithRSA` →
//!   RSASSA-PKCS1-v1_5 with SHA-256; `SHA256WithRSA/PSS` → RSASSA-PSS with
//!   SHA-256, MGF1-SHA-256 and a 32-byte salt (Java's convention), or,
//!   defensively, the maximum salt length; anything else is refused.
//!   The algorithm name is matched ignoring ASCII case (Java's own spelling
//!   is `SHA256withRSA`).

use aws_lc_rs::signature::{
    self, ParsedPublicKey, RsaParameters, RsaPssSaltLength, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;
use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};

/// RSASSA-PSS, SHA-256, salt as long as possible (the defensive second try).
static RSA_PSS_2048_8192_SHA256_MAX_SALT: RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

/// Smallest and largest RSA modulus accepted (bits), as aws-lc-rs verifies.
pub const MIN_KEY_BITS: u32 = 2048;
/// See [`MIN_KEY_BITS`].
pub const MAX_KEY_BITS: u32 = 8192;

/// The signature schemes Huawei documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the default, and the only one in v1).
    Sha256WithRsa,
    /// RSASSA-PSS with SHA-256.
    Sha256WithRsaPss,
}

impl SignatureAlgorithm {
    /// Huawei's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sha256WithRsa => "SHA256WithRSA",
            Self::Sha256WithRsaPss => "SHA256WithRSA/PSS",
        }
    }

    /// The algorithm a `signatureAlgorithm` field names; absent or empty means
    /// SHA256WithRSA. A name the spec does not list is refused.
    pub fn from_field(field: Option<&str>) -> Result<Self, VerifyError> {
        let name = field.map(str::trim).unwrap_or_default();
        if name.is_empty() || name.eq_ignore_ascii_case("SHA256WithRSA") {
            Ok(Self::Sha256WithRsa)
        } else if name.eq_ignore_ascii_case("SHA256WithRSA/PSS") {
            Ok(Self::Sha256WithRsaPss)
        } else {
            Err(VerifyError::UnsupportedAlgorithm(
                name.chars().take(64).collect(),
            ))
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature is missing or not standard base64.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// `signatureAlgorithm` names a scheme Huawei does not document.
    #[error("unsupported signature algorithm {0:?}: expected SHA256WithRSA or SHA256WithRSA/PSS")]
    UnsupportedAlgorithm(String),
    /// No configured key verifies the signature.
    #[error("signature does not verify with the configured IAP public key ({0})")]
    InvalidSignature(&'static str),
}

impl VerifyError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedSignature(_) => "malformed_signature",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::InvalidSignature(_) => "invalid_signature",
        }
    }

    /// HTTP status: 400 for malformed input, 401 for failed authentication.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedSignature(_) => 400,
            Self::UnsupportedAlgorithm(_) | Self::InvalidSignature(_) => 401,
        }
    }
}

/// Why a configured public key is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64 (or PEM).
    #[error("the IAP public key is not base64: {0}")]
    NotBase64(String),
    /// Neither a SubjectPublicKeyInfo nor an RSAPublicKey.
    #[error("the IAP public key is not an X.509 SubjectPublicKeyInfo (DER)")]
    NotSpki,
    /// A key of another type.
    #[error("the IAP public key is not an RSA key (algorithm {0})")]
    NotRsa(String),
    /// Outside 2048..=8192 bits.
    #[error("the IAP public key has {0} bits; {MIN_KEY_BITS}..={MAX_KEY_BITS} are accepted")]
    Size(u32),
    /// aws-lc-rs refused it.
    #[error("the IAP public key was rejected: {0}")]
    Rejected(String),
}

/// An app's IAP public key, parsed for every scheme Huawei uses.
#[derive(Clone)]
pub struct IapPublicKey {
    pkcs1: ParsedPublicKey,
    pss: ParsedPublicKey,
    pss_max_salt: ParsedPublicKey,
    bits: u32,
    fingerprint: String,
}

impl fmt::Debug for IapPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IapPublicKey")
            .field("bits", &self.bits)
            .field("sha256", &self.fingerprint)
            .finish()
    }
}

impl IapPublicKey {
    /// From the base64 text AppGallery Connect shows (whitespace and PEM
    /// armour are ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let b64: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("-----"))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| KeyError::NotBase64(e.to_string()))?;
        Self::from_der(&der)
    }

    /// From DER: a SubjectPublicKeyInfo of an RSA key, or (tolerated) a bare
    /// PKCS#1 RSAPublicKey.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let (rsa_public_key, from_spki) = match SubjectPublicKeyInfo::from_der(der) {
            Ok(([], spki)) => {
                if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
                    return Err(KeyError::NotRsa(spki.algorithm.algorithm.to_id_string()));
                }
                (spki.subject_public_key.data.to_vec(), true)
            }
            _ => (der.to_vec(), false),
        };
        let bits = RsaParameters::public_modulus_len(&rsa_public_key).map_err(|_| {
            if from_spki {
                KeyError::Rejected(
                    "the RSAPublicKey inside the SubjectPublicKeyInfo is invalid".into(),
                )
            } else {
                KeyError::NotSpki
            }
        })?;
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
            return Err(KeyError::Size(bits));
        }
        let parse = |alg: &'static RsaParameters| {
            UnparsedPublicKey::new(alg, &rsa_public_key)
                .parse()
                .map_err(|e| KeyError::Rejected(e.to_string()))
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let fingerprint = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            pkcs1: parse(&signature::RSA_PKCS1_2048_8192_SHA256)?,
            pss: parse(&signature::RSA_PSS_2048_8192_SHA256)?,
            pss_max_salt: parse(&RSA_PSS_2048_8192_SHA256_MAX_SALT)?,
            bits,
            fingerprint,
        })
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// First 8 bytes of the SHA-256 of the DER, hex (safe to log: it is a public key).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signature` over `data` verifies under `algorithm`.
    pub fn verifies(&self, algorithm: SignatureAlgorithm, data: &[u8], signature: &[u8]) -> bool {
        match algorithm {
            SignatureAlgorithm::Sha256WithRsa => self.pkcs1.verify_sig(data, signature).is_ok(),
            SignatureAlgorithm::Sha256WithRsaPss => {
                self.pss.verify_sig(data, signature).is_ok()
                    || self.pss_max_salt.verify_sig(data, signature).is_ok()
            }
        }
    }
}

/// Verifies `signature_b64` over the UTF-8 bytes of `data` with any of `keys`
/// (several keys: several apps, or a key rotation), under the algorithm the
/// `algorithm_field` names. Returns the algorithm used.
pub fn verify_signature(
    keys: &[IapPublicKey],
    algorithm_field: Option<&str>,
    data: &str,
    signature_b64: &str,
) -> Result<SignatureAlgorithm, VerifyError> {
    let algorithm = SignatureAlgorithm::from_field(algorithm_field)?;
    let sig = signature_b64.trim();
    if sig.is_empty() {
        return Err(VerifyError::MalformedSignature("empty".into()));
    }
    let sig = STANDARD
        .decode(sig.as_bytes())
        .map_err(|e| VerifyError::MalformedSignature(format!("not standard base64: {e}")))?;
    if keys
        .iter()
        .any(|k| k.verifies(algorithm, data.as_bytes(), &sig))
    {
        Ok(algorithm)
    } else {
        Err(VerifyError::InvalidSignature(algorithm.as_str()))
    }
}
