//! The dispatcher Lambda's configuration, read once at cold start from the
//! environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `QUEUE_URL` | the FIFO queue the function consumes (for ChangeMessageVisibility) | required |
//! | `DLQ_URL` | the FIFO dead-letter queue | required |
//! | `TABLE_NAME` | the DynamoDB table | required |
//! | `WEBHOOK_URL` | the app maker's endpoint (http/https) | required without `WEBHOOK_ENDPOINTS` |
//! | `WEBHOOK_ENDPOINTS` / `WEBHOOK_ENDPOINTS_SECRET_ARN` | several endpoints ([`crate::fanout`]) | – |
//! | `WEBHOOK_SECRET_ARN` | Secrets Manager secret (ARN or name) holding the signing secret(s) | – |
//! | `WEBHOOK_SECRET` | the secret(s) inline, used when `WEBHOOK_SECRET_ARN` is unset | – |
//! | `WEBHOOK_TIMEOUT_MS` | per-attempt HTTP timeout | 10000 |
//! | `RETRY_SCHEDULE` | e.g. `5s,5m,30m,2h,5h,10h,12h,…` | [`DEFAULT_RETRY_SCHEDULE`] |
//! | `HISTORY_TTL_DAYS` | lifetime of history items, claims and delivery records (DynamoDB TTL) | 90 |

use super::{ConfigError, Env, Lookup, SecretSetting, required};
use crate::retry::{DEFAULT_RETRY_SCHEDULE, RetrySchedule};
use crate::secrets::SecretSource;
use crate::webhook::{DEFAULT_TIMEOUT, WebhookSecrets};
use std::fmt;
use std::time::Duration;

/// The webhook signing secret(s): `WEBHOOK_SECRET` inline, or the Secrets
/// Manager secret named by `WEBHOOK_SECRET_ARN` (the template's), which wins.
pub const WEBHOOK_SECRET: SecretSetting = SecretSetting {
    inline: "WEBHOOK_SECRET",
    arn: "WEBHOOK_SECRET_ARN",
};

/// Everything the dispatcher Lambda needs.
#[derive(Clone)]
pub struct DispatcherConfig {
    /// Source queue URL.
    pub queue_url: String,
    /// Dead-letter queue URL.
    pub dlq_url: String,
    /// DynamoDB table.
    pub table_name: String,
    /// Webhook endpoint.
    pub webhook_url: String,
    /// Signing secrets.
    pub webhook_secret: SecretSource<WebhookSecrets>,
    /// Per-attempt HTTP timeout.
    pub webhook_timeout: Duration,
    /// Backoff schedule.
    pub retry_schedule: RetrySchedule,
    /// Lifetime of history items, claims and delivery records.
    pub history_ttl: Duration,
}

/// Default of `HISTORY_TTL_DAYS`.
pub const DEFAULT_HISTORY_TTL_DAYS: u64 = 90;

impl fmt::Debug for DispatcherConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The webhook URL may carry a token in its path or query.
        let url = crate::webhook::redact_url(&self.webhook_url);
        f.debug_struct("DispatcherConfig")
            .field("queue_url", &self.queue_url)
            .field("dlq_url", &self.dlq_url)
            .field("table_name", &self.table_name)
            .field("webhook_url", &url)
            .field("webhook_secret", &self.webhook_secret)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("retry_schedule", &self.retry_schedule.to_string())
            .field("history_ttl", &self.history_ttl)
            .finish()
    }
}

impl DispatcherConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(Env)
    }

    /// Reads the settings through `l` (tests pass a map).
    pub fn from_lookup(l: impl Lookup) -> Result<Self, ConfigError> {
        let opt = |k: &str| l.get(k).map(|v| v.trim().to_owned());
        let webhook_secret = match WEBHOOK_SECRET.source(&l) {
            Some(SecretSource::SecretsManager(id)) => SecretSource::SecretsManager(id),
            Some(SecretSource::Inline(inline)) => {
                SecretSource::Inline(WebhookSecrets::parse(&inline).map_err(|e| {
                    ConfigError::Invalid {
                        var: WEBHOOK_SECRET.inline,
                        reason: e.to_string(),
                    }
                })?)
            }
            None => {
                return Err(ConfigError::Missing("WEBHOOK_SECRET_ARN or WEBHOOK_SECRET"));
            }
        };
        let webhook_timeout = match opt("WEBHOOK_TIMEOUT_MS") {
            None => DEFAULT_TIMEOUT,
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "WEBHOOK_TIMEOUT_MS",
                        reason: format!("{v:?} is not a positive integer"),
                    });
                }
            },
        };
        let retry_schedule = RetrySchedule::parse(
            &opt("RETRY_SCHEDULE").unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_owned()),
        )
        .map_err(|e| ConfigError::Invalid {
            var: "RETRY_SCHEDULE",
            reason: e.to_string(),
        })?;
        let history_ttl_days = match opt("HISTORY_TTL_DAYS") {
            None => DEFAULT_HISTORY_TTL_DAYS,
            Some(v) => match v.parse::<u64>() {
                Ok(d) if (1..=36_500).contains(&d) => d,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "HISTORY_TTL_DAYS",
                        reason: format!("{v:?} is not a number of days between 1 and 36500"),
                    });
                }
            },
        };
        // With several endpoints (`WEBHOOK_ENDPOINTS`) the single webhook is optional.
        let endpoints = l.get(crate::fanout::ENDPOINTS.inline).is_some()
            || l.get(crate::fanout::ENDPOINTS.arn).is_some();
        let webhook_url = match l.get("WEBHOOK_URL") {
            None if endpoints => String::new(),
            _ => required(&l, "WEBHOOK_URL")?,
        };
        let http = webhook_url.starts_with("https://") || webhook_url.starts_with("http://");
        let absent_with_endpoints = webhook_url.is_empty() && endpoints;
        if !http && !absent_with_endpoints {
            return Err(ConfigError::Invalid {
                var: "WEBHOOK_URL",
                reason: "must start with https:// or http://".into(),
            });
        }
        Ok(Self {
            queue_url: required(&l, "QUEUE_URL")?,
            dlq_url: required(&l, "DLQ_URL")?,
            table_name: required(&l, "TABLE_NAME")?,
            webhook_url,
            webhook_secret,
            webhook_timeout,
            retry_schedule,
            history_ttl: Duration::from_secs(history_ttl_days * 86_400),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("QUEUE_URL", "http://q/events.fifo"),
        ("DLQ_URL", "http://q/dlq.fifo"),
        ("TABLE_NAME", "storehook"),
        (
            "WEBHOOK_URL",
            "https://api.example.com/hook/p4thT0ken?token=hunter2",
        ),
    ];

    #[test]
    fn reads_everything_with_defaults() {
        // GIVEN the required variables and an inline secret
        let mut vars = BASE.to_vec();
        vars.push(("WEBHOOK_SECRET", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"));
        // WHEN read
        let c = DispatcherConfig::from_lookup(env(&vars)).unwrap();
        // THEN defaults apply and Debug shows neither the secret nor the URL's query
        assert_eq!(c.webhook_timeout, Duration::from_secs(10));
        assert_eq!(c.retry_schedule, RetrySchedule::default());
        assert_eq!(c.history_ttl, Duration::from_secs(90 * 86_400));
        assert!(matches!(c.webhook_secret, SecretSource::Inline(_)));
        let d = format!("{c:?}");
        assert!(
            !d.contains("Ab3dEf6h") && !d.contains("hunter2") && !d.contains("p4thT0ken"),
            "{d}"
        );
        assert!(d.contains("https://api.example.com/…"), "{d}");
    }

    #[test]
    fn the_arn_wins_and_overrides_parse() {
        // GIVEN an ARN, an inline secret, a timeout and a schedule
        let mut vars = BASE.to_vec();
        vars.extend([
            (
                "WEBHOOK_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            ),
            ("WEBHOOK_SECRET", "not even valid"),
            ("WEBHOOK_TIMEOUT_MS", "2500"),
            ("RETRY_SCHEDULE", "1s,2s"),
            ("HISTORY_TTL_DAYS", "7"),
        ]);
        let c = DispatcherConfig::from_lookup(env(&vars)).unwrap();
        // THEN the ARN is used and the overrides apply
        assert!(
            matches!(c.webhook_secret, SecretSource::SecretsManager(ref a) if a.ends_with(":x"))
        );
        assert_eq!(c.webhook_timeout, Duration::from_millis(2500));
        assert_eq!(c.retry_schedule.max_attempts(), 3);
        assert_eq!(c.history_ttl, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn reports_missing_and_invalid_values_without_secrets() {
        // GIVEN incomplete or invalid environments
        assert_eq!(
            DispatcherConfig::from_lookup(env(BASE)).unwrap_err(),
            ConfigError::Missing("WEBHOOK_SECRET_ARN or WEBHOOK_SECRET")
        );
        let mut v = BASE.to_vec();
        v.push(("WEBHOOK_SECRET", "whsec_!!bad-secret!!"));
        let e = DispatcherConfig::from_lookup(env(&v)).unwrap_err();
        assert!(!e.to_string().contains("bad-secret"), "{e}");
        let mut v = BASE.to_vec();
        v.extend([
            ("WEBHOOK_SECRET", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
            ("WEBHOOK_TIMEOUT_MS", "0"),
        ]);
        assert!(matches!(
            DispatcherConfig::from_lookup(env(&v)).unwrap_err(),
            ConfigError::Invalid {
                var: "WEBHOOK_TIMEOUT_MS",
                ..
            }
        ));
        let mut v = BASE.to_vec();
        v.extend([
            ("WEBHOOK_SECRET", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
            ("RETRY_SCHEDULE", "2d"),
        ]);
        assert!(matches!(
            DispatcherConfig::from_lookup(env(&v)).unwrap_err(),
            ConfigError::Invalid {
                var: "RETRY_SCHEDULE",
                ..
            }
        ));
        let v: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "TABLE_NAME")
            .chain([("WEBHOOK_SECRET", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z")])
            .collect();
        assert_eq!(
            DispatcherConfig::from_lookup(env(&v)).unwrap_err(),
            ConfigError::Missing("TABLE_NAME")
        );
    }
}
