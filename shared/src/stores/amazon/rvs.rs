//! Amazon's Receipt Verification Service (specs/amazon.md §4): the
//! authoritative state of a receipt. An RTN notification only says *that*
//! something happened to a receipt; storehook asks RVS what the receipt is now.
//!
//! The shared secret is a path segment of the URL: neither the URL nor an
//! answer body ever reaches a log or an error text ([`crate::http::describe`]
//! never carries the URL).

use crate::http::{describe, read_limited, status_text};
use crate::stores::huawei::model::Opaque;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use std::time::Duration;

/// Amazon's RVS root.
pub const DEFAULT_RVS_URL: &str = "https://appstore-sdk.amazon.com";
/// Per-request timeout (Amazon waits 15 s for our answer; at most two calls).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Everything but unreserved characters is encoded (receipt ids hold `/`, `+`, `=`, `:`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Where and how to call RVS.
#[derive(Debug, Clone)]
pub struct RvsConfig {
    /// The Developer Console's shared key.
    pub shared_secret: Opaque,
    /// RVS root (no trailing slash).
    pub base_url: String,
    /// Ask the RVS Cloud Sandbox (`/sandbox/...`).
    pub sandbox: bool,
    /// Timeout of each request.
    pub timeout: Duration,
}

impl RvsConfig {
    /// Production RVS with this secret.
    pub fn new(shared_secret: impl Into<String>) -> Self {
        Self {
            shared_secret: Opaque::new(shared_secret),
            base_url: DEFAULT_RVS_URL.into(),
            sandbox: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// RVS's 200 answer (the fields storehook reads; others ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub receipt_id: Option<String>,
    pub product_id: Option<String>,
    /// `CONSUMABLE` | `SUBSCRIPTION` | `ENTITLED`.
    pub product_type: Option<String>,
    pub term_sku: Option<String>,
    pub term: Option<String>,
    pub purchase_date: Option<i64>,
    pub renewal_date: Option<i64>,
    pub cancel_date: Option<i64>,
    pub cancel_reason: Option<i64>,
    pub auto_renewing: Option<bool>,
    pub free_trial_end_date: Option<i64>,
    pub grace_period_end_date: Option<i64>,
    pub deferred_date: Option<i64>,
    pub deferred_sku: Option<String>,
    pub promotions: Option<Vec<Promotion>>,
    pub country_code: Option<String>,
    pub beta_product: Option<bool>,
    pub test_transaction: Option<bool>,
    pub quantity: Option<i64>,
}

/// One promotion of a receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    pub promotion_type: Option<String>,
    pub promotion_status: Option<String>,
}

/// What RVS says about a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the receipt as it is now.
    Valid(Box<Receipt>),
    /// 410: the receipt is no longer valid (cancelled).
    NoLongerValid,
    /// 400 / 497: RVS does not confirm the receipt for this user.
    NotConfirmed(u16),
}

/// Why RVS could not answer (the notification is answered 503; Amazon resends).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RvsError {
    /// Transport error, timeout, 429, 5xx, an unknown status or body.
    #[error("Receipt Verification Service unavailable: {0}")]
    Unavailable(String),
    /// 496: the shared secret is wrong (configuration).
    #[error(
        "Receipt Verification Service refused the shared secret (HTTP 496): check AMAZON_RVS_SHARED_SECRET"
    )]
    InvalidSecret,
}

impl RvsError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "rvs_unavailable",
            Self::InvalidSecret => "rvs_invalid_shared_secret",
        }
    }
}

/// The RVS client.
#[derive(Debug, Clone)]
pub struct Rvs {
    config: RvsConfig,
    client: reqwest::Client,
}

impl Rvs {
    /// A client for `config`.
    pub fn new(config: RvsConfig) -> Result<Self, String> {
        let client = crate::http::client(crate::http::Timeouts::both(config.timeout))?;
        Ok(Self { config, client })
    }

    /// The configuration.
    pub fn config(&self) -> &RvsConfig {
        &self.config
    }

    /// The request URL (holds the secret: never log it).
    fn url(&self, user_id: &str, receipt_id: &str) -> String {
        let enc = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        format!(
            "{}{}/version/1.0/verifyReceiptId/developer/{}/user/{}/receiptId/{}",
            self.config.base_url,
            if self.config.sandbox { "/sandbox" } else { "" },
            enc(self.config.shared_secret.expose()),
            enc(user_id),
            enc(receipt_id)
        )
    }

    /// Asks RVS about `receipt_id` of `user_id`. A 200 answer about another
    /// receipt is refused (it cannot be this receipt's state).
    pub async fn verify(&self, user_id: &str, receipt_id: &str) -> Result<Answer, RvsError> {
        let resp = self
            .client
            .get(self.url(user_id, receipt_id))
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| RvsError::Unavailable(describe(&e)))?;
        let status = resp.status().as_u16();
        match status {
            200 => {}
            410 => return Ok(Answer::NoLongerValid),
            400 | 497 => return Ok(Answer::NotConfirmed(status)),
            496 => return Err(RvsError::InvalidSecret),
            _ => return Err(RvsError::Unavailable(status_text(status))),
        }
        let body = read_limited(resp, MAX_ANSWER_BYTES)
            .await
            .map_err(RvsError::Unavailable)?;
        let receipt: Receipt = crate::json::from_slice(&body)
            .map_err(|_| RvsError::Unavailable("the answer is not a receipt".into()))?;
        if receipt
            .receipt_id
            .as_deref()
            .is_some_and(|r| r != receipt_id)
        {
            return Err(RvsError::Unavailable(
                "the answer is about another receipt".into(),
            ));
        }
        Ok(Answer::Valid(Box::new(receipt)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded_and_the_sandbox_has_its_own_root() {
        let mut c = RvsConfig::new("s/e cret");
        c.base_url = "http://127.0.0.1:1".into();
        let r = Rvs::new(c.clone()).unwrap();
        assert_eq!(
            r.url("u+1=", "koxIn/_LO2:3:11"),
            "http://127.0.0.1:1/version/1.0/verifyReceiptId/developer/s%2Fe%20cret/user/u%2B1%3D/receiptId/koxIn%2F_LO2%3A3%3A11"
        );
        c.sandbox = true;
        let r = Rvs::new(c).unwrap();
        assert!(
            r.url("u", "r")
                .starts_with("http://127.0.0.1:1/sandbox/version/1.0/")
        );
    }
}
