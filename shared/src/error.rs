//! How a request is refused: an HTTP status, a stable machine-readable code and a
//! human message, rendered as `{"error":{"code","message"}}`.

use serde::Serialize;

/// A refusal with its HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// Stable error code (snake_case), part of the API.
    pub code: &'static str,
    /// Human explanation (never contains secrets or purchase tokens).
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl Rejection {
    /// A refusal.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// `{"error":{"code":…,"message":…}}`.
    pub fn body(&self) -> String {
        serde_json::to_string(&Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        })
        .unwrap_or_else(|_| String::from(r#"{"error":{"code":"internal","message":""}}"#))
    }

    /// Whether the sender should retry (5xx).
    pub fn retryable(&self) -> bool {
        self.status >= 500
    }
}

/// Anything that maps to an HTTP refusal.
pub trait IntoRejection {
    /// The refusal.
    fn rejection(&self) -> Rejection;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_documented_shape() {
        let r = Rejection::new(401, "invalid_signature", "bad \"sig\"");
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(v["error"]["code"], "invalid_signature");
        assert_eq!(v["error"]["message"], "bad \"sig\"");
        assert!(!r.retryable());
        assert!(Rejection::new(503, "queue_unavailable", "x").retryable());
    }
}
