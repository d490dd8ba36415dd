//! The sweeper Lambda's configuration, read once at cold start from the
//! environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `QUEUE_URL` | the FIFO queue the sweeper's events go to | required |
//! | `TABLE_NAME` | the DynamoDB table (its `due` index) | required |
//! | `SWEEP_LEEWAY` | how long after an entitlement's end a group without a store API source is expired (`0`, `90s`, `5m`, `24h`, `2d`) | `24h` ([`DEFAULT_LEEWAY`]) |

use super::{ConfigError, Env, Lookup, required};
use crate::sweep::{DEFAULT_LEEWAY, parse_duration};
use std::time::Duration;

/// Everything the sweeper Lambda needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweeperConfig {
    /// Where its events go.
    pub queue_url: String,
    /// The table.
    pub table_name: String,
    /// The leeway before a `SUBSCRIPTION_EXPIRED` without a store API source.
    pub leeway: Duration,
}

impl SweeperConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(Env)
    }

    /// Reads the settings through `l` (tests pass a map).
    pub fn from_lookup(l: impl Lookup) -> Result<Self, ConfigError> {
        let leeway = match l.get("SWEEP_LEEWAY") {
            None => DEFAULT_LEEWAY,
            Some(v) => parse_duration(&v).map_err(|reason| ConfigError::Invalid {
                var: "SWEEP_LEEWAY",
                reason,
            })?,
        };
        Ok(Self {
            queue_url: required(&l, "QUEUE_URL")?,
            table_name: required(&l, "TABLE_NAME")?,
            leeway,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Lookup {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn the_sweeper_reads_queue_table_and_leeway() {
        let base = [("QUEUE_URL", "https://q"), ("TABLE_NAME", "t")];
        let c = SweeperConfig::from_lookup(lookup(&base)).unwrap();
        assert_eq!(c.leeway, DEFAULT_LEEWAY);
        assert_eq!(
            (c.queue_url.as_str(), c.table_name.as_str()),
            ("https://q", "t")
        );
        let mut with = base.to_vec();
        with.push(("SWEEP_LEEWAY", "2h"));
        let c = SweeperConfig::from_lookup(lookup(&with)).unwrap();
        assert_eq!(c.leeway, Duration::from_secs(7200));
        // a bad leeway or a missing setting refuses to start, naming the setting
        with.push(("SWEEP_LEEWAY", "soon"));
        let bad = [base[0], base[1], ("SWEEP_LEEWAY", "soon")];
        let e = SweeperConfig::from_lookup(lookup(&bad)).unwrap_err();
        assert!(e.to_string().contains("SWEEP_LEEWAY"), "{e}");
        let e = SweeperConfig::from_lookup(lookup(&base[..1])).unwrap_err();
        assert_eq!(e, ConfigError::Missing("TABLE_NAME"));
    }
}
