//! Purchase-token lineages: one storehook subscription across Google Play's
//! `linkedPurchaseToken` chains (upgrades, downgrades, re-signups, prepaid
//! top-ups each mint a new purchase token that points at the previous one).
//!
//! The [`LinkStore`] port maps every purchase token storehook has seen to its
//! [`Lineage`]: the storehook subscription id and the first purchase token of
//! the chain (the event's `store_subscription_id`). [`MemoryLinkStore`] is the
//! in-memory twin; in AWS the adapter keeps `LINK#GOOGLE_PLAY#<token>` items
//! (see [`LinkStore`]).

use crate::event::{Store, SubscriptionId};
use crate::stores::playstore::model::PurchaseToken;
use async_trait::async_trait;
use std::fmt::Debug;

/// The subscription a purchase token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// storehook's stable subscription id.
    pub subscription_id: SubscriptionId,
    /// The first purchase token of the chain (the event's `store_subscription_id`).
    pub first_token: PurchaseToken,
}

impl Lineage {
    /// The lineage that starts with `first_token`: its id is derived from the
    /// token alone, so every process computes the same id without coordination.
    pub fn rooted_at(first_token: &PurchaseToken) -> Self {
        Self {
            subscription_id: SubscriptionId::derive(&[
                Store::GooglePlay.as_str(),
                first_token.as_str(),
            ]),
            first_token: first_token.clone(),
        }
    }
}

/// The link store could not be read or written (retryable: answer 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("link store unavailable: {0}")]
pub struct LinkError(pub String);

/// Maps purchase tokens to their lineage.
///
/// Contract for adapters (the DynamoDB one in particular):
/// - `resolve(token)`: a consistent read of the token's item; `Ok(None)` when absent.
/// - `link(token, lineage)`: **insert if absent, first writer wins**, and return the
///   lineage now stored for the token (the existing one when the token was already
///   linked). Linking a token to the lineage it already has is a no-op. Links are
///   never updated or deleted: a token belongs to one subscription forever.
/// - Errors are transient (`LinkError`): the push is answered 503 and Pub/Sub retries.
#[async_trait]
pub trait LinkStore: Send + Sync + Debug {
    /// The lineage `purchase_token` was linked to, if any.
    async fn resolve(&self, purchase_token: &PurchaseToken) -> Result<Option<Lineage>, LinkError>;

    /// Links `purchase_token` to `lineage` unless it is linked already; returns the
    /// lineage stored for the token afterwards.
    async fn link(
        &self,
        purchase_token: &PurchaseToken,
        lineage: &Lineage,
    ) -> Result<Lineage, LinkError>;

    /// The newest purchase token recorded for `subscription_id` (the one the
    /// sweeper asks `subscriptionsv2.get` about). Default: none recorded (an
    /// adapter without it; the sweeper then asks about the first token).
    async fn latest(
        &self,
        _subscription_id: &SubscriptionId,
    ) -> Result<Option<PurchaseToken>, LinkError> {
        Ok(None)
    }

    /// Records `purchase_token`, a live (not replaced) purchase of
    /// `subscription_id` started at `started_ms`, as its newest token unless
    /// a token that started later is recorded. Default: records nothing.
    async fn record_latest(
        &self,
        _subscription_id: &SubscriptionId,
        _purchase_token: &PurchaseToken,
        _started_ms: i64,
    ) -> Result<(), LinkError> {
        Ok(())
    }
}

/// The lineage of `token`, linking it (and its `linked` predecessor when that one
/// is new too) so that later notifications resolve to the same subscription.
///
/// 1. `token` already linked: its lineage.
/// 2. else, with a `linkedPurchaseToken`: the predecessor's lineage, or a lineage
///    rooted at the predecessor when storehook never saw it (deployed later).
/// 3. else: a new lineage rooted at `token`.
pub async fn lineage_of(
    links: &dyn LinkStore,
    token: &PurchaseToken,
    linked: Option<&PurchaseToken>,
) -> Result<Lineage, LinkError> {
    if let Some(known) = links.resolve(token).await? {
        return Ok(known);
    }
    let candidate = match linked.filter(|l| *l != token) {
        Some(previous) => match links.resolve(previous).await? {
            Some(l) => l,
            None => links.link(previous, &Lineage::rooted_at(previous)).await?,
        },
        None => Lineage::rooted_at(token),
    };
    links.link(token, &candidate).await
}

mod memory;
pub use memory::MemoryLinkStore;
#[cfg(feature = "aws")]
pub mod dynamo;
pub mod redb;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> PurchaseToken {
        PurchaseToken::new(s)
    }

    #[tokio::test]
    async fn a_chain_keeps_one_subscription_id() {
        // GIVEN a purchase, an upgrade linked to it, and a re-signup linked to the upgrade
        let links = MemoryLinkStore::new();
        let first = lineage_of(&links, &t("A"), None).await.unwrap();
        let upgrade = lineage_of(&links, &t("B"), Some(&t("A"))).await.unwrap();
        let again = lineage_of(&links, &t("C"), Some(&t("B"))).await.unwrap();
        // THEN all share the first token's lineage
        assert_eq!(first, Lineage::rooted_at(&t("A")));
        assert_eq!(upgrade, first);
        assert_eq!(again, first);
        assert_eq!(links.len(), 3);
        // AND a redelivery resolves the same way
        assert_eq!(
            lineage_of(&links, &t("B"), Some(&t("A"))).await.unwrap(),
            first
        );
    }

    #[tokio::test]
    async fn an_unseen_predecessor_becomes_the_root_and_later_resolves_to_it() {
        let links = MemoryLinkStore::new();
        let b = lineage_of(&links, &t("B"), Some(&t("A"))).await.unwrap();
        assert_eq!(b.first_token, t("A"));
        // the predecessor's own (late) notification joins the same lineage
        assert_eq!(lineage_of(&links, &t("A"), None).await.unwrap(), b);
    }

    #[tokio::test]
    async fn a_bounded_store_stays_bounded() {
        let links = MemoryLinkStore::bounded(2);
        for i in 0..5 {
            lineage_of(&links, &t(&format!("T{i}")), None)
                .await
                .unwrap();
            assert!(links.len() <= 2);
        }
    }

    #[tokio::test]
    async fn the_latest_token_is_the_one_started_last() {
        let links = MemoryLinkStore::new();
        let sub = Lineage::rooted_at(&t("A")).subscription_id;
        assert_eq!(links.latest(&sub).await.unwrap(), None);
        links.record_latest(&sub, &t("B"), 200).await.unwrap();
        links.record_latest(&sub, &t("A"), 100).await.unwrap();
        assert_eq!(links.latest(&sub).await.unwrap(), Some(t("B")));
        links.record_latest(&sub, &t("C"), 300).await.unwrap();
        assert_eq!(links.latest(&sub).await.unwrap(), Some(t("C")));
    }

    #[tokio::test]
    async fn first_writer_wins_and_failures_surface() {
        let links = MemoryLinkStore::new();
        let a = Lineage::rooted_at(&t("A"));
        let x = Lineage::rooted_at(&t("X"));
        assert_eq!(links.link(&t("T"), &a).await.unwrap(), a);
        assert_eq!(links.link(&t("T"), &x).await.unwrap(), a);
        links.fail_with(Some(LinkError("throttled".into())));
        assert!(lineage_of(&links, &t("Z"), None).await.is_err());
    }
}
