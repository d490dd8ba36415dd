//! What the Google Play endpoint accepts and where Google lives, and how it
//! is read from the settings (the Lambda's environment, the CLI's flags over it).

use super::api::{self, ServiceAccountKey};
use super::auth::{OidcConfig, PushAuthConfig, Secret};
use crate::config::{ConfigError, Lookup, SecretSetting, flag, refund_policy};
use crate::policy::RefundPolicy;

/// Google's JWKS (JSON Web Key Set) of its ID-token signing keys.
pub const DEFAULT_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// Shortest accepted `PLAY_PUSH_TOKEN`.
pub const MIN_PUSH_TOKEN_LEN: usize = 16;
/// The Play Developer API service-account key: `PLAY_SERVICE_ACCOUNT_JSON`
/// inline (local runs), or the Secrets Manager secret named by
/// `PLAY_SERVICE_ACCOUNT_SECRET_ARN` (a deployment), which wins.
pub const SERVICE_ACCOUNT: SecretSetting = SecretSetting {
    inline: "PLAY_SERVICE_ACCOUNT_JSON",
    arn: "PLAY_SERVICE_ACCOUNT_SECRET_ARN",
};

/// What the Google Play endpoint accepts and where Google lives.
#[derive(Debug, Clone)]
pub struct PlayStoreConfig {
    /// Accepted package names; empty accepts any (CLI / local only).
    pub package_names: Vec<String>,
    /// How pushes are authenticated.
    pub push_auth: PushAuthConfig,
    /// The Play Developer API service account; `None`: no API calls (503 when one is needed).
    pub service_account: Option<ServiceAccountKey>,
    /// Google's JWKS.
    pub jwks_url: String,
    /// OAuth token endpoint; `None`: the key file's `token_uri`, else Google's.
    pub oauth_token_url: Option<String>,
    /// androidpublisher base URL (scheme + host, optionally a path prefix).
    pub api_base_url: String,
    /// Put the decoded notification and the API responses in `event.raw`.
    pub include_raw: bool,
    /// Thresholds of `suspicious_refund`.
    pub refund_policy: RefundPolicy,
}

impl Default for PlayStoreConfig {
    fn default() -> Self {
        Self {
            package_names: Vec::new(),
            push_auth: PushAuthConfig::default(),
            service_account: None,
            jwks_url: DEFAULT_JWKS_URL.into(),
            oauth_token_url: None,
            api_base_url: api::DEFAULT_API_BASE_URL.into(),
            include_raw: false,
            refund_policy: RefundPolicy::default(),
        }
    }
}

impl PlayStoreConfig {
    /// Whether notifications of `package` are accepted.
    pub fn accepts(&self, package: &str) -> bool {
        self.package_names.is_empty() || self.package_names.iter().any(|p| p == package)
    }

    /// The package when exactly one is configured (app id of undecodable pushes).
    pub fn single_package(&self) -> Option<String> {
        match self.package_names.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }
}

/// Google Play settings:
///
/// | variable | meaning |
/// |---|---|
/// | `PLAY_PACKAGE_NAMES` | accepted package names, comma-separated (required when `require_app`) |
/// | `PLAY_PUSH_AUDIENCE` | OIDC: the push subscription's audience (`aud`) |
/// | `PLAY_PUSH_SERVICE_ACCOUNT` | OIDC: the push subscription's service account (`email`) |
/// | `PLAY_PUSH_TOKEN` | URL-token mode: the secret in the push URL's `?token=` (≥ 16 characters) |
/// | `PLAY_SERVICE_ACCOUNT_JSON` | the Play Developer API service-account JSON key (required when `require_app`); in a deployment read from the Secrets Manager secret named by `PLAY_SERVICE_ACCOUNT_SECRET_ARN` ([`SERVICE_ACCOUNT`]) |
/// | `PLAY_JWKS_URL` | Google's JWKS (default `https://www.googleapis.com/oauth2/v3/certs`) |
/// | `PLAY_OAUTH_TOKEN_URL` | OAuth token endpoint (default: the key's `token_uri`) |
/// | `PLAY_API_BASE_URL` | androidpublisher base (default `https://androidpublisher.googleapis.com`) |
/// | `INCLUDE_RAW` | put decoded payloads and API responses in `event.raw` (default false) |
///
/// OIDC (`PLAY_PUSH_AUDIENCE` + `PLAY_PUSH_SERVICE_ACCOUNT`) or `PLAY_PUSH_TOKEN`
/// (or both) must be set when `require_app`: the Lambda refuses to start otherwise.
pub fn playstore_config(
    l: &impl Lookup,
    require_app: bool,
) -> Result<PlayStoreConfig, ConfigError> {
    let package_names: Vec<String> = l
        .get("PLAY_PACKAGE_NAMES")
        .map(|v| {
            v.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = package_names.iter().find(|p| {
        !p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    }) {
        return Err(ConfigError::Invalid {
            var: "PLAY_PACKAGE_NAMES",
            reason: format!("{bad:?} is not an Android package name"),
        });
    }
    let audience = l.get("PLAY_PUSH_AUDIENCE").map(|v| v.trim().to_owned());
    let account = l
        .get("PLAY_PUSH_SERVICE_ACCOUNT")
        .map(|v| v.trim().to_owned());
    let oidc = match (audience, account) {
        (Some(audience), Some(service_account)) => Some(OidcConfig {
            audience,
            service_account,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Required {
                var: "PLAY_PUSH_SERVICE_ACCOUNT",
                why: "PLAY_PUSH_AUDIENCE is set (OIDC needs the push subscription's service account too)",
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Required {
                var: "PLAY_PUSH_AUDIENCE",
                why: "PLAY_PUSH_SERVICE_ACCOUNT is set (OIDC needs the push subscription's audience too)",
            });
        }
    };
    let query_token = match l.get("PLAY_PUSH_TOKEN") {
        Some(t) if t.trim().len() < MIN_PUSH_TOKEN_LEN => {
            return Err(ConfigError::Invalid {
                var: "PLAY_PUSH_TOKEN",
                reason: format!(
                    "must be at least {MIN_PUSH_TOKEN_LEN} characters (use a long random value)"
                ),
            });
        }
        Some(t) => Some(Secret::new(t.trim())),
        None => None,
    };
    let push_auth = PushAuthConfig { oidc, query_token };
    let service_account = l
        .get("PLAY_SERVICE_ACCOUNT_JSON")
        .map(|j| {
            ServiceAccountKey::from_json(&j).map_err(|e| ConfigError::Invalid {
                var: "PLAY_SERVICE_ACCOUNT_JSON",
                reason: e.to_string(),
            })
        })
        .transpose()?;
    if require_app {
        if package_names.is_empty() {
            return Err(ConfigError::Required {
                var: "PLAY_PACKAGE_NAMES",
                why: "without it any app's notifications would be accepted",
            });
        }
        if push_auth.is_open() {
            return Err(ConfigError::Required {
                var: "PLAY_PUSH_AUDIENCE and PLAY_PUSH_SERVICE_ACCOUNT (OIDC, recommended) \
                      or PLAY_PUSH_TOKEN (secret ?token= in the push URL)",
                why: "push authentication must be configured",
            });
        }
        if service_account.is_none() {
            return Err(ConfigError::Required {
                var: "PLAY_SERVICE_ACCOUNT_JSON",
                why: "the Play Developer API is the source of subscription state",
            });
        }
    }
    let url = |name: &'static str, default: Option<&str>| -> Result<Option<String>, ConfigError> {
        match l
            .get(name)
            .map(|v| v.trim().to_owned())
            .or(default.map(str::to_owned))
        {
            None => Ok(None),
            Some(v) => match reqwest::Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base() => {
                    Ok(Some(v))
                }
                _ => Err(ConfigError::Invalid {
                    var: name,
                    reason: format!("{v:?} is not an http(s) URL"),
                }),
            },
        }
    };
    Ok(PlayStoreConfig {
        package_names,
        push_auth,
        service_account,
        jwks_url: url("PLAY_JWKS_URL", Some(DEFAULT_JWKS_URL))?.unwrap_or_default(),
        oauth_token_url: url("PLAY_OAUTH_TOKEN_URL", None)?,
        api_base_url: url("PLAY_API_BASE_URL", Some(api::DEFAULT_API_BASE_URL))?
            .unwrap_or_default(),
        include_raw: flag(l, "INCLUDE_RAW", false)?,
        refund_policy: refund_policy(l)?,
    })
}
