//! The local web console of `storehook serve` (`/_storehook/`, embedded
//! mode), behind the admin token: a live feed of notifications and their
//! events and deliveries, one subscription's timeline (the snapshot after each
//! event, with its delivery record), the dead letters with a replay button,
//! and a translate playground (a store body in, the events or the refusal
//! out, nothing queued).
//!
//! One page, served by the binary (`console/index.html`, `app.js`,
//! `style.css`: plain HTML, CSS and JavaScript, no build step, nothing from
//! a CDN) and a few JSON routes. The browser signs in once with the admin
//! token (`POST /_storehook/session`), which sets an `HttpOnly`,
//! `SameSite=Strict` cookie scoped to `/_storehook` holding a digest of the
//! token (never the token) that the admin routes accept beside the bearer
//! header; POSTs still need `Content-Type:
//! application/json`, which no cross-site form can send.
//!
//! | route | what |
//! |---|---|
//! | `GET /_storehook/` | the console (signed in), else the sign-in page |
//! | `GET /_storehook/app.js`, `/_storehook/style.css` | its script and style |
//! | `POST /_storehook/session` | `{"token"}` → the cookie (`401 unauthorized` otherwise) |
//! | `GET /_storehook/api/feed?after=N` | the activity after `N` (`storehook_shared::activity`) |
//! | `GET /_storehook/api/timeline?group=G` | the group's state and its history, each event with its delivery record |
//! | `POST /_storehook/api/translate` | `{"store", "body", "headers"?, "query"?}` → `{"events"}` or `{"error"}` |

use crate::admin::{AdminToken, error, is_json};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use std::sync::Arc;
use storehook_shared::clock::Clock;
use storehook_shared::ingest::{StoreEndpoint, StoreRequest};
use storehook_shared::state::StateStore;

const INDEX: &str = include_str!("console/index.html");
const LOGIN: &str = include_str!("console/login.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");
/// The session cookie's name.
pub const COOKIE: &str = "storehook_admin";
/// Largest feed page.
const MAX_FEED: usize = 200;

/// What the console reads.
#[derive(Clone)]
pub struct Console {
    /// The state store (timelines).
    pub state: Arc<dyn StateStore>,
    /// The store endpoints (the translate playground).
    pub endpoints: Vec<Arc<dyn StoreEndpoint>>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The admin token (the page checks the cookie itself).
    pub token: AdminToken,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

/// The routes that need no token (the page decides which page to show, the
/// session route checks the token it is given).
pub fn open_routes(console: Console) -> Router {
    Router::new()
        .route("/_storehook/", get(page))
        .route("/_storehook", get(page))
        .route("/_storehook/app.js", get(app_js))
        .route("/_storehook/style.css", get(style))
        .route("/_storehook/session", post(session))
        .with_state(console)
}

/// The console's data routes (behind the admin token: see `admin::routes`).
pub fn api_routes(console: Console) -> Router {
    Router::new()
        .route("/_storehook/api/feed", get(feed))
        .route("/_storehook/api/timeline", get(timeline))
        .route("/_storehook/api/translate", post(translate))
        .with_state(console)
}

fn html(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

async fn page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if crate::admin::authorized(&headers, &c.token) {
        html(INDEX)
    } else {
        html(LOGIN)
    }
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    token: String,
}

async fn session(State(c): State<Console>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        );
    }
    let Ok(req) = serde_json::from_slice::<SessionRequest>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            "expected {\"token\": \"…\"}",
        );
    };
    if !c.token.matches(req.token.trim().as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong admin token",
        );
    }
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={}; Path=/_storehook; HttpOnly; SameSite=Strict",
                c.token.session_value()
            ),
        )],
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    #[serde(default)]
    after: u64,
}

async fn feed(Query(q): Query<FeedQuery>) -> Response {
    let items = storehook_shared::activity::since(q.after, MAX_FEED);
    axum::Json(serde_json::json!({ "items": items })).into_response()
}

#[derive(serde::Deserialize)]
struct TimelineQuery {
    group: String,
}

async fn timeline(State(c): State<Console>, Query(q): Query<TimelineQuery>) -> Response {
    let state = match c.state.group(&q.group).await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "state_unavailable",
                &e.to_string(),
            );
        }
    };
    let history = match c.state.history(&q.group).await {
        Ok(h) => h,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "state_unavailable",
                &e.to_string(),
            );
        }
    };
    let mut events = Vec::with_capacity(history.len());
    for e in history {
        let delivery = c.state.delivery(&e.id).await.ok().flatten();
        events.push(serde_json::json!({
            "event": e,
            "delivery": delivery.map(|d| serde_json::json!({
                "attempts": d.attempts,
                "last_status": d.last_status,
                "delivered_at": d.delivered_at,
                "last_error": d.last_error,
                "latency_ms": d.latency_ms,
            })),
        }));
    }
    if state.is_none() && events.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_group",
            "no subscription with this group key",
        );
    }
    axum::Json(serde_json::json!({
        "group": q.group,
        "sequence": state.as_ref().map(|s| s.sequence),
        "entitlement": state.as_ref().map(|s| s.entitlement.clone()),
        "subscription": state.as_ref().and_then(|s| s.subscription.clone()),
        "events": events,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TranslateRequest {
    store: String,
    body: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    query: Option<String>,
}

async fn translate(State(c): State<Console>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        );
    }
    let req = match serde_json::from_slice::<TranslateRequest>(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_body", &e.to_string()),
    };
    let Some(endpoint) = c.endpoints.iter().find(|e| e.route() == req.store) else {
        let known: Vec<&str> = c.endpoints.iter().map(|e| e.route()).collect();
        return error(
            StatusCode::BAD_REQUEST,
            "unknown_store",
            &format!("not a configured store; configured: {}", known.join(", ")),
        );
    };
    let mut h = HeaderMap::new();
    for (k, v) in &req.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::try_from(k.as_str()),
            http::HeaderValue::try_from(v.as_str()),
        ) {
            h.append(k, v);
        }
    }
    let store_req = StoreRequest {
        method: "POST".into(),
        query: req.query,
        headers: h,
        body: bytes::Bytes::from(req.body.into_bytes()),
    };
    let now = c.clock.now().timestamp_millis();
    // The endpoint's own verification and translation; nothing is queued.
    match endpoint.events(&store_req, now).await {
        Ok(events) => axum::Json(serde_json::json!({ "events": events })).into_response(),
        Err(r) => axum::Json(serde_json::json!({
            "error": {"status": r.status, "code": r.code, "message": r.message}
        }))
        .into_response(),
    }
}
