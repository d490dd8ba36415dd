#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The forged-input matrix over the REAL HTTP path: the built `storehook serve`
//! binary with the App Store, Google Play and Huawei routes enabled, Play and
//! Huawei configured through the same environment variables as the Lambdas and
//! pointed at loopback fakes (JWKS, OAuth, Play Developer API, Huawei APIs),
//! delivering to a loopback receiver that records every request.
//!
//! Every refusal code of README.md's "Errors" table is produced at least once;
//! each case asserts the HTTP status, the JSON `error.code`, and that nothing
//! was queued (`/_storehook/queue` depth 0) or delivered (the receiver saw
//! nothing). Each matrix ends with a genuine notification that IS queued and
//! delivered, proving that the observation would have seen a leak.
//!
//! Not producible through `serve` (tested at the lowest real level instead, or
//! noted): `queue_unavailable` (the embedded redb queue does not fail on
//! demand: `Ingest` over a failing queue, below) and Play's
//! `link_store_unavailable` (the redb link store beside the state; covered by
//! the Play unit tests).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storehook_testkit::appstore::{TestPki, payloads as apple};
use storehook_testkit::huawei::{
    CLIENT_ID, CLIENT_SECRET, FakeHuaweiApi, FakeReply, HuaweiTestKey, SignAs, payloads as hw,
    v2_subscription_body,
};
use storehook_testkit::playstore::{
    PlayTestEnv, RsaTestKey, hs256_token, id_token, payloads as play, push_claims, unsigned_token,
};
use storehook_testkit::receiver::{TestReceiver, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_storehook");
const PUSH_TOKEN: &str = "forged-matrix-push-token-0123456789";
const SECRET: &str = "whsec_Zm9yZ2VkLW1hdHJpeC13ZWJob29rLWtleQ==";

/// A running `storehook serve` (killed on drop) and what it delivers to.
struct Serve {
    child: Child,
    base: String,
    data: PathBuf,
    /// Its log (JSON lines, standard error).
    log: PathBuf,
    rx: TestReceiver,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `storehook serve` trusting `pki`'s root for the App Store, with `env`
/// (Play / Huawei settings, as the Lambdas read them).
async fn serve(pki: &TestPki, env: &[(String, String)]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = dir.path().join("root.pem");
    std::fs::write(&root, pki.root_pem()).unwrap();
    let rx = TestReceiver::start().await.unwrap();
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .args(["--webhook-url", &rx.url(), "--webhook-secret", SECRET])
        .arg("--trust-root")
        .arg(&root)
        .args([
            "--apple-bundle-id",
            apple::BUNDLE_ID,
            "--apple-app-apple-id",
            &apple::APP_APPLE_ID.to_string(),
            "--apple-environments",
            "Production",
        ])
        .args(["--retry-schedule", "1s,1s,1s"])
        .env_remove("AWS_ENDPOINT_URL")
        // The JSON log of the run, read by the log test.
        .env("STOREHOOK_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap());
    for name in [
        "PLAY_PACKAGE_NAMES",
        "PLAY_PUSH_AUDIENCE",
        "PLAY_PUSH_SERVICE_ACCOUNT",
        "PLAY_PUSH_TOKEN",
        "PLAY_SERVICE_ACCOUNT_JSON",
        "PLAY_JWKS_URL",
        "PLAY_OAUTH_TOKEN_URL",
        "PLAY_API_BASE_URL",
        "HUAWEI_APP_IDS",
        "HUAWEI_PUBLIC_KEY",
        "HUAWEI_CLIENT_ID",
        "HUAWEI_CLIENT_SECRET",
        "HUAWEI_OAUTH_URL",
        "HUAWEI_API_URL",
        "HUAWEI_ORDER_API_URL",
        "HUAWEI_APPTOUCH_API_URL",
        "INCLUDE_RAW",
        "APPLE_EXTRA_ROOTS_PEM",
    ] {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "storehook serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Serve {
        child,
        base,
        data,
        log: dir.path().join("serve.log"),
        rx,
        http,
        _dir: dir,
    }
}

impl Serve {
    /// GET of an admin route, with `Authorization: Bearer <data dir>/admin-token`
    /// when serve keeps one.
    async fn admin_get(&self, path: &str) -> Value {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = admin_token(&self.data) {
            req = req.bearer_auth(token);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "admin route {path}");
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    async fn depth(&self) -> u64 {
        self.admin_get("/_storehook/queue").await["depth"]
            .as_u64()
            .expect("queue depth")
    }

    /// Sends `req`; returns the status and the JSON body.
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("HTTP {status}: body is not JSON: {text:?}"));
        (status, body)
    }

    /// POSTs `body` to `/<route>` with `headers` and `query`.
    fn post(
        &self,
        route: &str,
        query: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let url = match query {
            Some(q) => format!("{}/{route}?{q}", self.base),
            None => format!("{}/{route}", self.base),
        };
        let mut r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r
    }

    /// Asserts `req` is refused with `status` and `code`, and nothing was
    /// queued or delivered.
    async fn refused(&self, case: &str, req: reqwest::RequestBuilder, status: u16, code: &str) {
        let (got, body) = self.send(req).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{case}: {body}"
        );
        assert!(
            body["error"]["message"].is_string(),
            "{case}: no message: {body}"
        );
        assert_eq!(self.depth().await, 0, "{case}: something was queued");
        assert_eq!(self.rx.count(), 0, "{case}: something was delivered");
    }

    /// After the refusals: a genuine request IS queued and delivered (the
    /// observation above would have seen a leak), and nothing else arrived.
    /// Returns the delivered events (the notification's, and the ACCESS_*
    /// event its state change implies), all of `store`.
    async fn accepted_and_delivered(&self, req: reqwest::RequestBuilder, store: &str) {
        let (status, body) = self.send(req).await;
        assert_eq!(status, 200, "genuine request refused: {body}");
        self.rx.wait_for_requests(1, Duration::from_secs(20)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.depth().await != 0 {
            assert!(Instant::now() < deadline, "queue did not drain");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let events: Vec<Value> = self
            .rx
            .requests()
            .iter()
            .map(|r| r.json().expect("delivered JSON"))
            .collect();
        assert!(!events.is_empty());
        for e in &events {
            assert_eq!(
                e["store"], store,
                "only the genuine notification's events: {e}"
            );
        }
    }
}

fn admin_token(data: &Path) -> Option<String> {
    std::fs::read_to_string(data.join("admin-token"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ------------------------------------------------------------------ App Store

fn apple_parts(signed: i64, env: &str) -> (Value, Value, Value) {
    let p = apple::notification(
        "DID_RENEW",
        None,
        &format!("uuid-{signed}-{env}"),
        signed,
        env,
        Some(1),
    );
    let t = apple::transaction(
        "777",
        &format!("777-{signed}"),
        "pro.monthly",
        signed,
        30,
        env,
    );
    let r = apple::renewal("777", "pro.monthly", true, signed, env);
    (p, t, r)
}

fn signed_payload(jws: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "signedPayload": jws })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_app_store_requests_are_refused_over_http_and_nothing_is_queued_or_delivered() {
    let pki = TestPki::new();
    let s = serve(&pki, &[]).await;
    let now = now_ms();
    let (p, t, r) = apple_parts(now, "Production");
    let good = pki.notification_body(p.clone(), Some(&t), Some(&r));
    let post = |body: Vec<u8>| s.post("appstore", None, &[], body);

    // 405 / 413: before any parsing.
    s.refused(
        "GET",
        s.http.get(format!("{}/appstore", s.base)),
        405,
        "method_not_allowed",
    )
    .await;
    s.refused(
        "PUT",
        s.http
            .put(format!("{}/appstore", s.base))
            .body(good.clone()),
        405,
        "method_not_allowed",
    )
    .await;
    let mut big = good.clone();
    big.resize(64 * 1024 + 1, b' ');
    s.refused("65 KiB body", post(big), 413, "body_too_large")
        .await;

    // 400: not a notification.
    s.refused(
        "not JSON",
        post(b"not json".to_vec()),
        400,
        "malformed_body",
    )
    .await;
    s.refused(
        "no signedPayload",
        post(br#"{"signed_payload":"x"}"#.to_vec()),
        400,
        "malformed_body",
    )
    .await;
    s.refused(
        "not a JWS",
        post(signed_payload("a.b")),
        400,
        "malformed_jws",
    )
    .await;
    s.refused(
        "payload not base64url",
        post(signed_payload("eyJhbGciOiJFUzI1NiJ9.!!!.c2ln")),
        400,
        "malformed_jws",
    )
    .await;

    // 401: not authentic.
    let jws = pki.sign(&p);
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&parts[2])
        .unwrap();
    sig[10] ^= 1;
    parts[2] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    s.refused(
        "flipped signature bit",
        post(signed_payload(&parts.join("."))),
        401,
        "invalid_signature",
    )
    .await;
    let stranger = TestPki::new(); // a chain to a root serve does not trust
    s.refused(
        "untrusted root",
        post(stranger.notification_body(p.clone(), Some(&t), Some(&r))),
        401,
        "untrusted_chain",
    )
    .await;
    s.refused(
        "x5c without chain",
        post(signed_payload(
            &pki.sign_with_header(&json!({"alg": "ES256"}), &p),
        )),
        401,
        "missing_certificate_chain",
    )
    .await;
    let x5c = pki.x5c();
    s.refused(
        "x5c of two certificates",
        post(signed_payload(&pki.sign_with_header(
            &json!({"alg": "ES256", "x5c": [x5c[0], x5c[1]]}),
            &p,
        ))),
        401,
        "invalid_chain_length",
    )
    .await;
    s.refused(
        "x5c leaf not a certificate",
        post(signed_payload(&pki.sign_with_header(
            &json!({"alg": "ES256", "x5c": [STANDARD.encode(b"not a certificate"), x5c[1], x5c[2]]}),
            &p,
        ))),
        401,
        "invalid_certificate",
    )
    .await;
    s.refused(
        "alg HS256",
        post(signed_payload(
            &pki.sign_with_header(&json!({"alg": "HS256", "x5c": x5c}), &p),
        )),
        401,
        "unsupported_algorithm",
    )
    .await;
    // Signed (with serve's trusted root) at a date the leaf was not valid.
    let mut old_p = p.clone();
    old_p["signedDate"] = json!(3_800_000_000_000_i64); // year 2090: after the leaf's notAfter (2040)
    s.refused(
        "signed after the leaf expired",
        post(pki.notification_body(old_p, None, None)),
        401,
        "certificate_expired",
    )
    .await;

    // 403: authentic, but not for this deployment.
    let mut other_app = p.clone();
    other_app["data"]["bundleId"] = json!("com.attacker.app");
    s.refused(
        "another bundle id",
        post(pki.notification_body(other_app, None, None)),
        403,
        "wrong_app",
    )
    .await;
    let (sp, st, sr) = apple_parts(now, "Sandbox");
    s.refused(
        "Sandbox on a Production-only deployment",
        post(pki.notification_body(sp, Some(&st), Some(&sr))),
        403,
        "wrong_environment",
    )
    .await;

    s.accepted_and_delivered(post(good), "APP_STORE").await;
}

// -------------------------------------------------------------- Google Play

/// (case, how the claims are changed, status, code).
type ClaimCase<'a> = (&'a str, &'a dyn Fn(&mut Value), u16, &'a str);

fn play_push(package: &str, ntype: i64, token: &str) -> Vec<u8> {
    let mut n = play::subscription_notification(ntype, token, now_ms());
    n["packageName"] = json!(package);
    play::push_body("msg-1", &n, now_ms())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_play_pushes_are_refused_over_http_and_nothing_is_queued_or_delivered() {
    let env = PlayTestEnv::start().await;
    let mut vars = env.env_vars();
    vars.push(("PLAY_PUSH_TOKEN".into(), PUSH_TOKEN.into()));
    let s = serve(&TestPki::new(), &vars).await;
    let google_key = &env.keys.google;
    let now = chrono::Utc::now().timestamp();
    let claims = push_claims(play::AUDIENCE, play::PUSH_ACCOUNT, now);
    let valid = id_token(google_key, &claims);
    let q = format!("token={PUSH_TOKEN}");
    let body = play_push(play::PACKAGE, 2, "purchase-token-1");
    let post = |token: Option<&str>, query: Option<&str>, body: Vec<u8>| {
        let headers: Vec<(&str, String)> = token
            .map(|t| vec![("authorization", format!("Bearer {t}"))])
            .unwrap_or_default();
        s.post("playstore", query, &headers, body)
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        id_token(google_key, &c)
    };

    s.refused(
        "GET",
        s.http.get(format!("{}/playstore", s.base)),
        405,
        "method_not_allowed",
    )
    .await;
    let mut big = body.clone();
    big.resize(64 * 1024 + 1, b' ');
    s.refused(
        "65 KiB body",
        post(Some(&valid), Some(&q), big),
        413,
        "body_too_large",
    )
    .await;

    // The URL token.
    s.refused(
        "no ?token=",
        post(Some(&valid), None, body.clone()),
        401,
        "missing_push_token",
    )
    .await;
    s.refused(
        "wrong ?token=",
        post(
            Some(&valid),
            Some("token=guessed-token-0123456789"),
            body.clone(),
        ),
        401,
        "invalid_push_token",
    )
    .await;

    // The OIDC token.
    s.refused(
        "no bearer",
        post(None, Some(&q), body.clone()),
        401,
        "missing_token",
    )
    .await;
    s.refused(
        "three segments expected",
        post(Some("not-a-jwt"), Some(&q), body.clone()),
        401,
        "malformed_token",
    )
    .await;
    s.refused(
        "alg none",
        post(
            Some(&unsigned_token(&google_key.kid, &claims)),
            Some(&q),
            body.clone(),
        ),
        401,
        "unsupported_algorithm",
    )
    .await;
    s.refused(
        "HS256 keyed with the public key",
        post(
            Some(&hs256_token(
                google_key.public_pem().as_bytes(),
                &google_key.kid,
                &claims,
            )),
            Some(&q),
            body.clone(),
        ),
        401,
        "unsupported_algorithm",
    )
    .await;
    let attacker = RsaTestKey::generate("attacker-kid");
    s.refused(
        "key id not in the JWKS",
        post(Some(&id_token(&attacker, &claims)), Some(&q), body.clone()),
        401,
        "unknown_key",
    )
    .await;
    let forged_sig = attacker.sign_jwt(
        &json!({"alg": "RS256", "kid": google_key.kid, "typ": "JWT"}),
        &claims,
    );
    s.refused(
        "Google's kid, attacker's signature",
        post(Some(&forged_sig), Some(&q), body.clone()),
        401,
        "invalid_signature",
    )
    .await;
    let cases: [ClaimCase; 6] = [
        (
            "expired",
            &|c| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            },
            401,
            "token_expired",
        ),
        (
            "issued in the future",
            &|c| c["iat"] = json!(now + 3600),
            401,
            "invalid_issue_time",
        ),
        (
            "issuer",
            &|c| c["iss"] = json!("https://accounts.example.com"),
            401,
            "wrong_issuer",
        ),
        (
            "audience",
            &|c| c["aud"] = json!("https://attacker.example.com/playstore"),
            401,
            "wrong_audience",
        ),
        (
            "service account",
            &|c| c["email"] = json!("attacker@example-project.iam.gserviceaccount.com"),
            403,
            "wrong_service_account",
        ),
        (
            "email not verified",
            &|c| c["email_verified"] = json!(false),
            403,
            "email_not_verified",
        ),
    ];
    for (case, f, status, code) in cases {
        s.refused(
            case,
            post(Some(&with(f)), Some(&q), body.clone()),
            status,
            code,
        )
        .await;
    }

    // Authentic pushes this deployment must not take.
    s.refused(
        "not a push",
        post(Some(&valid), Some(&q), b"{\"hello\":1}".to_vec()),
        400,
        "malformed_body",
    )
    .await;
    s.refused(
        "another package",
        post(
            Some(&valid),
            Some(&q),
            play_push("com.attacker.app", 2, "t"),
        ),
        403,
        "wrong_app",
    )
    .await;
    env.google.set_api_failure(Some(500));
    s.refused(
        "Play Developer API down",
        post(Some(&valid), Some(&q), body.clone()),
        503,
        "play_api_unavailable",
    )
    .await;
    env.google.set_api_failure(None);

    env.google.set_subscription(
        play::PACKAGE,
        "purchase-token-1",
        play::Sub::active()
            .start(now_ms() - play::DAY)
            .expiry(now_ms() + 29 * play::DAY)
            .json(),
    );
    s.accepted_and_delivered(post(Some(&valid), Some(&q), body), "GOOGLE_PLAY")
        .await;
}

// ------------------------------------------------------------------- Huawei

fn huawei_vars(key: &HuaweiTestKey, api: Option<&FakeHuaweiApi>) -> Vec<(String, String)> {
    let mut v = vec![
        ("HUAWEI_APP_IDS".to_owned(), hw::APP_ID.to_owned()),
        ("HUAWEI_PUBLIC_KEY".to_owned(), key.public_key_base64()),
    ];
    if let Some(api) = api {
        let url = api.url();
        v.extend([
            ("HUAWEI_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
            ("HUAWEI_CLIENT_SECRET".to_owned(), CLIENT_SECRET.to_owned()),
            (
                "HUAWEI_OAUTH_URL".to_owned(),
                format!("{url}/oauth2/v3/token"),
            ),
            ("HUAWEI_API_URL".to_owned(), url.clone()),
            ("HUAWEI_ORDER_API_URL".to_owned(), url.clone()),
            (
                "HUAWEI_APPTOUCH_API_URL".to_owned(),
                format!("{url}/apptouch"),
            ),
        ]);
    }
    v
}

fn huawei_receipt() -> Value {
    let now = now_ms();
    hw::receipt("pro.monthly", now - hw::DAY, now + 29 * hw::DAY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_huawei_notifications_are_refused_over_http_and_nothing_is_queued_or_delivered() {
    let key = HuaweiTestKey::generate();
    let api = FakeHuaweiApi::start(key.clone(), SignAs::Pkcs1).await;
    let s = serve(&TestPki::new(), &huawei_vars(&key, Some(&api))).await;
    let post = |body: Vec<u8>| s.post("huawei", None, &[], body);
    let receipt = huawei_receipt();
    let update = hw::status_update(2, Some(&receipt)); // RENEWAL
    let signed = update.to_string();
    let good = key.v2_body(&update, SignAs::Pkcs1, now_ms());

    s.refused(
        "GET",
        s.http.get(format!("{}/huawei", s.base)),
        405,
        "method_not_allowed",
    )
    .await;
    let mut big = good.clone();
    big.resize(64 * 1024 + 1, b' ');
    s.refused("65 KiB body", post(big), 413, "body_too_large")
        .await;

    s.refused("not JSON", post(b"<xml/>".to_vec()), 400, "malformed_body")
        .await;
    s.refused(
        "neither v1 nor v2",
        post(b"{}".to_vec()),
        400,
        "malformed_body",
    )
    .await;
    s.refused(
        "unknown eventType",
        post(br#"{"version":"v2","eventType":"PAYOUT","applicationId":"101234567"}"#.to_vec()),
        400,
        "unsupported_event_type",
    )
    .await;
    let mut unsigned: Value = serde_json::from_slice(&good).unwrap();
    unsigned["subNotification"]
        .as_object_mut()
        .unwrap()
        .remove("notificationSignature");
    s.refused(
        "no signature",
        post(serde_json::to_vec(&unsigned).unwrap()),
        401,
        "missing_signature",
    )
    .await;
    s.refused(
        "signature not base64",
        post(v2_subscription_body(
            &signed,
            "!!not base64!!",
            Some("SHA256WithRSA"),
            now_ms(),
        )),
        400,
        "malformed_signature",
    )
    .await;
    s.refused(
        "signatureAlgorithm MD5",
        post(v2_subscription_body(
            &signed,
            &key.sign(SignAs::Pkcs1, &signed),
            Some("MD5WithRSA"),
            now_ms(),
        )),
        401,
        "unsupported_algorithm",
    )
    .await;
    let attacker = HuaweiTestKey::generate();
    s.refused(
        "signed by another key",
        post(attacker.v2_body(&update, SignAs::Pkcs1, now_ms())),
        401,
        "invalid_signature",
    )
    .await;
    let mut tampered = update.clone();
    tampered["productId"] = json!("pro.lifetime");
    s.refused(
        "content changed after signing",
        post(v2_subscription_body(
            &tampered.to_string(),
            &key.sign(SignAs::Pkcs1, &signed),
            Some("SHA256WithRSA"),
            now_ms(),
        )),
        401,
        "invalid_signature",
    )
    .await;
    let garbage = "this is signed but not JSON";
    s.refused(
        "signed content not JSON",
        post(v2_subscription_body(
            garbage,
            &key.sign(SignAs::Pkcs1, garbage),
            Some("SHA256WithRSA"),
            now_ms(),
        )),
        400,
        "malformed_notification",
    )
    .await;
    let mut other_app = update.clone();
    other_app["applicationId"] = json!("109999999");
    s.refused(
        "another app",
        post(key.v2_body(&other_app, SignAs::Pkcs1, now_ms())),
        403,
        "wrong_app",
    )
    .await;
    let mut odd_env = update.clone();
    odd_env["environment"] = json!("STAGING");
    s.refused(
        "unknown environment",
        post(key.v2_body(&odd_env, SignAs::Pkcs1, now_ms())),
        403,
        "wrong_environment",
    )
    .await;

    // The store API answers (enrichment of an authentic notification).
    let api_cases: [(&str, FakeReply, &str); 4] = [
        (
            "API HTTP 500",
            FakeReply::Status(500),
            "store_api_unavailable",
        ),
        (
            "API refuses",
            FakeReply::Json(json!({"responseCode": "5", "responseMessage": "no"})),
            "store_api_refused",
        ),
        (
            "API answer without data",
            FakeReply::Json(json!({"responseCode": "0", "responseMessage": "success"})),
            "store_api_malformed",
        ),
        (
            "API receipt signed by another key",
            FakeReply::Json(attacker.api_answer("inappPurchaseData", &receipt, SignAs::Pkcs1)),
            "store_api_invalid_signature",
        ),
    ];
    for (case, reply, code) in api_cases {
        api.push(reply);
        s.refused(case, post(good.clone()), 503, code).await;
    }
    let mut someone_else = receipt.clone();
    someone_else["subscriptionId"] = json!("1679999999999.FFFFFFFF.0000");
    api.set_subscription(someone_else);
    s.refused(
        "API receipt of another subscription",
        post(good.clone()),
        503,
        "store_api_mismatch",
    )
    .await;

    api.set_subscription(receipt);
    s.accepted_and_delivered(post(good), "HUAWEI_APPGALLERY")
        .await;
}

/// Settings that make a store path unable to complete now: Huawei without API
/// credentials (ORDER cannot be confirmed) and Play with Google's JWKS failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_dependencies_answer_503_over_http_and_nothing_is_queued() {
    let key = HuaweiTestKey::generate();
    let env = PlayTestEnv::start().await;
    env.google.set_jwks_status(500);
    let mut vars = env.env_vars();
    vars.extend(huawei_vars(&key, None));
    let s = serve(&TestPki::new(), &vars).await;

    let order =
        storehook_testkit::huawei::v2_order_body(1, hw::PURCHASE_TOKEN, "pro.lifetime", now_ms());
    s.refused(
        "ORDER without API credentials",
        s.post("huawei", None, &[], order),
        503,
        "order_verification_unavailable",
    )
    .await;

    let token = id_token(
        &env.keys.google,
        &push_claims(
            play::AUDIENCE,
            play::PUSH_ACCOUNT,
            chrono::Utc::now().timestamp(),
        ),
    );
    s.refused(
        "JWKS fetch fails",
        s.post(
            "playstore",
            None,
            &[("authorization", format!("Bearer {token}"))],
            play_push(play::PACKAGE, 2, "purchase-token-1"),
        ),
        503,
        "jwks_unavailable",
    )
    .await;
}

/// A deployment that takes Play pushes but has no service account cannot read
/// the subscription's state: the push is refused with 503 (Google retries),
/// never translated without the authoritative state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_push_without_api_credentials_is_503_play_api_not_configured() {
    let env = PlayTestEnv::start().await;
    let mut vars: Vec<(String, String)> = env
        .env_vars()
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "PLAY_SERVICE_ACCOUNT_JSON" | "PLAY_PUSH_AUDIENCE" | "PLAY_PUSH_SERVICE_ACCOUNT"
            )
        })
        .collect();
    vars.push(("PLAY_PUSH_TOKEN".into(), PUSH_TOKEN.into()));
    let s = serve(&TestPki::new(), &vars).await;
    let q = format!("token={PUSH_TOKEN}");
    s.refused(
        "no service account for the Play Developer API",
        s.post(
            "playstore",
            Some(&q),
            &[],
            play_push(play::PACKAGE, 2, "purchase-token-1"),
        ),
        503,
        "play_api_not_configured",
    )
    .await;
}

/// `queue_unavailable` cannot be provoked through `serve` (its embedded redb
/// queue does not fail on demand): the same `Ingest` serve runs, over a queue
/// that refuses sends, answers 503 and reports nothing queued.
#[tokio::test]
async fn a_failing_queue_is_503_queue_unavailable() {
    use storehook_shared::ingest::{AppStoreEndpoint, Ingest, StoreRequest};
    use storehook_shared::queue::{MemoryQueue, QueueError};
    use storehook_shared::stores::appstore::{AppStore, AppStoreConfig};

    let pki = TestPki::new();
    let store = AppStore::new(AppStoreConfig {
        extra_roots: vec![pki.root_der.clone()],
        ..AppStoreConfig::default()
    })
    .unwrap();
    let queue = Arc::new(MemoryQueue::new());
    queue.fail_with(Some(QueueError::Unavailable("SQS is down".into())));
    let ingest = Ingest::new(
        Arc::new(AppStoreEndpoint(store)),
        queue.clone(),
        Arc::new(storehook_shared::clock::SystemClock),
    );
    let (p, t, r) = apple_parts(now_ms(), "Production");
    let resp = ingest
        .handle(StoreRequest {
            method: "POST".into(),
            query: None,
            headers: http::HeaderMap::new(),
            body: pki.notification_body(p, Some(&t), Some(&r)).into(),
        })
        .await;
    assert_eq!(resp.status, 503);
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(v["error"]["code"], "queue_unavailable");
    assert!(queue.sent().is_empty());
}

// ------------------------------------------------------------------- Amazon

/// The Amazon settings of a deployment whose certificates come from `certs`
/// (signed by `pki`) and whose RVS is `rvs`, as the Lambda reads them.
fn amazon_vars(
    pki: &storehook_testkit::amazon::SnsPki,
    certs: &storehook_testkit::loopback::Server,
    rvs: &storehook_testkit::amazon::FakeRvs,
) -> Vec<(String, String)> {
    use storehook_testkit::amazon::{PACKAGE, SHARED_SECRET, TOPIC_ARN};
    [
        ("AMAZON_APP_PACKAGES", PACKAGE.to_owned()),
        ("AMAZON_TOPIC_ARNS", TOPIC_ARN.to_owned()),
        ("AMAZON_RVS_SHARED_SECRET", SHARED_SECRET.to_owned()),
        ("AMAZON_RVS_URL", rvs.server.url.clone()),
        (
            "AMAZON_SNS_CERT_HOSTS",
            certs.url.trim_start_matches("https://").to_owned(),
        ),
        ("AMAZON_SNS_TRUST_ROOTS", pki.root_pem.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Amazon over the real binary: SNS messages posted as SNS posts them
/// (`text/plain`), the signing certificate served over loopback HTTPS from an
/// allowed test host, RVS a loopback fake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_amazon_messages_are_refused_over_http_and_nothing_is_queued_or_delivered() {
    use storehook_testkit::amazon::{
        FakeRvs, PACKAGE, SnsMessage, SnsPki, rtn, subscription_receipt,
    };
    let pki = SnsPki::new();
    let certs = pki.serve().await;
    let rvs = FakeRvs::start().await;
    let now = now_ms();
    rvs.answer(
        "AMZ-1",
        200,
        &subscription_receipt("AMZ-1", now - 86_400_000, now + 29 * 86_400_000),
    );
    let vars = amazon_vars(&pki, &certs, &rvs);
    let s = serve(&TestPki::new(), &vars).await;
    let text = [("content-type", "text/plain; charset=UTF-8".to_owned())];
    let post = |body: String| s.post("amazon", None, &text, body.into_bytes());
    let good = SnsMessage::notification(
        &rtn("SUBSCRIPTION_PURCHASED", "AMZ-1", now).to_string(),
        "amz-msg-1",
        &format!("{}/cert.pem", certs.url),
    );
    let signed: Value = serde_json::from_str(&good.signed(&pki)).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = signed.clone();
        f(&mut v);
        v.to_string()
    };

    s.refused("not JSON", post("<xml/>".into()), 400, "malformed_body")
        .await;
    s.refused(
        "unknown Type",
        post(with(&|v| v["Type"] = json!("Telegram"))),
        400,
        "unsupported_message_type",
    )
    .await;
    s.refused(
        "Message changed after signing",
        post(with(&|v| {
            v["Message"] = json!(rtn("SUBSCRIPTION_PURCHASED", "AMZ-2", now).to_string())
        })),
        401,
        "signature_invalid",
    )
    .await;
    s.refused(
        "SignatureVersion 3",
        post(with(&|v| v["SignatureVersion"] = json!("3"))),
        401,
        "unsupported_signature_version",
    )
    .await;
    s.refused(
        "certificate from another host",
        post(with(&|v| {
            v["SigningCertURL"] = json!("https://sns.us-east-1.amazonaws.com.attacker.net/c.pem")
        })),
        401,
        "untrusted_certificate_url",
    )
    .await;
    let mut other_topic = good.clone();
    other_topic.topic_arn = "arn:aws:sns:us-east-1:111122223333:attacker".into();
    s.refused(
        "another topic",
        post(other_topic.signed(&pki)),
        403,
        "wrong_topic",
    )
    .await;
    let mut other_app = good.clone();
    other_app.message = other_app.message.replace(PACKAGE, "com.attacker");
    s.refused(
        "another app",
        post(other_app.signed(&pki)),
        403,
        "wrong_app",
    )
    .await;
    rvs.answer("AMZ-DOWN", 500, &json!({}));
    let mut rvs_fails = good.clone();
    rvs_fails.message = rtn("SUBSCRIPTION_PURCHASED", "AMZ-DOWN", now).to_string();
    s.refused(
        "RVS answers 500",
        post(rvs_fails.signed(&pki)),
        503,
        "rvs_unavailable",
    )
    .await;

    s.accepted_and_delivered(post(good.signed(&pki)), "AMAZON_APPSTORE")
        .await;
    let delivered: Value = s.rx.requests()[0].json().unwrap();
    assert_eq!(delivered["type"], "SUBSCRIPTION_STARTED");
    assert_eq!(delivered["store_notification"]["id"], "amz-msg-1");
    assert_eq!(delivered["subscription"]["status"], "ACTIVE");
}

// --------------------------------------------------------------- logs of a full run

/// A full run over every store (App Store, Google Play, Huawei with its API,
/// Amazon), refusals included, logged as JSON: every line is a JSON object;
/// each queued event and each delivery has a line carrying its event id, its
/// subscription group and its store notification id; and no secret or
/// purchase token appears anywhere in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_json_lines_with_ids_and_never_a_secret_or_a_purchase_token() {
    use storehook_testkit::amazon::{
        FakeRvs, SHARED_SECRET, SnsMessage, SnsPki, rtn, subscription_receipt,
    };
    let pki = TestPki::new();
    let play_env = PlayTestEnv::start().await;
    let mut vars = play_env.env_vars();
    vars.push(("PLAY_PUSH_TOKEN".into(), PUSH_TOKEN.into()));
    let key = HuaweiTestKey::generate();
    let api = FakeHuaweiApi::start(key.clone(), SignAs::Pkcs1).await;
    vars.extend(huawei_vars(&key, Some(&api)));
    let sns = SnsPki::new();
    let certs = sns.serve().await;
    let rvs = FakeRvs::start().await;
    vars.extend(amazon_vars(&sns, &certs, &rvs));
    let s = serve(&pki, &vars).await;
    let now = now_ms();

    // App Store: a renewal, and a forgery.
    let (p, t, r) = apple_parts(now, "Production");
    let apple_uuid = p["notificationUUID"].as_str().unwrap().to_owned();
    let (status, _) = s
        .send(s.post(
            "appstore",
            None,
            &[],
            pki.notification_body(p, Some(&t), Some(&r)),
        ))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .send(s.post("appstore", None, &[], signed_payload("a.b.c")))
        .await;
    assert_eq!(status, 400);
    // Google Play: a renewal (its purchase token must never be logged), and a bad push token.
    let play_token = "purchase-token-LOGTEST-0123456789abcdef";
    play_env.google.set_subscription(
        play::PACKAGE,
        play_token,
        play::Sub::active()
            .start(now - play::DAY)
            .expiry(now + 29 * play::DAY)
            .json(),
    );
    let claims = push_claims(play::AUDIENCE, play::PUSH_ACCOUNT, now / 1000);
    let bearer = vec![(
        "authorization",
        format!("Bearer {}", id_token(&play_env.keys.google, &claims)),
    )];
    let q = format!("token={PUSH_TOKEN}");
    let (status, body) = s
        .send(s.post(
            "playstore",
            Some(&q),
            &bearer,
            play_push(play::PACKAGE, 2, play_token),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = s
        .send(s.post(
            "playstore",
            Some("token=wrong-token-wrong-token"),
            &bearer,
            play_push(play::PACKAGE, 2, play_token),
        ))
        .await;
    assert_eq!(status, 401);
    // Huawei: a renewal confirmed through its API.
    let receipt = huawei_receipt();
    api.set_subscription(receipt.clone());
    let update = hw::status_update(2, Some(&receipt));
    let (status, body) = s
        .send(s.post(
            "huawei",
            None,
            &[],
            key.v2_body(&update, SignAs::Pkcs1, now),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    // Amazon: a purchase, and a tampered message.
    rvs.answer(
        "AMZ-LOG",
        200,
        &subscription_receipt("AMZ-LOG", now - play::DAY, now + 29 * play::DAY),
    );
    let m = SnsMessage::notification(
        &rtn("SUBSCRIPTION_PURCHASED", "AMZ-LOG", now).to_string(),
        "amz-log-1",
        &format!("{}/cert.pem", certs.url),
    );
    let (status, body) = s
        .send(s.post("amazon", None, &[], m.signed(&sns).into_bytes()))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut tampered: Value = serde_json::from_str(&m.signed(&sns)).unwrap();
    tampered["MessageId"] = json!("amz-log-2");
    let (status, _) = s
        .send(s.post("amazon", None, &[], tampered.to_string().into_bytes()))
        .await;
    assert_eq!(status, 401);

    // Every event delivered (each notification's event, plus ACCESS_GRANTED where access began).
    s.rx.wait_for_requests(4, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.depth().await != 0 {
        assert!(Instant::now() < deadline, "queue did not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered: Vec<Value> = s.rx.requests().iter().filter_map(|r| r.json()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = std::fs::read_to_string(&s.log).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(lines.len() >= 10, "{log}");
    let with = |message: &str, id: &str| {
        lines.iter().find(|l| {
            l["fields"]["message"] == message && l["fields"]["event_id"].as_str() == Some(id)
        })
    };
    for e in &delivered {
        let id = e["id"].as_str().unwrap();
        let group = e["subscription"]["id"].as_str().map(str::to_owned);
        let delivered_line = with("webhook delivered", id)
            .unwrap_or_else(|| panic!("no delivery line for {id}:\n{log}"));
        if let Some(g) = &group {
            assert_eq!(
                delivered_line["fields"]["group"].as_str(),
                Some(g.as_str()),
                "{delivered_line}"
            );
        }
        assert_eq!(
            delivered_line["fields"]["store_notification_id"], e["store_notification"]["id"],
            "{delivered_line}"
        );
        if e["type"]
            .as_str()
            .is_some_and(|t| !t.starts_with("ACCESS_"))
        {
            let queued =
                with("queued", id).unwrap_or_else(|| panic!("no queued line for {id}:\n{log}"));
            assert_eq!(
                queued["fields"]["store_notification_id"],
                e["store_notification"]["id"]
            );
            assert!(queued["fields"]["group"].is_string());
        }
    }
    assert!(
        delivered
            .iter()
            .any(|e| e["store_notification"]["id"] == apple_uuid.as_str())
    );
    for store in [
        "APP_STORE",
        "GOOGLE_PLAY",
        "HUAWEI_APPGALLERY",
        "AMAZON_APPSTORE",
    ] {
        assert!(
            delivered.iter().any(|e| e["store"] == store),
            "{store} delivered"
        );
    }
    // Refusals are logged with their code.
    for code in ["malformed_jws", "invalid_push_token", "signature_invalid"] {
        assert!(
            lines.iter().any(|l| l["fields"]["code"] == code),
            "refusal {code} logged:\n{log}"
        );
    }
    // The same run in Prometheus text (GET /metrics, behind the admin token).
    let r = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "/metrics needs the admin token");
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .bearer_auth(admin_token(&s.data).unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "storehook_notifications_accepted_total{store=\"amazon\"} 1",
        "storehook_notifications_accepted_total{store=\"appstore\"} 1",
        "storehook_notifications_refused_total{store=\"appstore\",code=\"malformed_jws\"} 1",
        "storehook_notifications_refused_total{store=\"amazon\",code=\"signature_invalid\"} 1",
        "storehook_authentication_failures_total{store=\"amazon\"} 1",
        "storehook_authentication_failures_total{store=\"playstore\"} 1",
        "storehook_events_total{store=\"amazon\",type=\"SUBSCRIPTION_STARTED\"} 1",
        "storehook_queue_depth 0",
        "storehook_dead_letter_depth 0",
    ] {
        assert!(metrics.contains(line), "{line} in /metrics:\n{metrics}");
    }
    let delivered_ok: u64 = metrics
        .lines()
        .find(|l| l.starts_with("storehook_deliveries_total{outcome=\"delivered\",attempt=\"1\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert_eq!(delivered_ok, delivered.len() as u64, "{metrics}");
    assert!(metrics.contains("storehook_delivery_latency_ms_count{outcome=\"delivered\"}"));

    // Never a secret or a purchase token.
    let huawei_token = receipt["purchaseToken"].as_str().unwrap().to_owned();
    let admin = admin_token(&s.data).expect("the generated admin token");
    let secret_key = SECRET.trim_start_matches("whsec_");
    for (what, secret) in [
        ("the webhook secret", secret_key),
        ("the admin token", admin.as_str()),
        ("the Play push token", PUSH_TOKEN),
        ("a Play purchase token", play_token),
        ("a Huawei purchase token", huawei_token.as_str()),
        ("the Huawei client secret", CLIENT_SECRET),
        ("the Amazon RVS shared secret", SHARED_SECRET),
        (
            "a Google push bearer token",
            bearer[0].1.trim_start_matches("Bearer "),
        ),
    ] {
        assert!(!log.contains(secret), "{what} appears in the log");
    }
}

/// `storehook translate --store amazon`: the same verification and RVS call
/// as the route, one JSON line per event; a forgery exits 1 with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translate_store_amazon_verifies_asks_rvs_and_prints_the_events() {
    use storehook_testkit::amazon::{
        FakeRvs, PACKAGE, SHARED_SECRET, SnsMessage, SnsPki, TOPIC_ARN, rtn, subscription_receipt,
    };
    let sns = SnsPki::new();
    let certs = sns.serve().await;
    let rvs = FakeRvs::start().await;
    let now = now_ms();
    rvs.answer(
        "AMZ-T",
        200,
        &subscription_receipt("AMZ-T", now - 86_400_000, now + 86_400_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let good = SnsMessage::notification(
        &rtn("SUBSCRIPTION_RENEWED", "AMZ-T", now).to_string(),
        "amz-translate-1",
        &format!("{}/cert.pem", certs.url),
    )
    .signed(&sns);
    let mut forged: Value = serde_json::from_str(&good).unwrap();
    forged["MessageId"] = json!("amz-translate-2");
    std::fs::write(dir.path().join("good.json"), &good).unwrap();
    std::fs::write(dir.path().join("forged.json"), forged.to_string()).unwrap();
    let host = certs.url.trim_start_matches("https://").to_owned();
    let root = sns.root_pem.clone();
    let rvs_url = rvs.server.url.clone();
    let run = move |file: &str| {
        let path = dir.path().join(file);
        let (host, root, rvs_url) = (host.clone(), root.clone(), rvs_url.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(BIN)
                    .args(["translate", "--store", "amazon"])
                    .arg(&path)
                    .env("AMAZON_APP_PACKAGES", PACKAGE)
                    .env("AMAZON_TOPIC_ARNS", TOPIC_ARN)
                    .env("AMAZON_RVS_SHARED_SECRET", SHARED_SECRET)
                    .env("AMAZON_RVS_URL", rvs_url)
                    .env("AMAZON_SNS_CERT_HOSTS", host)
                    .env("AMAZON_SNS_TRUST_ROOTS", root)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = run("good.json").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["type"], "SUBSCRIPTION_RENEWED");
    assert_eq!(line["store"], "AMAZON_APPSTORE");
    assert_eq!(line["store_notification"]["id"], "amz-translate-1");
    assert_eq!(line["subscription"]["status"], "ACTIVE");
    let out = run("forged.json").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature_invalid"));
}
