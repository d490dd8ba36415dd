//! What the Huawei endpoint accepts and how it translates, and how it is read
//! from the settings (the Lambda's environment, the CLI's flags over it).

use super::api::{self, ApiConfig};
use super::verify::IapPublicKey;
use crate::config::{ConfigError, Lookup, SecretSetting, flag, number, refund_policy, required};
use crate::policy::RefundPolicy;
use std::time::Duration;

/// The OAuth client secret: `HUAWEI_CLIENT_SECRET` inline (local runs), or the
/// Secrets Manager secret named by `HUAWEI_CLIENT_SECRET_ARN` (a deployment),
/// which wins.
pub const CLIENT_SECRET: SecretSetting = SecretSetting {
    inline: "HUAWEI_CLIENT_SECRET",
    arn: "HUAWEI_CLIENT_SECRET_ARN",
};

/// What the Huawei endpoint accepts and how it translates.
#[derive(Debug, Clone)]
pub struct HuaweiConfig {
    /// Accepted app ids; empty accepts any app (CLI / local only).
    pub app_ids: Vec<String>,
    /// IAP public keys (one per app, or old + new during a rotation); a
    /// signature is accepted when any of them verifies it.
    pub public_keys: Vec<IapPublicKey>,
    /// Huawei API access: enrichment of subscription notifications and
    /// verification of ORDER notifications. `None`: the notification's own
    /// receipt is the snapshot and ORDER notifications are refused.
    pub api: Option<ApiConfig>,
    /// Put the decoded payloads in `event.raw`.
    pub include_raw: bool,
    /// Thresholds of `suspicious_refund`.
    pub refund_policy: RefundPolicy,
}

impl HuaweiConfig {
    /// Accepts `app_ids`, verifying with `public_keys`; no API, no raw.
    pub fn new(app_ids: Vec<String>, public_keys: Vec<IapPublicKey>) -> Self {
        Self {
            app_ids,
            public_keys,
            api: None,
            include_raw: false,
            refund_policy: RefundPolicy::default(),
        }
    }
}

/// Huawei settings:
///
/// | variable | meaning |
/// |---|---|
/// | `HUAWEI_APP_IDS` | accepted app ids, comma-separated (required when `require_app`) |
/// | `HUAWEI_PUBLIC_KEY` | the IAP public key from AppGallery Connect (base64 X.509 SubjectPublicKeyInfo); several comma-separated for several apps or a rotation (always required: nothing can be verified without it) |
/// | `HUAWEI_CLIENT_ID`, `HUAWEI_CLIENT_SECRET` | the app's OAuth client (optional, both or neither): enables the subscription API snapshot and ORDER notifications; in a deployment the secret is read from the Secrets Manager secret named by `HUAWEI_CLIENT_SECRET_ARN` ([`CLIENT_SECRET`]) |
/// | `HUAWEI_OAUTH_URL` | token endpoint (default Huawei's) |
/// | `HUAWEI_API_URL` | subscription API site root (default Europe, `https://subscr-dre.iap.cloud.huawei.eu`) |
/// | `HUAWEI_ORDER_API_URL` | order API site root (default Europe, `https://orders-dre.iap.cloud.huawei.eu`) |
/// | `HUAWEI_APPTOUCH_API_URL` | subscription API site root for AppTouch accounts |
/// | `HUAWEI_API_TIMEOUT_MS` | per-request timeout (default 4000) |
/// | `INCLUDE_RAW` | put decoded store payloads in `event.raw` (default false) |
/// | `SUSPICIOUS_REFUND_MIN_PERIOD_DAYS`, `SUSPICIOUS_REFUND_MAX_DAYS` | refund policy |
pub fn huawei_config(l: &impl Lookup, require_app: bool) -> Result<HuaweiConfig, ConfigError> {
    let app_ids: Vec<String> = l
        .get("HUAWEI_APP_IDS")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if require_app && app_ids.is_empty() {
        return Err(ConfigError::Required {
            var: "HUAWEI_APP_IDS",
            why: "without it any app's notifications would be accepted",
        });
    }
    let keys_text = required(l, "HUAWEI_PUBLIC_KEY")?;
    let public_keys = keys_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, k)| {
            IapPublicKey::from_base64(k).map_err(|e| ConfigError::Invalid {
                var: "HUAWEI_PUBLIC_KEY",
                reason: format!("key {}: {e}", i + 1),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if public_keys.is_empty() {
        return Err(ConfigError::Invalid {
            var: "HUAWEI_PUBLIC_KEY",
            reason: "holds no key".into(),
        });
    }
    let api = match (l.get("HUAWEI_CLIENT_ID"), l.get("HUAWEI_CLIENT_SECRET")) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Required {
                var: "HUAWEI_CLIENT_SECRET",
                why: "HUAWEI_CLIENT_ID is set (both or neither)",
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Required {
                var: "HUAWEI_CLIENT_ID",
                why: "HUAWEI_CLIENT_SECRET is set (both or neither)",
            });
        }
        (Some(id), Some(secret)) => {
            let mut a = ApiConfig::new(id.trim(), secret.trim());
            let url = |name: &'static str, default: String| -> Result<String, ConfigError> {
                let v = l.get(name).map(|s| s.trim().to_owned()).unwrap_or(default);
                api::check_url(&format!("{v:?}"), &v)
                    .map_err(|reason| ConfigError::Invalid { var: name, reason })?;
                Ok(v)
            };
            a.oauth_url = url("HUAWEI_OAUTH_URL", a.oauth_url)?;
            a.subscription_url = url("HUAWEI_API_URL", a.subscription_url)?;
            a.order_url = url("HUAWEI_ORDER_API_URL", a.order_url)?;
            a.apptouch_subscription_url =
                url("HUAWEI_APPTOUCH_API_URL", a.apptouch_subscription_url)?;
            if let Some(ms) = number::<u64>(l, "HUAWEI_API_TIMEOUT_MS")? {
                if !(100..=30_000).contains(&ms) {
                    return Err(ConfigError::Invalid {
                        var: "HUAWEI_API_TIMEOUT_MS",
                        reason: "must be within 100..=30000".into(),
                    });
                }
                a.timeout = Duration::from_millis(ms);
            }
            Some(a)
        }
    };
    Ok(HuaweiConfig {
        app_ids,
        public_keys,
        api,
        include_raw: flag(l, "INCLUDE_RAW", false)?,
        refund_policy: refund_policy(l)?,
    })
}
