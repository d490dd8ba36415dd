//! [`RedbLinkStore`]: the embedded, persistent [`LinkStore`] of the local
//! server (`storehook serve`). One redb file, `<data dir>/links.redb`, with a
//! table purchase token → JSON lineage. Same contract as the DynamoDB adapter:
//! insert if absent (first writer wins, in one write transaction), never
//! updated or deleted, survives restarts.

use super::{Lineage, LinkError, LinkStore};
use crate::event::SubscriptionId;
use crate::redb_file::{Health, RedbFile};
use crate::stores::playstore::model::PurchaseToken;
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Purchase token → JSON [`StoredLink`].
const LINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("playstore_links");

/// Subscription id → JSON [`StoredLatest`] (the newest live token).
const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("playstore_latest");

/// The newest live purchase token of a subscription.
#[derive(Debug, Serialize, Deserialize)]
struct StoredLatest {
    token: String,
    started_ms: i64,
}

/// File name inside the data directory.
pub const FILE_NAME: &str = "links.redb";

/// The stored value (same fields as the DynamoDB item).
#[derive(Debug, Serialize, Deserialize)]
struct StoredLink {
    subscription_id: String,
    first_token: String,
    /// Epoch milliseconds of the first link.
    created_at: u64,
}

impl StoredLink {
    fn lineage(self) -> Lineage {
        Lineage {
            subscription_id: SubscriptionId(self.subscription_id),
            first_token: PurchaseToken::new(self.first_token),
        }
    }
}

/// Embedded, persistent [`LinkStore`] (redb).
#[derive(Clone)]
pub struct RedbLinkStore {
    file: Arc<RedbFile>,
    path: PathBuf,
}

impl fmt::Debug for RedbLinkStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbLinkStore")
            .field("path", &self.path)
            .finish()
    }
}

/// A redb failure (its messages never hold keys or values).
fn db_err(e: impl fmt::Display) -> LinkError {
    LinkError(format!("redb: {e}"))
}

fn decode(bytes: &[u8], token: &PurchaseToken) -> Result<Lineage, LinkError> {
    serde_json::from_slice::<StoredLink>(bytes)
        .map(StoredLink::lineage)
        .map_err(|e| {
            LinkError(format!(
                "corrupt link of token {} (line {}, column {})",
                token.fingerprint(),
                e.line(),
                e.column()
            ))
        })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

impl RedbLinkStore {
    /// Opens (or creates) `<dir>/links.redb`, creating `dir` if needed.
    /// A file can be open only once at a time (redb locks it).
    pub fn open(dir: &Path) -> Result<Self, LinkError> {
        let path = dir.join(FILE_NAME);
        let file = RedbFile::open_in(
            dir,
            FILE_NAME,
            Box::new(|db, _| {
                let tx = db.begin_write().map_err(|e| e.to_string())?;
                tx.open_table(LINKS).map_err(|e| e.to_string())?;
                tx.open_table(LATEST).map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())
            }),
        )
        .map_err(db_err)?;
        Ok(Self { file, path })
    }

    /// The condition of the links file: failed after an I/O error (a full
    /// disk) until it is reopened, which happens by itself.
    pub fn health(&self) -> Health {
        self.file.health()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T, F>(&self, f: F) -> Result<T, LinkError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, LinkError> + Send + 'static,
    {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let db = file.db().map_err(db_err)?;
            let result = f(&db);
            if let Err(e) = &result {
                // A full disk poisons the file: close it and reopen with backoff.
                file.check(&db, &e.0);
            }
            result
        })
        .await
        .map_err(|e| LinkError(format!("redb task: {e}")))?
    }
}

#[async_trait]
impl LinkStore for RedbLinkStore {
    async fn resolve(&self, purchase_token: &PurchaseToken) -> Result<Option<Lineage>, LinkError> {
        let token = purchase_token.clone();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(LINKS).map_err(db_err)?;
            match t.get(token.as_str()).map_err(db_err)? {
                Some(v) => decode(v.value(), &token).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn link(
        &self,
        purchase_token: &PurchaseToken,
        lineage: &Lineage,
    ) -> Result<Lineage, LinkError> {
        let token = purchase_token.clone();
        let lineage = lineage.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            let stored = {
                let mut t = tx.open_table(LINKS).map_err(db_err)?;
                let existing = t
                    .get(token.as_str())
                    .map_err(db_err)?
                    .map(|v| decode(v.value(), &token))
                    .transpose()?;
                match existing {
                    Some(existing) => existing,
                    None => {
                        let value = serde_json::to_vec(&StoredLink {
                            subscription_id: lineage.subscription_id.0.clone(),
                            first_token: lineage.first_token.as_str().to_owned(),
                            created_at: now_ms(),
                        })
                        .map_err(|e| LinkError(format!("serialize link: {e}")))?;
                        t.insert(token.as_str(), value.as_slice()).map_err(db_err)?;
                        lineage
                    }
                }
            };
            tx.commit().map_err(db_err)?;
            Ok(stored)
        })
        .await
    }

    async fn latest(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Option<PurchaseToken>, LinkError> {
        let id = subscription_id.0.clone();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(LATEST).map_err(db_err)?;
            match t.get(id.as_str()).map_err(db_err)? {
                Some(v) => serde_json::from_slice::<StoredLatest>(v.value())
                    .map(|l| Some(PurchaseToken::new(l.token)))
                    .map_err(|e| {
                        LinkError(format!("corrupt latest token of {id}: line {}", e.line()))
                    }),
                None => Ok(None),
            }
        })
        .await
    }

    async fn record_latest(
        &self,
        subscription_id: &SubscriptionId,
        purchase_token: &PurchaseToken,
        started_ms: i64,
    ) -> Result<(), LinkError> {
        let id = subscription_id.0.clone();
        let token = purchase_token.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            {
                let mut t = tx.open_table(LATEST).map_err(db_err)?;
                let newer = match t.get(id.as_str()).map_err(db_err)? {
                    Some(v) => serde_json::from_slice::<StoredLatest>(v.value())
                        .map_or(true, |l| l.started_ms <= started_ms),
                    None => true,
                };
                if newer {
                    let value = serde_json::to_vec(&StoredLatest {
                        token: token.as_str().to_owned(),
                        started_ms,
                    })
                    .map_err(|e| LinkError(format!("serialize latest token: {e}")))?;
                    t.insert(id.as_str(), value.as_slice()).map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::stores::playstore::links::lineage_of;

    fn t(s: &str) -> PurchaseToken {
        PurchaseToken::new(s)
    }

    #[tokio::test]
    async fn redb_links_insert_once_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbLinkStore::open(dir.path()).unwrap();
        assert_eq!(store.path(), dir.path().join("links.redb"));
        // GIVEN an unknown token THEN nothing
        assert_eq!(store.resolve(&t("T")).await.unwrap(), None);
        // WHEN linked THEN returned and resolvable
        let a = Lineage::rooted_at(&t("A"));
        assert_eq!(store.link(&t("T"), &a).await.unwrap(), a);
        assert_eq!(store.resolve(&t("T")).await.unwrap(), Some(a.clone()));
        // WHEN linked to another lineage THEN the first one wins
        let x = Lineage::rooted_at(&t("X"));
        assert_eq!(store.link(&t("T"), &x).await.unwrap(), a);
        assert_eq!(store.resolve(&t("T")).await.unwrap(), Some(a.clone()));
        assert_eq!(store.link(&t("T"), &a).await.unwrap(), a);
    }

    #[tokio::test]
    async fn redb_links_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let store = RedbLinkStore::open(dir.path()).unwrap();
            let first = lineage_of(&store, &t("A"), None).await.unwrap();
            assert_eq!(
                lineage_of(&store, &t("B"), Some(&t("A"))).await.unwrap(),
                first
            );
            first
        };
        // WHEN the process restarts (file closed and reopened)
        let store = RedbLinkStore::open(dir.path()).unwrap();
        // THEN the chain is still there and continues
        assert_eq!(store.resolve(&t("A")).await.unwrap(), Some(first.clone()));
        assert_eq!(store.resolve(&t("B")).await.unwrap(), Some(first.clone()));
        assert_eq!(
            lineage_of(&store, &t("C"), Some(&t("B"))).await.unwrap(),
            first
        );
        // AND the first writer still wins
        let x = Lineage::rooted_at(&t("X"));
        assert_eq!(store.link(&t("A"), &x).await.unwrap(), first);
    }

    #[tokio::test]
    async fn redb_latest_token_keeps_the_newest_start_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let sub = Lineage::rooted_at(&t("A")).subscription_id;
        {
            let store = RedbLinkStore::open(dir.path()).unwrap();
            assert_eq!(store.latest(&sub).await.unwrap(), None);
            store.record_latest(&sub, &t("A"), 100).await.unwrap();
            store.record_latest(&sub, &t("B"), 200).await.unwrap();
            // an older token read late does not take over
            store.record_latest(&sub, &t("A"), 100).await.unwrap();
            assert_eq!(store.latest(&sub).await.unwrap(), Some(t("B")));
        }
        let store = RedbLinkStore::open(dir.path()).unwrap();
        assert_eq!(store.latest(&sub).await.unwrap(), Some(t("B")));
        store.record_latest(&sub, &t("C"), 300).await.unwrap();
        assert_eq!(store.latest(&sub).await.unwrap(), Some(t("C")));
    }

    #[tokio::test]
    async fn redb_links_first_writer_wins_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbLinkStore::open(dir.path()).unwrap();
        let lineages: Vec<Lineage> = (0..8)
            .map(|i| Lineage::rooted_at(&t(&format!("R{i}"))))
            .collect();
        let tasks: Vec<_> = lineages
            .iter()
            .cloned()
            .map(|l| {
                let store = store.clone();
                tokio::spawn(async move { store.link(&t("T"), &l).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for task in tasks {
            got.push(task.await.unwrap());
        }
        let stored = store.resolve(&t("T")).await.unwrap().unwrap();
        assert!(got.iter().all(|g| *g == stored), "{got:?}");
        assert!(lineages.contains(&stored));
    }

    #[tokio::test]
    async fn redb_link_errors_never_contain_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbLinkStore::open(dir.path()).unwrap();
        // GIVEN a corrupt value stored for a token
        let tok = t("secret-purchase-token");
        {
            let tx = store.file.db().unwrap().begin_write().unwrap();
            tx.open_table(LINKS)
                .unwrap()
                .insert(tok.as_str(), b"{not json".as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        // THEN reading and linking fail, naming the fingerprint only
        let errors = [
            store.resolve(&tok).await.unwrap_err(),
            store
                .link(&tok, &Lineage::rooted_at(&tok))
                .await
                .unwrap_err(),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.contains(&tok.fingerprint()), "{text}");
            assert!(!text.contains(tok.as_str()), "{text}");
        }
        // AND a second open of the same file is refused while it is open
        assert!(RedbLinkStore::open(dir.path()).is_err());
    }
}
