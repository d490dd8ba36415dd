//! What the App Store endpoint accepts, and how it is read from the settings
//! (the Lambda's environment, the CLI's flags over it).

use super::AppleEnvironment;
use crate::config::{ConfigError, Lookup, flag, number, refund_policy};
use crate::policy::RefundPolicy;
use std::path::Path;

/// What the App Store endpoint accepts and how it translates.
#[derive(Debug, Clone)]
pub struct AppStoreConfig {
    /// Expected bundle id; `None` accepts any app (CLI / local only).
    pub bundle_id: Option<String>,
    /// Expected App Store app id, checked on Production notifications.
    pub app_apple_id: Option<i64>,
    /// Accepted environments.
    pub environments: Vec<AppleEnvironment>,
    /// Extra trusted roots (DER), beside the bundled Apple Root CA - G3. For tests
    /// and the CLI's `--trust-root` only: the Lambdas never set them, and building
    /// an [`AppStore`](super::AppStore) with any logs a warning.
    pub extra_roots: Vec<Vec<u8>>,
    /// Put the decoded payloads in `event.raw`.
    pub include_raw: bool,
    /// Thresholds of `suspicious_refund`.
    pub refund_policy: RefundPolicy,
}

impl Default for AppStoreConfig {
    fn default() -> Self {
        Self {
            bundle_id: None,
            app_apple_id: None,
            environments: vec![AppleEnvironment::Production, AppleEnvironment::Sandbox],
            extra_roots: Vec::new(),
            include_raw: false,
            refund_policy: RefundPolicy::default(),
        }
    }
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
pub fn appstore_config(l: &impl Lookup, require_app: bool) -> Result<AppStoreConfig, ConfigError> {
    let bundle_id = l.get("APPLE_BUNDLE_ID");
    let app_apple_id = number::<i64>(l, "APPLE_APP_APPLE_ID")?;
    let environments = match l.get("APPLE_ENVIRONMENTS") {
        None if require_app => vec![AppleEnvironment::Production],
        None => vec![AppleEnvironment::Production, AppleEnvironment::Sandbox],
        Some(list) => parse_environments(&list)?,
    };
    if require_app {
        if bundle_id.is_none() {
            return Err(ConfigError::Required {
                var: "APPLE_BUNDLE_ID",
                why: "without it any app's notifications would be accepted",
            });
        }
        if environments.contains(&AppleEnvironment::Production) && app_apple_id.is_none() {
            return Err(ConfigError::Required {
                var: "APPLE_APP_APPLE_ID",
                why: "Apple requires it when Production is accepted; \
                      set APPLE_ENVIRONMENTS=Sandbox for a sandbox-only deployment",
            });
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
        let env = AppleEnvironment::parse(item).ok_or_else(|| ConfigError::Invalid {
            var: "APPLE_ENVIRONMENTS",
            reason: format!(
                "{item:?} is neither Production nor Sandbox (spelled exactly as Apple does)"
            ),
        })?;
        if !out.contains(&env) {
            out.push(env);
        }
    }
    Ok(out)
}

/// The certificates of the CLI's `--trust-root` files (PEM or DER), to trust
/// beside Apple Root CA - G3 ([`AppStoreConfig::extra_roots`]).
pub fn read_trust_roots(paths: &[impl AsRef<Path>]) -> Result<Vec<Vec<u8>>, ConfigError> {
    let mut roots = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let bad = |e: &dyn std::fmt::Display| {
            ConfigError::TrustRoot(format!("--trust-root {}: {e}", path.display()))
        };
        let bytes = std::fs::read(path).map_err(|e| bad(&e))?;
        roots.extend(super::verify::parse_roots(&bytes).map_err(|e| bad(&e))?);
    }
    Ok(roots)
}

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
        let err = appstore_config(&map(&[]), true).unwrap_err();
        assert!(err.to_string().contains("APPLE_BUNDLE_ID"));
        let err = appstore_config(&map(&[("APPLE_BUNDLE_ID", "com.x")]), true).unwrap_err();
        assert!(err.to_string().contains("APPLE_APP_APPLE_ID"));
        // sandbox-only deployments need no app id
        let ok = appstore_config(
            &map(&[
                ("APPLE_BUNDLE_ID", "com.x"),
                ("APPLE_ENVIRONMENTS", "Sandbox"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(ok.environments, vec![AppleEnvironment::Sandbox]);
        // the CLI may check nothing
        let any = appstore_config(&map(&[]), false).unwrap();
        assert!(any.bundle_id.is_none());
        assert_eq!(any.environments.len(), 2);
    }

    #[test]
    fn values_are_parsed_strictly() {
        let c = appstore_config(
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
        assert!(appstore_config(&map(&[("APPLE_APP_APPLE_ID", "12x")]), false).is_err());
        assert!(appstore_config(&map(&[("APPLE_ENVIRONMENTS", "Xcode")]), false).is_err());
        assert!(appstore_config(&map(&[("INCLUDE_RAW", "maybe")]), false).is_err());
    }

    #[test]
    fn a_deployment_accepts_production_only_unless_sandbox_is_chosen() {
        let prod = appstore_config(
            &map(&[("APPLE_BUNDLE_ID", "com.x"), ("APPLE_APP_APPLE_ID", "1")]),
            true,
        )
        .unwrap();
        assert_eq!(prod.environments, vec![AppleEnvironment::Production]);
        let both = appstore_config(
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
            let err = appstore_config(&map(&[("APPLE_ENVIRONMENTS", bad)]), false)
                .expect_err(bad)
                .to_string();
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
        let c = appstore_config(
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
