//! Play voided purchases backfill: `purchases.voidedpurchases.list` (`type=1`,
//! paged) → the refunds and revocations storehook may have missed, as the
//! events a `voidedPurchaseNotification` of the same void becomes
//! (`SUBSCRIPTION_REFUNDED` / `ONE_TIME_PURCHASE_REFUNDED`, docs/events.md),
//! with `details.source = "backfill"`.
//!
//! Same event as the notification: the id derives from the purchase token and
//! the order id ([`super::translate::voided_event_id`]) in both paths, so a
//! refund already delivered from its notification (or by an earlier backfill)
//! is not delivered again; the group is the subscription's (the token's
//! lineage, walked through the API when unknown); `occurred_at` is Google's
//! `voidedTimeMillis`.
//!
//! Subscription or one-time product: `voidedpurchases.list` does not say. A
//! token the link store knows, or that `subscriptionsv2.get` answers for, is a
//! subscription (a voided subscription stays readable for 60 days after it
//! ended, longer than the list's 30-day window); any other is a one-time
//! product. Voids of quantity-based partial refunds are not asked for
//! (`includeQuantityBasedPartialRefund` is not set): every void listed is full.

use super::PlayStoreEndpoint;
use super::PlayStoreError;
use super::api::{self, ApiError, Fetched};
use super::model::{DeveloperNotification, VoidedPurchase, VoidedPurchaseNotification};
use super::translate::{Decoded, PlayState, Push, translate};
use crate::event::{Event, Timestamp};
use crate::queue::{EventQueue, QueueMessage};
use crate::state::StateStore;
use crate::sweep::SOURCE_BACKFILL;

/// Most pages read in one backfill (1000 voids each).
pub const MAX_PAGES: usize = 1000;

/// What a backfill read.
#[derive(Debug, Clone, Default)]
pub struct VoidedBackfill {
    /// Voided purchases Google listed.
    pub fetched: usize,
    /// Their events, in Google's order (one per void that could be translated).
    pub events: Vec<Event>,
    /// Voids left out (no order id, or a token that cannot be a URL segment).
    pub skipped: usize,
}

/// `refund.reason` of a `voidedReason`.
pub fn voided_reason(reason: i64) -> String {
    match reason {
        0 => "OTHER".into(),
        1 => "REMORSE".into(),
        2 => "NOT_RECEIVED".into(),
        3 => "DEFECTIVE".into(),
        4 => "ACCIDENTAL_PURCHASE".into(),
        5 => "FRAUD".into(),
        6 => "FRIENDLY_FRAUD".into(),
        7 => "CHARGEBACK".into(),
        other => format!("VOIDED_REASON_{other}"),
    }
}

impl PlayStoreEndpoint {
    /// Reads the voids Google recorded for `package` between `since` and
    /// `until` (every page) and translates each into its event, received at
    /// `now`. The window goes to Google as given (Google keeps 30 days and
    /// refuses older windows: an error naming Google's reason).
    pub async fn voided_backfill(
        &self,
        package: &str,
        since: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<VoidedBackfill, PlayStoreError> {
        api::path_segment("packageName", package).map_err(PlayStoreError::MalformedNotification)?;
        if !self.config.accepts(package) {
            return Err(PlayStoreError::WrongApp(format!(
                "packageName {package:?} is not in PLAY_PACKAGE_NAMES"
            )));
        }
        let api = self.play_api()?;
        let mut out = VoidedBackfill::default();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = match api
                .voided_purchases(
                    package,
                    since.millis(),
                    until.millis(),
                    page_token.as_deref(),
                )
                .await?
            {
                Fetched::Found { value, .. } => value,
                Fetched::NotFound(reason) => {
                    return Err(PlayStoreError::Api(ApiError(format!(
                        "refused the window or package: {reason}"
                    ))));
                }
            };
            for v in page.voided_purchases {
                out.fetched += 1;
                match self.voided_purchase_event(package, &v, now).await? {
                    Some(e) => out.events.push(e),
                    None => out.skipped += 1,
                }
            }
            let next = page
                .token_pagination
                .and_then(|p| p.next_page_token)
                .filter(|t| !t.is_empty());
            match next {
                Some(t) if page_token.as_deref() != Some(t.as_str()) => page_token = Some(t),
                _ => return Ok(out),
            }
        }
        tracing::warn!(
            pages = MAX_PAGES,
            "voidedpurchases.list: page bound reached, the rest of the window is not read"
        );
        Ok(out)
    }

    /// The event of one listed void, as its `voidedPurchaseNotification`
    /// would have been translated. `None` when it cannot be identified.
    pub async fn voided_purchase_event(
        &self,
        package: &str,
        v: &VoidedPurchase,
        now: Timestamp,
    ) -> Result<Option<Event>, PlayStoreError> {
        let Some(order) = v.order_id.clone().filter(|o| !o.is_empty()) else {
            tracing::warn!(token = %v.purchase_token.fingerprint(), "voided purchase without orderId: skipped");
            return Ok(None);
        };
        if api::path_segment("purchaseToken", v.purchase_token.as_str()).is_err() {
            tracing::warn!(token = %v.purchase_token.fingerprint(), "voided purchase token cannot be a URL segment: skipped");
            return Ok(None);
        }
        let known = self.links.resolve(&v.purchase_token).await?.is_some();
        let state = self
            .subscription_state(package, &v.purchase_token, false)
            .await?;
        let (product_type, state) = match state {
            s @ PlayState::Subscription(_) => (1, s),
            s @ PlayState::NotFound(_) if known => (1, s),
            _ => (2, PlayState::NotNeeded),
        };
        let push = Push {
            message_id: order.clone(),
            publish_time_ms: None,
            notification: Ok(Decoded {
                notification: DeveloperNotification {
                    version: None,
                    package_name: package.to_owned(),
                    event_time_millis: v.voided_time_millis,
                    subscription_notification: None,
                    one_time_product_notification: None,
                    voided_purchase_notification: Some(VoidedPurchaseNotification {
                        purchase_token: v.purchase_token.clone(),
                        order_id: Some(order),
                        product_type: Some(product_type),
                        refund_type: Some(1),
                    }),
                    pending_refund_review_notification: None,
                    test_notification: None,
                },
                json: None,
            }),
        };
        let mut events = translate(&push, &state, &self.config, now);
        let Some(mut e) = events.pop() else {
            return Ok(None);
        };
        e.details.source = Some(SOURCE_BACKFILL.to_owned());
        crate::ingest::clamp_store_time(&mut e, now.millis());
        if let (Some(refund), Some(reason)) = (e.details.refund.as_mut(), v.voided_reason) {
            refund.reason = Some(voided_reason(reason));
        }
        if self.config.include_raw {
            e.raw = serde_json::to_value(v)
                .ok()
                .map(|v| serde_json::json!({ "voidedPurchase": v }));
        }
        Ok(Some(e))
    }
}

/// What [`enqueue_voided`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VoidedReport {
    /// `"playstore"`.
    pub store: &'static str,
    /// Voided purchases Google listed.
    pub fetched: usize,
    /// Voids left out (no order id, or an unusable token).
    pub skipped: usize,
    /// Events whose delivery is already recorded: not enqueued.
    pub already_delivered: usize,
    /// Events handed to the queue (one still queued under the same id is dropped by it).
    pub enqueued: usize,
}

/// Why [`enqueue_voided`] stopped (nothing of the failing app was enqueued
/// after the failure; a new run is idempotent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    /// Google, the link store or the configuration.
    #[error("Google Play voided purchases of {package}: {error}")]
    Play {
        /// The app.
        package: String,
        /// Why.
        error: PlayStoreError,
    },
    /// The delivery records could not be read.
    #[error("reading the delivery records: {0}")]
    State(String),
    /// The queue refused.
    #[error("enqueueing: {0}")]
    Queue(String),
}

/// The voided-purchases backfill end to end, as `storehook backfill --store
/// playstore` and a scheduled function run it: reads every app of `packages`
/// (empty: every configured app) for the window, skips the events whose
/// delivery `state` has recorded, and sends the others to `queue` (the queue
/// the dispatcher reads; it drops an id still queued, and the dispatcher
/// applies an id once).
pub async fn enqueue_voided(
    endpoint: &PlayStoreEndpoint,
    packages: &[String],
    since: Timestamp,
    until: Timestamp,
    now: Timestamp,
    queue: &dyn EventQueue,
    state: &dyn StateStore,
) -> Result<VoidedReport, EnqueueError> {
    let packages: Vec<String> = if packages.is_empty() {
        endpoint.config().package_names.clone()
    } else {
        packages.to_vec()
    };
    let mut report = VoidedReport {
        store: "playstore",
        ..VoidedReport::default()
    };
    for package in &packages {
        let out = endpoint
            .voided_backfill(package, since, until, now)
            .await
            .map_err(|error| EnqueueError::Play {
                package: package.clone(),
                error,
            })?;
        report.fetched += out.fetched;
        report.skipped += out.skipped;
        let mut fresh: Vec<&Event> = Vec::new();
        for e in &out.events {
            let delivered = state
                .delivery(&e.id)
                .await
                .map_err(|e| EnqueueError::State(e.to_string()))?;
            if delivered.is_some() {
                report.already_delivered += 1;
            } else {
                fresh.push(e);
            }
        }
        for chunk in fresh.chunks(crate::queue::MAX_BATCH) {
            let messages = chunk
                .iter()
                .map(|e| QueueMessage::for_event(e))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EnqueueError::Queue(e.to_string()))?;
            queue
                .send(&messages)
                .await
                .map_err(|e| EnqueueError::Queue(e.to_string()))?;
            report.enqueued += messages.len();
        }
    }
    Ok(report)
}
