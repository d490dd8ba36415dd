//! The App Store Server API settings of the CLI (`storehook test-notification`,
//! `storehook backfill --store appstore`): the same settings as the Lambdas
//! (`APPLE_API_KEY_ID`, `APPLE_API_ISSUER_ID`, `APPLE_API_PRIVATE_KEY` or
//! `APPLE_API_PRIVATE_KEY_SECRET_ARN`, `APPLE_BUNDLE_ID`, `APPLE_API_BASE_URL`),
//! flags over the environment, read through the one config layer.

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use storehook_shared::clock::SystemClock;
use storehook_shared::config::WithSecrets;
use storehook_shared::secrets::SecretSource;
use storehook_shared::stores::appstore::AppleEnvironment;
use storehook_shared::stores::appstore::api::{AppleApi, PRIVATE_KEY, api_settings};
use storehook_shared::stores::appstore::config::read_trust_roots;
use storehook_shared::stores::appstore::verify::JwsVerifier;

/// Apple's environment, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvironmentArg {
    /// `https://api.storekit.apple.com`.
    Production,
    /// `https://api.storekit-sandbox.apple.com`.
    Sandbox,
}

impl From<EnvironmentArg> for AppleEnvironment {
    fn from(e: EnvironmentArg) -> Self {
        match e {
            EnvironmentArg::Production => AppleEnvironment::Production,
            EnvironmentArg::Sandbox => AppleEnvironment::Sandbox,
        }
    }
}

/// The App Store Server API flags.
#[derive(Debug, Clone, ClapArgs)]
pub struct AppleApiArgs {
    /// Apple's environment to ask.
    #[arg(long, value_enum, default_value = "production")]
    pub environment: EnvironmentArg,
    /// The In-App Purchase key's id.
    #[arg(long, env = "APPLE_API_KEY_ID")]
    pub apple_api_key_id: Option<String>,
    /// The issuer id (App Store Connect › Users and Access › Integrations).
    #[arg(long, env = "APPLE_API_ISSUER_ID")]
    pub apple_api_issuer_id: Option<String>,
    /// The key's `.p8` file (else `APPLE_API_PRIVATE_KEY`, or the secret named by
    /// `APPLE_API_PRIVATE_KEY_SECRET_ARN`).
    #[arg(long, value_name = "P8")]
    pub apple_api_private_key_file: Option<PathBuf>,
    /// The app's bundle id.
    #[arg(long, env = "APPLE_BUNDLE_ID")]
    pub apple_bundle_id: Option<String>,
    /// Replaces Apple's production and sandbox hosts (tests: a loopback fake).
    #[arg(long, env = "APPLE_API_BASE_URL")]
    pub apple_api_base_url: Option<String>,
    /// Add a trusted root (PEM file) beside Apple Root CA - G3 for the signed
    /// data in Apple's answers (tests).
    #[arg(long = "trust-root", value_name = "PEM")]
    pub trust_roots: Vec<PathBuf>,
}

impl AppleApiArgs {
    /// The client, or why it cannot be built (naming the setting).
    pub async fn client(&self) -> anyhow::Result<AppleApi> {
        let key_from_file = match &self.apple_api_private_key_file {
            Some(p) => Some(std::fs::read_to_string(p).with_context(|| {
                format!("reading --apple-api-private-key-file {}", p.display())
            })?),
            None => None,
        };
        let lookup = move |name: &str| -> Option<String> {
            match name {
                "APPLE_API_KEY_ID" => self.apple_api_key_id.clone(),
                "APPLE_API_ISSUER_ID" => self.apple_api_issuer_id.clone(),
                "APPLE_BUNDLE_ID" => self.apple_bundle_id.clone(),
                "APPLE_API_BASE_URL" => self.apple_api_base_url.clone(),
                "APPLE_API_PRIVATE_KEY" if key_from_file.is_some() => key_from_file.clone(),
                "APPLE_API_PRIVATE_KEY_SECRET_ARN" if key_from_file.is_some() => None,
                other => std::env::var(other).ok(),
            }
        };
        let settings = match PRIVATE_KEY.source(&lookup) {
            Some(SecretSource::SecretsManager(_)) => {
                let sdk = storehook_shared::aws_sdk::sdk_config().await;
                api_settings(&WithSecrets::resolve(&lookup, &sdk, &[PRIVATE_KEY]).await?)?
            }
            _ => api_settings(&lookup)?,
        };
        let Some(settings) = settings else {
            bail!(
                "the App Store Server API is not configured: set APPLE_API_KEY_ID, \
                 APPLE_API_ISSUER_ID, APPLE_API_PRIVATE_KEY (or --apple-api-private-key-file, \
                 or APPLE_API_PRIVATE_KEY_SECRET_ARN) and APPLE_BUNDLE_ID"
            );
        };
        let roots = read_trust_roots(&self.trust_roots)?;
        if !roots.is_empty() {
            eprintln!(
                "warning: trusting {} extra root certificate(s) beside Apple Root CA - G3 (tests only)",
                roots.len()
            );
        }
        let verifier = Arc::new(JwsVerifier::new(&roots)?);
        Ok(AppleApi::new(settings, verifier, Arc::new(SystemClock))?)
    }
}
