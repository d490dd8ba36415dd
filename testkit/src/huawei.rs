//! Test support for Huawei: a generated RSA "IAP key" that signs
//! notifications the way Huawei does, builders of realistic payloads and
//! bodies (legacy and v2), and a fake Huawei API (OAuth + subscription +
//! order status) on 127.0.0.1 that checks what it receives.
//!
//! ```ignore
//! let key = HuaweiTestKey::generate();
//! let status = payloads::status_update(7, Some(&payloads::receipt("pro.monthly", T0, T0 + 30 * DAY)));
//! let body = key.v2_body(&status, SignAs::Pkcs1, T0);
//! let config = HuaweiConfig::new(vec![payloads::APP_ID.into()], vec![key.public_key()]);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, RsaEncoding, RsaPssSaltLength};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use storehook_shared::stores::huawei::verify::IapPublicKey;

/// RSASSA-PSS SHA-256 with the maximum salt (the defensive variant storehook also accepts).
static RSA_PSS_SHA256_MAX_SALT: signature::RsaSignatureEncoding =
    signature::RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

/// How to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAs {
    /// SHA256WithRSA (RSASSA-PKCS1-v1_5).
    Pkcs1,
    /// SHA256WithRSA/PSS with a 32-byte salt (Java's convention).
    Pss,
    /// SHA256WithRSA/PSS with the maximum salt length.
    PssMaxSalt,
}

impl SignAs {
    /// The `signatureAlgorithm` value announcing it.
    pub fn algorithm(self) -> &'static str {
        match self {
            Self::Pkcs1 => "SHA256WithRSA",
            Self::Pss | Self::PssMaxSalt => "SHA256WithRSA/PSS",
        }
    }

    fn encoding(self) -> &'static dyn RsaEncoding {
        match self {
            Self::Pkcs1 => &signature::RSA_PKCS1_SHA256,
            Self::Pss => &signature::RSA_PSS_SHA256,
            Self::PssMaxSalt => &RSA_PSS_SHA256_MAX_SALT,
        }
    }
}

/// A generated RSA key standing in for an app's IAP key pair.
#[derive(Debug)]
pub struct HuaweiTestKey {
    key: KeyPair,
    spki_der: Vec<u8>,
}

impl Clone for HuaweiTestKey {
    fn clone(&self) -> Self {
        Self::from_pkcs8(&self.pkcs8_der())
    }
}

impl HuaweiTestKey {
    /// A 2048-bit key.
    pub fn generate() -> Self {
        Self::generate_with(KeySize::Rsa2048)
    }

    /// A key of `size`.
    pub fn generate_with(size: KeySize) -> Self {
        let key = KeyPair::generate(size).unwrap();
        let spki_der = key.public_key().as_der().unwrap().as_ref().to_vec();
        Self { key, spki_der }
    }

    /// The PKCS#8 DER of the private key (to rebuild it elsewhere).
    pub fn pkcs8_der(&self) -> Vec<u8> {
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = self.key.as_der().unwrap();
        der.as_ref().to_vec()
    }

    /// A key from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Self {
        let key = KeyPair::from_pkcs8(der).unwrap();
        let spki_der = key.public_key().as_der().unwrap().as_ref().to_vec();
        Self { key, spki_der }
    }

    /// The public key as AppGallery Connect shows it: base64 SubjectPublicKeyInfo DER.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(&self.spki_der)
    }

    /// The public key's SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The public key, parsed as storehook's config parses it.
    pub fn public_key(&self) -> IapPublicKey {
        IapPublicKey::from_der(&self.spki_der).unwrap()
    }

    /// Base64 signature of the UTF-8 bytes of `data`.
    pub fn sign(&self, how: SignAs, data: &str) -> String {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(how.encoding(), &rng, data.as_bytes(), &mut sig)
            .unwrap();
        STANDARD.encode(sig)
    }

    /// A legacy (v1) body: `statusUpdateNotification` + `notifycationSignature`
    /// (SHA256WithRSA, no `signatureAlgorithm`).
    pub fn v1_body(&self, status_update: &Value) -> Vec<u8> {
        let signed = status_update.to_string();
        serde_json::to_vec(&json!({
            "statusUpdateNotification": signed,
            "notifycationSignature": self.sign(SignAs::Pkcs1, &signed),
        }))
        .unwrap()
    }

    /// A v2 SUBSCRIPTION body signed as `how` says, for [`payloads::APP_ID`].
    pub fn v2_body(&self, status_update: &Value, how: SignAs, notify_time: i64) -> Vec<u8> {
        let signed = status_update.to_string();
        let sig = self.sign(how, &signed);
        v2_subscription_body(&signed, &sig, Some(how.algorithm()), notify_time)
    }

    /// A signed API answer carrying `receipt` as `field` (`inappPurchaseData` or
    /// `purchaseTokenData`).
    pub fn api_answer(&self, field: &str, receipt: &Value, how: SignAs) -> Value {
        let data = receipt.to_string();
        json!({
            "responseCode": "0",
            "responseMessage": "success",
            field: data,
            "dataSignature": self.sign(how, &data),
            "signatureAlgorithm": how.algorithm(),
        })
    }
}

/// A v2 SUBSCRIPTION body around an already signed string (tests that tamper).
pub fn v2_subscription_body(
    signed: &str,
    signature: &str,
    algorithm: Option<&str>,
    notify_time: i64,
) -> Vec<u8> {
    let mut sub = json!({
        "version": "v2",
        "statusUpdateNotification": signed,
        "notificationSignature": signature,
    });
    if let Some(a) = algorithm {
        sub["signatureAlgorithm"] = json!(a);
    }
    serde_json::to_vec(&json!({
        "version": "v2",
        "eventType": "SUBSCRIPTION",
        "notifyTime": notify_time,
        "applicationId": payloads::APP_ID,
        "subNotification": sub,
    }))
    .unwrap()
}

/// A v2 ORDER body (`1` payment success, `2` refund) for [`payloads::APP_ID`].
pub fn v2_order_body(
    notification_type: i64,
    purchase_token: &str,
    product_id: &str,
    notify_time: i64,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "v2",
        "eventType": "ORDER",
        "notifyTime": notify_time,
        "applicationId": payloads::APP_ID,
        "orderNotification": {
            "version": "v2",
            "notificationType": notification_type,
            "purchaseToken": purchase_token,
            "productId": product_id,
        }
    }))
    .unwrap()
}

/// Builders of realistic payloads for a subscription of app [`payloads::APP_ID`].
pub mod payloads {
    use serde_json::{Value, json};

    /// The app id used by the builders.
    pub const APP_ID: &str = "101234567";
    /// The subscription id used by the builders.
    pub const SUBSCRIPTION_ID: &str = "1671234567890.ABCDEF12.3456";
    /// The purchase token used by the builders (never to be seen in logs).
    pub const PURCHASE_TOKEN: &str =
        "00000173741056a37eef310dff9c6a86fec57efafe318ae478e52d9c4d994a8a6e1bd1a7d70b0a9e.1.3456";
    /// 2025-03-01T00:00:00Z in ms; the builders' base time.
    pub const T0: i64 = 1_740_787_200_000;
    /// One day in ms.
    pub const DAY: i64 = 86_400_000;

    /// An auto-renewable subscription receipt (`InAppPurchaseData`), EUR 4.99.
    pub fn receipt(product: &str, purchase_time: i64, expiration: i64) -> Value {
        json!({
            "autoRenewing": true,
            "orderId": format!("order-{purchase_time}"),
            "packageName": "com.example.app",
            "applicationId": APP_ID.parse::<i64>().unwrap_or_default(),
            "kind": 2,
            "productId": product,
            "productName": "Pro",
            "purchaseTime": purchase_time,
            "purchaseToken": PURCHASE_TOKEN,
            "purchaseState": 0,
            "developerPayload": "user-42",
            "confirmed": 1,
            "currency": "EUR",
            "price": 499,
            "country": "FR",
            "payOrderId": format!("pay-{purchase_time}"),
            "payType": "17",
            "lastOrderId": format!("order-{purchase_time}"),
            "productGroup": "group-1",
            "oriPurchaseTime": T0,
            "subscriptionId": SUBSCRIPTION_ID,
            "quantity": 1,
            "daysLasted": 30,
            "numOfPeriods": 1,
            "numOfDiscount": 0,
            "expirationDate": expiration,
            "retryFlag": 0,
            "introductoryFlag": 0,
            "trialFlag": 0,
            "renewStatus": 1,
            "subIsvalid": expiration > purchase_time,
            "cancelledSubKeepDays": 30,
        })
    }

    /// A one-time purchase receipt (`kind` 0 consumable, 1 non-consumable).
    pub fn order_receipt(
        product: &str,
        kind: i64,
        purchase_time: i64,
        purchase_state: i64,
    ) -> Value {
        json!({
            "autoRenewing": false,
            "orderId": format!("order-{purchase_time}"),
            "packageName": "com.example.app",
            "applicationId": APP_ID.parse::<i64>().unwrap_or_default(),
            "kind": kind,
            "productId": product,
            "productName": "Coins",
            "purchaseTime": purchase_time,
            "purchaseToken": PURCHASE_TOKEN,
            "purchaseState": purchase_state,
            "developerPayload": "user-42",
            "consumptionState": 0,
            "confirmed": 1,
            "currency": "EUR",
            "price": 199,
            "country": "DE",
            "payOrderId": format!("pay-{purchase_time}"),
            "payType": "17",
        })
    }

    /// A `statusUpdateNotification` of `notification_type` (PROD) carrying
    /// `receipt` as `latestReceiptInfo` (a JSON string, as Huawei sends it).
    pub fn status_update(notification_type: i64, receipt: Option<&Value>) -> Value {
        let mut n = json!({
            "environment": "PROD",
            "notificationType": notification_type,
            "subscriptionId": SUBSCRIPTION_ID,
            "purchaseToken": PURCHASE_TOKEN,
            "orderId": "order-1",
            "autoRenewStatus": 1,
            "productId": receipt
                .and_then(|r| r["productId"].as_str())
                .unwrap_or("pro.monthly"),
            "applicationId": APP_ID,
        });
        if let Some(r) = receipt {
            let text = r.to_string();
            n["latestReceipt"] = json!(PURCHASE_TOKEN);
            n["latestReceiptInfo"] = json!(text);
            n["latestReceiptInfoSignature"] = json!("c2lnbmF0dXJl");
            n["signatureAlgorithm"] = json!("SHA256WithRSA");
            n["orderId"] = r["orderId"].clone();
        }
        n
    }
}

pub use fake_api::{CLIENT_ID, CLIENT_SECRET, FakeHuaweiApi, FakeReply};

mod fake_api {
    use super::{HuaweiTestKey, SignAs};
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::{Value, json};
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use storehook_shared::stores::huawei::api::{ApiConfig, ORDER_PATH, SUBSCRIPTION_PATH};
    use tokio::task::JoinHandle;

    /// OAuth client id the fake accepts.
    pub const CLIENT_ID: &str = "104123456";
    /// OAuth client secret the fake accepts (contains characters that need form encoding).
    pub const CLIENT_SECRET: &str = "s3cr3t+/= &value";

    /// A scripted answer of the fake API (instead of the normal one).
    #[derive(Debug, Clone, PartialEq)]
    pub enum FakeReply {
        /// An HTTP status with an empty body.
        Status(u16),
        /// HTTP 200 with this JSON body.
        Json(Value),
    }

    #[derive(Debug, Default)]
    struct Inner {
        key: Option<HuaweiTestKey>,
        sign_as: Option<SignAs>,
        subscription: Mutex<Option<Value>>,
        order: Mutex<Option<Value>>,
        script: Mutex<VecDeque<FakeReply>>,
        tokens_issued: AtomicUsize,
        current_token: Mutex<Option<String>>,
        api_calls: AtomicUsize,
        bodies: Mutex<Vec<Value>>,
        problems: Mutex<Vec<String>>,
    }

    /// Fake Huawei OAuth + IAP APIs on `127.0.0.1:<ephemeral port>`; stops when dropped.
    ///
    /// It checks every request like Huawei would (form-encoded client
    /// credentials; `Authorization: Basic base64("APPAT:" + token)` with the
    /// last issued token; JSON bodies with the fields the API documents) and
    /// answers 401 / 400 otherwise, recording the problem in [`Self::problems`].
    #[derive(Debug)]
    pub struct FakeHuaweiApi {
        addr: SocketAddr,
        inner: Arc<Inner>,
        task: JoinHandle<()>,
    }

    impl Drop for FakeHuaweiApi {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl FakeHuaweiApi {
        /// Starts a fake whose receipts are signed with `key` as `sign_as` says.
        pub async fn start(key: HuaweiTestKey, sign_as: SignAs) -> Self {
            let inner = Arc::new(Inner {
                key: Some(key),
                sign_as: Some(sign_as),
                ..Inner::default()
            });
            let app = Router::new()
                .route("/oauth2/v3/token", post(token))
                .route(SUBSCRIPTION_PATH, post(subscription))
                .route(&format!("/apptouch{SUBSCRIPTION_PATH}"), post(subscription))
                .route(ORDER_PATH, post(order))
                .with_state(inner.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Self { addr, inner, task }
        }

        /// `http://127.0.0.1:<port>`.
        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// An API configuration pointing at this fake, with its credentials.
        pub fn api_config(&self) -> ApiConfig {
            ApiConfig::new(CLIENT_ID, CLIENT_SECRET).with_base_url(&self.url())
        }

        /// The receipt the subscription API answers with (signed on the fly).
        pub fn set_subscription(&self, receipt: Value) {
            *self.inner.subscription.lock().unwrap() = Some(receipt);
        }

        /// The receipt the order API answers with (signed on the fly).
        pub fn set_order(&self, receipt: Value) {
            *self.inner.order.lock().unwrap() = Some(receipt);
        }

        /// The next IAP API call (not OAuth) gets `reply` instead.
        pub fn push(&self, reply: FakeReply) {
            self.inner.script.lock().unwrap().push_back(reply);
        }

        /// Makes the current token unknown (as if it expired at Huawei).
        pub fn revoke_token(&self) {
            *self.inner.current_token.lock().unwrap() = None;
        }

        /// How many tokens were issued.
        pub fn tokens_issued(&self) -> usize {
            self.inner.tokens_issued.load(Ordering::SeqCst)
        }

        /// How many IAP API calls arrived (including refused ones).
        pub fn api_calls(&self) -> usize {
            self.inner.api_calls.load(Ordering::SeqCst)
        }

        /// The JSON bodies of the IAP API calls.
        pub fn bodies(&self) -> Vec<Value> {
            self.inner.bodies.lock().unwrap().clone()
        }

        /// Everything the fake found wrong in the requests it got.
        pub fn problems(&self) -> Vec<String> {
            self.inner.problems.lock().unwrap().clone()
        }
    }

    fn problem(inner: &Inner, status: StatusCode, what: String) -> Response {
        inner.problems.lock().unwrap().push(what);
        status.into_response()
    }

    fn percent_decode(s: &str) -> Option<String> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }

    async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return problem(
                &inner,
                StatusCode::BAD_REQUEST,
                format!("oauth content-type {ct:?}"),
            );
        }
        let text = String::from_utf8_lossy(&body).to_string();
        let mut form = std::collections::HashMap::new();
        for pair in text.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match (percent_decode(k), percent_decode(v)) {
                (Some(k), Some(v)) => {
                    form.insert(k, v);
                }
                _ => {
                    return problem(
                        &inner,
                        StatusCode::BAD_REQUEST,
                        "oauth form encoding".into(),
                    );
                }
            }
        }
        let get = |k: &str| form.get(k).map(String::as_str);
        if get("grant_type") != Some("client_credentials")
            || get("client_id") != Some(CLIENT_ID)
            || get("client_secret") != Some(CLIENT_SECRET)
        {
            return problem(&inner, StatusCode::BAD_REQUEST, "oauth credentials".into());
        }
        let n = inner.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("DAEDAJ{n}+token/with=chars");
        *inner.current_token.lock().unwrap() = Some(token.clone());
        axum::Json(json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}))
            .into_response()
    }

    /// Common checks of an IAP API call; `Some` is the answer to give instead.
    fn check_call(
        inner: &Inner,
        headers: &HeaderMap,
        body: &Bytes,
        fields: &[&str],
    ) -> Option<Response> {
        inner.api_calls.fetch_add(1, Ordering::SeqCst);
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let expected = inner
            .current_token
            .lock()
            .unwrap()
            .as_ref()
            .map(|t| format!("Basic {}", STANDARD.encode(format!("APPAT:{t}"))));
        if expected.as_deref() != Some(auth) {
            // Huawei answers an unknown or expired token with 401.
            return Some(StatusCode::UNAUTHORIZED.into_response());
        }
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/json") {
            return Some(problem(
                inner,
                StatusCode::BAD_REQUEST,
                format!("api content-type {ct:?}"),
            ));
        }
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                return Some(problem(
                    inner,
                    StatusCode::BAD_REQUEST,
                    "api body not JSON".into(),
                ));
            }
        };
        for f in fields {
            if v[*f].as_str().is_none_or(str::is_empty) {
                return Some(problem(
                    inner,
                    StatusCode::BAD_REQUEST,
                    format!("api body without {f}"),
                ));
            }
        }
        inner.bodies.lock().unwrap().push(v.clone());
        let reply = inner.script.lock().unwrap().pop_front();
        reply.map(|reply| match reply {
            FakeReply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
            FakeReply::Json(v) => axum::Json(v).into_response(),
        })
    }

    fn answer(inner: &Inner, field: &str, receipt: Option<Value>) -> Response {
        match (receipt, inner.key.as_ref(), inner.sign_as) {
            (Some(r), Some(k), Some(how)) => {
                axum::Json(k.api_answer(field, &r, how)).into_response()
            }
            _ => axum::Json(json!({"responseCode": "5", "responseMessage": "no such purchase"}))
                .into_response(),
        }
    }

    async fn subscription(
        State(inner): State<Arc<Inner>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        match check_call(
            &inner,
            &headers,
            &body,
            &["subscriptionId", "purchaseToken"],
        ) {
            Some(r) => r,
            None => {
                let receipt = inner.subscription.lock().unwrap().clone();
                answer(&inner, "inappPurchaseData", receipt)
            }
        }
    }

    async fn order(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
        match check_call(&inner, &headers, &body, &["purchaseToken", "productId"]) {
            Some(r) => r,
            None => {
                let receipt = inner.order.lock().unwrap().clone();
                answer(&inner, "purchaseTokenData", receipt)
            }
        }
    }
}
