//! The sweeper function: an EventBridge schedule (SAM `Schedule` event) in,
//! [`sweep_scheduled`] through, the [`SweepReport`] out (as JSON; logged).

use super::{Error, start};
use crate::sweep::{SweepError, SweepReport, Sweeper};
use lambda_runtime::{LambdaEvent, service_fn};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

/// Sweeps of one invocation at most (each handles up to the sweeper's batch).
pub const MAX_ROUNDS: usize = 20;
/// Time kept in hand before the invocation's deadline: no sweep starts later.
const RESERVE: Duration = Duration::from_secs(30);

/// One scheduled run: sweeps until fewer groups than a whole batch were due
/// (everything due was handled), at most [`MAX_ROUNDS`] times, and none
/// started after `start_by`. The reports are added up.
pub async fn sweep_scheduled(
    sweeper: &Sweeper,
    start_by: Option<Instant>,
) -> Result<SweepReport, SweepError> {
    let mut total = SweepReport::default();
    for _ in 0..MAX_ROUNDS {
        if start_by.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let r = sweeper.sweep_once().await?;
        total.add(&r);
        // Done when the index had less than a batch, or nothing moved (every
        // group failed: the next schedule tries again).
        if r.due < sweeper.batch() || r.snoozed == 0 {
            break;
        }
    }
    tracing::info!(report = %total, "scheduled sweep");
    Ok(total)
}

/// The whole life of the sweeper function: tracing, the cold start (read
/// once), then every scheduled event through [`sweep_scheduled`]. The event's
/// content is not used (any EventBridge event starts a sweep).
pub async fn run_sweeper<E>(
    cold_start: impl Future<Output = Result<Sweeper, E>>,
) -> Result<(), Error>
where
    E: std::fmt::Display + Into<Error>,
{
    let sweeper = start(cold_start).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let sweeper = sweeper.clone();
        async move {
            let remaining = event
                .context
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let start_by = Instant::now() + remaining.saturating_sub(RESERVE);
            sweep_scheduled(&sweeper, Some(start_by))
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
