//! [`DynamoLinkStore`]: the DynamoDB [`LinkStore`] of the Google Play Lambda.
//!
//! One item per purchase token in storehook's single table:
//!
//! | attribute | type | value |
//! |---|---|---|
//! | `pk` | S | `LINK#GOOGLE_PLAY#<purchase token>` |
//! | `sk` | S | `LINK` |
//! | `subscription_id` | S | the lineage's storehook subscription id |
//! | `first_token` | S | the lineage's first purchase token |
//! | `created_at` | N | epoch milliseconds of the first link |
//!
//! No TTL: a token belongs to one subscription forever. `resolve` is a
//! consistent-read `GetItem`; `link` is a `PutItem` conditioned on
//! `attribute_not_exists(pk)` with `ReturnValuesOnConditionCheckFailure =
//! ALL_OLD`, so the first writer wins and later writers get its lineage back
//! in the same round trip. Items are never updated or deleted.
//!
//! Every failure is a [`LinkError`] (the push is answered 503 and Pub/Sub
//! redelivers). Error messages and logs carry the token's
//! [`PurchaseToken::fingerprint`], never the token.

use super::{Lineage, LinkError, LinkStore};
use crate::event::SubscriptionId;
use crate::provision::{TABLE_PARTITION_KEY, TABLE_SORT_KEY};
use crate::stores::playstore::model::PurchaseToken;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use std::collections::HashMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Partition-key prefix of Google Play purchase-token links.
pub const PK_PREFIX: &str = "LINK#GOOGLE_PLAY#";
/// Sort key of every link item.
pub const SK: &str = "LINK";
/// The lineage's storehook subscription id (S).
pub const ATTR_SUBSCRIPTION_ID: &str = "subscription_id";
/// The lineage's first purchase token (S).
pub const ATTR_FIRST_TOKEN: &str = "first_token";
/// When the token was first linked, epoch milliseconds (N).
pub const ATTR_CREATED_AT: &str = "created_at";

/// The partition key of `token`'s link item.
pub fn link_pk(token: &PurchaseToken) -> String {
    format!("{PK_PREFIX}{}", token.as_str())
}

/// [`LinkStore`] on storehook's DynamoDB table (`LINK#GOOGLE_PLAY#<token>` / `LINK` items).
#[derive(Clone)]
pub struct DynamoLinkStore {
    client: Client,
    table: String,
}

impl fmt::Debug for DynamoLinkStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoLinkStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoLinkStore {
    /// A link store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Same, building the client from `sdk`.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(token: &PurchaseToken) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                TABLE_PARTITION_KEY.to_owned(),
                AttributeValue::S(link_pk(token)),
            ),
            (TABLE_SORT_KEY.to_owned(), AttributeValue::S(SK.to_owned())),
        ])
    }

    async fn get(&self, token: &PurchaseToken) -> Result<Option<Lineage>, LinkError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(token)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", token, None, e))?;
        out.item()
            .map(|item| lineage_from_item(item, token))
            .transpose()
    }
}

/// The current time in epoch milliseconds.
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Replaces every occurrence of the tokens in `text` by their fingerprint
/// (service or emulator messages may echo request values).
fn redact(text: String, tokens: &[&PurchaseToken]) -> String {
    tokens
        .iter()
        .filter(|t| !t.as_str().is_empty())
        .fold(text, |acc, t| {
            acc.replace(t.as_str(), &format!("<token {}>", t.fingerprint()))
        })
}

fn sdk_error<E, R>(
    op: &str,
    token: &PurchaseToken,
    lineage: Option<&Lineage>,
    e: SdkError<E, R>,
) -> LinkError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    let detail = DisplayErrorContext(&e).to_string();
    let mut tokens = vec![token];
    if let Some(l) = lineage {
        tokens.push(&l.first_token);
    }
    let err = LinkError(format!(
        "DynamoDB {op} of the link of token {}: {}",
        token.fingerprint(),
        redact(detail, &tokens)
    ));
    tracing::warn!(token = %token.fingerprint(), operation = op, error = %err, "link store failed");
    err
}

/// The lineage held by a link item.
fn lineage_from_item(
    item: &HashMap<String, AttributeValue>,
    token: &PurchaseToken,
) -> Result<Lineage, LinkError> {
    let string = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or_else(|| {
                LinkError(format!(
                    "the link item of token {} has no string {name}",
                    token.fingerprint()
                ))
            })
    };
    Ok(Lineage {
        subscription_id: SubscriptionId(string(ATTR_SUBSCRIPTION_ID)?),
        first_token: PurchaseToken::new(string(ATTR_FIRST_TOKEN)?),
    })
}

#[async_trait]
impl LinkStore for DynamoLinkStore {
    #[tracing::instrument(skip_all, fields(token = %purchase_token.fingerprint()))]
    async fn resolve(&self, purchase_token: &PurchaseToken) -> Result<Option<Lineage>, LinkError> {
        self.get(purchase_token).await
    }

    #[tracing::instrument(skip_all, fields(token = %purchase_token.fingerprint(), subscription_id = %lineage.subscription_id))]
    async fn link(
        &self,
        purchase_token: &PurchaseToken,
        lineage: &Lineage,
    ) -> Result<Lineage, LinkError> {
        let mut item = Self::key(purchase_token);
        item.insert(
            ATTR_SUBSCRIPTION_ID.to_owned(),
            AttributeValue::S(lineage.subscription_id.0.clone()),
        );
        item.insert(
            ATTR_FIRST_TOKEN.to_owned(),
            AttributeValue::S(lineage.first_token.as_str().to_owned()),
        );
        item.insert(
            ATTR_CREATED_AT.to_owned(),
            AttributeValue::N(now_ms().to_string()),
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists({TABLE_PARTITION_KEY})"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let e = match put {
            Ok(_) => return Ok(lineage.clone()),
            Err(e) => e,
        };
        if let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error() {
            // Linked already: the first writer's lineage wins.
            let existing = match failed.item() {
                Some(old) => lineage_from_item(old, purchase_token)?,
                // An endpoint that does not return ALL_OLD: read it (links are never deleted).
                None => self.get(purchase_token).await?.ok_or_else(|| {
                    LinkError(format!(
                        "the link of token {} exists per PutItem but GetItem finds none",
                        purchase_token.fingerprint()
                    ))
                })?,
            };
            if existing != *lineage {
                tracing::debug!(existing = %existing.subscription_id, "token linked already; keeping the first lineage");
            }
            return Ok(existing);
        }
        Err(sdk_error("PutItem", purchase_token, Some(lineage), e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::aws_sdk::{TEST_ENDPOINT_ENV, emulator_sdk_config, test_sdk_config};
    use crate::stores::playstore::links::lineage_of;

    /// A purchase token shaped like Google's, unique per call.
    fn token(tag: &str) -> PurchaseToken {
        PurchaseToken::new(format!(
            "{tag}secrettok{:016x}.AO-J1OzB3xq_{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ))
    }

    /// A store on a fresh table of the emulator, or `None` (SKIP) without one.
    async fn emulator_store(test: &str) -> Option<(DynamoLinkStore, Client)> {
        let Some(sdk) = test_sdk_config().await else {
            eprintln!("SKIP {test}: {TEST_ENDPOINT_ENV} is not set");
            return None;
        };
        let client = Client::new(&sdk);
        let table = format!("storehook-links-{:016x}", fastrand::u64(..));
        crate::provision::create_table(&client, &table)
            .await
            .unwrap();
        Some((DynamoLinkStore::new(client.clone(), table), client))
    }

    async fn raw_item(
        client: &Client,
        table: &str,
        token: &PurchaseToken,
    ) -> HashMap<String, AttributeValue> {
        client
            .get_item()
            .table_name(table)
            .set_key(Some(DynamoLinkStore::key(token)))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .expect("link item")
    }

    #[tokio::test]
    async fn dynamo_links_insert_once_and_resolve() {
        let Some((store, client)) = emulator_store("dynamo_links_insert_once_and_resolve").await
        else {
            return;
        };
        // GIVEN an unknown token THEN it resolves to nothing
        let tok = token("T");
        assert_eq!(store.resolve(&tok).await.unwrap(), None);

        // WHEN it is linked THEN the lineage is returned and resolves
        let first = Lineage::rooted_at(&token("A"));
        assert_eq!(store.link(&tok, &first).await.unwrap(), first);
        assert_eq!(store.resolve(&tok).await.unwrap(), Some(first.clone()));

        // AND the item is exactly as specified
        let item = raw_item(&client, store.table(), &tok).await;
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec!["created_at", "first_token", "pk", "sk", "subscription_id"]
        );
        assert_eq!(item["pk"].as_s().unwrap(), &link_pk(&tok));
        assert!(item["pk"].as_s().unwrap().starts_with("LINK#GOOGLE_PLAY#"));
        assert_eq!(item["sk"].as_s().unwrap(), "LINK");
        assert_eq!(
            item["subscription_id"].as_s().unwrap(),
            first.subscription_id.as_str()
        );
        assert_eq!(
            item["first_token"].as_s().unwrap(),
            first.first_token.as_str()
        );
        let created: u128 = item["created_at"].as_n().unwrap().parse().unwrap();
        assert!(created.abs_diff(now_ms()) < 60_000, "created_at {created}");

        // WHEN the same token is linked to another lineage
        let other = Lineage::rooted_at(&token("X"));
        assert_ne!(other, first);
        // THEN the first lineage wins and the item is unchanged
        assert_eq!(store.link(&tok, &other).await.unwrap(), first);
        assert_eq!(store.resolve(&tok).await.unwrap(), Some(first.clone()));
        assert_eq!(raw_item(&client, store.table(), &tok).await, item);
        // AND the emulator answers the condition with the stored item (the ALL_OLD path,
        // not the GetItem fallback, is what ran above)
        let refused = client
            .put_item()
            .table_name(store.table())
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
            .unwrap_err();
        match refused.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(c)) => {
                assert_eq!(c.item(), Some(&item));
            }
            other => panic!("expected ConditionalCheckFailed, got {other:?}"),
        }
        // AND linking it to its own lineage again is a no-op
        assert_eq!(store.link(&tok, &first).await.unwrap(), first);
        assert_eq!(raw_item(&client, store.table(), &tok).await, item);
    }

    #[tokio::test]
    async fn dynamo_links_first_writer_wins_under_concurrency() {
        let Some((store, _)) =
            emulator_store("dynamo_links_first_writer_wins_under_concurrency").await
        else {
            return;
        };
        // GIVEN eight writers linking one token to eight different lineages at once
        let tok = token("C");
        let lineages: Vec<Lineage> = (0..8)
            .map(|i| Lineage::rooted_at(&token(&format!("R{i}"))))
            .collect();
        let tasks: Vec<_> = lineages
            .iter()
            .cloned()
            .map(|l| {
                let store = store.clone();
                let tok = tok.clone();
                tokio::spawn(async move { store.link(&tok, &l).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        // THEN they all got the one stored lineage, which is one of theirs
        let stored = store.resolve(&tok).await.unwrap().unwrap();
        assert!(got.iter().all(|g| *g == stored), "{got:?}");
        assert!(lineages.contains(&stored));
    }

    #[tokio::test]
    async fn dynamo_links_keep_a_chain_across_instances() {
        let Some((one, client)) =
            emulator_store("dynamo_links_keep_a_chain_across_instances").await
        else {
            return;
        };
        // GIVEN two Lambda instances sharing the table
        let two = DynamoLinkStore::new(client, one.table());
        let (a, b, c) = (token("A"), token("B"), token("C"));
        // WHEN a purchase, its upgrade and a re-signup arrive at alternating instances
        let first = lineage_of(&one, &a, None).await.unwrap();
        let upgrade = lineage_of(&two, &b, Some(&a)).await.unwrap();
        let again = lineage_of(&one, &c, Some(&b)).await.unwrap();
        // THEN all share the first token's lineage
        assert_eq!(first, Lineage::rooted_at(&a));
        assert_eq!(upgrade, first);
        assert_eq!(again, first);
        assert_eq!(two.resolve(&c).await.unwrap(), Some(first));
    }

    #[tokio::test]
    async fn dynamo_link_errors_never_contain_the_token() {
        // GIVEN a missing table on the emulator, or (without one) an endpoint nobody listens on
        let (store, label) = match test_sdk_config().await {
            Some(sdk) => (
                DynamoLinkStore::from_sdk(
                    &sdk,
                    format!("storehook-missing-{:016x}", fastrand::u64(..)),
                ),
                "missing table",
            ),
            None => {
                let sdk = emulator_sdk_config("http://127.0.0.1:9").await;
                let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
                    .retry_config(aws_config::retry::RetryConfig::disabled())
                    .build();
                (
                    DynamoLinkStore::new(Client::from_conf(conf), "storehook-links"),
                    "unreachable endpoint",
                )
            }
        };
        let tok = token("E");
        let lineage = Lineage::rooted_at(&token("F"));
        // WHEN the store is read and written
        let errors = [
            store.resolve(&tok).await.unwrap_err(),
            store.link(&tok, &lineage).await.unwrap_err(),
        ];
        // THEN both fail, naming the fingerprint but neither token
        for e in errors {
            let text = e.to_string();
            assert!(text.contains(&tok.fingerprint()), "{label}: {text}");
            assert!(!text.contains(tok.as_str()), "{label}: {text}");
            assert!(
                !text.contains(lineage.first_token.as_str()),
                "{label}: {text}"
            );
            assert!(!text.contains("secrettok"), "{label}: {text}");
        }
    }

    #[test]
    fn redaction_replaces_every_token() {
        let a = PurchaseToken::new("tok-a");
        let b = PurchaseToken::new("tok-b");
        let out = redact("x tok-a y tok-b z tok-a".into(), &[&a, &b]);
        assert!(!out.contains("tok-a") && !out.contains("tok-b"), "{out}");
        assert!(out.contains(&a.fingerprint()) && out.contains(&b.fingerprint()));
        assert_eq!(redact("same".into(), &[&PurchaseToken::new("")]), "same");
    }

    #[test]
    fn malformed_items_are_errors_without_the_token() {
        let tok = PurchaseToken::new("secret-token");
        let item = HashMap::from([(
            ATTR_SUBSCRIPTION_ID.to_owned(),
            AttributeValue::N("1".into()),
        )]);
        let e = lineage_from_item(&item, &tok).unwrap_err().to_string();
        assert!(
            e.contains(ATTR_SUBSCRIPTION_ID) && !e.contains("secret-token"),
            "{e}"
        );
    }
}
