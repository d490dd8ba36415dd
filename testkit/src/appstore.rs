//! A generated Apple-like PKI for tests and benchmarks: a root, a WWDR-like
//! intermediate and a receipt-signing leaf, with or without Apple's OIDs, on
//! P-256 or P-384, and helpers that sign JWS and whole notifications with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, SignatureAlgorithm,
};
use serde_json::{Value, json};
use storehook_shared::stores::appstore::verify::{OID_INTERMEDIATE, OID_LEAF, b64_std_encode};

/// Curve of the root and intermediate (the leaf is always P-256: ES256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// ecdsa-with-SHA256 signatures.
    P256,
    /// ecdsa-with-SHA384 signatures, like Apple's real chain.
    P384,
}

impl Curve {
    fn alg(self) -> &'static SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// How to build the chain (defaults: a correct Apple-like chain).
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// Curve of root and intermediate.
    pub curve: Curve,
    /// Put OID 1.2.840.113635.100.6.11.1 in the leaf.
    pub leaf_oid: bool,
    /// Put OID 1.2.840.113635.100.6.2.1 in the intermediate.
    pub intermediate_oid: bool,
    /// Leaf validity (y, m, d) .. (y, m, d).
    pub leaf_validity: ((i32, u8, u8), (i32, u8, u8)),
    /// Mark the intermediate as a CA.
    pub intermediate_is_ca: bool,
    /// Make the leaf self-signed instead of signed by the intermediate.
    pub self_signed_leaf: bool,
}

impl Default for PkiOptions {
    fn default() -> Self {
        Self {
            curve: Curve::P384,
            leaf_oid: true,
            intermediate_oid: true,
            leaf_validity: ((2020, 1, 1), (2040, 1, 1)),
            intermediate_is_ca: true,
            self_signed_leaf: false,
        }
    }
}

/// A generated chain and the leaf's signing key.
#[derive(Debug)]
pub struct TestPki {
    /// Root certificate (DER): add it as a trusted root.
    pub root_der: Vec<u8>,
    /// Intermediate certificate (DER).
    pub intermediate_der: Vec<u8>,
    /// Leaf certificate (DER).
    pub leaf_der: Vec<u8>,
    /// Leaf private key (PKCS#8 PEM).
    pub leaf_key_pem: String,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "storehook test");
    dn.push(DnType::CountryName, "US");
    dn
}

fn oid(s: &str) -> Vec<u64> {
    s.split('.').map(|p| p.parse().unwrap()).collect()
}

impl TestPki {
    /// A correct Apple-like chain (P-384 root and intermediate).
    pub fn new() -> Self {
        Self::with(PkiOptions::default())
    }

    /// The root certificate as PEM (for `--trust-root`).
    pub fn root_pem(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.root_der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// A chain built as `o` says.
    pub fn with(o: PkiOptions) -> Self {
        let root_key = KeyPair::generate_for(o.curve.alg()).unwrap();
        let mut root_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        root_params.distinguished_name = name("storehook Test Root CA");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.not_before = rcgen::date_time_ymd(2015, 1, 1);
        root_params.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let root_cert = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);

        let inter_key = KeyPair::generate_for(o.curve.alg()).unwrap();
        let mut inter_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        inter_params.distinguished_name = name("storehook Test WWDR Intermediate");
        inter_params.is_ca = if o.intermediate_is_ca {
            IsCa::Ca(BasicConstraints::Constrained(0))
        } else {
            IsCa::ExplicitNoCa
        };
        inter_params.not_before = rcgen::date_time_ymd(2016, 1, 1);
        inter_params.not_after = rcgen::date_time_ymd(2044, 1, 1);
        if o.intermediate_oid {
            inter_params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &oid(OID_INTERMEDIATE),
                    vec![0x05, 0x00],
                ));
        }
        let inter_cert = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
        let inter_issuer = Issuer::new(inter_params, inter_key);

        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf_params.distinguished_name = name("storehook Test Receipt Signing");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        let ((y1, m1, d1), (y2, m2, d2)) = o.leaf_validity;
        leaf_params.not_before = rcgen::date_time_ymd(y1, m1, d1);
        leaf_params.not_after = rcgen::date_time_ymd(y2, m2, d2);
        if o.leaf_oid {
            leaf_params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &oid(OID_LEAF),
                    vec![0x05, 0x00],
                ));
        }
        let leaf_cert = if o.self_signed_leaf {
            leaf_params.self_signed(&leaf_key).unwrap()
        } else {
            leaf_params.signed_by(&leaf_key, &inter_issuer).unwrap()
        };

        Self {
            root_der: root_cert.der().to_vec(),
            intermediate_der: inter_cert.der().to_vec(),
            leaf_der: leaf_cert.der().to_vec(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }

    /// The x5c header value: leaf, intermediate, root (standard base64).
    pub fn x5c(&self) -> Vec<String> {
        vec![
            b64_std_encode(&self.leaf_der),
            b64_std_encode(&self.intermediate_der),
            b64_std_encode(&self.root_der),
        ]
    }

    /// Signs `payload` as a compact ES256 JWS with the standard Apple header.
    pub fn sign(&self, payload: &Value) -> String {
        self.sign_with_header(&json!({"alg": "ES256", "x5c": self.x5c()}), payload)
    }

    /// Signs `payload` under an arbitrary header (the signature is always ES256
    /// with the leaf key, whatever the header claims).
    pub fn sign_with_header(&self, header: &Value, payload: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap());
        let msg = format!("{h}.{p}");
        let key = EncodingKey::from_ec_pem(self.leaf_key_pem.as_bytes()).unwrap();
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key, Algorithm::ES256).unwrap();
        format!("{msg}.{sig}")
    }

    /// The HTTP body of a notification whose `data.signedTransactionInfo` and
    /// `data.signedRenewalInfo` (when given) are signed by this PKI too.
    pub fn notification_body(
        &self,
        mut payload: Value,
        transaction: Option<&Value>,
        renewal: Option<&Value>,
    ) -> Vec<u8> {
        if let Some(t) = transaction {
            payload["data"]["signedTransactionInfo"] = Value::String(self.sign(t));
        }
        if let Some(r) = renewal {
            payload["data"]["signedRenewalInfo"] = Value::String(self.sign(r));
        }
        serde_json::to_vec(&json!({"signedPayload": self.sign(&payload)})).unwrap()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// Builders of realistic payloads for a subscription of `com.example.app`.
pub mod payloads {
    use serde_json::{Value, json};

    /// Bundle id used by the builders.
    pub const BUNDLE_ID: &str = "com.example.app";
    /// App Store app id used by the builders.
    pub const APP_APPLE_ID: i64 = 1_234_567_890;
    /// 2025-03-01T00:00:00Z in ms; the builders' base time.
    pub const T0: i64 = 1_740_787_200_000;
    /// One day in ms.
    pub const DAY: i64 = 86_400_000;

    /// `responseBodyV2DecodedPayload` with `data` (no signed parts yet).
    pub fn notification(
        ntype: &str,
        subtype: Option<&str>,
        uuid: &str,
        signed_date: i64,
        env: &str,
        status: Option<i64>,
    ) -> Value {
        let mut p = json!({
            "notificationType": ntype,
            "notificationUUID": uuid,
            "version": "2.0",
            "signedDate": signed_date,
            "data": {
                "appAppleId": APP_APPLE_ID,
                "bundleId": BUNDLE_ID,
                "bundleVersion": "42",
                "environment": env,
            }
        });
        if let Some(s) = subtype {
            p["subtype"] = json!(s);
        }
        if let Some(s) = status {
            p["data"]["status"] = json!(s);
        }
        p
    }

    /// An auto-renewable transaction of a monthly (or `period_days`) plan.
    pub fn transaction(
        original_id: &str,
        tx_id: &str,
        product: &str,
        purchase: i64,
        period_days: i64,
        env: &str,
    ) -> Value {
        json!({
            "transactionId": tx_id,
            "originalTransactionId": original_id,
            "webOrderLineItemId": format!("woli-{tx_id}"),
            "bundleId": BUNDLE_ID,
            "productId": product,
            "subscriptionGroupIdentifier": "20000001",
            "purchaseDate": purchase,
            "originalPurchaseDate": T0,
            "expiresDate": purchase + period_days * DAY,
            "quantity": 1,
            "type": "Auto-Renewable Subscription",
            "appAccountToken": "7e3fb20b-4cdb-47cc-936d-99d65f608138",
            "inAppOwnershipType": "PURCHASED",
            "signedDate": purchase,
            "environment": env,
            "transactionReason": "PURCHASE",
            "storefront": "FRA",
            "storefrontId": "143442",
            "price": 4990,
            "currency": "EUR",
        })
    }

    /// Renewal info for `original_id`.
    pub fn renewal(
        original_id: &str,
        product: &str,
        auto_renew: bool,
        signed_date: i64,
        env: &str,
    ) -> Value {
        json!({
            "originalTransactionId": original_id,
            "productId": product,
            "autoRenewProductId": product,
            "autoRenewStatus": if auto_renew { 1 } else { 0 },
            "signedDate": signed_date,
            "environment": env,
            "recentSubscriptionStartDate": T0,
            "renewalDate": signed_date + 30 * DAY,
            "currency": "EUR",
            "renewalPrice": 4990,
        })
    }
}
