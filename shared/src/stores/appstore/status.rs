//! The sweeper's App Store [`StatusSource`]: Get All Subscription Statuses
//! for the group's subscription (its `originalTransactionId`) in the group's
//! environment, verified like a notification, turned into the events the
//! answer implies with the translator's own building blocks.
//!
//! | Apple's `status` | event (when the snapshot does not already say so) |
//! |---|---|
//! | 1 active, with a later `expiresDate` than the snapshot | `SUBSCRIPTION_RENEWED` (the new expiry) |
//! | 3 billing retry | `BILLING_RETRY_STARTED` |
//! | 4 billing grace period | `GRACE_PERIOD_STARTED` |
//! | 2 expired | `SUBSCRIPTION_EXPIRED` |
//! | 5 revoked | `SUBSCRIPTION_REFUNDED` when the transaction carries a `revocationReason` (a refund), `SUBSCRIPTION_REVOKED` otherwise |
//!
//! `occurred_at` comes from the signed data only: the transaction's
//! `signedDate` (`revocationDate` for a revocation), the renewal info's
//! `signedDate` for retry, grace and expiry. Ids are [`sweep_event_id`] over
//! the signed facts, so a sweep repeated against the same answer is not
//! delivered twice. `store_notification` is `{type: "SUBSCRIPTION_STATUS",
//! subtype: <Apple's status name>, id: <transactionId>}`.

use super::api::{ApiError, AppleApi, LastTransaction, api_settings};
use super::config::AppStoreConfig;
use super::translate::{expiration_reason, refund, status_snapshot, transaction_offer};
use super::verify::JwsVerifier;
use super::{AppleEnvironment, appstore_config};
use crate::clock::Clock;
use crate::config::{ConfigError, Lookup};
use crate::event::*;
use crate::state::GroupState;
use crate::sweep::{SOURCE_SWEEPER, SourceError, StatusSource, sweep_event_id};
use async_trait::async_trait;
use std::sync::Arc;

/// `store_notification.type` of the sweeper's App Store events.
pub const STATUS_KIND: &str = "SUBSCRIPTION_STATUS";

/// Asks Apple what became of a subscription (see the module docs).
#[derive(Debug)]
pub struct AppStoreStatusSource {
    api: AppleApi,
    config: AppStoreConfig,
}

impl AppStoreStatusSource {
    /// A source over `api`; `config` gives the refund policy.
    pub fn new(api: AppleApi, config: AppStoreConfig) -> Self {
        Self { api, config }
    }

    /// From the settings ([`api_settings`], the App Store settings for the
    /// refund policy): `Ok(None)` when the App Store Server API is not
    /// configured. `extra_roots`: tests and the CLI's `--trust-root` only.
    pub fn from_settings(
        l: &impl Lookup,
        extra_roots: &[Vec<u8>],
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(settings) = api_settings(l)? else {
            return Ok(None);
        };
        let config = appstore_config(l, false)?;
        let verifier = Arc::new(
            JwsVerifier::new(extra_roots).map_err(|e| ConfigError::TrustRoot(e.to_string()))?,
        );
        Ok(Some(Self::new(
            AppleApi::new(settings, verifier, clock)?,
            config,
        )))
    }
}

fn source_error(e: ApiError) -> SourceError {
    match e {
        // a configuration problem or Apple's trouble: never a reason to give up on the subscription
        ApiError::Unauthorized | ApiError::RateLimited { .. } | ApiError::Unavailable(_) => {
            SourceError::Unavailable(e.to_string())
        }
        ApiError::Refused { .. }
        | ApiError::Malformed(_)
        | ApiError::Verify { .. }
        | ApiError::Mismatch(_) => SourceError::Refused(e.to_string()),
    }
}

fn status_name(status: i32) -> &'static str {
    match status {
        1 => "ACTIVE",
        2 => "EXPIRED",
        3 => "BILLING_RETRY",
        4 => "BILLING_GRACE_PERIOD",
        5 => "REVOKED",
        _ => "UNKNOWN",
    }
}

#[async_trait]
impl StatusSource for AppStoreStatusSource {
    fn store(&self) -> Store {
        Store::AppStore
    }

    async fn refresh(
        &self,
        group_key: &str,
        state: &GroupState,
        now: Timestamp,
    ) -> Result<Vec<Event>, SourceError> {
        let Some(snapshot) = state.subscription.as_ref() else {
            return Err(SourceError::Refused("the group has no subscription".into()));
        };
        let Some(origin) = state.origin.as_ref() else {
            return Err(SourceError::Refused(
                "the group's environment is unknown (state stored before origins were kept)".into(),
            ));
        };
        if origin.store != Store::AppStore {
            return Err(SourceError::Refused(format!(
                "the group is a {} subscription",
                origin.store.as_str()
            )));
        }
        if origin.app_id != self.api.settings().bundle_id {
            return Err(SourceError::Refused(format!(
                "the group belongs to app {:?}, the API key to {:?}",
                origin.app_id,
                self.api.settings().bundle_id
            )));
        }
        let env = match &origin.environment {
            Environment::Production => AppleEnvironment::Production,
            Environment::Sandbox => AppleEnvironment::Sandbox,
            Environment::Other(e) => {
                return Err(SourceError::Refused(format!(
                    "environment {e:?} has no App Store Server API"
                )));
            }
        };
        let original = snapshot.store_subscription_id.as_str();
        let answer = self
            .api
            .subscription_statuses(env, original)
            .await
            .map_err(source_error)?;
        let Some(last) = answer
            .last_transactions
            .into_iter()
            .find(|t| t.original_transaction_id == original)
        else {
            return Err(SourceError::Refused(
                "Apple's answer has no status for this subscription".into(),
            ));
        };
        Ok(self
            .event(group_key, state, snapshot, origin, &last, now)
            .into_iter()
            .collect())
    }
}

impl AppStoreStatusSource {
    fn event(
        &self,
        group_key: &str,
        state: &GroupState,
        snapshot: &Subscription,
        origin: &crate::state::Origin,
        last: &LastTransaction,
        now: Timestamp,
    ) -> Option<Event> {
        use SubscriptionStatus as S;
        let tx = &last.transaction;
        let renewal = last.renewal.as_ref();
        let tx_id = tx.transaction_id.clone().unwrap_or_default();
        let tx_signed = tx.signed_date.or(tx.purchase_date);
        let renewal_signed = renewal.and_then(|r| r.signed_date).or(tx_signed);
        let expires_ms = tx.expires_date;
        let known = &snapshot.status;
        let mut details = Details {
            source: Some(SOURCE_SWEEPER.to_owned()),
            ..Details::default()
        };
        let (kind, at_ms, facts): (EventType, Option<i64>, Vec<String>) = match last.status {
            1 => {
                let later = match (
                    expires_ms.and_then(Timestamp::from_millis),
                    snapshot.expires_at,
                ) {
                    (Some(new), Some(old)) => new > old,
                    (Some(_), None) => true,
                    _ => false,
                };
                if !later {
                    return None;
                }
                details.offer = transaction_offer(tx);
                (
                    EventType::SubscriptionRenewed,
                    tx_signed,
                    vec![tx_id.clone(), expires_ms.unwrap_or_default().to_string()],
                )
            }
            2 => {
                if *known == S::Expired {
                    return None;
                }
                details.reason = Some(expiration_reason(renewal).to_owned());
                (
                    EventType::SubscriptionExpired,
                    renewal_signed,
                    vec![tx_id.clone(), expires_ms.unwrap_or_default().to_string()],
                )
            }
            3 => {
                if *known == S::InBillingRetry {
                    return None;
                }
                (
                    EventType::BillingRetryStarted,
                    renewal_signed,
                    vec![tx_id.clone(), expires_ms.unwrap_or_default().to_string()],
                )
            }
            4 => {
                let grace = renewal.and_then(|r| r.grace_period_expires_date);
                let grace_at = grace.and_then(Timestamp::from_millis);
                if *known == S::InGracePeriod && snapshot.grace_period_expires_at == grace_at {
                    return None;
                }
                details.grace_period_expires_at = grace_at;
                (
                    EventType::GracePeriodStarted,
                    renewal_signed,
                    vec![tx_id.clone(), grace.unwrap_or_default().to_string()],
                )
            }
            5 => {
                if *known == S::Revoked {
                    return None;
                }
                let kind = if tx.revocation_reason.is_some() {
                    refund(&mut details, tx, &self.config);
                    EventType::SubscriptionRefunded
                } else {
                    EventType::SubscriptionRevoked
                };
                (
                    kind,
                    tx.revocation_date.or(tx_signed),
                    vec![
                        tx_id.clone(),
                        tx.revocation_date.unwrap_or_default().to_string(),
                    ],
                )
            }
            _ => return None,
        };
        // Only signed time: without it there is no event (never the local clock).
        let occurred_at = at_ms.and_then(Timestamp::from_millis)?;
        let parts = status_snapshot(tx, renewal, last.status, occurred_at);
        let mut subscription = parts.subscription;
        if let Some(s) = subscription.as_mut() {
            // the group's own subscription (and group key)
            s.id = snapshot.id.clone();
        }
        let fact_refs: Vec<&str> = facts.iter().map(String::as_str).collect();
        let id = sweep_event_id(group_key, kind.as_str(), &fact_refs);
        Some(Event {
            api_version: API_VERSION,
            id,
            kind,
            occurred_at,
            received_at: now,
            sequence: 0,
            store: Store::AppStore,
            environment: origin.environment.clone(),
            app_id: origin.app_id.clone(),
            app_user_id: parts.app_user_id.or_else(|| state.app_user_id.clone()),
            product: parts.product.or_else(|| state.product.clone()),
            subscription,
            transaction: parts.transaction,
            entitlement: parts.entitlement,
            details,
            store_notification: StoreNotification {
                kind: STATUS_KIND.to_owned(),
                subtype: Some(status_name(last.status).to_owned()),
                id: tx_id,
            },
            raw: None,
            previous_sequence: None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::clock::ManualClock;
    use crate::state::Origin;
    use crate::stores::appstore::api::ApiSettings;
    use crate::stores::appstore::model::TransactionInfo;
    use serde_json::{Value, json};
    use storehook_testkit::apple_api::{ApiKey, FakeAppleApi, status_answer};
    use storehook_testkit::appstore::TestPki;
    use storehook_testkit::appstore::payloads::{BUNDLE_ID, DAY, renewal, transaction};

    const ORIGINAL: &str = "70001";

    struct Setup {
        fake: FakeAppleApi,
        pki: TestPki,
        source: AppStoreStatusSource,
        state: GroupState,
        now: i64,
    }

    fn copy(p: &TestPki) -> TestPki {
        TestPki {
            root_der: p.root_der.clone(),
            intermediate_der: p.intermediate_der.clone(),
            leaf_der: p.leaf_der.clone(),
            leaf_key_pem: p.leaf_key_pem.clone(),
        }
    }

    /// A group whose last known transaction (bought 31 days ago, 30-day
    /// period) expired a day ago, still ACTIVE in the snapshot.
    async fn setup_with_key(key_pem: Option<&str>) -> Setup {
        let pki = TestPki::new();
        let key = ApiKey::generate();
        let fake = FakeAppleApi::start(key.clone(), BUNDLE_ID, copy(&pki)).await;
        let now = chrono::Utc::now().timestamp_millis();
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let settings = ApiSettings::new(
            &key.key_id,
            &key.issuer_id,
            BUNDLE_ID,
            key_pem.unwrap_or(&key.private_key_pem),
        )
        .with_base_url(fake.url());
        let verifier = Arc::new(JwsVerifier::new(std::slice::from_ref(&pki.root_der)).unwrap());
        let api = AppleApi::new(settings, verifier, clock).unwrap();
        let source = AppStoreStatusSource::new(api, AppStoreConfig::default());
        let old: TransactionInfo = serde_json::from_value(transaction(
            ORIGINAL,
            "70001-1",
            "pro.monthly",
            now - 31 * DAY,
            30,
            "Sandbox",
        ))
        .unwrap();
        let snap = status_snapshot(
            &old,
            None,
            1,
            Timestamp::from_millis(now - 31 * DAY).unwrap(),
        );
        let state = GroupState {
            sequence: 2,
            subscription: snap.subscription,
            product: snap.product,
            transaction: snap.transaction,
            origin: Some(Origin {
                store: Store::AppStore,
                environment: Environment::Sandbox,
                app_id: BUNDLE_ID.into(),
            }),
            ..GroupState::default()
        };
        Setup {
            fake,
            pki,
            source,
            state,
            now,
        }
    }

    async fn setup() -> Setup {
        setup_with_key(None).await
    }

    impl Setup {
        fn group(&self) -> String {
            self.state.subscription.as_ref().unwrap().id.0.clone()
        }
        fn answer(&self, status: i64, tx: Value, renewal: Option<Value>) {
            self.fake.set_statuses(
                ORIGINAL,
                status_answer(&self.pki, "Sandbox", BUNDLE_ID, &[(status, tx, renewal)]),
            );
        }
        async fn refresh(&self) -> Result<Vec<Event>, SourceError> {
            let now = Timestamp::from_millis(self.now).unwrap();
            self.source.refresh(&self.group(), &self.state, now).await
        }
        /// The renewal transaction bought a day ago (expires in 29 days).
        fn renewed_tx(&self) -> Value {
            transaction(
                ORIGINAL,
                "70001-2",
                "pro.monthly",
                self.now - DAY,
                30,
                "Sandbox",
            )
        }
        /// The last transaction again, signed now (as Apple answers a status query).
        fn last_tx(&self) -> Value {
            let mut t = transaction(
                ORIGINAL,
                "70001-1",
                "pro.monthly",
                self.now - 31 * DAY,
                30,
                "Sandbox",
            );
            t["signedDate"] = json!(self.now - 1000);
            t
        }
        fn renewal_info(&self, signed: i64) -> Value {
            renewal(ORIGINAL, "pro.monthly", false, signed, "Sandbox")
        }
    }

    fn one(events: Vec<Event>) -> Event {
        assert_eq!(events.len(), 1, "{events:?}");
        events.into_iter().next().unwrap()
    }

    #[tokio::test]
    async fn a_missed_renewal_becomes_subscription_renewed_with_the_new_expiry() {
        let s = setup().await;
        let tx = s.renewed_tx();
        s.answer(
            1,
            tx.clone(),
            Some(renewal(
                ORIGINAL,
                "pro.monthly",
                true,
                s.now - DAY,
                "Sandbox",
            )),
        );
        let e = one(s.refresh().await.unwrap());
        assert_eq!(e.kind, EventType::SubscriptionRenewed);
        let sub = e.subscription.as_ref().unwrap();
        assert_eq!(sub.expires_at.unwrap().millis(), s.now + 29 * DAY);
        assert_eq!(sub.status, SubscriptionStatus::Active);
        assert_eq!(sub.id, s.state.subscription.as_ref().unwrap().id);
        assert_eq!(e.group_key(), s.group());
        assert!(e.entitlement.active);
        assert_eq!(e.details.source.as_deref(), Some("sweeper"));
        // time from the signed transaction, not the clock
        assert_eq!(e.occurred_at.millis(), s.now - DAY);
        assert_eq!(e.received_at.millis(), s.now);
        assert_eq!(e.transaction.as_ref().unwrap().id, "70001-2");
        assert_eq!(e.environment, Environment::Sandbox);
        assert_eq!(e.store_notification.kind, STATUS_KIND);
        // the same answer again: the same id (not delivered twice)
        let again = one(s.refresh().await.unwrap());
        assert_eq!(again.id, e.id);
        assert!(s.fake.refused().is_empty());
    }

    #[tokio::test]
    async fn an_answer_with_nothing_new_yields_no_event() {
        let s = setup().await;
        // active, but the same expiry as the snapshot
        s.answer(1, s.last_tx(), Some(s.renewal_info(s.now - 1000)));
        assert!(s.refresh().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn billing_retry_grace_and_expiry_become_their_events() {
        let s = setup().await;
        let mut r = s.renewal_info(s.now - 500);
        r["isInBillingRetryPeriod"] = json!(true);
        s.answer(3, s.last_tx(), Some(r.clone()));
        let e = one(s.refresh().await.unwrap());
        let retry_id = e.id.clone();
        assert_eq!(e.kind, EventType::BillingRetryStarted);
        assert_eq!(e.occurred_at.millis(), s.now - 500);
        assert_eq!(
            e.subscription.as_ref().unwrap().status,
            SubscriptionStatus::InBillingRetry
        );
        assert!(!e.entitlement.active);

        r["gracePeriodExpiresDate"] = json!(s.now + 3 * DAY);
        s.answer(4, s.last_tx(), Some(r.clone()));
        let e = one(s.refresh().await.unwrap());
        assert_eq!(e.kind, EventType::GracePeriodStarted);
        let grace_id = e.id.clone();
        assert_eq!(
            e.details.grace_period_expires_at.unwrap().millis(),
            s.now + 3 * DAY
        );
        assert!(e.entitlement.active, "in grace until {}", s.now + 3 * DAY);

        let mut r = s.renewal_info(s.now - 200);
        r["expirationIntent"] = json!(1);
        s.answer(2, s.last_tx(), Some(r));
        let e = one(s.refresh().await.unwrap());
        assert_eq!(e.kind, EventType::SubscriptionExpired);
        assert_eq!(e.details.reason.as_deref(), Some("VOLUNTARY"));
        assert_eq!(e.occurred_at.millis(), s.now - 200);
        assert_eq!(
            e.subscription.as_ref().unwrap().status,
            SubscriptionStatus::Expired
        );
        assert!(!e.entitlement.active);
        // each its own id
        assert!(retry_id != grace_id && grace_id != e.id && retry_id != e.id);
    }

    #[tokio::test]
    async fn an_already_expired_snapshot_gets_no_second_expiry() {
        let mut s = setup().await;
        s.state.subscription.as_mut().unwrap().status = SubscriptionStatus::Expired;
        s.answer(2, s.last_tx(), Some(s.renewal_info(s.now - 200)));
        assert!(s.refresh().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_revocation_is_a_refund_when_apple_gives_a_reason_and_a_revoke_otherwise() {
        let s = setup().await;
        let mut t = s.last_tx();
        t["revocationDate"] = json!(s.now - 3 * DAY);
        t["revocationReason"] = json!(1);
        s.answer(5, t.clone(), None);
        let e = one(s.refresh().await.unwrap());
        assert_eq!(e.kind, EventType::SubscriptionRefunded);
        assert_eq!(e.occurred_at.millis(), s.now - 3 * DAY);
        let refund = e.details.refund.as_ref().unwrap();
        assert_eq!(refund.reason.as_deref(), Some("APP_ISSUE"));
        assert!(!e.entitlement.active);
        t.as_object_mut().unwrap().remove("revocationReason");
        s.answer(5, t, None);
        let e = one(s.refresh().await.unwrap());
        assert_eq!(e.kind, EventType::SubscriptionRevoked);
        assert!(e.details.refund.is_none());
    }

    #[tokio::test]
    async fn forged_or_failed_answers_are_errors_never_events() {
        let s = setup().await;
        // forged: signed by an untrusted chain
        let forger = TestPki::new();
        s.fake.set_statuses(
            ORIGINAL,
            status_answer(&forger, "Sandbox", BUNDLE_ID, &[(2, s.last_tx(), None)]),
        );
        let err = s.refresh().await.unwrap_err();
        assert!(
            matches!(err, SourceError::Refused(ref m) if m.contains("signedTransactionInfo")),
            "{err:?}"
        );
        // Apple's trouble: ask again later
        s.fake.push_reply(
            503,
            json!({"errorCode": 5000000, "errorMessage": "An unknown error occurred."}),
        );
        assert!(matches!(
            s.refresh().await.unwrap_err(),
            SourceError::Unavailable(_)
        ));
        s.fake.push_reply(
            429,
            json!({"errorCode": 4290000, "errorMessage": "Rate limit exceeded."}),
        );
        assert!(matches!(
            s.refresh().await.unwrap_err(),
            SourceError::Unavailable(_)
        ));
        // unknown to Apple
        let mut unknown = setup().await;
        unknown
            .state
            .subscription
            .as_mut()
            .unwrap()
            .store_subscription_id = "404404".into();
        assert!(matches!(
            unknown.refresh().await.unwrap_err(),
            SourceError::Refused(_)
        ));
        // a group of another app or store is not asked about
        unknown.state.origin.as_mut().unwrap().app_id = "com.other".into();
        assert!(matches!(
            unknown.refresh().await.unwrap_err(),
            SourceError::Refused(_)
        ));
        assert_eq!(unknown.fake.calls(), 1);
    }

    #[tokio::test]
    async fn a_key_apple_refuses_is_unavailable_not_a_reason_to_expire() {
        let other = ApiKey::generate();
        let s = setup_with_key(Some(&other.private_key_pem)).await;
        s.answer(2, s.last_tx(), None);
        let err = s.refresh().await.unwrap_err();
        assert!(
            matches!(err, SourceError::Unavailable(ref m) if m.contains("401")),
            "{err:?}"
        );
    }

    #[test]
    fn without_api_settings_there_is_no_source() {
        let none = |_: &str| None::<String>;
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(chrono::Utc::now()));
        assert!(
            AppStoreStatusSource::from_settings(&none, &[], clock.clone())
                .unwrap()
                .is_none()
        );
        let key = ApiKey::generate();
        let pem = key.private_key_pem.clone();
        let some = move |k: &str| match k {
            "APPLE_API_KEY_ID" => Some(KEY.to_owned()),
            "APPLE_API_ISSUER_ID" => Some("issuer".to_owned()),
            "APPLE_BUNDLE_ID" => Some(BUNDLE_ID.to_owned()),
            "APPLE_API_PRIVATE_KEY" => Some(pem.clone()),
            _ => None,
        };
        const KEY: &str = "K1";
        let src = AppStoreStatusSource::from_settings(&some, &[], clock)
            .unwrap()
            .unwrap();
        assert_eq!(src.store(), Store::AppStore);
    }
}
