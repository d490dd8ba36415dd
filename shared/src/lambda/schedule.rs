//! The sweeper function: an EventBridge schedule (SAM `Schedule` event) in,
//! [`sweep_scheduled`] through, the [`SweepReport`] out (as JSON; logged).
//! A second, daily schedule whose input is `{"job": "play-voided"}`
//! ([`PLAY_VOIDED_JOB`]) reads Google Play's voided purchases of the last
//! [`VOIDED_WINDOW`] instead ([`VoidedJob`]): refunds and revocations whose
//! notification was lost reach the same queue.

use super::{Error, start};
use crate::clock::Clock;
use crate::event::Timestamp;
use crate::queue::EventQueue;
use crate::state::StateStore;
use crate::stores::playstore::PlayStoreEndpoint;
use crate::stores::playstore::voided::{EnqueueError, VoidedReport, enqueue_voided};
use crate::sweep::{SweepError, SweepReport, Sweeper};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The `job` of the daily schedule's input that runs [`VoidedJob`].
pub const PLAY_VOIDED_JOB: &str = "play-voided";
/// The window of the daily voided-purchases read: two days, so one failed
/// run is covered by the next (already delivered voids are skipped, queued
/// ones dropped as duplicates).
pub const VOIDED_WINDOW: Duration = Duration::from_secs(2 * 86_400);

/// Google Play's voided purchases of the last [`VOIDED_WINDOW`] onto the
/// queue ([`enqueue_voided`], as `storehook backfill --store playstore` does).
#[derive(Debug, Clone)]
pub struct VoidedJob {
    /// The Play endpoint (its API client and link store).
    pub endpoint: Arc<PlayStoreEndpoint>,
    /// The dispatcher's queue.
    pub queue: Arc<dyn EventQueue>,
    /// The delivery records (voids already delivered are skipped).
    pub state: Arc<dyn StateStore>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl VoidedJob {
    /// One run over the window ending now.
    pub async fn run(&self) -> Result<VoidedReport, EnqueueError> {
        let now = Timestamp(self.clock.now());
        let window = chrono::Duration::from_std(VOIDED_WINDOW).unwrap_or(chrono::Duration::zero());
        let since = Timestamp(now.0 - window);
        enqueue_voided(
            &self.endpoint,
            &[],
            since,
            now,
            now,
            self.queue.as_ref(),
            self.state.as_ref(),
        )
        .await
    }
}

/// What the sweeper function runs: the sweep, and the daily voided-purchases
/// read when Google Play is configured.
#[derive(Debug, Clone)]
pub struct ScheduledJobs {
    /// The expiry sweeper.
    pub sweeper: Sweeper,
    /// Google Play's voided purchases (None: no Google Play in this deployment).
    pub voided: Option<VoidedJob>,
}

/// One scheduled event: `{"job": "play-voided"}` runs the [`VoidedJob`] (an
/// error when Google Play is not configured), anything else a sweep
/// ([`sweep_scheduled`]). Returns the report as JSON.
pub async fn handle_scheduled(
    jobs: &ScheduledJobs,
    event: &Value,
    start_by: Option<Instant>,
) -> Result<Value, Error> {
    if event.get("job").and_then(Value::as_str) == Some(PLAY_VOIDED_JOB) {
        let Some(job) = &jobs.voided else {
            return Err(Error::from(
                "the play-voided job needs Google Play (PLAY_PACKAGE_NAMES and its service account)",
            ));
        };
        let report = job.run().await.map_err(|e| Error::from(e.to_string()))?;
        tracing::info!(
            fetched = report.fetched,
            skipped = report.skipped,
            already_delivered = report.already_delivered,
            enqueued = report.enqueued,
            "Google Play voided purchases"
        );
        return Ok(serde_json::to_value(report)?);
    }
    let report = sweep_scheduled(&jobs.sweeper, start_by).await?;
    Ok(serde_json::to_value(report)?)
}

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
/// once), then every scheduled event through [`handle_scheduled`].
pub async fn run_sweeper<E>(
    cold_start: impl Future<Output = Result<ScheduledJobs, E>>,
) -> Result<(), Error>
where
    E: std::fmt::Display + Into<Error>,
{
    let jobs = start(cold_start).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let jobs = jobs.clone();
        async move {
            let remaining = event
                .context
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let start_by = Instant::now() + remaining.saturating_sub(RESERVE);
            let report = handle_scheduled(&jobs, &event.payload, Some(start_by)).await;
            crate::metrics::flush_emf();
            report
        }
    }))
    .await
}
