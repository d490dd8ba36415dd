//! The `linkedPurchaseToken` lineage walk: when neither a purchase token nor
//! its predecessor is known to the [`LinkStore`] (a fresh deployment after
//! several upgrades, re-signups or top-ups), follow `linkedPurchaseToken`
//! through `subscriptionsv2.get` back to the first token of the chain, so the
//! subscription id and `store_subscription_id` are those of the first token
//! (docs/events.md), then record every token reached.
//!
//! Bounded: at most [`MAX_LINEAGE_DEPTH`] API calls per walk. A loop in the
//! links, the bound, a predecessor Google no longer knows (404/410, 60 days
//! after its expiry) or one that cannot be a URL segment end the walk; the
//! oldest token reached is then the root. Logs name tokens only by their
//! fingerprint.

use super::api::{self, ApiError, Fetched, PlayApi};
use super::links::{Lineage, LinkError, LinkStore};
use super::model::{PurchaseToken, SubscriptionPurchaseV2};

/// Most predecessors read from the API in one walk.
pub const MAX_LINEAGE_DEPTH: usize = 10;

/// Why a walk could not finish (both retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// The Play Developer API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The link store failed.
    #[error(transparent)]
    Links(#[from] LinkError),
}

/// The result of [`walk_lineage`].
#[derive(Debug, Clone)]
pub struct Walked {
    /// The lineage now stored for the token.
    pub lineage: Lineage,
    /// The immediate predecessor as the API answered it, when the walk read it
    /// (the caller need not ask again).
    pub predecessor: Option<Fetched<SubscriptionPurchaseV2>>,
    /// Predecessors read from the API.
    pub api_calls: usize,
}

/// The lineage of `token` (whose purchase links to `linked`): the stored one
/// when `token` is known; else the walk back through `linkedPurchaseToken`
/// until a known token (its lineage), the first token of the chain, a loop or
/// the bound. Every token reached is linked, oldest first (first writer wins,
/// so concurrent walks agree: the root decides the id).
pub async fn walk_lineage(
    api: &PlayApi,
    links: &dyn LinkStore,
    package: &str,
    token: &PurchaseToken,
    linked: Option<&PurchaseToken>,
) -> Result<Walked, WalkError> {
    if let Some(known) = links.resolve(token).await? {
        return Ok(Walked {
            lineage: known,
            predecessor: None,
            api_calls: 0,
        });
    }
    let mut chain = vec![token.clone()];
    let mut next = linked.filter(|l| *l != token).cloned();
    let mut known = None;
    let mut predecessor = None;
    let mut api_calls = 0;
    while let Some(previous) = next.take() {
        if chain.contains(&previous) {
            tracing::warn!(
                token = %token.fingerprint(),
                depth = chain.len() - 1,
                "linkedPurchaseToken chain loops: the oldest token reached is taken as the first"
            );
            break;
        }
        if let Some(l) = links.resolve(&previous).await? {
            known = Some(l);
            break;
        }
        if api_calls >= MAX_LINEAGE_DEPTH {
            tracing::warn!(
                token = %token.fingerprint(),
                depth = api_calls,
                "linkedPurchaseToken chain longer than the walk's bound: the oldest token reached is taken as the first"
            );
            break;
        }
        chain.push(previous.clone());
        if api::path_segment("linkedPurchaseToken", previous.as_str()).is_err() {
            break;
        }
        api_calls += 1;
        let fetched = api.subscription(package, &previous).await?;
        if let Fetched::Found { value, .. } = &fetched {
            next = value
                .linked_purchase_token
                .clone()
                .filter(|l| *l != previous);
        }
        if predecessor.is_none() {
            predecessor = Some(fetched);
        }
    }
    let root = chain.last().unwrap_or(token);
    let mut lineage = known.unwrap_or_else(|| Lineage::rooted_at(root));
    for t in chain.iter().rev() {
        lineage = links.link(t, &lineage).await?;
    }
    Ok(Walked {
        lineage,
        predecessor,
        api_calls,
    })
}
