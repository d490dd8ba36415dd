//! [`AmazonStatusSource`]: the expiry sweeper's Amazon source. Amazon may send
//! nothing when a subscription simply lapses (or storehook missed the
//! renewal); the sweeper asks the Receipt Verification Service about the
//! group's receipt (`subscription.store_subscription_id`, for the snapshot's
//! `app_user_id`) and translates the answer with the notification translator.
//!
//! | RVS answer, compared with the snapshot | event |
//! |---|---|
//! | the period ends later than the snapshot's and is still ahead | `SUBSCRIPTION_RENEWED` (as SUBSCRIPTION_RENEWED) |
//! | `gracePeriodEndDate` ahead (snapshot not in grace) | `GRACE_PERIOD_STARTED` (as SUBSCRIPTION_IN_GRACE_PERIOD) |
//! | ended (snapshot neither expired nor revoked) | `SUBSCRIPTION_EXPIRED` |
//! | 410 no longer valid (snapshot not revoked) | `SUBSCRIPTION_REVOKED` |
//! | anything else | nothing (`Ok(vec![])`) |
//!
//! `occurred_at`: a renewal at the previous period's end, a grace period or an
//! expiry at the RVS end date; never after `now` and never before the group's
//! last applied event (+1 ms). Ids: [`sweep_event_id`] over the receipt, the
//! end date and the type; `details.source = "sweeper"`.
//!
//! Errors: RVS unreachable, 429/5xx, a wrong shared key → [`SourceError::Unavailable`];
//! a group without a receipt or user, RVS not confirming the receipt (400/497)
//! → [`SourceError::Refused`].

use super::rvs::{Answer, Receipt};
use super::{Amazon, Confirmed, Rtn, VerifiedNotification, amazon_config, translate};
use crate::clock::Clock;
use crate::config::{ConfigError, Lookup};
use crate::event::{Event, EventType, Store, Subscription, SubscriptionStatus, Timestamp};
use crate::state::GroupState;
use crate::sweep::{SOURCE_SWEEPER, SourceError, StatusSource, sweep_event_id};
use async_trait::async_trait;
use std::sync::Arc;

/// The sweeper's Amazon [`StatusSource`].
#[derive(Debug, Clone)]
pub struct AmazonStatusSource {
    amazon: Arc<Amazon>,
}

impl AmazonStatusSource {
    /// A source on `amazon`; `None` without RVS.
    pub fn new(amazon: Arc<Amazon>) -> Option<Self> {
        amazon.rvs.as_ref()?;
        Some(Self { amazon })
    }

    /// A source from the `AMAZON_*` settings; `Ok(None)` without the RVS shared key.
    pub fn from_settings(
        settings: &impl Lookup,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, ConfigError> {
        if settings.get(super::RVS_SHARED_SECRET.inline).is_none() {
            return Ok(None);
        }
        let config = amazon_config(settings, false)?;
        Ok(Self::new(Arc::new(Amazon::new(config, clock)?)))
    }
}

/// What the answer implies: (RTN type it reads as, event, occurred_at ms).
fn implied(
    answer: &Answer,
    previous: &Subscription,
    now: Timestamp,
) -> Option<(&'static str, EventType, i64)> {
    use SubscriptionStatus as S;
    let now_ms = now.millis();
    let old = previous.expires_at.map(|t| t.millis());
    let r: &Receipt = match answer {
        Answer::Valid(r) => r,
        Answer::NoLongerValid => {
            return (previous.status != S::Revoked).then(|| {
                (
                    "SUBSCRIPTION_CANCELLED",
                    EventType::SubscriptionRevoked,
                    old.unwrap_or(now_ms),
                )
            });
        }
        Answer::NotConfirmed(_) => return None,
    };
    if r.product_type.as_deref() != Some("SUBSCRIPTION") {
        return None;
    }
    let end = r.cancel_date.or(r.renewal_date)?;
    if end > now_ms {
        return old.is_none_or(|o| end > o).then(|| {
            (
                "SUBSCRIPTION_RENEWED",
                EventType::SubscriptionRenewed,
                old.unwrap_or(now_ms),
            )
        });
    }
    if r.grace_period_end_date.is_some_and(|g| g > now_ms) {
        return (previous.status != S::InGracePeriod).then_some((
            "SUBSCRIPTION_IN_GRACE_PERIOD",
            EventType::GracePeriodStarted,
            end,
        ));
    }
    (!matches!(previous.status, S::Expired | S::Revoked)).then_some((
        "SUBSCRIPTION_EXPIRED",
        EventType::SubscriptionExpired,
        end,
    ))
}

#[async_trait]
impl StatusSource for AmazonStatusSource {
    fn store(&self) -> Store {
        Store::AmazonAppstore
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
            Some(o) if o.store == Store::AmazonAppstore => o,
            Some(_) => return Err(SourceError::Refused("not an Amazon group".into())),
            None => return Err(SourceError::Refused("the group has no origin".into())),
        };
        let user = state
            .app_user_id
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| SourceError::Refused("the group has no Amazon user id".into()))?;
        let rvs = self
            .amazon
            .rvs
            .as_ref()
            .ok_or_else(|| SourceError::Refused("RVS is not configured".into()))?;
        let receipt = previous.store_subscription_id.clone();
        let answer = rvs
            .verify(user, &receipt)
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        if let Answer::NotConfirmed(status) = answer {
            return Err(SourceError::Refused(format!(
                "RVS does not confirm the receipt (HTTP {status})"
            )));
        }
        let Some((rtn_type, kind, at_ms)) = implied(&answer, previous, now) else {
            return Ok(vec![]);
        };
        let occurred_ms = crate::sweep::occurred_ms(at_ms, state, now);
        let end = match &answer {
            Answer::Valid(r) => r.cancel_date.or(r.renewal_date).unwrap_or_default(),
            _ => 0,
        };
        let id = sweep_event_id(group_key, kind.as_str(), &[&receipt, &end.to_string()]);
        let rtn = Rtn {
            app_package_name: Some(origin.app_id.clone()),
            notification_type: Some(rtn_type.to_owned()),
            app_user_id: Some(user.to_owned()),
            receipt_id: Some(receipt.clone()),
            related_receipts: None,
            timestamp: Some(occurred_ms),
            beta_product_transaction: None,
        };
        let v = VerifiedNotification {
            message_id: id.0.clone(),
            topic_arn: String::new(),
            sns_timestamp_ms: None,
            message: serde_json::to_string(&rtn).unwrap_or_default(),
            rtn: Ok(rtn),
        };
        let confirmed = Confirmed {
            receipt: Some(answer),
            replaced: None,
        };
        let mut events = translate::notification(&v, &confirmed, self.amazon.config(), now);
        events.truncate(1);
        for e in &mut events {
            e.id = id.clone();
            e.kind = kind.clone();
            e.environment = origin.environment.clone();
            e.details.source = Some(SOURCE_SWEEPER.to_owned());
            e.store_notification.kind = rtn_type.to_owned();
            e.store_notification.id = id.0.clone();
            e.raw = None;
            if let Some(s) = e.subscription.as_mut() {
                // The group's subscription, whatever id RVS's receipt derives.
                s.id = previous.id.clone();
                if kind == EventType::SubscriptionExpired {
                    s.status = SubscriptionStatus::Expired;
                }
            }
        }
        Ok(events)
    }
}
