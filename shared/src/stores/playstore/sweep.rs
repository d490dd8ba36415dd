//! [`PlayStatusSource`]: the expiry sweeper's Google Play source. Asks
//! `subscriptionsv2.get` (OAuth, like every Play API call) about the group's
//! newest live purchase token (recorded in the link store each time a
//! notification's token is read and not replaced; the first token of the
//! lineage when none is recorded) and turns the answer, compared with the
//! group's snapshot, into the events it implies:
//!
//! | API answer | event |
//! |---|---|
//! | `ACTIVE` / `CANCELED` with a later `expiryTime` than the snapshot's | `SUBSCRIPTION_RENEWED` |
//! | `IN_GRACE_PERIOD` (snapshot not in grace) | `GRACE_PERIOD_STARTED` |
//! | `ON_HOLD` (snapshot not on hold) | `BILLING_RETRY_STARTED` (as notification 5 ON_HOLD) |
//! | `EXPIRED`, or `CANCELED` past its expiry (snapshot not expired) | `SUBSCRIPTION_EXPIRED` |
//! | anything else | nothing (`Ok(vec![])`) |
//!
//! The events are translated by the Play translator as the matching
//! notification type would be (snapshot, entitlement at `now`, product,
//! transaction), then marked `details.source = "sweeper"`, given an id from
//! [`sweep_event_id`] over the answer's facts (latest order id, expiry,
//! state), and an `occurred_at` from the API's facts, never the local clock:
//! a renewal or a grace period started when the previous period ended (the
//! snapshot's `expires_at`, itself read from the API), an expiry or an
//! account hold at the answer's `expiryTime` — and never before the group's
//! last applied event (+1 ms; Google gives no later time, e.g. for an expiry
//! after an account hold), so it is not taken as out of order.
//!
//! Errors: transport, OAuth, 5xx, throttling → [`SourceError::Unavailable`];
//! a token Google does not know (400/404/410), a group without a Play
//! subscription, a package not configured or a token replaced by one storehook
//! has not seen → [`SourceError::Refused`].

use super::api::{Fetched, PlayApi};
use super::links::{Lineage, LinkStore};
use super::model::{
    DeveloperNotification, PurchaseToken, SubscriptionNotification, SubscriptionPurchaseV2,
};
use super::translate::{
    Decoded, PlayState, Push, SubscriptionState, is_replaced, primary, rfc3339, translate,
};
use super::{PlayStoreConfig, PlayStoreEndpoint, playstore_config};
use crate::clock::Clock;
use crate::config::{ConfigError, Lookup};
use crate::event::{Event, EventType, Store, SubscriptionStatus, Timestamp};
use crate::state::GroupState;
use crate::sweep::{SOURCE_SWEEPER, SourceError, StatusSource, sweep_event_id};
use async_trait::async_trait;
use std::sync::Arc;

/// The sweeper's Google Play [`StatusSource`].
#[derive(Debug, Clone)]
pub struct PlayStatusSource {
    endpoint: Arc<PlayStoreEndpoint>,
}

impl PlayStatusSource {
    /// A source on `endpoint`; `None` when it has no Play Developer API key.
    pub fn new(endpoint: Arc<PlayStoreEndpoint>) -> Option<Self> {
        endpoint.api()?;
        Some(Self { endpoint })
    }

    /// A source from the `PLAY_*` settings (see [`playstore_config`]); `Ok(None)`
    /// without `PLAY_PACKAGE_NAMES` or `PLAY_SERVICE_ACCOUNT_JSON`.
    pub fn from_settings(
        settings: &impl Lookup,
        links: Arc<dyn LinkStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, ConfigError> {
        if settings.get("PLAY_PACKAGE_NAMES").is_none()
            || settings.get("PLAY_SERVICE_ACCOUNT_JSON").is_none()
        {
            return Ok(None);
        }
        let config: PlayStoreConfig = playstore_config(settings, false)?;
        let endpoint = PlayStoreEndpoint::new(config, links, clock)?;
        Ok(Self::new(Arc::new(endpoint)))
    }

    fn api(&self) -> Result<&PlayApi, SourceError> {
        self.endpoint
            .api()
            .ok_or_else(|| SourceError::Refused("the Play Developer API is not configured".into()))
    }
}

/// What the answer implies, given the snapshot.
fn implied(
    p: &SubscriptionPurchaseV2,
    previous: &crate::event::Subscription,
    now: Timestamp,
) -> Option<(i64, EventType)> {
    let expiry = primary(p).and_then(|li| rfc3339(li.expiry_time.as_deref()));
    let later = match (expiry, previous.expires_at) {
        (Some(new), Some(old)) => new > old,
        (Some(_), None) => true,
        _ => false,
    };
    let state = p.subscription_state.as_deref();
    use SubscriptionStatus as S;
    match state {
        Some("SUBSCRIPTION_STATE_ACTIVE") if later => Some((2, EventType::SubscriptionRenewed)),
        Some("SUBSCRIPTION_STATE_CANCELED") if later && expiry.is_some_and(|x| x > now) => {
            Some((2, EventType::SubscriptionRenewed))
        }
        Some("SUBSCRIPTION_STATE_IN_GRACE_PERIOD") if previous.status != S::InGracePeriod => {
            Some((6, EventType::GracePeriodStarted))
        }
        Some("SUBSCRIPTION_STATE_ON_HOLD")
            if !matches!(previous.status, S::OnHold | S::InBillingRetry) =>
        {
            Some((5, EventType::BillingRetryStarted))
        }
        Some("SUBSCRIPTION_STATE_EXPIRED") if previous.status != S::Expired => {
            Some((13, EventType::SubscriptionExpired))
        }
        Some("SUBSCRIPTION_STATE_CANCELED")
            if expiry.is_some_and(|x| x <= now) && previous.status != S::Expired =>
        {
            Some((13, EventType::SubscriptionExpired))
        }
        _ => None,
    }
}

#[async_trait]
impl StatusSource for PlayStatusSource {
    fn store(&self) -> Store {
        Store::GooglePlay
    }

    async fn refresh(
        &self,
        group_key: &str,
        state: &GroupState,
        now: Timestamp,
    ) -> Result<Vec<Event>, SourceError> {
        let Some(previous) = state.subscription.as_ref() else {
            return Err(SourceError::Refused("the group has no subscription".into()));
        };
        let package = match &state.origin {
            Some(o) if o.store == Store::GooglePlay => o.app_id.clone(),
            Some(_) => return Err(SourceError::Refused("not a Google Play group".into())),
            None => return Err(SourceError::Refused("the group has no origin".into())),
        };
        let config = self.endpoint.config();
        if !config.accepts(&package) {
            return Err(SourceError::Refused(format!(
                "packageName {package:?} is not in PLAY_PACKAGE_NAMES"
            )));
        }
        let lineage = Lineage {
            subscription_id: previous.id.clone(),
            first_token: PurchaseToken::new(previous.store_subscription_id.clone()),
        };
        let token = match self
            .endpoint
            .links
            .latest(&lineage.subscription_id)
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?
        {
            Some(t) => t,
            None => lineage.first_token.clone(),
        };
        super::api::path_segment("purchaseToken", token.as_str()).map_err(SourceError::Refused)?;
        let (purchase, json) = match self
            .api()?
            .subscription(&package, &token)
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?
        {
            Fetched::Found { value, json } => (value, json),
            Fetched::NotFound(reason) => return Err(SourceError::Refused(reason)),
        };
        if is_replaced(&purchase) {
            tracing::warn!(token = %token.fingerprint(), "the newest token storehook knows was replaced: the sweeper waits for the new token's notification");
            return Err(SourceError::Refused(
                "the subscription continues under a purchase token storehook has not seen".into(),
            ));
        }
        let Some((notification_type, kind)) = implied(&purchase, previous, now) else {
            return Ok(vec![]);
        };
        let expiry = primary(&purchase).and_then(|li| rfc3339(li.expiry_time.as_deref()));
        let occurred_at = match kind {
            EventType::SubscriptionRenewed | EventType::GracePeriodStarted => {
                previous.expires_at.or(expiry)
            }
            _ => expiry.or(previous.expires_at),
        }
        .ok_or_else(|| SourceError::Refused("the answer has no expiryTime".into()))?;
        // Google gives no later time (an expiry after an account hold keeps the
        // hold's expiryTime): never before the group's last applied event, so
        // the swept event is not taken as out of order.
        let occurred_at = match state
            .applied_at
            .and_then(|a| Timestamp::from_millis(a.millis() + 1))
        {
            Some(after) if after > occurred_at => after,
            _ => occurred_at,
        };
        let api_state = purchase
            .subscription_state
            .clone()
            .unwrap_or_else(|| "SUBSCRIPTION_STATE_UNSPECIFIED".into());
        let order = primary(&purchase)
            .and_then(|li| li.latest_successful_order_id.clone())
            .or_else(|| purchase.latest_order_id.clone())
            .unwrap_or_default();
        let expiry_ms = expiry.map_or_else(String::new, |x| x.millis().to_string());
        let id = sweep_event_id(group_key, kind.as_str(), &[&api_state, &order, &expiry_ms]);
        let push = Push {
            message_id: id.0.clone(),
            publish_time_ms: None,
            notification: Ok(Decoded {
                notification: DeveloperNotification {
                    version: None,
                    package_name: package,
                    event_time_millis: Some(occurred_at.min(now).millis()),
                    subscription_notification: Some(SubscriptionNotification {
                        version: None,
                        notification_type: Some(notification_type),
                        purchase_token: token,
                        subscription_id: None,
                    }),
                    one_time_product_notification: None,
                    voided_purchase_notification: None,
                    pending_refund_review_notification: None,
                    test_notification: None,
                },
                json: None,
            }),
        };
        let st = PlayState::Subscription(Box::new(SubscriptionState {
            purchase,
            json,
            lineage,
            previous: None,
        }));
        let mut events = translate(&push, &st, config, now);
        for e in &mut events {
            e.id = id.clone();
            e.details.source = Some(SOURCE_SWEEPER.to_owned());
            e.store_notification.kind = api_state.clone();
            e.store_notification.subtype = None;
            e.store_notification.id = id.0.clone();
        }
        Ok(events)
    }
}
