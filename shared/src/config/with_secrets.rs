//! Settings whose secrets are read once, at cold start (feature `aws`).

use super::{ConfigError, Lookup, SecretSetting};
use crate::secrets::{SecretSource, secret_string};
use aws_config::SdkConfig;
use std::fmt;

/// `base` with the given secret settings resolved once (a Lambda's cold
/// start): a [`SecretSetting`] whose `arn` variable is set answers, under its
/// `inline` name, with that Secrets Manager secret's value; everything else
/// comes from `base`. `Debug` shows which settings were resolved, never a value.
pub struct WithSecrets<L> {
    base: L,
    resolved: Vec<(&'static str, String)>,
}

impl<L: Lookup> WithSecrets<L> {
    /// Reads each setting's secret whose `arn` variable is set.
    pub async fn resolve(
        base: L,
        sdk: &SdkConfig,
        settings: &[SecretSetting],
    ) -> Result<Self, ConfigError> {
        let mut resolved = Vec::new();
        for setting in settings {
            if let Some(SecretSource::SecretsManager(id)) = setting.source(&base) {
                let value = secret_string(sdk, &id)
                    .await
                    .map_err(|e| ConfigError::Secret {
                        var: setting.arn,
                        reason: e.to_string(),
                    })?;
                resolved.push((setting.inline, value));
            }
        }
        Ok(Self { base, resolved })
    }
}

impl<L: Lookup> Lookup for WithSecrets<L> {
    fn get(&self, name: &str) -> Option<String> {
        match self.resolved.iter().find(|(inline, _)| *inline == name) {
            Some((_, value)) => Some(value.clone()),
            None => self.base.get(name),
        }
    }
}

impl<L> fmt::Debug for WithSecrets<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.resolved.iter().map(|(name, _)| *name).collect();
        f.debug_struct("WithSecrets")
            .field("resolved", &names)
            .finish_non_exhaustive()
    }
}
