//! A fake App Store Server API on loopback (specs/appstore.md §9) that checks
//! every request's JWT like Apple does (ES256 signature with the registered
//! key, `kid`, `typ: JWT`, `iss`, `aud: appstoreconnect-v1`, `bid`, `exp`
//! not passed and at most 60 minutes after `iat`) and answers 401 otherwise;
//! it serves Request a Test Notification + its status, Get Notification
//! History (paged, with Apple's window limits) and Get All Subscription
//! Statuses, with JWS signed by a generated Apple-like PKI ([`TestPki`]).
//!
//! Its interface carries no storehook-shared type, so storehook-shared's unit
//! tests can use it too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::appstore::TestPki;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rcgen::KeyPair;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// `kid` of the generated keys.
pub const KEY_ID: &str = "2X9R4HXF34";
/// `iss` the fake expects.
pub const ISSUER_ID: &str = "57246542-96fe-1a63-e053-0824d011072a";
/// Apple's history window in production (days).
pub const HISTORY_MAX_DAYS: i64 = 180;
const DAY_MS: i64 = 86_400_000;

/// An In-App Purchase API key (P-256), as App Store Connect issues it.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// `kid`.
    pub key_id: String,
    /// `iss`.
    pub issuer_id: String,
    /// The `.p8` content: PKCS#8 PEM.
    pub private_key_pem: String,
    /// The public key (SPKI PEM) Apple checks signatures with.
    pub public_key_pem: String,
}

impl ApiKey {
    /// A fresh key with [`KEY_ID`] and [`ISSUER_ID`].
    pub fn generate() -> Self {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self {
            key_id: KEY_ID.into(),
            issuer_id: ISSUER_ID.into(),
            private_key_pem: k.serialize_pem(),
            public_key_pem: k.public_key_pem(),
        }
    }
}

/// Builds the answer of Get All Subscription Statuses: one subscription group
/// whose `lastTransactions` are `(status, transaction, renewal)`, each signed by `pki`.
pub fn status_answer(
    pki: &TestPki,
    environment: &str,
    bundle_id: &str,
    entries: &[(i64, Value, Option<Value>)],
) -> Value {
    let last: Vec<Value> = entries
        .iter()
        .map(|(status, tx, renewal)| {
            let mut e = json!({
                "status": status,
                "originalTransactionId": tx["originalTransactionId"],
                "signedTransactionInfo": pki.sign(tx),
            });
            if let Some(r) = renewal {
                e["signedRenewalInfo"] = json!(pki.sign(r));
            }
            e
        })
        .collect();
    json!({
        "environment": environment,
        "bundleId": bundle_id,
        "appAppleId": crate::appstore::payloads::APP_APPLE_ID,
        "data": [{"subscriptionGroupIdentifier": "20000001", "lastTransactions": last}],
    })
}

#[derive(Debug)]
struct Inner {
    key: ApiKey,
    bundle_id: String,
    pki: TestPki,
    environment: Mutex<String>,
    history: Mutex<Vec<(i64, Value)>>,
    page_size: AtomicUsize,
    history_requests: Mutex<Vec<Value>>,
    script: Mutex<VecDeque<Option<(u16, Value)>>>,
    statuses: Mutex<HashMap<String, Value>>,
    test_result: Mutex<String>,
    test_pending_polls: AtomicUsize,
    test_tokens: Mutex<HashMap<String, (String, usize)>>,
    calls: AtomicUsize,
    refused: Mutex<Vec<String>>,
    now_ms: Mutex<Option<i64>>,
    consumptions: Mutex<Vec<(String, Value)>>,
}

/// The fake API; stops when dropped.
#[derive(Debug)]
pub struct FakeAppleApi {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for FakeAppleApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAppleApi {
    /// Starts a fake accepting tokens signed with `key` for `bundle_id`; its
    /// signed data comes from `pki`. Environment `Sandbox` until told otherwise.
    pub async fn start(key: ApiKey, bundle_id: &str, pki: TestPki) -> Self {
        let inner = Arc::new(Inner {
            key,
            bundle_id: bundle_id.to_owned(),
            pki,
            environment: Mutex::new("Sandbox".into()),
            history: Mutex::new(Vec::new()),
            page_size: AtomicUsize::new(20),
            history_requests: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            statuses: Mutex::new(HashMap::new()),
            test_result: Mutex::new("SUCCESS".into()),
            test_pending_polls: AtomicUsize::new(0),
            test_tokens: Mutex::new(HashMap::new()),
            calls: AtomicUsize::new(0),
            refused: Mutex::new(Vec::new()),
            now_ms: Mutex::new(None),
            consumptions: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/inApps/v1/notifications/test", post(request_test))
            .route("/inApps/v1/notifications/test/{token}", get(test_status))
            .route("/inApps/v1/notifications/history", post(history))
            .route("/inApps/v1/subscriptions/{id}", get(statuses))
            .route("/inApps/v2/transactions/consumption/{id}", put(consumption))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner, task }
    }

    /// `http://127.0.0.1:<port>` (the `APPLE_API_BASE_URL` of tests).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment of the TEST notification and of the history window limit.
    pub fn set_environment(&self, env: &str) {
        *self.inner.environment.lock().unwrap() = env.to_owned();
    }

    /// Adds a notification to the history (its `signedPayload` as given,
    /// forged or not), dated `signed_date` (ms) for the window filter.
    pub fn add_history(&self, signed_date: i64, signed_payload: &str, attempt_result: &str) {
        self.inner.history.lock().unwrap().push((
            signed_date,
            json!({
                "signedPayload": signed_payload,
                "sendAttempts": [{"attemptDate": signed_date, "sendAttemptResult": attempt_result}],
            }),
        ));
    }

    /// Records per history page (Apple: 20).
    pub fn set_page_size(&self, n: usize) {
        self.inner.page_size.store(n.max(1), Ordering::SeqCst);
    }

    /// The JSON bodies of the history requests received (after the JWT check).
    pub fn history_requests(&self) -> Vec<Value> {
        self.inner.history_requests.lock().unwrap().clone()
    }

    /// The next authenticated call is answered `status` with `body` instead.
    pub fn push_reply(&self, status: u16, body: Value) {
        self.inner
            .script
            .lock()
            .unwrap()
            .push_back(Some((status, body)));
    }

    /// The next authenticated call is answered normally (to script a later one).
    pub fn push_normal(&self) {
        self.inner.script.lock().unwrap().push_back(None);
    }

    /// The answer of Get All Subscription Statuses for `transaction_id`.
    pub fn set_statuses(&self, transaction_id: &str, answer: Value) {
        self.inner
            .statuses
            .lock()
            .unwrap()
            .insert(transaction_id.to_owned(), answer);
    }

    /// The result of the test notification's send attempt (`SUCCESS`,
    /// `NO_RESPONSE`, …), reported after `pending_polls` status polls without one.
    pub fn set_test_result(&self, result: &str, pending_polls: usize) {
        *self.inner.test_result.lock().unwrap() = result.to_owned();
        self.inner
            .test_pending_polls
            .store(pending_polls, Ordering::SeqCst);
    }

    /// Calls received (including refused ones).
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// Why requests were answered 401 (one line per refusal).
    pub fn refused(&self) -> Vec<String> {
        self.inner.refused.lock().unwrap().clone()
    }

    /// The consumption information Apple accepted (202): (transaction id, body).
    pub fn consumptions(&self) -> Vec<(String, Value)> {
        self.inner.consumptions.lock().unwrap().clone()
    }

    /// Fixes the fake's "now" (ms) for the JWT expiry and the history window
    /// (default: the system clock).
    pub fn set_now_ms(&self, now: i64) {
        *self.inner.now_ms.lock().unwrap() = Some(now);
    }
}

fn now_ms(inner: &Inner) -> i64 {
    inner
        .now_ms
        .lock()
        .unwrap()
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
}

fn apple_error(status: u16, code: i64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"errorCode": code, "errorMessage": message})),
    )
        .into_response()
}

/// Checks the bearer JWT and the script; `Some` is the answer to give instead.
fn check(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    inner.calls.fetch_add(1, Ordering::SeqCst);
    if let Err(why) = check_jwt(inner, headers) {
        inner.refused.lock().unwrap().push(why);
        return Some(StatusCode::UNAUTHORIZED.into_response());
    }
    let scripted = inner.script.lock().unwrap().pop_front().flatten();
    scripted.map(|(status, body)| {
        (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
    })
}

fn check_jwt(inner: &Inner, headers: &HeaderMap) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let token = auth
        .strip_prefix("Bearer ")
        .ok_or("Authorization is not Bearer")?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    if header.alg != Algorithm::ES256 {
        return Err(format!("alg {:?}", header.alg));
    }
    if header.kid.as_deref() != Some(inner.key.key_id.as_str()) {
        return Err(format!("kid {:?}", header.kid));
    }
    if header.typ.as_deref() != Some("JWT") {
        return Err(format!("typ {:?}", header.typ));
    }
    let key = DecodingKey::from_ec_pem(inner.key.public_key_pem.as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["appstoreconnect-v1"]);
    v.set_issuer(&[inner.key.issuer_id.as_str()]);
    v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    v.leeway = 0;
    // expiry is checked below against the fake's clock
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| format!("{e}"))?;
    let c = data.claims;
    if c["bid"].as_str() != Some(inner.bundle_id.as_str()) {
        return Err(format!("bid {}", c["bid"]));
    }
    let (Some(iat), Some(exp)) = (c["iat"].as_i64(), c["exp"].as_i64()) else {
        return Err("iat/exp not integers".into());
    };
    let now = now_ms(inner) / 1000;
    if exp <= now {
        return Err("expired".into());
    }
    if exp - iat > 3600 || exp <= iat {
        return Err(format!("lifetime {} s", exp - iat));
    }
    if iat > now + 60 {
        return Err("iat in the future".into());
    }
    Ok(())
}

async fn request_test(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Some(r) = check(&inner, &headers) {
        return r;
    }
    let n = inner.test_tokens.lock().unwrap().len() + 1;
    let token = format!("ce3af791-365e-4c60-841b-1674b43c1609_{n}");
    let env = inner.environment.lock().unwrap().clone();
    let payload = json!({
        "notificationType": "TEST",
        "notificationUUID": format!("3838df56-31ab-4e3d-8b9d-{n:012}"),
        "version": "2.0",
        "signedDate": now_ms(&inner),
        "data": {
            "appAppleId": crate::appstore::payloads::APP_APPLE_ID,
            "bundleId": inner.bundle_id,
            "environment": env,
        }
    });
    let pending = inner.test_pending_polls.load(Ordering::SeqCst);
    inner
        .test_tokens
        .lock()
        .unwrap()
        .insert(token.clone(), (inner.pki.sign(&payload), pending));
    axum::Json(json!({"testNotificationToken": token})).into_response()
}

async fn test_status(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if let Some(r) = check(&inner, &headers) {
        return r;
    }
    let mut tokens = inner.test_tokens.lock().unwrap();
    let Some((signed, pending)) = tokens.get_mut(&token) else {
        return apple_error(404, 4040014, "Test notification not found.");
    };
    let attempts = if *pending > 0 {
        *pending -= 1;
        json!([])
    } else {
        json!([{
            "attemptDate": now_ms(&inner),
            "sendAttemptResult": inner.test_result.lock().unwrap().clone(),
        }])
    };
    axum::Json(json!({"signedPayload": signed, "sendAttempts": attempts})).into_response()
}

async fn history(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if let Some(r) = check(&inner, &headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return apple_error(400, 4000000, "Invalid request.");
    };
    inner.history_requests.lock().unwrap().push(req.clone());
    let (Some(start), Some(end)) = (req["startDate"].as_i64(), req["endDate"].as_i64()) else {
        return apple_error(
            400,
            4000015,
            "Invalid request: startDate and endDate are required.",
        );
    };
    if end <= start {
        return apple_error(
            400,
            4000016,
            "Invalid request: endDate must be after startDate.",
        );
    }
    let now = now_ms(&inner);
    let max_days = if inner.environment.lock().unwrap().as_str() == "Sandbox" {
        30
    } else {
        HISTORY_MAX_DAYS
    };
    if start < now - max_days * DAY_MS {
        return apple_error(
            400,
            4000030,
            "Invalid request: startDate is further in the past than the history kept.",
        );
    }
    let offset = match uri.query() {
        None => 0,
        Some(q) => match q
            .strip_prefix("paginationToken=page-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return apple_error(400, 4000006, "Invalid pagination token."),
        },
    };
    let end = end.min(now);
    let all: Vec<Value> = inner
        .history
        .lock()
        .unwrap()
        .iter()
        .filter(|(d, _)| *d >= start && *d < end)
        .map(|(_, v)| v.clone())
        .collect();
    let size = inner.page_size.load(Ordering::SeqCst);
    let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
    let next = offset + page.len();
    let has_more = next < all.len();
    axum::Json(json!({
        "notificationHistory": page,
        "hasMore": has_more,
        "paginationToken": format!("page-{next}"),
    }))
    .into_response()
}

async fn statuses(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = check(&inner, &headers) {
        return r;
    }
    match inner.statuses.lock().unwrap().get(&id) {
        Some(v) => axum::Json(v.clone()).into_response(),
        None => apple_error(404, 4040010, "Transaction id not found."),
    }
}

/// Send Consumption Information (v2) as Apple validates it: a JSON body with
/// exactly the documented fields and values; `customerConsented` must be true
/// (`InvalidCustomerConsentedError`); 202 Accepted with no body.
async fn consumption(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = check(&inner, &headers) {
        return r;
    }
    if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.starts_with("application/json"))
    {
        return apple_error(400, 4000000, "Invalid request: content-type.");
    }
    let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(&body) else {
        return apple_error(400, 4000000, "Invalid request: body is not a JSON object.");
    };
    const FIELDS: &[&str] = &[
        "customerConsented",
        "consumptionPercentage",
        "deliveryStatus",
        "refundPreference",
        "sampleContentProvided",
    ];
    if let Some(k) = b.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return apple_error(
            400,
            4000000,
            &format!("Invalid request: unknown field {k}."),
        );
    }
    if b.get("customerConsented") != Some(&Value::Bool(true)) {
        return apple_error(400, 4000035, "Invalid customer consented.");
    }
    let delivery = b.get("deliveryStatus").and_then(Value::as_str);
    if !matches!(
        delivery,
        Some(
            "DELIVERED"
                | "UNDELIVERED_QUALITY_ISSUE"
                | "UNDELIVERED_WRONG_ITEM"
                | "UNDELIVERED_SERVER_OUTAGE"
                | "UNDELIVERED_OTHER"
        )
    ) {
        return apple_error(400, 4000036, "Invalid delivery status.");
    }
    if !b
        .get("sampleContentProvided")
        .is_some_and(Value::is_boolean)
    {
        return apple_error(400, 4000041, "Invalid sample content provided.");
    }
    if let Some(p) = b.get("refundPreference")
        && !matches!(
            p.as_str(),
            Some("DECLINE" | "GRANT_FULL" | "GRANT_PRORATED")
        )
    {
        return apple_error(400, 4000000, "Invalid refund preference.");
    }
    if let Some(p) = b.get("consumptionPercentage")
        && p.as_u64().is_none_or(|p| p > 100_000)
    {
        return apple_error(400, 4000000, "Invalid consumption percentage.");
    }
    inner
        .consumptions
        .lock()
        .unwrap()
        .push((id, Value::Object(b)));
    StatusCode::ACCEPTED.into_response()
}
