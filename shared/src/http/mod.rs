//! The one outbound HTTP client setup: every store API client (Google's JWKS,
//! OAuth and androidpublisher; Huawei's OAuth and IAP APIs) and the webhook
//! sender build their `reqwest::Client` here, so they share one policy:
//!
//! - **redirects are never followed**: a 3xx is the answer (and a failure for
//!   every caller), so a compromised or misconfigured endpoint cannot send a
//!   bearer token, a purchase token or a signed event to another host;
//! - **a connect timeout and a total timeout** on every request (a server that
//!   accepts the connection and never answers cannot hold a Lambda);
//! - **error text without secrets**: [`describe`] is the only way a transport
//!   error becomes text (logs, 503 messages, dead-letter reasons). It never
//!   carries the URL (paths and queries hold purchase tokens and webhook
//!   tokens) and blanks anything URL- or token-like in the underlying causes.

pub mod oauth;

use std::time::Duration;

/// `user-agent` of every outbound request.
pub const USER_AGENT: &str = concat!("storehook/", env!("CARGO_PKG_VERSION"));

/// Longest error text [`describe`] and [`sanitize`] return.
const MAX_ERROR_CHARS: usize = 300;

/// Timeouts of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP (+ TLS) connection.
    pub connect: Duration,
    /// The whole request: connect, send, and read the complete response.
    pub total: Duration,
}

impl Timeouts {
    /// `connect` for the connection, `total` for the whole request
    /// (`connect` is capped at `total`).
    pub fn new(connect: Duration, total: Duration) -> Self {
        Self {
            connect: connect.min(total),
            total,
        }
    }

    /// One limit for both.
    pub fn both(total: Duration) -> Self {
        Self::new(total, total)
    }
}

/// Builds an outbound client: no redirects, the given timeouts, storehook's
/// user agent. The error is safe to show.
pub fn client(timeouts: Timeouts) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| describe(&e))
}

/// A transport error as a short text without the URL or anything secret-like:
/// its kind (`timeout`, `connect error`, …) and its causes, sanitized.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else if e.is_builder() {
        "invalid request"
    } else if e.is_request() {
        "request error"
    } else {
        "transport error"
    };
    // The error's own text may name the URL; its causes (hyper, the OS) do not
    // normally, but they are sanitized all the same.
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !causes.contains(&text) {
            causes.push(text);
        }
        source = s.source();
    }
    if causes.is_empty() {
        kind.to_owned()
    } else {
        sanitize(&format!("{kind}: {}", causes.join(": ")))
    }
}

/// `HTTP <status>`, saying so when it is a redirect that was not followed.
pub fn status_text(status: u16) -> String {
    if (300..400).contains(&status) {
        format!("HTTP {status} (a redirect: not followed)")
    } else {
        format!("HTTP {status}")
    }
}

/// Text that may have picked up a URL or a token (an error's causes, a store's
/// free-text message), made safe for logs and error bodies: every word that
/// looks like a URL (`://`), a query or form (`?`, `=`, `&`), a path (`/`) or
/// a token (32 characters or more) becomes `<redacted>`; at most 300 characters.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_ERROR_CHARS));
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word.trim_matches(|c: char| matches!(c, '(' | ')' | '"' | '\'' | ',' | ';'));
        let secret_like = core.contains("://")
            || core.contains(['?', '=', '&', '/', '@'])
            || core.chars().count() >= 32;
        out.push_str(if secret_like { "<redacted>" } else { word });
    }
    out.chars().take(MAX_ERROR_CHARS).collect()
}

/// Reads a response body of at most `max` bytes (a larger one is an error, so
/// a hostile or broken endpoint cannot make us buffer without bound).
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("answer larger than {max} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        if out.len() + chunk.len() > max {
            return Err(format!("answer larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use storehook_testkit::loopback::{Server, response};

    #[tokio::test]
    async fn redirects_are_not_followed() {
        // GIVEN a server that redirects to another loopback server
        let target = Server::start(|_| Some(response(200, &[], "{}"))).await;
        let location = format!("{}/stolen", target.url);
        let redirector =
            Server::start(move |_| Some(response(302, &[("location", location.as_str())], "")))
                .await;
        let c = client(Timeouts::both(Duration::from_secs(5))).unwrap();
        // WHEN called
        let resp = c
            .get(format!("{}/x", redirector.url))
            .bearer_auth("s3cr3t")
            .send()
            .await
            .unwrap();
        // THEN the 302 is the answer; the other server never saw a request
        assert_eq!(resp.status().as_u16(), 302);
        assert_eq!(redirector.seen().len(), 1);
        assert_eq!(redirector.seen()[0].method, "GET");
        assert!(target.seen().is_empty());
        assert_eq!(status_text(302), "HTTP 302 (a redirect: not followed)");
        assert_eq!(status_text(503), "HTTP 503");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_hits_the_total_timeout() {
        let silent = Server::start(|_| None).await;
        let url = silent.url.clone();
        let c = client(Timeouts::new(
            Duration::from_secs(2),
            Duration::from_millis(300),
        ))
        .unwrap();
        let started = std::time::Instant::now();
        let err = c
            .get(format!("{url}/p4thT0ken?token=s3cr3t"))
            .send()
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(err.is_timeout(), "{err}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        let text = describe(&err);
        assert!(text.starts_with("timeout"), "{text}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("p4thT0ken"),
            "{text}"
        );
        assert!(!text.contains("127.0.0.1"), "{text}");
    }

    #[tokio::test]
    async fn errors_never_carry_the_url_or_its_query() {
        // GIVEN a closed port and a URL with a secret in path and query
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let c = client(Timeouts::both(Duration::from_secs(2))).unwrap();
        let err = c
            .get(format!(
                "http://{closed}/tokens/purch4seT0ken?access_token=s3cr3t&key=k3y"
            ))
            .send()
            .await
            .unwrap_err();
        // reqwest's own text carries the URL: that is what describe() must not
        assert!(err.to_string().contains("s3cr3t"), "{err}");
        let text = describe(&err);
        assert!(text.starts_with("connect error"), "{text}");
        for secret in [
            "s3cr3t",
            "purch4seT0ken",
            "k3y",
            "access_token",
            "127.0.0.1",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn sanitize_blanks_urls_queries_paths_and_tokens() {
        let token = "a".repeat(40);
        let text = format!(
            "failed (https://x.example/p?token=s3cr3t) token={token} at /tokens/abc and {token} ok"
        );
        let s = sanitize(&text);
        assert!(
            !s.contains("s3cr3t") && !s.contains(&token) && !s.contains("abc"),
            "{s}"
        );
        assert!(s.starts_with("failed ") && s.ends_with(" ok"), "{s}");
        assert_eq!(sanitize(&"word ".repeat(200)).chars().count(), 300);
    }

    #[tokio::test]
    async fn bodies_larger_than_the_limit_are_refused() {
        let server = Server::start(|_| Some(response(200, &[], "0123456789"))).await;
        let url = server.url.clone();
        let c = client(Timeouts::both(Duration::from_secs(5))).unwrap();
        let resp = c.get(&url).send().await.unwrap();
        assert!(read_limited(resp, 9).await.unwrap_err().contains("larger"));
        let resp = c.get(&url).send().await.unwrap();
        assert_eq!(read_limited(resp, 10).await.unwrap(), b"0123456789");
    }
}
