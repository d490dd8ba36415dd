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
//! And one item per subscription for the sweeper: its newest live purchase token
//! (`pk` = `LINK#GOOGLE_PLAY#LATEST#<subscription id>`, `sk` = `LATEST`, `token` S,
//! `started_ms` N), replaced only by a token whose purchase started no earlier
//! (a `PutItem` conditioned on `attribute_not_exists(pk) OR started_ms <= :s`).
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

/// Partition-key prefix of a subscription's newest-token item.
/// Under the links' prefix, so the Play function's IAM condition
/// (`dynamodb:LeadingKeys` `LINK#GOOGLE_PLAY#*`) covers it; no purchase token
/// contains `#`, so it cannot be a token's link.
pub const LATEST_PK_PREFIX: &str = "LINK#GOOGLE_PLAY#LATEST#";
/// Sort key of the newest-token items.
pub const LATEST_SK: &str = "LATEST";
/// The newest live purchase token (S).
pub const ATTR_TOKEN: &str = "token";
/// When that purchase started, epoch milliseconds (N).
pub const ATTR_STARTED_MS: &str = "started_ms";

/// The primary key of `subscription_id`'s newest-token item.
pub fn latest_key(subscription_id: &SubscriptionId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            TABLE_PARTITION_KEY.to_owned(),
            AttributeValue::S(format!("{LATEST_PK_PREFIX}{}", subscription_id.0)),
        ),
        (
            TABLE_SORT_KEY.to_owned(),
            AttributeValue::S(LATEST_SK.to_owned()),
        ),
    ])
}

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

    /// The primary key (`pk`, `sk`) of `token`'s link item.
    pub fn key(token: &PurchaseToken) -> HashMap<String, AttributeValue> {
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

    #[tracing::instrument(skip_all, fields(subscription_id = %subscription_id))]
    async fn latest(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Option<PurchaseToken>, LinkError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(latest_key(subscription_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                LinkError(format!(
                    "DynamoDB GetItem of the newest token of {subscription_id}: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        Ok(out
            .item()
            .and_then(|item| item.get(ATTR_TOKEN))
            .and_then(|v| v.as_s().ok())
            .filter(|t| !t.is_empty())
            .map(|t| PurchaseToken::new(t.clone())))
    }

    #[tracing::instrument(skip_all, fields(subscription_id = %subscription_id, token = %purchase_token.fingerprint()))]
    async fn record_latest(
        &self,
        subscription_id: &SubscriptionId,
        purchase_token: &PurchaseToken,
        started_ms: i64,
    ) -> Result<(), LinkError> {
        let mut item = latest_key(subscription_id);
        item.insert(
            ATTR_TOKEN.to_owned(),
            AttributeValue::S(purchase_token.as_str().to_owned()),
        );
        item.insert(
            ATTR_STARTED_MS.to_owned(),
            AttributeValue::N(started_ms.to_string()),
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!(
                "attribute_not_exists({TABLE_PARTITION_KEY}) OR {ATTR_STARTED_MS} <= :s"
            ))
            .expression_attribute_values(":s", AttributeValue::N(started_ms.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            // A token that started later is recorded: it stays.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error("PutItem (newest token)", purchase_token, None, e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

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
