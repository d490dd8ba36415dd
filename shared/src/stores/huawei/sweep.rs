//! [`HuaweiStatusSource`]: the expiry sweeper's Huawei source. Huawei sends
//! nothing when a subscription simply lapses; the sweeper asks the
//! subscription status API (`/sub/applications/v2/purchases/get`, with the
//! purchase token the endpoint recorded for the subscription, see
//! [`super::Huawei::with_token_store`]) and verifies the signed receipt of the
//! answer exactly as the endpoint does (`dataSignature` with the IAP public
//! key, strict JSON, the same subscription, a configured app). What the
//! receipt implies, compared with the group's snapshot:
//!
//! | receipt | event |
//! |---|---|
//! | `expirationDate` later than the snapshot's and still ahead, valid | `SUBSCRIPTION_RENEWED` (as RENEWAL_RECURRING) |
//! | `graceExpirationTime` ahead (snapshot not in grace) | `GRACE_PERIOD_STARTED` (as IN_GRACE_PERIOD) |
//! | expired with `retryFlag` 1 (snapshot not on hold / in retry) | `BILLING_RETRY_STARTED` (as ON_HOLD) |
//! | expired (snapshot neither expired nor revoked) | `SUBSCRIPTION_EXPIRED` |
//! | anything else | nothing (`Ok(vec![])`) |
//!
//! The snapshot comes from the receipt through the Huawei translator.
//! `occurred_at` comes from the signed receipt: a renewal's `purchaseTime`
//! (the new period's start), a grace period's or an expiry's
//! `expirationDate`, an account hold's `graceExpirationTime` (else
//! `expirationDate`); never after `now` and never before the group's last
//! applied event (+1 ms). Ids: [`sweep_event_id`] over the receipt's order id,
//! expiry and the event type; `details.source = "sweeper"`.
//!
//! Errors: network, OAuth, HTTP status → [`SourceError::Unavailable`]; a
//! `responseCode` other than 0, an unsigned, malformed or mismatching answer,
//! a group without a recorded purchase token → [`SourceError::Refused`].

use super::api::ApiError;
use super::model::{InAppPurchaseData, Opaque, StatusUpdateNotification};
use super::translate;
use super::verify::SignatureAlgorithm;
use super::{BodyVersion, Huawei, HuaweiError, ReceiptSource, VerifiedSubscription, huawei_config};
use crate::clock::Clock;
use crate::config::{ConfigError, Lookup};
use crate::event::{Event, EventType, Store, SubscriptionStatus, Timestamp};
use crate::state::GroupState;
use crate::stores::playstore::links::LinkStore;
use crate::sweep::{SOURCE_SWEEPER, SourceError, StatusSource, sweep_event_id};
use async_trait::async_trait;
use std::sync::Arc;

/// The sweeper's Huawei [`StatusSource`].
#[derive(Debug, Clone)]
pub struct HuaweiStatusSource {
    huawei: Arc<Huawei>,
    tokens: Arc<dyn LinkStore>,
}

impl HuaweiStatusSource {
    /// A source on `huawei` reading purchase tokens from `tokens` (the store
    /// the Huawei endpoint records them in); `None` without API credentials.
    pub fn new(huawei: Arc<Huawei>, tokens: Arc<dyn LinkStore>) -> Option<Self> {
        huawei.api()?;
        Some(Self { huawei, tokens })
    }

    /// A source from the `HUAWEI_*` settings; `Ok(None)` without
    /// `HUAWEI_PUBLIC_KEY` or without API credentials (`HUAWEI_CLIENT_ID` …).
    pub fn from_settings(
        settings: &impl Lookup,
        tokens: Arc<dyn LinkStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, ConfigError> {
        if settings.get("HUAWEI_PUBLIC_KEY").is_none() {
            return Ok(None);
        }
        let config = huawei_config(settings, false)?;
        if config.api.is_none() {
            return Ok(None);
        }
        Ok(Self::new(Arc::new(Huawei::new(config, clock)?), tokens))
    }
}

fn source_error(e: HuaweiError) -> SourceError {
    match e {
        HuaweiError::Api(ApiError::Unavailable(why)) => SourceError::Unavailable(why),
        other => SourceError::Refused(other.to_string()),
    }
}

/// What the receipt implies, given the snapshot: (notification type, event, occurred_at ms).
fn implied(
    r: &InAppPurchaseData,
    previous: &crate::event::Subscription,
    now: Timestamp,
) -> Option<(Option<i64>, EventType, i64)> {
    use SubscriptionStatus as S;
    let now_ms = now.millis();
    let expiry = r.expiration_date?;
    let grace = r.grace_expiration_time;
    let old = previous.expires_at.map(|t| t.millis());
    let valid = r.sub_isvalid != Some(false);
    if r.purchase_state == Some(2) || (r.cancel_time.is_some() && !valid) {
        // Revocations come with Huawei's CANCEL notification; not guessed here.
        return None;
    }
    if expiry > now_ms {
        let later = old.is_none_or(|o| expiry > o);
        return (later && valid).then(|| {
            let at = r.purchased_at_ms().or(old).unwrap_or(expiry);
            (Some(7), EventType::SubscriptionRenewed, at)
        });
    }
    if grace.is_some_and(|g| g > now_ms) {
        return (previous.status != S::InGracePeriod).then_some((
            Some(8),
            EventType::GracePeriodStarted,
            expiry,
        ));
    }
    if r.retry_flag == Some(1) {
        return (!matches!(previous.status, S::OnHold | S::InBillingRetry)).then(|| {
            (
                Some(9),
                EventType::BillingRetryStarted,
                grace.unwrap_or(expiry),
            )
        });
    }
    (!matches!(previous.status, S::Expired | S::Revoked)).then_some((
        None,
        EventType::SubscriptionExpired,
        expiry,
    ))
}

#[async_trait]
impl StatusSource for HuaweiStatusSource {
    fn store(&self) -> Store {
        Store::HuaweiAppGallery
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
        let origin = match &state.origin {
            Some(o) if o.store == Store::HuaweiAppGallery => o,
            Some(_) => return Err(SourceError::Refused("not a Huawei group".into())),
            None => return Err(SourceError::Refused("the group has no origin".into())),
        };
        let api = self
            .huawei
            .api()
            .ok_or_else(|| SourceError::Refused("the Huawei API is not configured".into()))?;
        let token = self
            .tokens
            .latest(&previous.id)
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                SourceError::Refused("no purchase token recorded for this subscription".into())
            })?;
        let subscription_id = previous.store_subscription_id.clone();
        let signed = api
            .subscription(&subscription_id, token.as_str(), false)
            .await
            .map_err(|e| source_error(e.into()))?;
        // Verified exactly as the endpoint verifies the API's answer.
        let (receipt, json) = self
            .huawei
            .verified_receipt(&signed)
            .map_err(source_error)?;
        if let Some(got) = receipt.subscription_id.as_deref()
            && got != subscription_id
        {
            return Err(SourceError::Refused(
                "the receipt is for another subscriptionId".into(),
            ));
        }
        self.huawei
            .check_api_app(receipt.application_id.as_deref())
            .map_err(source_error)?;

        let Some((ntype, kind, at_ms)) = implied(&receipt, previous, now) else {
            return Ok(vec![]);
        };
        let occurred_ms = crate::sweep::occurred_ms(at_ms, state, now);
        let occurred_at = Timestamp::from_millis(occurred_ms).unwrap_or(now);
        let order = receipt.order_id.clone().unwrap_or_default();
        let expiry = receipt
            .expiration_date
            .map_or_else(String::new, |x| x.to_string());
        let id = sweep_event_id(group_key, kind.as_str(), &[&order, &expiry]);

        let v = VerifiedSubscription {
            version: BodyVersion::V2,
            notify_time: None,
            signed: Opaque::new(signed.data.expose()),
            algorithm: SignatureAlgorithm::Sha256WithRsa,
            notification: StatusUpdateNotification {
                notification_type: ntype,
                subscription_id: Some(subscription_id),
                ..StatusUpdateNotification::default()
            },
            receipt: Some(receipt),
            receipt_source: Some(ReceiptSource::StoreApi),
            receipt_error: None,
            app_id: origin.app_id.clone(),
            environment: origin.environment.clone(),
            raw: if self.huawei.config().include_raw {
                serde_json::json!({ "storeApi": json })
            } else {
                serde_json::Value::Null
            },
        };
        let mut events = translate::subscription(&v, self.huawei.config(), now);
        for e in &mut events {
            e.id = id.clone();
            e.kind = kind.clone();
            e.occurred_at = occurred_at;
            e.details.source = Some(SOURCE_SWEEPER.to_owned());
            e.store_notification.kind = ntype
                .and_then(translate::type_name)
                .unwrap_or("SUBSCRIPTION_STATUS")
                .to_owned();
            e.store_notification.id = id.0.clone();
            if kind == EventType::SubscriptionExpired
                && let Some(s) = e.subscription.as_mut()
            {
                s.status = SubscriptionStatus::Expired;
            }
        }
        Ok(events)
    }
}
