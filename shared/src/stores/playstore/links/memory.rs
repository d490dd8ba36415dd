//! The in-memory Play link store.

use super::{Lineage, LinkError, LinkStore};
use crate::event::SubscriptionId;
use crate::stores::playstore::model::PurchaseToken;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// In-memory [`LinkStore`] (tests, the local server, the CLI; a Lambda
/// instance until the DynamoDB adapter is wired).
#[derive(Debug, Default)]
pub struct MemoryLinkStore {
    links: Mutex<HashMap<PurchaseToken, Lineage>>,
    latest: Mutex<HashMap<SubscriptionId, (PurchaseToken, i64)>>,
    fail: Mutex<Option<LinkError>>,
    capacity: Option<usize>,
}

impl MemoryLinkStore {
    /// An empty, unbounded store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that forgets everything once it holds `capacity` tokens
    /// (bounded memory in long-lived processes; a forgotten token is re-linked
    /// from its `linkedPurchaseToken` on its next notification).
    pub fn bounded(capacity: usize) -> Self {
        Self {
            capacity: Some(capacity.max(1)),
            ..Self::default()
        }
    }

    /// Number of tokens linked.
    pub fn len(&self) -> usize {
        self.links.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Whether nothing is linked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every following call fail with `err` (None: succeed again).
    pub fn fail_with(&self, err: Option<LinkError>) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = err;
    }

    fn check(&self) -> Result<(), LinkError> {
        match self.fail.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl LinkStore for MemoryLinkStore {
    async fn resolve(&self, purchase_token: &PurchaseToken) -> Result<Option<Lineage>, LinkError> {
        self.check()?;
        Ok(self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(purchase_token)
            .cloned())
    }

    async fn link(
        &self,
        purchase_token: &PurchaseToken,
        lineage: &Lineage,
    ) -> Result<Lineage, LinkError> {
        self.check()?;
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(capacity) = self.capacity
            && links.len() >= capacity
            && !links.contains_key(purchase_token)
        {
            links.clear();
        }
        Ok(links
            .entry(purchase_token.clone())
            .or_insert_with(|| lineage.clone())
            .clone())
    }

    async fn latest(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Option<PurchaseToken>, LinkError> {
        self.check()?;
        Ok(self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(subscription_id)
            .map(|(t, _)| t.clone()))
    }

    async fn record_latest(
        &self,
        subscription_id: &SubscriptionId,
        purchase_token: &PurchaseToken,
        started_ms: i64,
    ) -> Result<(), LinkError> {
        self.check()?;
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(capacity) = self.capacity
            && latest.len() >= capacity
            && !latest.contains_key(subscription_id)
        {
            latest.clear();
        }
        let newer = latest
            .get(subscription_id)
            .is_none_or(|(_, at)| *at <= started_ms);
        if newer {
            latest.insert(
                subscription_id.clone(),
                (purchase_token.clone(), started_ms),
            );
        }
        Ok(())
    }
}
