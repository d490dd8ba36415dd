//! Test support for Amazon: a generated SNS PKI (a test root, an
//! intermediate, an RSA signing certificate for `sns.amazonaws.com`, a TLS
//! certificate for `localhost`), the HTTPS loopback server that serves the
//! signing certificate (as SNS's `SigningCertURL` does), SNS message signing
//! (SignatureVersion 1 and 2, the real canonical string), RTN payloads and a
//! fake Receipt Verification Service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::loopback::{Seen, Server, response};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The app package the tests use.
pub const PACKAGE: &str = "com.example.fire";
/// The topic ARN the tests use.
pub const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:033616359524:LT0XA";
/// The RVS shared secret the fake expects.
pub const SHARED_SECRET: &str = "2:test-shared-secret";
/// An Amazon user id.
pub const USER: &str = "io9oFdzmCSMuKk_pp9pYccoIHRfc6kSAAYaNo51xZrg=";

/// How the signing certificate is made.
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// The name (SAN) of the signing certificate.
    pub leaf_name: String,
    /// Validity `((y, m, d), (y, m, d))`.
    pub leaf_validity: ((i32, u8, u8), (i32, u8, u8)),
    /// Mark the leaf for TLS server authentication (SNS's certificates are).
    pub server_auth: bool,
    /// An RSA key (SNS's are); else P-256.
    pub rsa: bool,
    /// An Authority Information Access caIssuers URL on the leaf.
    pub aia_url: Option<String>,
    /// Name the leaf in a subject alternative name (else only in its common name).
    pub san: bool,
    /// Make the leaf self-signed, marked as a CA (what `openssl req -x509` makes).
    pub self_signed: bool,
}

impl Default for PkiOptions {
    fn default() -> Self {
        Self {
            leaf_name: "sns.amazonaws.com".into(),
            leaf_validity: ((2020, 1, 1), (2040, 1, 1)),
            server_auth: true,
            rsa: true,
            aia_url: None,
            san: true,
            self_signed: false,
        }
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The AIA extension (caIssuers URI), encoded with yasna.
fn aia_extension(url: &str) -> CustomExtension {
    let content = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                        1, 3, 6, 1, 5, 5, 7, 48, 2,
                    ]));
                w.next()
                    .write_tagged_implicit(yasna::Tag::context(6), |w| w.write_ia5_string(url));
            });
        });
    });
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], content)
}

/// A generated SNS PKI.
pub struct SnsPki {
    /// The test root (trusted through `AMAZON_SNS_TRUST_ROOTS`), PEM.
    pub root_pem: String,
    /// The intermediate, PEM.
    pub intermediate_pem: String,
    /// The signing certificate, PEM.
    pub leaf_pem: String,
    leaf_key: Option<RsaKeyPair>,
    tls_acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for SnsPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsPki").finish_non_exhaustive()
    }
}

impl SnsPki {
    /// The default PKI.
    pub fn new() -> Self {
        Self::with(PkiOptions::default())
    }

    /// A PKI as `o` says.
    pub fn with(o: PkiOptions) -> Self {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut root_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        root_params.distinguished_name = name("storehook Test SNS Root CA");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.not_before = rcgen::date_time_ymd(2015, 1, 1);
        root_params.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let root_cert = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);

        let inter_key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
        let mut inter_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        inter_params.distinguished_name = name("storehook Test RSA 2048 M01");
        inter_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        inter_params.not_before = rcgen::date_time_ymd(2016, 1, 1);
        inter_params.not_after = rcgen::date_time_ymd(2044, 1, 1);
        let inter_cert = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
        let inter_issuer = Issuer::new(inter_params, inter_key);

        let (leaf_key, signer) = if o.rsa {
            let k = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
            let pkcs8 =
                aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k).unwrap();
            let rc = KeyPair::from_pkcs8_der_and_sign_algo(
                &rustls_pki_types_der(pkcs8.as_ref()),
                &PKCS_RSA_SHA256,
            )
            .unwrap();
            (rc, Some(k))
        } else {
            (
                KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
                None,
            )
        };
        let sans = if o.san {
            vec![o.leaf_name.clone()]
        } else {
            Vec::new()
        };
        let mut leaf_params = CertificateParams::new(sans).unwrap();
        leaf_params.distinguished_name = name(&o.leaf_name);
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        let ((y1, m1, d1), (y2, m2, d2)) = o.leaf_validity;
        leaf_params.not_before = rcgen::date_time_ymd(y1, m1, d1);
        leaf_params.not_after = rcgen::date_time_ymd(y2, m2, d2);
        leaf_params.extended_key_usages = if o.server_auth {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::EmailProtection]
        };
        if let Some(url) = &o.aia_url {
            leaf_params.custom_extensions.push(aia_extension(url));
        }
        let leaf_cert = if o.self_signed {
            leaf_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            leaf_params.self_signed(&leaf_key).unwrap()
        } else {
            leaf_params.signed_by(&leaf_key, &inter_issuer).unwrap()
        };

        // The HTTPS server's own certificate: localhost, from the same root.
        let tls_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut tls_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        tls_params.distinguished_name = name("localhost");
        tls_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        tls_params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let tls_cert = tls_params.signed_by(&tls_key, &root_issuer).unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![tls_cert.der().clone()],
                tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
                    tls_key.serialize_der().into(),
                ),
            )
            .unwrap();

        Self {
            root_pem: pem(root_cert.der()),
            intermediate_pem: pem(inter_cert.der()),
            leaf_pem: pem(leaf_cert.der()),
            leaf_key: signer,
            tls_acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }

    /// The signing certificate file SNS serves: leaf then intermediate.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.leaf_pem, self.intermediate_pem)
    }

    /// Starts the HTTPS server answering `/cert.pem` (the chain),
    /// `/leaf-only.pem`, `/intermediate.pem`, `/confirm` (200) and 404 else.
    pub async fn serve(&self) -> Server {
        let chain = self.chain_pem();
        let leaf = self.leaf_pem.clone();
        let inter = self.intermediate_pem.clone();
        Server::start_tls(self.tls_acceptor.clone(), move |s: &Seen| {
            let path = s.target.split('?').next().unwrap_or("");
            Some(match path {
                "/cert.pem" => response(200, &[], &chain),
                "/leaf-only.pem" => response(200, &[], &leaf),
                "/intermediate.pem" => response(200, &[], &inter),
                "/confirm" => response(200, &[], "<ConfirmSubscriptionResponse/>"),
                _ => response(404, &[], "not found"),
            })
        })
        .await
    }

    /// Starts an HTTPS server (this PKI's TLS certificate) answering `body`
    /// to every request: another PKI's chain served from a trusted test host.
    pub async fn serve_file(&self, body: String) -> Server {
        Server::start_tls(self.tls_acceptor.clone(), move |_: &Seen| {
            Some(response(200, &[], &body))
        })
        .await
    }

    /// Signs `string_to_sign` (`version` "1" SHA-1, "2" SHA-256), base64.
    pub fn sign(&self, version: &str, string_to_sign: &str) -> String {
        let key = self.leaf_key.as_ref().expect("an RSA leaf");
        if version == "1" {
            use rsa::pkcs8::DecodePrivateKey;
            use rsa::signature::{SignatureEncoding, Signer};
            let pkcs8 =
                aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(key).unwrap();
            let k = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8.as_ref()).unwrap();
            let signer = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(k);
            return STANDARD.encode(signer.sign(string_to_sign.as_bytes()).to_bytes());
        }
        let mut sig = vec![0u8; key.public_modulus_len()];
        key.sign(
            &signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            string_to_sign.as_bytes(),
            &mut sig,
        )
        .unwrap();
        STANDARD.encode(sig)
    }
}

impl Default for SnsPki {
    fn default() -> Self {
        Self::new()
    }
}

fn rustls_pki_types_der(
    der: &[u8],
) -> tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer<'static> {
    tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(der.to_vec())
}

/// An SNS message before signing.
#[derive(Debug, Clone)]
pub struct SnsMessage {
    /// `Notification`, `SubscriptionConfirmation`, `UnsubscribeConfirmation`.
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signing_cert_url: String,
    pub token: Option<String>,
    pub subscribe_url: Option<String>,
}

impl SnsMessage {
    /// A notification carrying `message`.
    pub fn notification(message: &str, message_id: &str, cert_url: &str) -> Self {
        Self {
            kind: "Notification".into(),
            message_id: message_id.into(),
            topic_arn: TOPIC_ARN.into(),
            subject: None,
            message: message.into(),
            timestamp: "2026-11-30T12:00:00.000Z".into(),
            signature_version: "2".into(),
            signing_cert_url: cert_url.into(),
            token: None,
            subscribe_url: None,
        }
    }

    /// A subscription confirmation.
    pub fn confirmation(message_id: &str, cert_url: &str, subscribe_url: &str) -> Self {
        Self {
            kind: "SubscriptionConfirmation".into(),
            message_id: message_id.into(),
            topic_arn: TOPIC_ARN.into(),
            subject: None,
            message: "You have chosen to subscribe to the topic. To confirm the subscription, visit the SubscribeURL included in this message.".into(),
            timestamp: "2026-11-30T12:00:00.000Z".into(),
            signature_version: "1".into(),
            signing_cert_url: cert_url.into(),
            token: Some("2336412f37fb687f5d51e6e2425ba1f3".into()),
            subscribe_url: Some(subscribe_url.into()),
        }
    }

    /// SNS's canonical string (an independent writing of the documented rule).
    pub fn string_to_sign(&self) -> String {
        let mut fields: Vec<(&str, &str)> =
            vec![("Message", &self.message), ("MessageId", &self.message_id)];
        if self.kind == "Notification" {
            if let Some(s) = &self.subject {
                fields.push(("Subject", s));
            }
            fields.push(("Timestamp", &self.timestamp));
        } else {
            fields.push(("SubscribeURL", self.subscribe_url.as_deref().unwrap_or("")));
            fields.push(("Timestamp", &self.timestamp));
            fields.push(("Token", self.token.as_deref().unwrap_or("")));
        }
        fields.push(("TopicArn", &self.topic_arn));
        fields.push(("Type", &self.kind));
        fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect()
    }

    /// The body with `signature`.
    pub fn body_with(&self, signature: &str) -> Value {
        let mut b = json!({
            "Type": self.kind,
            "MessageId": self.message_id,
            "TopicArn": self.topic_arn,
            "Message": self.message,
            "Timestamp": self.timestamp,
            "SignatureVersion": self.signature_version,
            "Signature": signature,
            "SigningCertURL": self.signing_cert_url,
        });
        if let Some(s) = &self.subject {
            b["Subject"] = json!(s);
        }
        if let Some(t) = &self.token {
            b["Token"] = json!(t);
        }
        if let Some(u) = &self.subscribe_url {
            b["SubscribeURL"] = json!(u);
        } else {
            b["UnsubscribeURL"] = json!(format!(
                "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={}:x",
                self.topic_arn
            ));
        }
        b
    }

    /// The signed body (as SNS posts it).
    pub fn signed(&self, pki: &SnsPki) -> String {
        let sig = pki.sign(&self.signature_version, &self.string_to_sign());
        self.body_with(&sig).to_string()
    }
}

/// An RTN payload (the SNS `Message`).
pub fn rtn(notification_type: &str, receipt_id: &str, timestamp_ms: i64) -> Value {
    json!({
        "appPackageName": PACKAGE,
        "notificationType": notification_type,
        "appUserId": USER,
        "receiptId": receipt_id,
        "relatedReceipts": {},
        "timestamp": timestamp_ms,
        "betaProductTransaction": false
    })
}

/// An RVS answer for a subscription receipt.
pub fn subscription_receipt(receipt_id: &str, purchase_ms: i64, renewal_ms: i64) -> Value {
    json!({
        "receiptId": receipt_id,
        "productId": "com.example.fire.premium",
        "productType": "SUBSCRIPTION",
        "termSku": "com.example.fire.premium.monthly",
        "term": "1 Month",
        "purchaseDate": purchase_ms,
        "renewalDate": renewal_ms,
        "cancelDate": null,
        "cancelReason": null,
        "autoRenewing": true,
        "freeTrialEndDate": null,
        "gracePeriodEndDate": null,
        "deferredDate": null,
        "deferredSku": null,
        "promotions": null,
        "countryCode": "DE",
        "betaProduct": false,
        "testTransaction": false,
        "fulfillmentDate": purchase_ms,
        "fulfillmentResult": "FULFILLED",
        "parentProductId": null,
        "quantity": null
    })
}

/// An RVS answer for a one-time receipt (`CONSUMABLE` or `ENTITLED`).
pub fn one_time_receipt(receipt_id: &str, product_type: &str, purchase_ms: i64) -> Value {
    json!({
        "receiptId": receipt_id,
        "productId": "com.example.fire.coins",
        "productType": product_type,
        "purchaseDate": purchase_ms,
        "cancelDate": null,
        "cancelReason": null,
        "countryCode": "US",
        "testTransaction": false,
        "quantity": 1
    })
}

/// A fake Receipt Verification Service on loopback (plain HTTP: storehook
/// allows http only to loopback). Answers per receipt id; checks the shared
/// secret (496 otherwise); unknown receipts 400.
#[derive(Debug)]
pub struct FakeRvs {
    /// The server.
    pub server: Server,
    answers: Arc<Mutex<HashMap<String, (u16, String)>>>,
}

impl FakeRvs {
    /// Starts the fake.
    pub async fn start() -> Self {
        let answers: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
        let a = answers.clone();
        let server = Server::start(move |s: &Seen| {
            // /[sandbox/]version/1.0/verifyReceiptId/developer/{secret}/user/{user}/receiptId/{receipt}
            let path = s.target.trim_start_matches("/sandbox");
            let parts: Vec<&str> = path.split('/').collect();
            if parts.len() != 10 || parts[3] != "verifyReceiptId" {
                return Some(response(404, &[], "{}"));
            }
            let decode = |p: &str| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            if decode(parts[5]) != SHARED_SECRET {
                return Some(response(496, &[], "{}"));
            }
            let receipt = decode(parts[9]);
            let (status, body) = a
                .lock()
                .unwrap()
                .get(&receipt)
                .cloned()
                .unwrap_or((400, "{}".into()));
            Some(response(
                status,
                &[("content-type", "application/json")],
                &body,
            ))
        })
        .await;
        Self { server, answers }
    }

    /// Answers `receipt_id` with `status` and `body`.
    pub fn answer(&self, receipt_id: &str, status: u16, body: &Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(receipt_id.to_owned(), (status, body.to_string()));
    }

    /// The receipt ids asked about so far (decoded).
    pub fn asked(&self) -> Vec<String> {
        self.server
            .seen()
            .iter()
            .filter_map(|s| s.target.rsplit('/').next().map(str::to_owned))
            .map(|r| {
                percent_encoding::percent_decode_str(&r)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
    }
}
