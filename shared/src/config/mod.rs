//! Typed configuration, read once at cold start from environment variables
//! (the Lambdas) or flags (the CLI). A Lambda refuses to start on a missing or
//! invalid setting rather than accept notifications it cannot judge.
//!
//! One layer for every component: settings are read through a [`Lookup`]
//! (the process environment, a map in tests, flags over the environment in
//! the CLI), every problem is a [`ConfigError`] that names the setting and
//! never repeats a secret, and a secret setting is read one way
//! ([`SecretSetting`]: inline, or the Secrets Manager secret its `*_ARN`
//! variable names, which wins; [`WithSecrets`] resolves them once at cold
//! start). Each store reads its own settings next to its code
//! (`stores::*::config`); the dispatcher's are in [`dispatcher`].

use crate::policy::RefundPolicy;
use crate::secrets::SecretSource;

pub mod dispatcher;
pub mod sweeper;
#[cfg(feature = "aws")]
mod with_secrets;
#[cfg(feature = "aws")]
pub use with_secrets::WithSecrets;

/// A missing or unusable setting. Names the setting; never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is unset or empty.
    #[error("configuration: {0} must be set")]
    Missing(&'static str),
    /// A setting this deployment needs, and why.
    #[error("configuration: {var} must be set: {why}")]
    Required {
        /// The setting.
        var: &'static str,
        /// Why it is needed here.
        why: &'static str,
    },
    /// A setting is set to an unusable value.
    #[error("configuration: invalid {var}: {reason}")]
    Invalid {
        /// The setting.
        var: &'static str,
        /// Why (no secret material).
        reason: String,
    },
    /// The Secrets Manager secret a setting names could not be read.
    #[error("configuration: {var}: the secret cannot be read: {reason}")]
    Secret {
        /// The setting naming the secret (`*_ARN`).
        var: &'static str,
        /// Why (never the value).
        reason: String,
    },
    /// An extra trusted root (the CLI's `--trust-root`) cannot be read or is
    /// not a certificate.
    #[error("configuration: {0}")]
    TrustRoot(String),
    /// The settings are readable, but a store endpoint cannot be built from
    /// them (an HTTP client that cannot start, a configuration without a key).
    #[error("configuration: {store} endpoint: {reason}")]
    Endpoint {
        /// The store: `App Store`, `Google Play`, `Huawei`.
        store: &'static str,
        /// Why.
        reason: String,
    },
}

/// Reads settings by name (the process environment in production; a map in tests).
pub trait Lookup {
    /// The value of `name`, if set and not empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env;

impl Lookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name).filter(|v| !v.trim().is_empty())
    }
}

/// A required setting, trimmed.
pub fn required(l: &impl Lookup, name: &'static str) -> Result<String, ConfigError> {
    l.get(name)
        .map(|v| v.trim().to_owned())
        .ok_or(ConfigError::Missing(name))
}

/// An optional boolean (`true`/`false`/`1`/`0`).
pub fn flag(l: &impl Lookup, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match l.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" || v == "1" || v == "yes" => Ok(true),
        Some(v) if v == "false" || v == "0" || v == "no" => Ok(false),
        Some(v) => Err(ConfigError::Invalid {
            var: name,
            reason: format!("{v:?} is not a boolean"),
        }),
    }
}

/// An optional integer.
pub fn number<T: std::str::FromStr>(
    l: &impl Lookup,
    name: &'static str,
) -> Result<Option<T>, ConfigError> {
    l.get(name)
        .map(|v| {
            v.trim().parse::<T>().map_err(|_| ConfigError::Invalid {
                var: name,
                reason: format!("{v:?} is not a number"),
            })
        })
        .transpose()
}

/// The refund policy (`SUSPICIOUS_REFUND_MIN_PERIOD_DAYS`, `SUSPICIOUS_REFUND_MAX_DAYS`).
pub fn refund_policy(l: &impl Lookup) -> Result<RefundPolicy, ConfigError> {
    let d = RefundPolicy::default();
    Ok(RefundPolicy {
        min_period_days: number(l, "SUSPICIOUS_REFUND_MIN_PERIOD_DAYS")?
            .unwrap_or(d.min_period_days),
        max_days_since_purchase: number(l, "SUSPICIOUS_REFUND_MAX_DAYS")?
            .unwrap_or(d.max_days_since_purchase),
    })
}

/// A setting that holds a secret: given inline in `inline` (local runs), or,
/// in a deployment, as the id (ARN or name) of a Secrets Manager secret in
/// `arn`, which wins when both are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSetting {
    /// The variable holding the value itself.
    pub inline: &'static str,
    /// The variable holding the Secrets Manager secret id.
    pub arn: &'static str,
}

impl SecretSetting {
    /// Where the value comes from, if it is set at all (values trimmed).
    pub fn source(&self, l: &impl Lookup) -> Option<SecretSource<String>> {
        match l.get(self.arn) {
            Some(id) => Some(SecretSource::SecretsManager(id.trim().to_owned())),
            None => l
                .get(self.inline)
                .map(|v| SecretSource::Inline(v.trim().to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const S: SecretSetting = SecretSetting {
        inline: "X_SECRET",
        arn: "X_SECRET_ARN",
    };

    #[test]
    fn a_secret_setting_is_read_inline_or_by_its_arn_which_wins() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(S.source(&get(&[])).is_none());
        assert!(
            S.source(&get(&[("X_SECRET", " "), ("X_SECRET_ARN", "")]))
                .is_none()
        );
        assert!(matches!(
            S.source(&get(&[("X_SECRET", " s3cret\n")])),
            Some(SecretSource::Inline(v)) if v == "s3cret"
        ));
        assert!(matches!(
            S.source(&get(&[("X_SECRET", "s3cret"), ("X_SECRET_ARN", " arn:x ")])),
            Some(SecretSource::SecretsManager(id)) if id == "arn:x"
        ));
        // Debug never shows an inline value
        let inline = S.source(&get(&[("X_SECRET", "s3cret")])).unwrap();
        assert!(!format!("{inline:?}").contains("s3cret"));
    }

    #[test]
    fn errors_name_the_setting() {
        let env = |k: &str| (k == "N").then(|| "12x".to_owned());
        assert_eq!(required(&env, "M").unwrap_err(), ConfigError::Missing("M"));
        let e = number::<u32>(&env, "N").unwrap_err().to_string();
        assert!(e.contains("N") && e.contains("not a number"), "{e}");
        assert!(
            flag(&env, "N", false)
                .unwrap_err()
                .to_string()
                .contains("invalid N")
        );
    }
}
