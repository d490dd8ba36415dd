//! The secrets port: where a secret value comes from (inline configuration or
//! a Secrets Manager id resolved once at cold start). Which settings hold
//! secrets, and that the Secrets Manager id wins, is
//! [`crate::config::SecretSetting`].

#[cfg(feature = "aws")]
mod secrets_manager;
#[cfg(feature = "aws")]
pub use secrets_manager::{SecretsError, load_webhook_secrets, secret_string};

/// Where a secret comes from. `Debug` never shows an inline value.
#[derive(Clone)]
pub enum SecretSource<T> {
    /// A Secrets Manager secret id (ARN or name), resolved once at cold start.
    SecretsManager(String),
    /// Given inline (parsed into `T` where the setting has a form, e.g. the
    /// webhook secrets).
    Inline(T),
}

impl<T> std::fmt::Debug for SecretSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SecretsManager(id) => f.debug_tuple("SecretsManager").field(id).finish(),
            Self::Inline(_) => f.write_str("Inline(..)"),
        }
    }
}
