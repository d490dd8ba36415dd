//! The admin routes of `storehook serve` (`/_storehook/*`, embedded mode):
//! queue depth, dead letters, replay.
//!
//! Every one needs `Authorization: Bearer <admin token>` (compared in constant
//! time); a missing or wrong token gets the same 401. A POST needs
//! `Content-Type: application/json` (415 otherwise), which a browser cannot
//! send cross-site without a CORS preflight that this server never answers.
//! A replay names what it replays: `{"event_ids": [...]}` or `{"all": true}`;
//! an empty body or an empty list never means "all".

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use http::{HeaderMap, StatusCode, header};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use storehook_shared::queue::redb::RedbQueue;

/// The admin token's file in the data dir.
pub const TOKEN_FILE: &str = "admin-token";
/// Shortest token accepted from `--admin-token` / `STOREHOOK_ADMIN_TOKEN`.
pub const MIN_TOKEN_LEN: usize = 16;

/// The bearer token of the admin routes. Its `Debug` never shows it.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// A token given by the operator: at least [`MIN_TOKEN_LEN`] visible ASCII
    /// characters (it travels in an HTTP header).
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN {
            bail!("the admin token must have at least {MIN_TOKEN_LEN} characters");
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the admin token must be visible ASCII characters only (no spaces)");
        }
        Ok(Self(token.into()))
    }

    /// 32 random bytes (aws-lc-rs), base64url.
    pub fn generate() -> anyhow::Result<Self> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the random generator failed"))?;
        Self::new(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key))
    }

    /// The token (to send it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The console's session cookie value: SHA-256 of a label and the token,
    /// hex (the token itself never sits in the browser, and any token is a
    /// valid cookie value).
    pub fn session_value(&self) -> String {
        use aws_lc_rs::digest::{SHA256, digest};
        let d = digest(
            &SHA256,
            format!("storehook-console-session:{}", self.0).as_bytes(),
        );
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `presented` is this token's session value (constant time).
    pub fn session_matches(&self, presented: &[u8]) -> bool {
        let want = self.session_value();
        want.len() == presented.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(want.as_bytes(), presented).is_ok()
    }

    /// Whether `presented` is the token. Constant time: the SHA-256 digests
    /// of both are compared with aws-lc-rs, so neither the content nor the
    /// length of the token shows in the timing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use aws_lc_rs::digest::{SHA256, digest};
        let want = digest(&SHA256, self.0.as_bytes());
        let got = digest(&SHA256, presented);
        aws_lc_rs::constant_time::verify_slices_are_equal(want.as_ref(), got.as_ref()).is_ok()
    }
}

/// Where `dir` keeps its admin token.
pub fn token_path(dir: &Path) -> PathBuf {
    dir.join(TOKEN_FILE)
}

/// The data dir's admin token; generated (owner-only file) when there is
/// none yet. `Some(path)` when it was generated just now.
pub fn load_or_create_token(dir: &Path) -> anyhow::Result<(AdminToken, Option<PathBuf>)> {
    let path = token_path(dir);
    match read_token(&path) {
        Ok(t) => return Ok((t, None)),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e),
    }
    let token = AdminToken::generate()?;
    match storehook_shared::redb_file::write_private_new(&path, token.expose().as_bytes()) {
        Ok(()) => Ok((token, Some(path))),
        // another process created it meanwhile: use that one
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((read_token(&path)?, None)),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
}

/// Reads the admin token file `path` (tightening it to owner-only if an
/// older version left it open).
pub fn read_token(path: &Path) -> anyhow::Result<AdminToken> {
    let text = std::fs::read_to_string(path).map_err(anyhow::Error::from)?;
    storehook_shared::redb_file::ensure_private_file(path)
        .with_context(|| format!("restricting {} to its owner", path.display()))?;
    AdminToken::new(&text).with_context(|| format!("reading {}", path.display()))
}

/// `{"error": {"code", "message"}}` with `status`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The admin routes over `queue`, all behind `token`, with the web console's
/// data routes when `console` is given (its page and sign-in are open:
/// [`crate::console::open_routes`]).
pub fn routes(
    queue: RedbQueue,
    token: AdminToken,
    console: Option<crate::console::Console>,
) -> Router {
    let mut r = Router::new()
        .route("/_storehook/queue", get(queue_depth))
        .route("/_storehook/dead-letters", get(list_dead_letters))
        .route("/_storehook/replay", post(replay_dead_letters))
        .route("/metrics", get(metrics))
        .with_state(queue);
    if let Some(c) = &console {
        r = r.merge(crate::console::api_routes(c.clone()));
    }
    let r = r.route_layer(axum::middleware::from_fn_with_state(token, require_token));
    match console {
        Some(c) => r.merge(crate::console::open_routes(c)),
        None => r,
    }
}

async fn require_token(State(token): State<AdminToken>, req: Request, next: Next) -> Response {
    if authorized(req.headers(), &token) {
        return next.run(req).await;
    }
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the admin routes and /metrics need `Authorization: Bearer <admin token>`",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    resp
}

/// Exactly one `Authorization: Bearer <token>` header carrying the token;
/// without any `Authorization` header, the console's session cookie carrying it.
pub fn authorized(headers: &HeaderMap, token: &AdminToken) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if first.is_none() {
        return cookie_token(headers).is_some_and(|t| token.session_matches(t.as_bytes()));
    }
    let (Some(value), None) = (first, values.next()) else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, presented)) = value.split_at_checked(7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ") && token.matches(presented)
}

/// The console's session cookie (`storehook_admin=…`), if exactly one is sent.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let prefix = format!("{}=", crate::console::COOKIE);
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter_map(|c| c.strip_prefix(prefix.as_str()));
    let first = found.next()?.to_owned();
    found.next().is_none().then_some(first)
}

/// `Content-Type: application/json` (any parameters).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// `GET /metrics`: every metric in the Prometheus text format (the names the
/// Lambdas publish through CloudWatch EMF, prefixed `storehook_`, see
/// `storehook_shared::metrics`), plus the embedded queue's gauges.
async fn metrics(State(q): State<RedbQueue>) -> Response {
    let mut text = storehook_shared::metrics::global().prometheus();
    text.push_str("# TYPE storehook_queue_depth gauge\n");
    text.push_str(&format!("storehook_queue_depth {}\n", q.depth()));
    if let Ok(dead) = q.dead_letters() {
        text.push_str("# TYPE storehook_dead_letter_depth gauge\n");
        text.push_str(&format!("storehook_dead_letter_depth {}\n", dead.len()));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn queue_depth(State(q): State<RedbQueue>) -> Response {
    axum::Json(serde_json::json!({ "depth": q.depth() })).into_response()
}

async fn list_dead_letters(State(q): State<RedbQueue>) -> Response {
    match q.dead_letters() {
        Ok(dead) => {
            let items: Vec<serde_json::Value> = dead
                .into_iter()
                .map(|(_, s)| {
                    serde_json::json!({
                        "event_id": s.dedup_id,
                        "group": s.group_id,
                        "attempts": s.receive_count,
                        "reason": s.dead_reason,
                    })
                })
                .collect();
            axum::Json(serde_json::json!({ "dead_letters": items })).into_response()
        }
        Err(e) => internal(&e.to_string()),
    }
}

/// `POST /_storehook/replay`: `{"event_ids": ["…", …]}` or `{"all": true}`.
/// With several endpoints an id may also name a delivery (`dlv:NAME:EVENT`,
/// `store:NAME:EVENT`) or all of an endpoint's (`endpoint:NAME`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    event_ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

const SELECT: &str =
    "say which dead letters to replay: {\"event_ids\": [\"…\"]} or {\"all\": true}";

async fn replay_dead_letters(
    State(q): State<RedbQueue>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request as Content-Type: application/json",
        );
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return error(StatusCode::BAD_REQUEST, "empty_selection", SELECT);
    }
    let req: ReplayRequest = match storehook_shared::json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_body", &e.to_string()),
    };
    let only = match (req.all, req.event_ids) {
        (true, None) => None,
        (true, Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "ambiguous_selection",
                "give either \"event_ids\" or \"all\": true, not both",
            );
        }
        (false, Some(ids)) if !ids.is_empty() => Some(ids),
        (false, _) => return error(StatusCode::BAD_REQUEST, "empty_selection", SELECT),
    };
    let now = chrono::Utc::now().timestamp_millis();
    match q.replay(only.as_deref(), now).await {
        Ok(n) => axum::Json(serde_json::json!({ "replayed": n })).into_response(),
        Err(e) => internal(&e.to_string()),
    }
}

fn internal(message: &str) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The console's cookie holds a digest of the token, never the token:
    /// the digest is accepted (alone, exactly once), the raw token or a wrong
    /// value is not, and a bearer header always decides when present.
    #[test]
    fn the_console_cookie_is_a_digest_of_the_token() {
        let t = AdminToken::new("an-admin-token-0123456789").unwrap();
        let other = AdminToken::new("another-token-0123456789").unwrap();
        let with = |cookie: String| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, cookie.parse().unwrap());
            h
        };
        let session = t.session_value();
        assert_eq!(session.len(), 64);
        assert!(!session.contains("an-admin-token"));
        assert!(authorized(
            &with(format!("a=1; storehook_admin={session}")),
            &t
        ));
        assert!(!authorized(
            &with(format!("storehook_admin={session}")),
            &other
        ));
        assert!(!authorized(
            &with("storehook_admin=an-admin-token-0123456789".into()),
            &t
        ));
        assert!(!authorized(
            &with(format!(
                "storehook_admin={session}; storehook_admin={session}"
            )),
            &t
        ));
        let mut h = with(format!("storehook_admin={session}"));
        h.insert(
            header::AUTHORIZATION,
            "Bearer wrong-wrong-wrong-wrong".parse().unwrap(),
        );
        assert!(
            !authorized(&h, &t),
            "a wrong bearer is not rescued by the cookie"
        );
    }

    #[test]
    fn a_token_matches_only_itself() {
        let t = AdminToken::new("0123456789abcdef-token").unwrap();
        assert!(t.matches(b"0123456789abcdef-token"));
        assert!(!t.matches(b"0123456789abcdef-tokeN"));
        assert!(!t.matches(b"0123456789abcdef-toke"));
        assert!(!t.matches(b"0123456789abcdef-token "));
        assert!(!t.matches(b""));
        assert!(!format!("{t:?}").contains("0123456789"));
    }

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        assert!(AdminToken::new("short").is_err());
        assert!(AdminToken::new("0123456789 abcdef-token").is_err());
        let g = AdminToken::generate().unwrap();
        assert_eq!(g.expose().len(), 43);
        assert_ne!(g.expose(), AdminToken::generate().unwrap().expose());
    }

    #[test]
    fn the_bearer_header_must_be_single_and_exact() {
        let t = AdminToken::new("0123456789abcdef-token").unwrap();
        let h = |vals: &[&str]| {
            let mut m = HeaderMap::new();
            for v in vals {
                m.append(header::AUTHORIZATION, v.parse().unwrap());
            }
            authorized(&m, &t)
        };
        assert!(h(&["Bearer 0123456789abcdef-token"]));
        assert!(h(&["bearer 0123456789abcdef-token"]));
        assert!(!h(&[]));
        assert!(!h(&["Basic 0123456789abcdef-token"]));
        assert!(!h(&["Bearer"]));
        assert!(!h(&["0123456789abcdef-token"]));
        assert!(!h(&[
            "Bearer 0123456789abcdef-token",
            "Bearer 0123456789abcdef-token"
        ]));
    }

    #[cfg(unix)]
    #[test]
    fn the_generated_token_is_kept_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (first, generated) = load_or_create_token(dir.path()).unwrap();
        assert_eq!(generated, Some(token_path(dir.path())));
        let mode = std::fs::metadata(token_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, generated) = load_or_create_token(dir.path()).unwrap();
        assert_eq!((again.expose(), generated), (first.expose(), None));
    }
}
