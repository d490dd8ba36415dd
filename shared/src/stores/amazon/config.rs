//! What the Amazon endpoint accepts, and how it is read from the settings (the
//! Lambda's environment, the CLI's flags over it).

use super::rvs::RvsConfig;
use super::sns::CertPolicy;
use crate::config::{ConfigError, Lookup, SecretSetting, flag, number, refund_policy};
use crate::policy::RefundPolicy;
use std::time::Duration;

/// The Receipt Verification Service shared secret: `AMAZON_RVS_SHARED_SECRET`
/// inline (local runs), or the Secrets Manager secret named by
/// `AMAZON_RVS_SHARED_SECRET_ARN` (a deployment), which wins.
pub const RVS_SHARED_SECRET: SecretSetting = SecretSetting {
    inline: "AMAZON_RVS_SHARED_SECRET",
    arn: "AMAZON_RVS_SHARED_SECRET_ARN",
};

/// What the Amazon endpoint accepts and how it translates.
#[derive(Debug, Clone)]
pub struct AmazonConfig {
    /// Accepted `appPackageName`s; empty accepts any (CLI / local only).
    pub app_packages: Vec<String>,
    /// Accepted SNS `TopicArn`s; empty accepts any (CLI / local only).
    pub topic_arns: Vec<String>,
    /// Where signing certificates may come from and what they must chain to.
    pub certs: CertPolicy,
    /// The Receipt Verification Service. `None`: notifications are answered
    /// 503 `rvs_unavailable` (Amazon resends): nothing is translated without
    /// Amazon's authoritative state.
    pub rvs: Option<RvsConfig>,
    /// Confirm an SNS subscription by fetching its `SubscribeURL` (same host
    /// rule as certificates). Off: the token is logged for the console step.
    pub auto_confirm: bool,
    /// Put the decoded payloads in `event.raw`.
    pub include_raw: bool,
    /// Thresholds of `suspicious_refund`.
    pub refund_policy: RefundPolicy,
}

fn list(l: &impl Lookup, name: &str) -> Vec<String> {
    l.get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Amazon settings:
///
/// | variable | meaning |
/// |---|---|
/// | `AMAZON_APP_PACKAGES` | accepted `appPackageName`s, comma-separated (required when `require_app`) |
/// | `AMAZON_TOPIC_ARNS` | accepted SNS topic ARNs (shown in the Developer Console once the endpoint is added, and in the confirmation message storehook logs), comma-separated (required when `require_app`) |
/// | `AMAZON_RVS_SHARED_SECRET` | the Developer Console's shared key (in a deployment: the Secrets Manager secret named by `AMAZON_RVS_SHARED_SECRET_ARN`); without it notifications are answered 503 |
/// | `AMAZON_RVS_SANDBOX` | `true`: ask the RVS Cloud Sandbox (App Tester receipts) |
/// | `AMAZON_RVS_URL` | RVS root (default `https://appstore-sdk.amazon.com`; tests: a loopback fake) |
/// | `AMAZON_RVS_TIMEOUT_MS` | per-request timeout (default 4000) |
/// | `AMAZON_SNS_AUTO_CONFIRM` | `true`: confirm the SNS subscription by fetching `SubscribeURL` |
/// | `AMAZON_SNS_CERT_HOSTS` | TESTS ONLY: extra `host[:port]`s signing certificates may be fetched from (always over HTTPS) |
/// | `AMAZON_SNS_TRUST_ROOTS` | TESTS ONLY: extra CA certificates (PEM text, or a path to a PEM file) trusted for the certificate download and the signing certificate's chain; a self-signed signing certificate listed here is trusted as pinned (its validity still checked) |
/// | `INCLUDE_RAW`, `SUSPICIOUS_REFUND_*` | as for the other stores |
pub fn amazon_config(l: &impl Lookup, require_app: bool) -> Result<AmazonConfig, ConfigError> {
    let app_packages = list(l, "AMAZON_APP_PACKAGES");
    let topic_arns = list(l, "AMAZON_TOPIC_ARNS");
    if require_app && app_packages.is_empty() {
        return Err(ConfigError::Required {
            var: "AMAZON_APP_PACKAGES",
            why: "without it any app's notifications would be accepted",
        });
    }
    if require_app && topic_arns.is_empty() {
        return Err(ConfigError::Required {
            var: "AMAZON_TOPIC_ARNS",
            why: "without it messages of any SNS topic would be accepted",
        });
    }
    for arn in &topic_arns {
        if !arn.starts_with("arn:aws") || arn.split(':').count() != 6 {
            return Err(ConfigError::Invalid {
                var: "AMAZON_TOPIC_ARNS",
                reason: format!(
                    "{arn:?} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)"
                ),
            });
        }
    }
    let extra_hosts = list(l, "AMAZON_SNS_CERT_HOSTS");
    let roots_setting = l.get("AMAZON_SNS_TRUST_ROOTS");
    let extra_roots_pem = match roots_setting {
        None => None,
        Some(v) if v.trim_start().starts_with("-----BEGIN") => Some(v.into_bytes()),
        Some(path) => Some(
            std::fs::read(path.trim()).map_err(|e| ConfigError::Invalid {
                var: "AMAZON_SNS_TRUST_ROOTS",
                reason: format!("neither PEM text nor a readable file: {e}"),
            })?,
        ),
    };
    if !extra_hosts.is_empty() || extra_roots_pem.is_some() {
        tracing::warn!(
            hosts = %extra_hosts.join(","),
            extra_roots = extra_roots_pem.is_some(),
            "AMAZON_SNS_CERT_HOSTS / AMAZON_SNS_TRUST_ROOTS set: test settings, never for production"
        );
    }
    let certs = CertPolicy::new(extra_hosts, extra_roots_pem.as_deref()).map_err(|reason| {
        ConfigError::Invalid {
            var: "AMAZON_SNS_TRUST_ROOTS",
            reason,
        }
    })?;
    let rvs = match l.get(RVS_SHARED_SECRET.inline) {
        None => None,
        Some(secret) => {
            let mut c = RvsConfig::new(secret.trim());
            if let Some(url) = l.get("AMAZON_RVS_URL") {
                let url = url.trim().trim_end_matches('/').to_owned();
                crate::stores::huawei::api::check_url("AMAZON_RVS_URL", &url).map_err(
                    |reason| ConfigError::Invalid {
                        var: "AMAZON_RVS_URL",
                        reason,
                    },
                )?;
                c.base_url = url;
            }
            c.sandbox = flag(l, "AMAZON_RVS_SANDBOX", false)?;
            if let Some(ms) = number::<u64>(l, "AMAZON_RVS_TIMEOUT_MS")? {
                if !(100..=10_000).contains(&ms) {
                    return Err(ConfigError::Invalid {
                        var: "AMAZON_RVS_TIMEOUT_MS",
                        reason: "must be within 100..=10000".into(),
                    });
                }
                c.timeout = Duration::from_millis(ms);
            }
            Some(c)
        }
    };
    if require_app && rvs.is_none() {
        return Err(ConfigError::Required {
            var: "AMAZON_RVS_SHARED_SECRET",
            why: "Amazon's notifications carry no state: the Receipt Verification Service gives it",
        });
    }
    Ok(AmazonConfig {
        app_packages,
        topic_arns,
        certs,
        rvs,
        auto_confirm: flag(l, "AMAZON_SNS_AUTO_CONFIRM", false)?,
        include_raw: flag(l, "INCLUDE_RAW", false)?,
        refund_policy: refund_policy(l)?,
    })
}
