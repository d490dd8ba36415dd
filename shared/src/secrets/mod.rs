//! The secrets port: where a secret value comes from (inline configuration or
//! a Secrets Manager id resolved once at cold start).

use crate::webhook::WebhookSecrets;

#[cfg(feature = "aws")]
mod secrets_manager;
#[cfg(feature = "aws")]
pub use secrets_manager::{SecretsError, load_webhook_secrets, secret_string};

/// Where the signing secrets come from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// A Secrets Manager secret id (ARN or name), resolved once at cold start.
    SecretsManager(String),
    /// Given inline (already parsed).
    Inline(WebhookSecrets),
}
