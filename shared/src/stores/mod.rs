//! One module per store: wire models, authentication/verification, a pure
//! translation and the store's configuration; and [`Endpoints`], the one way
//! settings become store endpoints (the Lambdas, `storehook serve` and
//! `storehook translate` alike).

pub mod amazon;
pub mod appstore;
pub mod huawei;
pub mod playstore;

use crate::clock::Clock;
use crate::config::{ConfigError, Lookup};
use crate::ingest::{AppStoreEndpoint, StoreEndpoint};
use crate::sweep::StatusSource;
use amazon::{AmazonEndpoint, amazon_config};
use appstore::{AppStore, appstore_config};
use huawei::{HuaweiEndpoint, huawei_config};
use playstore::links::LinkStore;
use playstore::{PlayStoreEndpoint, playstore_config};
use std::fmt;
use std::sync::Arc;

/// Builds store endpoints from settings (a [`Lookup`]: the environment with
/// its secrets resolved, the CLI's flags over it) and a clock.
pub struct Endpoints<'a, L> {
    settings: &'a L,
    clock: Arc<dyn Clock>,
    require_app: bool,
    extra_roots: Vec<Vec<u8>>,
}

impl<L> fmt::Debug for Endpoints<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("require_app", &self.require_app)
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

impl<'a, L: Lookup> Endpoints<'a, L> {
    /// For a deployment (a Lambda): every store refuses to start without its
    /// app identity, Google Play also without push authentication and the
    /// Play Developer API key.
    pub fn deployment(settings: &'a L, clock: Arc<dyn Clock>) -> Self {
        Self::new(settings, clock, true)
    }

    /// For the CLI: what is set is checked, no app identity is required.
    pub fn local(settings: &'a L, clock: Arc<dyn Clock>) -> Self {
        Self::new(settings, clock, false)
    }

    fn new(settings: &'a L, clock: Arc<dyn Clock>, require_app: bool) -> Self {
        Self {
            settings,
            clock,
            require_app,
            extra_roots: Vec::new(),
        }
    }

    /// Also trusts these roots (DER) beside Apple Root CA - G3: the CLI's
    /// `--trust-root`, never a deployment.
    pub fn trusting(mut self, roots: Vec<Vec<u8>>) -> Self {
        self.extra_roots = roots;
        self
    }

    /// The App Store endpoint (`APPLE_*`, see [`appstore_config`]).
    pub fn appstore(&self) -> Result<AppStoreEndpoint, ConfigError> {
        let mut config = appstore_config(self.settings, self.require_app)?;
        config.extra_roots.clone_from(&self.extra_roots);
        if config.bundle_id.is_none() {
            tracing::warn!(
                "no APPLE_BUNDLE_ID: App Store notifications of ANY app are accepted (local use only)"
            );
        }
        tracing::info!(
            bundle_id = config.bundle_id.as_deref().unwrap_or(""),
            environments = ?config.environments,
            include_raw = config.include_raw,
            "App Store endpoint configured"
        );
        Ok(AppStoreEndpoint(AppStore::new(config)?))
    }

    /// The Huawei endpoint (`HUAWEI_*`, see [`huawei_config`]).
    pub fn huawei(&self) -> Result<HuaweiEndpoint, ConfigError> {
        let config = huawei_config(self.settings, self.require_app)?;
        tracing::info!(
            apps = config.app_ids.len(),
            keys = config.public_keys.len(),
            store_api = config.api.is_some(),
            include_raw = config.include_raw,
            "Huawei endpoint configured"
        );
        HuaweiEndpoint::new(config, self.clock.clone())
    }

    /// The Amazon Appstore endpoint (`AMAZON_*`, see [`amazon_config`]).
    pub fn amazon(&self) -> Result<AmazonEndpoint, ConfigError> {
        let config = amazon_config(self.settings, self.require_app)?;
        if config.topic_arns.is_empty() || config.app_packages.is_empty() {
            tracing::warn!(
                "AMAZON_TOPIC_ARNS / AMAZON_APP_PACKAGES not both set: Amazon messages of ANY \
                 topic or app are accepted once authentic (local use only)"
            );
        }
        tracing::info!(
            apps = %config.app_packages.join(","),
            topics = config.topic_arns.len(),
            rvs = config.rvs.is_some(),
            rvs_sandbox = config.rvs.as_ref().is_some_and(|r| r.sandbox),
            auto_confirm = config.auto_confirm,
            include_raw = config.include_raw,
            "Amazon Appstore endpoint configured"
        );
        AmazonEndpoint::new(config, self.clock.clone())
    }

    /// The Google Play endpoint (`PLAY_*`, see [`playstore_config`]), keeping
    /// purchase-token lineages in `links`.
    pub fn playstore(&self, links: Arc<dyn LinkStore>) -> Result<PlayStoreEndpoint, ConfigError> {
        let config = playstore_config(self.settings, self.require_app)?;
        tracing::info!(
            packages = %config.package_names.join(","),
            oidc = config.push_auth.oidc.is_some(),
            url_token = config.push_auth.query_token.is_some(),
            api_account = %config.service_account.as_ref().map(|k| k.client_email.as_str()).unwrap_or(""),
            include_raw = config.include_raw,
            "Google Play endpoint configured"
        );
        PlayStoreEndpoint::new(config, links, self.clock.clone())
    }

    /// Every endpoint the settings enable (`storehook serve`): the App Store
    /// always; Huawei when `HUAWEI_PUBLIC_KEY` is set; Google Play when
    /// `PLAY_PACKAGE_NAMES` is set (with the other `PLAY_*` settings); Amazon
    /// when `AMAZON_TOPIC_ARNS`, `AMAZON_APP_PACKAGES` or the RVS secret is set.
    pub fn configured(
        &self,
        links: Arc<dyn LinkStore>,
    ) -> Result<Vec<Arc<dyn StoreEndpoint>>, ConfigError> {
        let mut out: Vec<Arc<dyn StoreEndpoint>> = vec![Arc::new(self.appstore()?)];
        if self.settings.get("HUAWEI_PUBLIC_KEY").is_some() {
            // The sweeper finds each subscription's purchase token in the link store.
            out.push(Arc::new(self.huawei()?.with_token_store(links.clone())));
        }
        if self.settings.get("PLAY_PACKAGE_NAMES").is_some() {
            out.push(Arc::new(self.playstore(links)?));
        }
        if [
            "AMAZON_TOPIC_ARNS",
            "AMAZON_APP_PACKAGES",
            amazon::RVS_SHARED_SECRET.inline,
        ]
        .iter()
        .any(|k| self.settings.get(k).is_some())
        {
            out.push(Arc::new(self.amazon()?));
        }
        Ok(out)
    }

    /// The refund defence ([`crate::consumption`]) when the App Store Server
    /// API is configured (`APPLE_API_*`): answers Apple's refund requests,
    /// queueing its jobs and outcome events on `queue`. `None` otherwise (a
    /// default policy set without the API is a configuration error: it would
    /// silently never run).
    pub fn refund_defence(
        &self,
        queue: Arc<dyn crate::queue::EventQueue>,
    ) -> Result<Option<Arc<crate::consumption::RefundDefence>>, ConfigError> {
        let settings = crate::consumption::Settings::from_lookup(self.settings)?;
        let Some(api) = appstore::api::api_settings(self.settings)? else {
            if settings.default != crate::consumption::DefaultPolicy::Off {
                return Err(ConfigError::Invalid {
                    var: "REFUND_CONSUMPTION_DEFAULT",
                    reason: "answering refund requests needs the App Store Server API \
                             (APPLE_API_KEY_ID, APPLE_API_ISSUER_ID, APPLE_API_PRIVATE_KEY)"
                        .into(),
                });
            }
            return Ok(None);
        };
        let verifier = Arc::new(
            appstore::verify::JwsVerifier::new(&self.extra_roots)
                .map_err(|e| ConfigError::TrustRoot(e.to_string()))?,
        );
        let api = Arc::new(appstore::api::AppleApi::new(
            api,
            verifier,
            self.clock.clone(),
        )?);
        tracing::info!(default = ?settings.default, "refund defence: App Store refund requests are answered");
        Ok(Some(Arc::new(crate::consumption::RefundDefence::new(
            api,
            queue,
            settings,
            self.clock.clone(),
        ))))
    }

    /// The expiry sweeper's store API sources the settings enable: the App
    /// Store when the App Store Server API key is set (`APPLE_API_*`), Google
    /// Play when `PLAY_PACKAGE_NAMES` and the service account are set, Huawei
    /// when its IAP public key and OAuth client are set, Amazon when the RVS
    /// shared key is set. A store without one
    /// is expired by the leeway rule. `links` is the link store the Play and
    /// Huawei endpoints record their newest purchase tokens in.
    pub fn status_sources(
        &self,
        links: Arc<dyn LinkStore>,
    ) -> Result<Vec<Arc<dyn StatusSource>>, ConfigError> {
        let mut out: Vec<Arc<dyn StatusSource>> = Vec::new();
        if let Some(s) = appstore::status::AppStoreStatusSource::from_settings(
            self.settings,
            &self.extra_roots,
            self.clock.clone(),
        )? {
            out.push(Arc::new(s));
        }
        if let Some(s) = playstore::sweep::PlayStatusSource::from_settings(
            self.settings,
            links.clone(),
            self.clock.clone(),
        )? {
            out.push(Arc::new(s));
        }
        if let Some(s) = huawei::sweep::HuaweiStatusSource::from_settings(
            self.settings,
            links,
            self.clock.clone(),
        )? {
            out.push(Arc::new(s));
        }
        if let Some(s) =
            amazon::sweep::AmazonStatusSource::from_settings(self.settings, self.clock.clone())?
        {
            out.push(Arc::new(s));
        }
        for s in &out {
            tracing::info!(store = %s.store(), "expiry sweeper asks the store's API");
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::queue::MemoryQueue;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    /// Without the App Store Server API there is no refund defence; a default
    /// policy set anyway is refused at start instead of silently never running.
    #[test]
    fn the_refund_defence_needs_the_app_store_server_api() {
        let q: Arc<dyn crate::queue::EventQueue> = Arc::new(MemoryQueue::new());
        let none = lookup(&[]);
        let e = Endpoints::local(&none, Arc::new(SystemClock));
        assert!(e.refund_defence(q.clone()).unwrap().is_none());
        let orphan = lookup(&[
            ("REFUND_CONSUMPTION_DEFAULT", "no-preference"),
            ("REFUND_CUSTOMER_CONSENT", "true"),
        ]);
        let e = Endpoints::local(&orphan, Arc::new(SystemClock));
        let err = e.refund_defence(q.clone()).unwrap_err().to_string();
        assert!(err.contains("App Store Server API"), "{err}");
        let half = lookup(&[("APPLE_API_KEY_ID", "K")]);
        let e = Endpoints::local(&half, Arc::new(SystemClock));
        assert!(
            e.refund_defence(q).is_err(),
            "an incomplete API key is an error"
        );
    }
}
