//! Typed configuration, read once at cold start from environment variables
//! (the Lambdas) or flags (the CLI). A Lambda refuses to start on a missing or
//! invalid setting rather than accept notifications it cannot judge.

use crate::policy::RefundPolicy;
use crate::stores::appstore::{AppStoreConfig, AppleEnvironment};

/// A missing or invalid setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

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

/// A required setting.
pub fn required(l: &impl Lookup, name: &str) -> Result<String, ConfigError> {
    l.get(name)
        .ok_or_else(|| ConfigError(format!("{name} must be set")))
}

/// An optional boolean (`true`/`false`/`1`/`0`).
pub fn flag(l: &impl Lookup, name: &str, default: bool) -> Result<bool, ConfigError> {
    match l.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" || v == "1" || v == "yes" => Ok(true),
        Some(v) if v == "false" || v == "0" || v == "no" => Ok(false),
        Some(v) => Err(ConfigError(format!("{name}={v:?} is not a boolean"))),
    }
}

/// An optional integer.
pub fn number<T: std::str::FromStr>(l: &impl Lookup, name: &str) -> Result<Option<T>, ConfigError> {
    l.get(name)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| ConfigError(format!("{name}={v:?} is not a number")))
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

/// App Store settings:
///
/// | variable | meaning |
/// |---|---|
/// | `APPLE_BUNDLE_ID` | expected bundle id (required when `require_app`) |
/// | `APPLE_APP_APPLE_ID` | App Store app id; required when Production is accepted and `require_app` |
/// | `APPLE_ENVIRONMENTS` | accepted, comma-separated, spelled exactly as Apple does: `Production`, `Sandbox` or both. Default: `Production` when `require_app` (a deployment), both otherwise (the local CLI) |
/// | `INCLUDE_RAW` | put decoded store payloads in `event.raw` (default false) |
///
/// There is no setting for extra trusted roots: a deployment trusts Apple Root
/// CA - G3 only. Tests give roots to [`AppStoreConfig::extra_roots`] directly, the
/// CLI through `--trust-root`.
pub fn appstore(l: &impl Lookup, require_app: bool) -> Result<AppStoreConfig, ConfigError> {
    let bundle_id = l.get("APPLE_BUNDLE_ID");
    let app_apple_id = number::<i64>(l, "APPLE_APP_APPLE_ID")?;
    let environments = match l.get("APPLE_ENVIRONMENTS") {
        None if require_app => vec![AppleEnvironment::Production],
        None => vec![AppleEnvironment::Production, AppleEnvironment::Sandbox],
        Some(list) => parse_environments(&list)?,
    };
    if require_app {
        if bundle_id.is_none() {
            return Err(ConfigError(
                "APPLE_BUNDLE_ID must be set: without it any app's notifications would be accepted"
                    .into(),
            ));
        }
        if environments.contains(&AppleEnvironment::Production) && app_apple_id.is_none() {
            return Err(ConfigError(
                "APPLE_APP_APPLE_ID must be set when Production is accepted (Apple's rule); \
                 set APPLE_ENVIRONMENTS=Sandbox for a sandbox-only deployment"
                    .into(),
            ));
        }
    }
    Ok(AppStoreConfig {
        bundle_id,
        app_apple_id,
        environments,
        extra_roots: Vec::new(),
        include_raw: flag(l, "INCLUDE_RAW", false)?,
        refund_policy: refund_policy(l)?,
    })
}

/// `APPLE_ENVIRONMENTS`: `Production`, `Sandbox` or `Production,Sandbox`, each
/// spelled exactly as Apple does (spaces after a comma are allowed, nothing else:
/// `production` is refused rather than read as something it is not).
fn parse_environments(list: &str) -> Result<Vec<AppleEnvironment>, ConfigError> {
    let mut out = Vec::new();
    for item in list.split(',') {
        let item = item.trim_matches(' ');
        let env = AppleEnvironment::parse(item).ok_or_else(|| {
            ConfigError(format!(
                "APPLE_ENVIRONMENTS: {item:?} is neither Production nor Sandbox \
                 (spelled exactly as Apple does)"
            ))
        })?;
        if !out.contains(&env) {
            out.push(env);
        }
    }
    Ok(out)
}

pub mod dispatcher;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn map(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn the_lambda_refuses_to_start_without_an_app() {
        let err = appstore(&map(&[]), true).unwrap_err();
        assert!(err.0.contains("APPLE_BUNDLE_ID"));
        let err = appstore(&map(&[("APPLE_BUNDLE_ID", "com.x")]), true).unwrap_err();
        assert!(err.0.contains("APPLE_APP_APPLE_ID"));
        // sandbox-only deployments need no app id
        let ok = appstore(
            &map(&[
                ("APPLE_BUNDLE_ID", "com.x"),
                ("APPLE_ENVIRONMENTS", "Sandbox"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(ok.environments, vec![AppleEnvironment::Sandbox]);
        // the CLI may check nothing
        let any = appstore(&map(&[]), false).unwrap();
        assert!(any.bundle_id.is_none());
        assert_eq!(any.environments.len(), 2);
    }

    #[test]
    fn values_are_parsed_strictly() {
        let c = appstore(
            &map(&[
                ("APPLE_BUNDLE_ID", "com.x"),
                ("APPLE_APP_APPLE_ID", "123"),
                ("INCLUDE_RAW", "true"),
                ("SUSPICIOUS_REFUND_MAX_DAYS", "7"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(c.app_apple_id, Some(123));
        assert!(c.include_raw);
        assert_eq!(c.refund_policy.max_days_since_purchase, 7);
        assert!(appstore(&map(&[("APPLE_APP_APPLE_ID", "12x")]), false).is_err());
        assert!(appstore(&map(&[("APPLE_ENVIRONMENTS", "Xcode")]), false).is_err());
        assert!(appstore(&map(&[("INCLUDE_RAW", "maybe")]), false).is_err());
    }

    #[test]
    fn a_deployment_accepts_production_only_unless_sandbox_is_chosen() {
        let prod = appstore(
            &map(&[("APPLE_BUNDLE_ID", "com.x"), ("APPLE_APP_APPLE_ID", "1")]),
            true,
        )
        .unwrap();
        assert_eq!(prod.environments, vec![AppleEnvironment::Production]);
        let both = appstore(
            &map(&[
                ("APPLE_BUNDLE_ID", "com.x"),
                ("APPLE_APP_APPLE_ID", "1"),
                ("APPLE_ENVIRONMENTS", "Production, Sandbox"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(
            both.environments,
            vec![AppleEnvironment::Production, AppleEnvironment::Sandbox]
        );
    }

    #[test]
    fn environments_must_be_spelled_as_apple_does() {
        for bad in [
            "production",
            "PRODUCTION",
            "sandbox",
            "Production,sandbox",
            "Production,,Sandbox",
            "Production,",
            "\tProduction",
            "Xcode",
        ] {
            let err = appstore(&map(&[("APPLE_ENVIRONMENTS", bad)]), false)
                .expect_err(bad)
                .0;
            assert!(err.contains("APPLE_ENVIRONMENTS"), "{bad}: {err}");
        }
    }

    #[test]
    fn extra_roots_are_not_configurable_through_the_environment() {
        // a PEM root in the environment is ignored: a deployment trusts Apple's root only
        let pki = storehook_testkit::appstore::TestPki::new();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pki.root_der)
        );
        let c = appstore(
            &map(&[
                ("APPLE_BUNDLE_ID", "com.x"),
                ("APPLE_APP_APPLE_ID", "1"),
                ("APPLE_EXTRA_ROOTS_PEM", pem.as_str()),
            ]),
            true,
        )
        .unwrap();
        assert!(c.extra_roots.is_empty());
    }
}
