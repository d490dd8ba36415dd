//! Google on 127.0.0.1 for tests, benchmarks, the e2e suite and the CLI:
//!
//! - [`TestKeys`]: generated RSA-2048 keys (Google's ID-token signing keys `g1`
//!   and `g2`, and the Play Developer API service-account key), generated once
//!   per process;
//! - [`FakeGoogle`]: one axum server with Google's JWKS, an OAuth token
//!   endpoint that **validates** the JWT-bearer assertion it receives
//!   (signature with the service account's public key, `iss`, `aud`, `scope`,
//!   lifetime) and an androidpublisher that serves scripted purchases to
//!   holders of an access token it issued;
//! - a token minter ([`id_token`], [`unsigned_token`], [`hs256_token`]);
//! - [`payloads`]: RTDN, Pub/Sub push bodies and realistic API resources;
//! - [`PlayTestEnv`]: all of it wired to a [`PlayStoreEndpoint`] with a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::TimeZone;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use storehook_shared::clock::ManualClock;
use storehook_shared::ingest::StoreRequest;
use storehook_shared::stores::playstore::links::MemoryLinkStore;
use storehook_shared::stores::playstore::{PlayStoreConfig, PlayStoreEndpoint, playstore_config};
use tokio::task::JoinHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A generated RSA-2048 key with a key id.
#[derive(Debug)]
pub struct RsaTestKey {
    /// `kid`.
    pub kid: String,
    key: KeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaTestKey {
    /// Generates a key (≈ 50–200 ms; prefer [`TestKeys::shared`]).
    pub fn generate(kid: &str) -> Self {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let c = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        Self {
            kid: kid.to_owned(),
            key,
            n: c.n,
            e: c.e,
        }
    }

    /// The public key as a JWK (`kty` RSA, `alg` RS256, `use` sig).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n), "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }

    /// The private key, PKCS#8 PEM (as in Google's JSON key files).
    pub fn private_pem(&self) -> String {
        let der: Pkcs8V1Der<'static> = self.key.as_der().unwrap();
        pem("PRIVATE KEY", der.as_ref())
    }

    /// The public key, SubjectPublicKeyInfo PEM (the bytes an HS256 confusion attack keys with).
    pub fn public_pem(&self) -> String {
        let c = PublicKeyComponents {
            n: self.n.clone(),
            e: self.e.clone(),
        };
        let der: PublicKeyX509Der<'static> = c.as_der().unwrap();
        pem("PUBLIC KEY", der.as_ref())
    }

    /// A compact JWS over `header` and `claims`, RS256-signed with this key
    /// (whatever `header.alg` says).
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> String {
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
            .unwrap();
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Verifies an RS256 JWS with this key's public half.
    pub fn verify_jwt(&self, jwt: &str) -> bool {
        let Some((msg, sig)) = jwt.rsplit_once('.') else {
            return false;
        };
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        aws_lc_rs::signature::RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, msg.as_bytes(), &sig)
        .is_ok()
    }
}

/// The keys of a test run.
#[derive(Debug)]
pub struct TestKeys {
    /// Google's current ID-token signing key (`kid` "g1").
    pub google: RsaTestKey,
    /// Google's next key (`kid` "g2"), for rotation tests.
    pub google_next: RsaTestKey,
    /// A key Google never published (`kid` "g1" too: a forger's key).
    pub forger: RsaTestKey,
    /// The Play Developer API service-account key.
    pub service_account: RsaTestKey,
}

impl TestKeys {
    /// Keys generated once per process.
    pub fn shared() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(|| TestKeys {
            google: RsaTestKey::generate("g1"),
            google_next: RsaTestKey::generate("g2"),
            forger: RsaTestKey::generate("g1"),
            service_account: RsaTestKey::generate("sa-key-1"),
        })
    }
}

/// The service-account JSON key file for `key` (`token_uri` as given).
pub fn service_account_json(email: &str, key: &RsaTestKey, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "storehook-test",
        "private_key_id": key.kid,
        "private_key": key.private_pem(),
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

// ---------------------------------------------------------------- token minter

/// Claims of a valid Pub/Sub push token at `now_secs`.
pub fn push_claims(audience: &str, email: &str, now_secs: i64) -> Value {
    json!({
        "aud": audience,
        "azp": "113774264463038321964",
        "email": email,
        "email_verified": true,
        "exp": now_secs + 3600,
        "iat": now_secs,
        "iss": "https://accounts.google.com",
        "sub": "113774264463038321964",
    })
}

/// A Google-style ID token signed by `key` (header `alg` RS256, `kid`, `typ` JWT).
pub fn id_token(key: &RsaTestKey, claims: &Value) -> String {
    key.sign_jwt(
        &json!({"alg": "RS256", "kid": key.kid, "typ": "JWT"}),
        claims,
    )
}

/// An unsigned token (`alg: none`, empty signature).
pub fn unsigned_token(kid: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": kid, "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// An HS256 token keyed with `secret` (e.g. the public key's PEM: the
/// algorithm-confusion attack).
pub fn hs256_token(secret: &[u8], kid: &str, claims: &Value) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": kid, "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, msg.as_bytes());
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

// ---------------------------------------------------------------- fake Google

#[derive(Debug)]
struct FakeState {
    base: Mutex<String>,
    // JWKS
    jwks: Mutex<Value>,
    jwks_max_age: Mutex<Option<i64>>,
    jwks_delay: Mutex<Duration>,
    jwks_status: Mutex<u16>,
    jwks_fetches: AtomicUsize,
    // OAuth
    sa_email: String,
    sa_key: &'static RsaTestKey,
    token_failure: Mutex<Option<u16>>,
    token_lifetime: Mutex<i64>,
    token_requests: AtomicUsize,
    issued: Mutex<Vec<String>>,
    assertion_errors: Mutex<Vec<String>>,
    // androidpublisher
    subscriptions: Mutex<HashMap<(String, String), Value>>,
    products: Mutex<HashMap<(String, String, String), Value>>,
    api_failure: Mutex<Option<u16>>,
    token_failures: Mutex<HashMap<(String, String), u16>>,
    voided: Mutex<HashMap<String, Vec<Value>>>,
    voided_page_size: Mutex<Option<usize>>,
    voided_queries: Mutex<Vec<HashMap<String, String>>>,
    api_requests: AtomicUsize,
    api_unauthorized: AtomicUsize,
}

/// Google's JWKS, OAuth token endpoint and androidpublisher on
/// `127.0.0.1:<ephemeral port>`; stops when dropped.
#[derive(Debug)]
pub struct FakeGoogle {
    addr: SocketAddr,
    state: Arc<FakeState>,
    task: JoinHandle<()>,
}

impl FakeGoogle {
    /// Starts the fakes: the JWKS publishes `jwks` keys; the token endpoint
    /// accepts assertions of `sa_email` signed by `sa_key`.
    pub async fn start(jwks: &[&RsaTestKey], sa_email: &str, sa_key: &'static RsaTestKey) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FakeState {
            base: Mutex::new(format!("http://{addr}")),
            jwks: Mutex::new(json!({"keys": jwks.iter().map(|k| k.jwk()).collect::<Vec<_>>()})),
            jwks_max_age: Mutex::new(Some(21_600)),
            jwks_delay: Mutex::new(Duration::ZERO),
            jwks_status: Mutex::new(200),
            jwks_fetches: AtomicUsize::new(0),
            sa_email: sa_email.to_owned(),
            sa_key,
            token_failure: Mutex::new(None),
            token_lifetime: Mutex::new(3599),
            token_requests: AtomicUsize::new(0),
            issued: Mutex::new(Vec::new()),
            assertion_errors: Mutex::new(Vec::new()),
            subscriptions: Mutex::new(HashMap::new()),
            products: Mutex::new(HashMap::new()),
            api_failure: Mutex::new(None),
            token_failures: Mutex::new(HashMap::new()),
            voided: Mutex::new(HashMap::new()),
            voided_page_size: Mutex::new(None),
            voided_queries: Mutex::new(Vec::new()),
            api_requests: AtomicUsize::new(0),
            api_unauthorized: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/oauth2/v3/certs", get(jwks_handler))
            .route("/token", post(token_handler))
            .route(
                "/androidpublisher/v3/applications/{package}/purchases/subscriptionsv2/tokens/{token}",
                get(subscription_handler),
            )
            .route(
                "/androidpublisher/v3/applications/{package}/purchases/products/{sku}/tokens/{token}",
                get(product_handler),
            )
            .route(
                "/androidpublisher/v3/applications/{package}/purchases/voidedpurchases",
                get(voided_handler),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:<port>/oauth2/v3/certs`.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/oauth2/v3/certs", self.addr)
    }

    /// `http://127.0.0.1:<port>/token`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// `http://127.0.0.1:<port>` (androidpublisher base).
    pub fn api_base_url(&self) -> String {
        lock(&self.state.base).clone()
    }

    // JWKS

    /// Publishes these keys from now on.
    pub fn set_jwks(&self, keys: &[&RsaTestKey]) {
        *lock(&self.state.jwks) = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }

    /// `Cache-Control: max-age` of the JWKS (`None`: no header).
    pub fn set_jwks_max_age(&self, secs: Option<i64>) {
        *lock(&self.state.jwks_max_age) = secs;
    }

    /// Delays every JWKS answer (to provoke concurrent refreshes).
    pub fn set_jwks_delay(&self, delay: Duration) {
        *lock(&self.state.jwks_delay) = delay;
    }

    /// The JWKS answers `status` (200: normal).
    pub fn set_jwks_status(&self, status: u16) {
        *lock(&self.state.jwks_status) = status;
    }

    /// JWKS requests so far.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    // OAuth

    /// The token endpoint answers `status` with an OAuth error (None: normal).
    pub fn set_token_failure(&self, status: Option<u16>) {
        *lock(&self.state.token_failure) = status;
    }

    /// `expires_in` of issued tokens.
    pub fn set_token_lifetime(&self, secs: i64) {
        *lock(&self.state.token_lifetime) = secs;
    }

    /// Token requests so far (valid or not).
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Why assertions were refused (empty when every one was valid).
    pub fn assertion_errors(&self) -> Vec<String> {
        lock(&self.state.assertion_errors).clone()
    }

    /// Forgets every issued access token (the API answers 401 to them).
    pub fn revoke_access_tokens(&self) {
        lock(&self.state.issued).clear();
    }

    // androidpublisher

    /// Serves `resource` for `subscriptionsv2.get` of (`package`, `token`).
    pub fn set_subscription(&self, package: &str, token: &str, resource: Value) {
        lock(&self.state.subscriptions).insert((package.to_owned(), token.to_owned()), resource);
    }

    /// Serves `resource` for `products.get` of (`package`, `sku`, `token`).
    pub fn set_product(&self, package: &str, sku: &str, token: &str, resource: Value) {
        lock(&self.state.products).insert(
            (package.to_owned(), sku.to_owned(), token.to_owned()),
            resource,
        );
    }

    /// Every API call answers `status` with Google's error envelope (None: normal).
    pub fn set_api_failure(&self, status: Option<u16>) {
        *lock(&self.state.api_failure) = status;
    }

    /// `subscriptionsv2.get` of (`package`, `token`) answers `status` with
    /// Google's error envelope (None: normal).
    pub fn set_api_status_for(&self, package: &str, token: &str, status: Option<u16>) {
        let key = (package.to_owned(), token.to_owned());
        let mut map = lock(&self.state.token_failures);
        match status {
            Some(st) => {
                map.insert(key, st);
            }
            None => {
                map.remove(&key);
            }
        }
    }

    /// Adds a `VoidedPurchase` resource to `voidedpurchases.list` of `package`
    /// (filtered on its `voidedTimeMillis`).
    pub fn add_voided(&self, package: &str, resource: Value) {
        lock(&self.state.voided)
            .entry(package.to_owned())
            .or_default()
            .push(resource);
    }

    /// Pages of `voidedpurchases.list` hold at most `n` resources whatever
    /// `maxResults` says (None: `maxResults`, default 1000).
    pub fn set_voided_page_size(&self, n: Option<usize>) {
        *lock(&self.state.voided_page_size) = n;
    }

    /// The query parameters of every `voidedpurchases.list` request so far.
    pub fn voided_queries(&self) -> Vec<HashMap<String, String>> {
        lock(&self.state.voided_queries).clone()
    }

    /// API requests so far.
    pub fn api_requests(&self) -> usize {
        self.state.api_requests.load(Ordering::SeqCst)
    }

    /// API requests refused for a missing/unknown access token.
    pub fn api_unauthorized(&self) -> usize {
        self.state.api_unauthorized.load(Ordering::SeqCst)
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks_handler(State(s): State<Arc<FakeState>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = *lock(&s.jwks_delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = *lock(&s.jwks_status);
    if status != 200 {
        return (StatusCode::from_u16(status).unwrap(), "unavailable").into_response();
    }
    let body = lock(&s.jwks).to_string();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    if let Some(age) = *lock(&s.jwks_max_age) {
        resp.headers_mut().insert(
            "cache-control",
            format!("public, max-age={age}, must-revalidate, no-transform")
                .parse()
                .unwrap(),
        );
    }
    resp
}

fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%'
                    && i + 2 < b.len()
                    && let Ok(x) = u8::from_str_radix(
                        std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"),
                        16,
                    )
                {
                    out.push(x);
                    i += 3;
                    continue;
                }
                out.push(if b[i] == b'+' { b' ' } else { b[i] });
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    })
}

fn oauth_error(s: &FakeState, why: String) -> Response {
    lock(&s.assertion_errors).push(why.clone());
    (
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_grant", "error_description": why}).to_string(),
    )
        .into_response()
}

async fn token_handler(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = s.token_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = *lock(&s.token_failure) {
        return (
            StatusCode::from_u16(status).unwrap(),
            json!({"error": "temporarily_unavailable"}).to_string(),
        )
            .into_response();
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return oauth_error(
            &s,
            "content-type is not application/x-www-form-urlencoded".into(),
        );
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    if form_value(&body, "grant_type").as_deref()
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(&s, "grant_type is not jwt-bearer".into());
    }
    let Some(assertion) = form_value(&body, "assertion") else {
        return oauth_error(&s, "no assertion".into());
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return oauth_error(&s, "assertion is not a JWS".into());
    }
    let decode = |p: &str| -> Value {
        URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let header = decode(parts[0]);
    let claims = decode(parts[1]);
    if header["alg"] != "RS256" {
        return oauth_error(&s, format!("alg {} is not RS256", header["alg"]));
    }
    if header["kid"] != s.sa_key.kid.as_str() {
        return oauth_error(
            &s,
            format!("kid {} is not the service account key", header["kid"]),
        );
    }
    if !s.sa_key.verify_jwt(&assertion) {
        return oauth_error(
            &s,
            "assertion signature does not verify with the service account key".into(),
        );
    }
    let token_url = format!("{}/token", lock(&s.base));
    if claims["aud"] != token_url.as_str() {
        return oauth_error(&s, format!("aud {} is not {token_url}", claims["aud"]));
    }
    if claims["iss"] != s.sa_email.as_str() {
        return oauth_error(
            &s,
            format!("iss {} is not the service account", claims["iss"]),
        );
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes
        .split(' ')
        .any(|sc| sc == storehook_shared::stores::playstore::api::ANDROIDPUBLISHER_SCOPE)
    {
        return oauth_error(&s, format!("scope {scopes:?} lacks androidpublisher"));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return oauth_error(&s, "iat/exp missing".into());
    };
    if exp <= iat || exp - iat > 3600 {
        return oauth_error(
            &s,
            format!("lifetime {} s is not within (0, 3600]", exp - iat),
        );
    }
    let token = format!("ya29.fake-access-token-{n}");
    lock(&s.issued).push(token.clone());
    let lifetime = *lock(&s.token_lifetime);
    (
        StatusCode::OK,
        json!({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}).to_string(),
    )
        .into_response()
}

fn google_error(status: u16, reason: &str) -> Response {
    let text = match status {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        410 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    };
    (
        StatusCode::from_u16(status).unwrap(),
        json!({"error": {"code": status, "message": "fake error", "status": text,
            "errors": [{"message": "fake error", "domain": "androidpublisher", "reason": reason}]}})
        .to_string(),
    )
        .into_response()
}

fn api_auth(s: &FakeState, headers: &HeaderMap) -> Option<Response> {
    s.api_requests.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if !auth.is_some_and(|t| lock(&s.issued).contains(&t)) {
        s.api_unauthorized.fetch_add(1, Ordering::SeqCst);
        return Some(google_error(401, "authError"));
    }
    lock(&s.api_failure).map(|status| google_error(status, "backendError"))
}

async fn subscription_handler(
    State(s): State<Arc<FakeState>>,
    Path((package, token)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = api_auth(&s, &headers) {
        return r;
    }
    let key = (package, token);
    if let Some(status) = lock(&s.token_failures).get(&key).copied() {
        return google_error(status, "backendError");
    }
    match lock(&s.subscriptions).get(&key) {
        Some(v) => (StatusCode::OK, v.to_string()).into_response(),
        None => google_error(404, "purchaseTokenNotFound"),
    }
}

async fn product_handler(
    State(s): State<Arc<FakeState>>,
    Path((package, sku, token)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = api_auth(&s, &headers) {
        return r;
    }
    match lock(&s.products).get(&(package, sku, token)) {
        Some(v) => (StatusCode::OK, v.to_string()).into_response(),
        None => google_error(404, "purchaseTokenNotFound"),
    }
}

/// `purchases.voidedpurchases.list`: requires `type=1` (subscriptions
/// included), filters on `voidedTimeMillis` in [`startTime`, `endTime`],
/// pages with an opaque `token` (`tokenPagination.nextPageToken`).
async fn voided_handler(
    State(s): State<Arc<FakeState>>,
    Path(package): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = api_auth(&s, &headers) {
        return r;
    }
    let raw = uri.query().unwrap_or("");
    let q: HashMap<String, String> = raw
        .split('&')
        .filter_map(|pair| {
            let (k, _) = pair.split_once('=')?;
            Some((k.to_owned(), form_value(raw, k)?))
        })
        .collect();
    lock(&s.voided_queries).push(q.clone());
    if q.get("type").map(String::as_str) != Some("1") {
        return google_error(400, "invalidType");
    }
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let start = num("startTime").unwrap_or(i64::MIN);
    let end = num("endTime").unwrap_or(i64::MAX);
    let page = lock(&s.voided_page_size).unwrap_or_else(|| {
        num("maxResults")
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(1000)
    });
    let offset = match q.get("token") {
        None => 0,
        Some(t) => match t
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return google_error(400, "invalidPageToken"),
        },
    };
    let all: Vec<Value> = lock(&s.voided)
        .get(&package)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| {
            let t = v["voidedTimeMillis"]
                .as_str()
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(0);
            t >= start && t <= end
        })
        .collect();
    let items: Vec<Value> = all.iter().skip(offset).take(page.max(1)).cloned().collect();
    let mut body = json!({
        "pageInfo": {"totalResults": all.len(), "resultPerPage": page, "startIndex": offset},
    });
    if !items.is_empty() {
        body["voidedPurchases"] = json!(items);
    }
    if offset + page.max(1) < all.len() {
        body["tokenPagination"] =
            json!({"nextPageToken": format!("page-{}", offset + page.max(1))});
    }
    (StatusCode::OK, body.to_string()).into_response()
}

// ---------------------------------------------------------------- payloads

/// Builders of RTDN payloads, push bodies and Play Developer API resources.
pub mod payloads {
    use super::*;

    /// Package name of the builders.
    pub const PACKAGE: &str = "com.example.app";
    /// Audience configured on the push subscription.
    pub const AUDIENCE: &str = "https://hooks.example.com/playstore";
    /// Service account the push subscription authenticates as.
    pub const PUSH_ACCOUNT: &str = "rtdn-push@example-project.iam.gserviceaccount.com";
    /// Service account calling the Play Developer API.
    pub const API_ACCOUNT: &str = "storehook-api@example-project.iam.gserviceaccount.com";
    /// `projects/…/subscriptions/…` of the push subscription.
    pub const PUBSUB_SUBSCRIPTION: &str = "projects/example-project/subscriptions/play-rtdn-push";
    /// 2025-03-01T00:00:00Z in ms.
    pub const T0: i64 = 1_740_787_200_000;
    /// One day in ms.
    pub const DAY: i64 = 86_400_000;

    /// RFC 3339 with milliseconds, as the API writes times.
    pub fn rfc3339(ms: i64) -> String {
        chrono::Utc
            .timestamp_millis_opt(ms)
            .single()
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// A `DeveloperNotification` with `subscriptionNotification`.
    pub fn subscription_notification(ntype: i64, token: &str, event_ms: i64) -> Value {
        json!({
            "version": "1.0", "packageName": PACKAGE, "eventTimeMillis": event_ms.to_string(),
            "subscriptionNotification": {"version": "1.0", "notificationType": ntype, "purchaseToken": token}
        })
    }

    /// A `DeveloperNotification` with `oneTimeProductNotification`.
    pub fn one_time_notification(ntype: i64, token: &str, sku: &str, event_ms: i64) -> Value {
        json!({
            "version": "1.0", "packageName": PACKAGE, "eventTimeMillis": event_ms.to_string(),
            "oneTimeProductNotification": {"version": "1.0", "notificationType": ntype, "purchaseToken": token, "sku": sku}
        })
    }

    /// A `DeveloperNotification` with `voidedPurchaseNotification`.
    pub fn voided_notification(
        token: &str,
        order: &str,
        product_type: i64,
        refund_type: i64,
        event_ms: i64,
    ) -> Value {
        json!({
            "version": "1.0", "packageName": PACKAGE, "eventTimeMillis": event_ms.to_string(),
            "voidedPurchaseNotification": {"purchaseToken": token, "orderId": order, "productType": product_type, "refundType": refund_type}
        })
    }

    /// A `DeveloperNotification` with `pendingRefundReviewNotification`.
    pub fn refund_review_notification(order: &str, account: &str, event_ms: i64) -> Value {
        json!({
            "version": "1.0", "packageName": PACKAGE, "eventTimeMillis": event_ms.to_string(),
            "pendingRefundReviewNotification": {"version": "1.0", "pendingRefundToken": "prt-1", "orderId": order,
                "refundReason": 7, "obfuscatedAccountId": account, "obfuscatedProfileId": "profile-1"}
        })
    }

    /// A `DeveloperNotification` with `testNotification`.
    pub fn test_notification(event_ms: i64) -> Value {
        json!({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": event_ms.to_string(),
            "testNotification": {"version": "1.0"}})
    }

    /// A Pub/Sub push body carrying `notification` (base64 in `message.data`).
    pub fn push_body(message_id: &str, notification: &Value, publish_ms: i64) -> Vec<u8> {
        push_body_raw(
            message_id,
            &STANDARD.encode(notification.to_string()),
            publish_ms,
        )
    }

    /// A Pub/Sub push body with `data` as given (for malformed data).
    pub fn push_body_raw(message_id: &str, data: &str, publish_ms: i64) -> Vec<u8> {
        json!({
            "message": {
                "attributes": {},
                "data": data,
                "messageId": message_id, "message_id": message_id,
                "publishTime": rfc3339(publish_ms), "publish_time": rfc3339(publish_ms),
            },
            "subscription": PUBSUB_SUBSCRIPTION,
        })
        .to_string()
        .into_bytes()
    }

    /// A `SubscriptionPurchaseV2` builder with realistic defaults (an active,
    /// auto-renewing monthly plan bought at `T0`, 4.99 EUR, France).
    #[derive(Debug, Clone)]
    pub struct Sub {
        /// `SUBSCRIPTION_STATE_*` without the prefix.
        pub state: String,
        /// Product id.
        pub product: String,
        /// Base plan id.
        pub base_plan: String,
        /// Offer id.
        pub offer_id: Option<String>,
        /// `offerPhase` key (`freeTrial`, `introductoryPrice`, `basePrice`).
        pub offer_phase: Option<String>,
        /// `startTime` (ms).
        pub start_ms: i64,
        /// Line item `expiryTime` (ms).
        pub expiry_ms: i64,
        /// `autoRenewEnabled`.
        pub auto_renew: bool,
        /// Recurring price in micros (EUR).
        pub price_micros: i64,
        /// Latest order id.
        pub order: String,
        /// `linkedPurchaseToken`.
        pub linked: Option<String>,
        /// `testPurchase` present.
        pub test: bool,
        /// `obfuscatedExternalAccountId`.
        pub account: Option<String>,
        /// `canceledStateContext` kind: `user`, `system`, `developer`, `replacement`.
        pub canceled: Option<String>,
        /// `pausedStateContext.autoResumeTime` (ms).
        pub resume_ms: Option<i64>,
        /// `priceChangeDetails` (new price micros, state).
        pub price_change: Option<(i64, String)>,
        /// `deferredItemReplacement.productId`.
        pub deferred_replacement: Option<String>,
        /// Prepaid plan instead of auto-renewing.
        pub prepaid: bool,
    }

    impl Sub {
        /// Active monthly `premium` (`monthly` base plan) bought at `T0`.
        pub fn active() -> Self {
            Self {
                state: "ACTIVE".into(),
                product: "premium".into(),
                base_plan: "monthly".into(),
                offer_id: None,
                offer_phase: Some("basePrice".into()),
                start_ms: T0,
                expiry_ms: T0 + 30 * DAY,
                auto_renew: true,
                price_micros: 4_990_000,
                order: "GPA.3301-2241-6549-81234".into(),
                linked: None,
                test: false,
                account: Some("user-42".into()),
                canceled: None,
                resume_ms: None,
                price_change: None,
                deferred_replacement: None,
                prepaid: false,
            }
        }

        /// Sets the state (`ACTIVE`, `CANCELED`, `EXPIRED`, ...).
        pub fn state(mut self, s: &str) -> Self {
            self.state = s.into();
            self
        }

        /// Sets expiry (ms).
        pub fn expiry(mut self, ms: i64) -> Self {
            self.expiry_ms = ms;
            self
        }

        /// Sets auto-renew.
        pub fn auto_renew(mut self, on: bool) -> Self {
            self.auto_renew = on;
            self
        }

        /// Sets the latest order id.
        pub fn order(mut self, o: &str) -> Self {
            self.order = o.into();
            self
        }

        /// Sets the product and base plan.
        pub fn product(mut self, product: &str, base_plan: &str) -> Self {
            self.product = product.into();
            self.base_plan = base_plan.into();
            self
        }

        /// Sets `linkedPurchaseToken`.
        pub fn linked(mut self, token: &str) -> Self {
            self.linked = Some(token.into());
            self
        }

        /// Sets `canceledStateContext` (`user`, `system`, `developer`, `replacement`).
        pub fn canceled(mut self, kind: &str) -> Self {
            self.canceled = Some(kind.into());
            self
        }

        /// Sets the start time (ms).
        pub fn start(mut self, ms: i64) -> Self {
            self.start_ms = ms;
            self
        }

        /// The resource as the API returns it.
        pub fn json(&self) -> Value {
            let mut li = json!({
                "productId": self.product,
                "expiryTime": rfc3339(self.expiry_ms),
                "offerDetails": {"basePlanId": self.base_plan, "offerTags": []},
                "latestSuccessfulOrderId": self.order,
            });
            if self.prepaid {
                li["prepaidPlan"] =
                    json!({"allowExtendAfterTime": rfc3339(self.expiry_ms - 3 * DAY)});
            } else {
                li["autoRenewingPlan"] = json!({
                    "autoRenewEnabled": self.auto_renew,
                    "recurringPrice": {"currencyCode": "EUR", "units": (self.price_micros / 1_000_000).to_string(),
                        "nanos": (self.price_micros % 1_000_000) * 1000},
                });
                if let Some((micros, state)) = &self.price_change {
                    li["autoRenewingPlan"]["priceChangeDetails"] = json!({
                        "newPrice": {"currencyCode": "EUR", "units": (micros / 1_000_000).to_string(), "nanos": (micros % 1_000_000) * 1000},
                        "priceChangeMode": "PRICE_INCREASE", "priceChangeState": state,
                        "expectedNewPriceChargeTime": rfc3339(self.expiry_ms),
                    });
                }
            }
            if let Some(o) = &self.offer_id {
                li["offerDetails"]["offerId"] = json!(o);
            }
            if let Some(p) = &self.offer_phase {
                li["offerPhase"] = json!({ p.as_str(): {} });
            }
            if let Some(d) = &self.deferred_replacement {
                li["deferredItemReplacement"] = json!({"productId": d});
            }
            let mut v = json!({
                "kind": "androidpublisher#subscriptionPurchaseV2",
                "regionCode": "FR",
                "startTime": rfc3339(self.start_ms),
                "subscriptionState": format!("SUBSCRIPTION_STATE_{}", self.state),
                "latestOrderId": self.order,
                "acknowledgementState": "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED",
                "lineItems": [li],
            });
            if let Some(a) = &self.account {
                v["externalAccountIdentifiers"] = json!({"obfuscatedExternalAccountId": a, "obfuscatedExternalProfileId": "profile-1"});
            }
            if let Some(l) = &self.linked {
                v["linkedPurchaseToken"] = json!(l);
            }
            if self.test {
                v["testPurchase"] = json!({});
            }
            if let Some(c) = &self.canceled {
                v["canceledStateContext"] = match c.as_str() {
                    "user" => json!({"userInitiatedCancellation": {
                        "cancelSurveyResult": {"reason": "CANCEL_SURVEY_REASON_COST_RELATED"},
                        "cancelTime": rfc3339(self.expiry_ms - 10 * DAY)}}),
                    "system" => json!({"systemInitiatedCancellation": {}}),
                    "developer" => json!({"developerInitiatedCancellation": {}}),
                    _ => json!({"replacementCancellation": {}}),
                };
            }
            if let Some(r) = self.resume_ms {
                v["pausedStateContext"] = json!({"autoResumeTime": rfc3339(r)});
            }
            v
        }
    }

    /// A `ProductPurchase` (`purchase_state` 0 purchased, 1 canceled, 2 pending).
    pub fn product_purchase(
        order: &str,
        purchase_ms: i64,
        purchase_state: i64,
        test: bool,
    ) -> Value {
        let mut v = json!({
            "kind": "androidpublisher#productPurchase",
            "purchaseTimeMillis": purchase_ms.to_string(),
            "purchaseState": purchase_state,
            "consumptionState": 0,
            "developerPayload": "",
            "orderId": order,
            "acknowledgementState": 0,
            "regionCode": "DE",
            "obfuscatedExternalAccountId": "user-7",
        });
        if test {
            v["purchaseType"] = json!(0);
        }
        v
    }
}

// ---------------------------------------------------------------- environment

/// The fakes, keys, clock and link store, wired to an endpoint authenticating
/// with OIDC (and optionally a URL token).
#[derive(Debug)]
pub struct PlayTestEnv {
    /// The keys.
    pub keys: &'static TestKeys,
    /// Google.
    pub google: FakeGoogle,
    /// The endpoint's clock (starts at `T0 + 40 days`).
    pub clock: Arc<ManualClock>,
    /// The lineages.
    pub links: Arc<MemoryLinkStore>,
    /// The endpoint's configuration.
    pub config: PlayStoreConfig,
}

impl PlayTestEnv {
    /// OIDC-authenticated environment for [`payloads::PACKAGE`].
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Same, with extra settings (e.g. `("PLAY_PUSH_TOKEN", "…")`, `("INCLUDE_RAW", "true")`).
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let keys = TestKeys::shared();
        let google = FakeGoogle::start(
            &[&keys.google],
            payloads::API_ACCOUNT,
            &keys.service_account,
        )
        .await;
        let clock = Arc::new(ManualClock::new(
            chrono::Utc
                .timestamp_millis_opt(payloads::T0 + 40 * payloads::DAY)
                .unwrap(),
        ));
        let mut env = Self {
            keys,
            google,
            clock,
            links: Arc::new(MemoryLinkStore::new()),
            config: PlayStoreConfig::default(),
        };
        let mut vars = env.env_vars();
        for (k, v) in extra {
            vars.retain(|(name, _)| name != k);
            vars.push(((*k).to_owned(), (*v).to_owned()));
        }
        let map: HashMap<String, String> = vars.into_iter().collect();
        env.config = playstore_config(&|k: &str| map.get(k).cloned(), true).unwrap();
        env
    }

    /// The settings (`PLAY_*` variables) that point an endpoint at these fakes.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        vec![
            ("PLAY_PACKAGE_NAMES".into(), payloads::PACKAGE.into()),
            ("PLAY_PUSH_AUDIENCE".into(), payloads::AUDIENCE.into()),
            (
                "PLAY_PUSH_SERVICE_ACCOUNT".into(),
                payloads::PUSH_ACCOUNT.into(),
            ),
            (
                "PLAY_SERVICE_ACCOUNT_JSON".into(),
                service_account_json(
                    payloads::API_ACCOUNT,
                    &self.keys.service_account,
                    &self.google.token_url(),
                ),
            ),
            ("PLAY_JWKS_URL".into(), self.google.jwks_url()),
            ("PLAY_OAUTH_TOKEN_URL".into(), self.google.token_url()),
            ("PLAY_API_BASE_URL".into(), self.google.api_base_url()),
        ]
    }

    /// A new endpoint (fresh caches) on this environment.
    pub fn endpoint(&self) -> PlayStoreEndpoint {
        PlayStoreEndpoint::new(self.config.clone(), self.links.clone(), self.clock.clone()).unwrap()
    }

    /// The clock's now in seconds.
    pub fn now_secs(&self) -> i64 {
        use storehook_shared::clock::Clock;
        self.clock.now().timestamp()
    }

    /// A valid push token at the clock's now.
    pub fn push_token(&self) -> String {
        id_token(
            &self.keys.google,
            &push_claims(payloads::AUDIENCE, payloads::PUSH_ACCOUNT, self.now_secs()),
        )
    }

    /// A POST of `body` with a valid push token.
    pub fn request(&self, body: Vec<u8>) -> StoreRequest {
        request_with_token(body, Some(&self.push_token()), None)
    }
}

/// A POST of `body` with `Authorization: Bearer <token>` and `query` when given.
pub fn request_with_token(body: Vec<u8>, token: Option<&str>, query: Option<&str>) -> StoreRequest {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(t) = token {
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    StoreRequest {
        method: "POST".into(),
        query: query.map(str::to_owned),
        headers,
        body: body.into(),
    }
}
