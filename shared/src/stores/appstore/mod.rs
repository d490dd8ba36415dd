//! App Store Server Notifications V2: verify (x5c chain to Apple Root CA - G3,
//! ES256), check the app and environment, and translate into the event language.

pub mod api;
pub mod config;
pub mod model;
pub mod status;
pub mod translate;
pub mod verify;

pub use config::{AppStoreConfig, appstore_config};

use crate::config::ConfigError;
use crate::error::Rejection;
use crate::event::Event;
use model::{NotificationBody, NotificationPayload, RenewalInfo, TransactionInfo};
use verify::{JwsVerifier, VerifyError};

/// Apple's environment names we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppleEnvironment {
    /// Real purchases.
    Production,
    /// Sandbox / TestFlight purchases.
    Sandbox,
}

impl AppleEnvironment {
    /// Apple's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Production => "Production",
            Self::Sandbox => "Sandbox",
        }
    }

    /// Parses Apple's exact spelling. `production`, ` Production ` or `SANDBOX`
    /// are not Apple's values and parse to nothing (so they are refused): the
    /// checks and the event's `environment` must never read one string two ways.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Production" => Some(Self::Production),
            "Sandbox" => Some(Self::Sandbox),
            _ => None,
        }
    }
}

/// Why a notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppStoreError {
    /// The HTTP body is not `{"signedPayload": "<JWS>"}`.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// A JWS failed verification.
    #[error("{what}: {err}")]
    Verify {
        /// Which JWS: signedPayload, signedTransactionInfo, signedRenewalInfo.
        what: &'static str,
        /// Why.
        err: VerifyError,
    },
    /// Authentic, but for another app.
    #[error("notification is for another app: {0}")]
    WrongApp(String),
    /// Authentic, but from an environment this endpoint does not accept.
    #[error("notification environment not accepted: {0}")]
    WrongEnvironment(String),
}

impl AppStoreError {
    /// The HTTP refusal.
    pub fn rejection(&self) -> Rejection {
        let (status, code) = match self {
            Self::MalformedBody(_) => (400, "malformed_body"),
            Self::Verify { err, .. } => (err.status(), err.code()),
            Self::WrongApp(_) => (403, "wrong_app"),
            Self::WrongEnvironment(_) => (403, "wrong_environment"),
        };
        Rejection::new(status, code, self.to_string())
    }
}

/// A notification whose every JWS verified and whose app and environment are accepted.
#[derive(Debug, Clone)]
pub struct VerifiedNotification {
    /// The decoded `signedPayload`.
    pub payload: NotificationPayload,
    /// The decoded `signedTransactionInfo`, when present.
    pub transaction: Option<TransactionInfo>,
    /// The decoded `signedRenewalInfo`, when present.
    pub renewal: Option<RenewalInfo>,
    /// The decoded payloads as JSON (`event.raw`; null unless configured).
    pub raw: serde_json::Value,
    /// The signature segment of `signedPayload` (a stable fallback identity).
    pub signature: String,
}

/// The App Store endpoint's logic: body in, events out.
#[derive(Debug)]
pub struct AppStore {
    verifier: JwsVerifier,
    config: AppStoreConfig,
}

impl AppStore {
    /// Builds the verifier (parses the roots once).
    /// A trusted root that is not a certificate is a [`ConfigError::TrustRoot`].
    pub fn new(config: AppStoreConfig) -> Result<Self, ConfigError> {
        if !config.extra_roots.is_empty() {
            tracing::warn!(
                extra_roots = config.extra_roots.len(),
                "App Store: TRUSTING EXTRA ROOT CERTIFICATES beside Apple Root CA - G3 \
                 (tests only): notifications signed under them are accepted as Apple's"
            );
        }
        Ok(Self {
            verifier: JwsVerifier::new(&config.extra_roots)
                .map_err(|e| ConfigError::TrustRoot(e.to_string()))?,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AppStoreConfig {
        &self.config
    }

    /// The JWS verifier (benchmarks clear its cache).
    pub fn verifier(&self) -> &JwsVerifier {
        &self.verifier
    }

    /// Verifies an HTTP body. `now_ms` only matters for JWS without `signedDate`.
    pub fn verify(&self, body: &[u8], now_ms: i64) -> Result<VerifiedNotification, AppStoreError> {
        let body: NotificationBody = serde_json::from_slice(body).map_err(|e| {
            AppStoreError::MalformedBody(format!("expected {{\"signedPayload\": \"<JWS>\"}}: {e}"))
        })?;
        let outer = self
            .verifier
            .verify::<NotificationPayload>(&body.signed_payload, now_ms)
            .map_err(|err| AppStoreError::Verify {
                what: "signedPayload",
                err,
            })?;

        let env = self.check_notification_identity(&outer.payload)?;
        let include_raw = self.config.include_raw;
        let mut raw = if include_raw {
            outer.json_value()
        } else {
            serde_json::Value::Null
        };
        let payload = outer.payload;
        let mut transaction = None;
        let mut renewal = None;
        if let Some(data) = &payload.data {
            if let Some(jws) = &data.signed_transaction_info {
                let v = self
                    .verifier
                    .verify::<TransactionInfo>(jws, now_ms)
                    .map_err(|err| AppStoreError::Verify {
                        what: "signedTransactionInfo",
                        err,
                    })?;
                if let Some(expected) = &self.config.bundle_id
                    && v.payload.bundle_id.as_deref() != Some(expected.as_str())
                {
                    return Err(AppStoreError::WrongApp(format!(
                        "signedTransactionInfo bundleId {:?} is not {expected:?}",
                        v.payload.bundle_id.as_deref().unwrap_or("")
                    )));
                }
                self.check_nested_environment(
                    "signedTransactionInfo",
                    v.payload.environment.as_deref(),
                    env,
                )?;
                if include_raw {
                    raw["data"]["transactionInfo"] = v.json_value();
                }
                transaction = Some(v.payload);
            }
            if let Some(jws) = &data.signed_renewal_info {
                let v = self
                    .verifier
                    .verify::<RenewalInfo>(jws, now_ms)
                    .map_err(|err| AppStoreError::Verify {
                        what: "signedRenewalInfo",
                        err,
                    })?;
                self.check_nested_environment(
                    "signedRenewalInfo",
                    v.payload.environment.as_deref(),
                    env,
                )?;
                if include_raw {
                    raw["data"]["renewalInfo"] = v.json_value();
                }
                renewal = Some(v.payload);
            }
        }
        Ok(VerifiedNotification {
            payload,
            transaction,
            renewal,
            raw,
            signature: body
                .signed_payload
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// Verify then translate.
    pub fn process(&self, body: &[u8], received_at_ms: i64) -> Result<Vec<Event>, AppStoreError> {
        let v = self.verify(body, received_at_ms)?;
        Ok(translate::translate(
            &v,
            &self.config,
            crate::event::Timestamp::from_millis_clamped(received_at_ms),
        ))
    }

    /// Identifier check first, then environment (Apple's order). Returns the environment.
    fn check_notification_identity(
        &self,
        p: &NotificationPayload,
    ) -> Result<Option<AppleEnvironment>, AppStoreError> {
        let (bundle_id, app_apple_id, environment) = identity(p);
        let env = environment.as_deref().and_then(AppleEnvironment::parse);
        if let Some(expected) = &self.config.bundle_id
            && bundle_id.as_deref() != Some(expected.as_str())
        {
            return Err(AppStoreError::WrongApp(format!(
                "bundleId {:?} is not {expected:?}",
                bundle_id.as_deref().unwrap_or("")
            )));
        }
        if env == Some(AppleEnvironment::Production)
            && let Some(expected) = self.config.app_apple_id
            && app_apple_id != Some(expected)
        {
            return Err(AppStoreError::WrongApp(format!(
                "appAppleId {} is not {expected}",
                app_apple_id
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(none)".into())
            )));
        }
        match env {
            Some(e) if self.config.environments.contains(&e) => Ok(Some(e)),
            _ => Err(AppStoreError::WrongEnvironment(format!(
                "{:?} (accepted: {})",
                environment.as_deref().unwrap_or("(none)"),
                self.accepted()
            ))),
        }
    }

    fn check_nested_environment(
        &self,
        what: &str,
        nested: Option<&str>,
        outer: Option<AppleEnvironment>,
    ) -> Result<(), AppStoreError> {
        let env = nested.and_then(AppleEnvironment::parse);
        if env.is_some() && env == outer {
            Ok(())
        } else {
            Err(AppStoreError::WrongEnvironment(format!(
                "{what} environment {:?} does not match the notification's {:?}",
                nested.unwrap_or("(none)"),
                outer.map(|e| e.as_str()).unwrap_or("(none)")
            )))
        }
    }

    fn accepted(&self) -> String {
        self.config
            .environments
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// (bundleId, appAppleId, environment) from whichever of data, summary,
/// externalPurchaseToken, appData is present, in that order.
fn identity(p: &NotificationPayload) -> (Option<String>, Option<i64>, Option<String>) {
    if let Some(d) = &p.data {
        return (d.bundle_id.clone(), d.app_apple_id, d.environment.clone());
    }
    if let Some(s) = &p.summary {
        return (s.bundle_id.clone(), s.app_apple_id, s.environment.clone());
    }
    if let Some(t) = &p.external_purchase_token {
        let env = if t
            .external_purchase_id
            .as_deref()
            .is_some_and(|id| id.starts_with("SANDBOX"))
        {
            "Sandbox"
        } else {
            "Production"
        };
        return (t.bundle_id.clone(), t.app_apple_id, Some(env.to_owned()));
    }
    if let Some(a) = &p.app_data {
        return (a.bundle_id.clone(), a.app_apple_id, a.environment.clone());
    }
    (None, None, None)
}
