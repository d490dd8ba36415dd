//! [`DynamoState`]: the [`StateStore`] on one DynamoDB table (keys `pk`, `sk`).
//!
//! | pk | sk | attributes |
//! |---|---|---|
//! | `SUB#<group key>` | `STATE` | `seq` (N, last sequence), `applied_at` (S, last applied store time), `entitled` (BOOL), `state` (S, JSON [`GroupState`]: snapshot + entitlement), `updated_at`; while the group is due for the sweeper ([`GroupState::due_at`]): `due_shard` (S, `"0"`..`"3"`) and `due_at` (N, epoch ms), the keys of the sparse index `due` |
//! | `SUB#<group key>` | `EVT#<seq, 20 digits>` | `event` (S, JSON as delivered), `event_id`, `type`, `expires_at_epoch` (TTL) |
//! | `EVT#<event id>` | `EVT` | claim: `group`, `seq`, `event`, `derived` (S, JSON), `claimed_at`; delivery record: `attempts`, `last_status`, `latency_ms`, `delivered_at`, `last_error`, `last_attempt_at`; `expires_at_epoch` (TTL) |
//!
//! Sequence sort keys are zero-padded so a `Query` returns history in order.
//!
//! The due index (`due`, a sparse GSI: hash `due_shard`, range `due_at`,
//! projecting `state`) holds only the `STATE` items that carry its keys: every
//! apply writes them (or, by replacing the item without them, removes the
//! group from the index) in the same transaction. The sweeper queries each
//! shard with `due_at <= now`; no scan. `snooze` moves `due_at` later with a
//! conditional update.
//!
//! `apply` = read `STATE` (consistent), run the pure [`transition`], then ONE
//! `TransactWriteItems`: put the claim (`attribute_not_exists(pk)`), put the
//! new `STATE` (condition: `seq` unchanged, or `attribute_not_exists(pk)` for
//! a new group), put the history items. A failed claim condition means the id
//! was applied before: the stored claim is returned. A failed `STATE`
//! condition (another writer won) or a transaction conflict re-runs the
//! read-modify-write, up to [`MAX_CAS_ATTEMPTS`] times.

use super::{DeliveryRecord, Due, GroupState, Recorded, StateError, StateStore, transition};
use crate::clock::Clock;
use crate::event::{Event, EventId, Timestamp};
use crate::provision::{
    TABLE_DUE_AT_ATTRIBUTE, TABLE_DUE_INDEX, TABLE_DUE_PROJECTED_ATTRIBUTE,
    TABLE_DUE_SHARD_ATTRIBUTE, TABLE_DUE_SHARDS,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Read-modify-write attempts of one `apply` before giving up with [`StateError::Conflict`].
pub const MAX_CAS_ATTEMPTS: u32 = 8;
/// Default lifetime of history items and claims/delivery records (TTL).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at_epoch";

type Item = HashMap<String, AttributeValue>;

/// [`StateStore`] on DynamoDB.
#[derive(Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
    retention: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for DynamoState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoState")
            .field("table", &self.table)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Option<T> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|x| x.parse().ok())
}

/// The due-index shard of a group: FNV-1a of its key, modulo
/// [`TABLE_DUE_SHARDS`] (stable across processes and versions).
fn due_shard(group: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(TABLE_DUE_SHARDS)).to_string()
}

fn group_pk(group: &str) -> String {
    format!("SUB#{group}")
}

fn history_sk(seq: u64) -> String {
    format!("EVT#{seq:020}")
}

fn claim_pk(id: &EventId) -> String {
    format!("EVT#{}", id.as_str())
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StateError> {
    serde_json::to_string(v).map_err(|e| StateError::Permanent(format!("serialize: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(item: &Item, attr: &str) -> Result<T, StateError> {
    let raw = get_s(item, attr)
        .ok_or_else(|| StateError::Permanent(format!("stored item lacks {attr}")))?;
    serde_json::from_str(raw)
        .map_err(|e| StateError::Permanent(format!("corrupt stored {attr}: {e}")))
}

/// Maps an SDK error: validation errors are permanent, everything else
/// (throttling, network, missing table while deploying, …) retryable.
fn sdk_err<E, R>(op: &str, e: SdkError<E, R>) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let permanent = e.code() == Some("ValidationException");
    let msg = format!("{op}: {}", DisplayErrorContext(&e));
    if permanent {
        StateError::Permanent(msg)
    } else {
        StateError::Unavailable(msg)
    }
}

fn build_err(e: impl fmt::Display) -> StateError {
    StateError::Permanent(format!("request build: {e}"))
}

#[derive(Debug)]
enum TxFailure {
    AlreadyClaimed,
    Conflict,
    Other(StateError),
}

fn classify_transaction<R: fmt::Debug>(e: SdkError<TransactWriteItemsError, R>) -> TxFailure {
    if let SdkError::ServiceError(se) = &e {
        if let TransactWriteItemsError::TransactionCanceledException(tc) = se.err() {
            let codes: Vec<&str> = tc
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None"))
                .collect();
            // Item 0 is the claim, item 1 the group state.
            if codes.first() == Some(&"ConditionalCheckFailed") {
                return TxFailure::AlreadyClaimed;
            }
            if codes.iter().all(|c| {
                matches!(
                    *c,
                    "None" | "ConditionalCheckFailed" | "TransactionConflict"
                )
            }) {
                return TxFailure::Conflict;
            }
            return TxFailure::Other(StateError::Unavailable(format!(
                "transaction canceled: {codes:?}"
            )));
        }
        if let TransactWriteItemsError::TransactionInProgressException(_) = se.err() {
            return TxFailure::Conflict;
        }
    }
    TxFailure::Other(sdk_err("TransactWriteItems", e))
}

impl DynamoState {
    /// A store on `table`, TTLs computed from `clock`.
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.into(),
            retention: DEFAULT_RETENTION,
            clock,
        }
    }

    /// Same, building the client from `sdk`.
    pub fn from_sdk(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::new(Client::new(sdk), table, clock)
    }

    /// How long history items, claims and delivery records live (TTL).
    /// Claims must outlive every store retry and DLQ replay of their event.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (pk/sk strings, on-demand) and enables TTL on
    /// `expires_at_epoch`. For local emulators and tests; in AWS the SAM
    /// template creates it.
    pub async fn create_table(&self) -> Result<(), StateError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_err)
        };
        let key_el = |name: &str, kt: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kt)
                .build()
                .map_err(build_err)
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr(TABLE_DUE_SHARD_ATTRIBUTE)?)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(TABLE_DUE_AT_ATTRIBUTE)
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .map_err(build_err)?,
            )
            .key_schema(key_el("pk", KeyType::Hash)?)
            .key_schema(key_el("sk", KeyType::Range)?)
            .global_secondary_indexes(due_index().map_err(build_err)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| sdk_err("CreateTable", e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .map_err(|e| sdk_err("UpdateTimeToLive", e))?;
        Ok(())
    }

    /// Postpones the due entry of `group_key` to `until` when it has one
    /// that is earlier (conditional update; a failed condition is no error).
    async fn snooze_item(&self, group_key: &str, until: Timestamp) -> Result<(), StateError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_key), "STATE")))
            .update_expression("SET #due = :until")
            .condition_expression("attribute_exists(#due) AND #due < :until")
            .expression_attribute_names("#due", TABLE_DUE_AT_ATTRIBUTE)
            .expression_attribute_values(":until", n(until.millis()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_err("UpdateItem", e)),
        }
    }

    /// The due entries of one shard at or before `now`, at most `limit`.
    async fn due_in_shard(
        &self,
        shard: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Due>, StateError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(TABLE_DUE_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :now")
                .expression_attribute_names("#shard", TABLE_DUE_SHARD_ATTRIBUTE)
                .expression_attribute_names("#due", TABLE_DUE_AT_ATTRIBUTE)
                .expression_attribute_values(":shard", s(shard.to_string()))
                .expression_attribute_values(":now", n(now.millis()))
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_err("Query", e))?;
            for item in page.items() {
                let Some(group) = get_s(item, "pk").and_then(|pk| pk.strip_prefix("SUB#")) else {
                    continue;
                };
                let at: i64 = get_n(item, TABLE_DUE_AT_ATTRIBUTE).ok_or_else(|| {
                    StateError::Permanent(format!("due index item lacks {TABLE_DUE_AT_ATTRIBUTE}"))
                })?;
                out.push(Due {
                    group_key: group.to_owned(),
                    state: parse(item, TABLE_DUE_PROJECTED_ATTRIBUTE)?,
                    due_at: Timestamp::from_millis_clamped(at),
                });
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.clock.now())
    }

    fn expires_at(&self) -> i64 {
        self.clock.now().timestamp()
            + i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX / 2)
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        Ok(out.item)
    }

    async fn read_claim(&self, id: &EventId) -> Result<Option<Recorded>, StateError> {
        let Some(item) = self.get(claim_pk(id), "EVT").await? else {
            return Ok(None);
        };
        if !item.contains_key("event") {
            return Ok(None);
        }
        Ok(Some(Recorded {
            event: parse(&item, "event")?,
            derived: parse(&item, "derived")?,
            first_time: false,
        }))
    }

    fn put(
        &self,
        item: Item,
        condition: Option<&str>,
        values: Option<Item>,
    ) -> Result<TransactWriteItem, StateError> {
        let mut p = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some(c) = condition {
            p = p.condition_expression(c);
        }
        if let Some(v) = values {
            p = p
                .set_expression_attribute_values(Some(v))
                .expression_attribute_names("#seq", "seq");
        }
        Ok(TransactWriteItem::builder()
            .put(p.build().map_err(build_err)?)
            .build())
    }

    fn transaction(
        &self,
        group: &str,
        prev_seq: Option<u64>,
        applied: &super::Applied,
    ) -> Result<Vec<TransactWriteItem>, StateError> {
        let now = self.now().to_string();
        let exp = self.expires_at();
        let mut items = Vec::with_capacity(2 + 1 + applied.derived.len());

        let mut claim = key(claim_pk(&applied.event.id), "EVT");
        claim.insert("group".into(), s(group));
        claim.insert("seq".into(), n(applied.event.sequence));
        claim.insert("event".into(), s(json(&applied.event)?));
        claim.insert("derived".into(), s(json(&applied.derived)?));
        claim.insert("claimed_at".into(), s(now.clone()));
        claim.insert(TTL_ATTRIBUTE.into(), n(exp));
        items.push(self.put(claim, Some("attribute_not_exists(pk)"), None)?);

        let mut st = key(group_pk(group), "STATE");
        st.insert("seq".into(), n(applied.next.sequence));
        if let Some(t) = applied.next.applied_at {
            st.insert("applied_at".into(), s(t.to_string()));
        }
        st.insert(
            "entitled".into(),
            AttributeValue::Bool(applied.next.entitlement.active),
        );
        st.insert("state".into(), s(json(&applied.next)?));
        if let Some(due) = applied.next.due_at() {
            st.insert(TABLE_DUE_SHARD_ATTRIBUTE.into(), s(due_shard(group)));
            st.insert(TABLE_DUE_AT_ATTRIBUTE.into(), n(due.millis()));
        }
        st.insert("updated_at".into(), s(now));
        items.push(match prev_seq {
            Some(p) => self.put(
                st,
                Some("#seq = :prev"),
                Some(HashMap::from([(":prev".to_owned(), n(p))])),
            )?,
            None => self.put(st, Some("attribute_not_exists(pk)"), None)?,
        });

        for e in std::iter::once(&applied.event).chain(&applied.derived) {
            let mut h = key(group_pk(group), &history_sk(e.sequence));
            h.insert("event".into(), s(json(e)?));
            h.insert("event_id".into(), s(e.id.as_str()));
            h.insert("type".into(), s(e.kind.as_str()));
            h.insert(TTL_ATTRIBUTE.into(), n(exp));
            items.push(self.put(h, None, None)?);
        }
        Ok(items)
    }
}

impl DynamoState {
    /// One optimistic attempt: apply `event` on top of `prev` (as read) in
    /// one conditional transaction.
    async fn transact(
        &self,
        group: &str,
        prev: Option<&GroupState>,
        event: Event,
        now: Timestamp,
    ) -> Result<Recorded, TxFailure> {
        let applied = transition(prev, event, now);
        let items = self
            .transaction(group, prev.map(|p| p.sequence), &applied)
            .map_err(TxFailure::Other)?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(classify_transaction)?;
        Ok(Recorded {
            event: applied.event,
            derived: applied.derived,
            first_time: true,
        })
    }
}

impl DynamoState {
    /// The due index (sparse GSI `due`) as `template.yaml` declares it, for
    /// the tables tests and `create_table` make.
    pub fn due_index()
    -> Result<aws_sdk_dynamodb::types::GlobalSecondaryIndex, aws_sdk_dynamodb::error::BuildError>
    {
        due_index()
    }
}

fn due_index()
-> Result<aws_sdk_dynamodb::types::GlobalSecondaryIndex, aws_sdk_dynamodb::error::BuildError> {
    use aws_sdk_dynamodb::types::{GlobalSecondaryIndex, Projection, ProjectionType};
    GlobalSecondaryIndex::builder()
        .index_name(TABLE_DUE_INDEX)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(TABLE_DUE_SHARD_ATTRIBUTE)
                .key_type(KeyType::Hash)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(TABLE_DUE_AT_ATTRIBUTE)
                .key_type(KeyType::Range)
                .build()?,
        )
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes(TABLE_DUE_PROJECTED_ATTRIBUTE)
                .build(),
        )
        .build()
}

#[async_trait]
impl StateStore for DynamoState {
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Due>, StateError> {
        let mut out = Vec::new();
        for shard in 0..TABLE_DUE_SHARDS {
            if out.len() >= limit {
                break;
            }
            out.extend(self.due_in_shard(shard, now, limit - out.len()).await?);
        }
        out.sort_by_key(|d| d.due_at);
        Ok(out)
    }

    async fn snooze(&self, group_key: &str, until: Timestamp) -> Result<(), StateError> {
        self.snooze_item(group_key, until).await
    }

    #[tracing::instrument(skip_all, fields(event_id = %event.id))]
    async fn apply(&self, event: Event, now: Timestamp) -> Result<Recorded, StateError> {
        let group = event.group_key();
        for attempt in 1..=MAX_CAS_ATTEMPTS {
            let prev = self.group(&group).await?;
            match self
                .transact(&group, prev.as_ref(), event.clone(), now)
                .await
            {
                Ok(r) => return Ok(r),
                Err(TxFailure::AlreadyClaimed) => {
                    if let Some(r) = self.read_claim(&event.id).await? {
                        return Ok(r);
                    }
                    // The claim vanished in between (TTL): try again.
                }
                Err(TxFailure::Conflict) => {
                    tracing::debug!(attempt, "state conflict, retrying");
                }
                Err(TxFailure::Other(e)) => return Err(e),
            }
            let backoff = 5 * u64::from(attempt) + fastrand::u64(0..10);
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        }
        Err(StateError::Conflict(format!(
            "group update conflicted {MAX_CAS_ATTEMPTS} times"
        )))
    }

    async fn group(&self, group_key: &str) -> Result<Option<GroupState>, StateError> {
        match self.get(group_pk(group_key), "STATE").await? {
            Some(item) => Ok(Some(parse(&item, "state")?)),
            None => Ok(None),
        }
    }

    async fn history(&self, group_key: &str) -> Result<Vec<Event>, StateError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :evt)")
                .expression_attribute_values(":pk", s(group_pk(group_key)))
                .expression_attribute_values(":evt", s("EVT#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_err("Query", e))?;
            for item in page.items() {
                out.push(parse(item, "event")?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn record_delivery(
        &self,
        event_id: &EventId,
        record: &DeliveryRecord,
    ) -> Result<(), StateError> {
        let mut set = vec![
            "attempts = :attempts",
            "latency_ms = :latency",
            "#ttl = if_not_exists(#ttl, :exp)",
        ];
        let mut remove = Vec::new();
        let mut values: Item = HashMap::from([
            (":attempts".to_owned(), n(record.attempts)),
            (":latency".to_owned(), n(record.latency_ms)),
            (":exp".to_owned(), n(self.expires_at())),
        ]);
        let mut opt =
            |attr: &'static str, placeholder: &'static str, v: Option<AttributeValue>| match v {
                Some(v) => {
                    set.push(placeholder);
                    values.insert(format!(":{attr}"), v);
                }
                None => remove.push(attr),
            };
        opt(
            "last_status",
            "last_status = :last_status",
            record.last_status.map(n),
        );
        opt(
            "delivered_at",
            "delivered_at = :delivered_at",
            record.delivered_at.map(|t| s(t.to_string())),
        );
        opt(
            "last_error",
            "last_error = :last_error",
            record.last_error.clone().map(s),
        );
        opt(
            "last_attempt_at",
            "last_attempt_at = :last_attempt_at",
            record.last_attempt_at.map(|t| s(t.to_string())),
        );
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(claim_pk(event_id), "EVT")))
            .update_expression(expr)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| sdk_err("UpdateItem", e))?;
        Ok(())
    }

    async fn delivery(&self, event_id: &EventId) -> Result<Option<DeliveryRecord>, StateError> {
        let Some(item) = self.get(claim_pk(event_id), "EVT").await? else {
            return Ok(None);
        };
        let Some(attempts) = get_n::<u32>(&item, "attempts") else {
            return Ok(None);
        };
        let ts = |attr: &str| -> Result<Option<Timestamp>, StateError> {
            get_s(&item, attr)
                .map(|v| {
                    serde_json::from_value(serde_json::Value::String(v.to_owned()))
                        .map_err(|e| StateError::Permanent(format!("corrupt {attr}: {e}")))
                })
                .transpose()
        };
        Ok(Some(DeliveryRecord {
            attempts,
            last_status: get_n(&item, "last_status"),
            latency_ms: get_n(&item, "latency_ms").unwrap_or(0),
            delivered_at: ts("delivered_at")?,
            last_error: get_s(&item, "last_error").map(str::to_owned),
            last_attempt_at: ts("last_attempt_at")?,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::EventType;

    /// A store on a fresh, uniquely named table of the emulator at
    /// `STOREHOOK_TEST_AWS_ENDPOINT`; None (with a skip line) when unset.
    async fn store(test: &str) -> Option<DynamoState> {
        let Some(sdk) = storehook_testkit::emulator::test_sdk_config().await else {
            eprintln!(
                "SKIP {test}: STOREHOOK_TEST_AWS_ENDPOINT is not set (start moto_server and set it to run DynamoDB tests)"
            );
            return None;
        };
        let table = format!("storehook-{test}-{}", fastrand::u64(..));
        let clock = Arc::new(ManualClock::new(t(0).0));
        let st = DynamoState::new(Client::new(&sdk), table, clock);
        st.create_table().await.unwrap();
        Some(st)
    }

    // No truly concurrent test here: moto does not isolate concurrent
    // TransactWriteItems (no lock; a failed transaction restores whole tables
    // from a snapshot taken when it started), so concurrent writers race inside
    // the emulator itself. DynamoDB transactions are serializable; what we
    // verify is that our conditions reject every stale write.
    #[tokio::test]
    async fn dynamo_state_rejects_stale_writes_and_retries() {
        let Some(st) = store("cas").await else { return };
        // GIVEN a group at sequence 2 (event + ACCESS_GRANTED)
        let e1 = sub_event("s1", EventType::SubscriptionStarted, "orig-s", 0, true);
        let group = e1.group_key();
        let r1 = st.apply(e1.clone(), apply_now()).await.unwrap();
        let current = st.group(&group).await.unwrap().unwrap();
        assert_eq!(current.sequence, 2);
        let e2 = sub_event("s2", EventType::SubscriptionRenewed, "orig-s", 5, true);

        // WHEN a writer that read "no group yet" tries to apply e2
        let stale_none = st.transact(&group, None, e2.clone(), apply_now()).await;
        // THEN it is a conflict (the group exists)
        assert!(
            matches!(stale_none, Err(TxFailure::Conflict)),
            "{stale_none:?}"
        );
        // WHEN a writer that read an older sequence tries
        let older = GroupState {
            sequence: 1,
            ..current.clone()
        };
        let stale_seq = st
            .transact(&group, Some(&older), e2.clone(), apply_now())
            .await;
        assert!(
            matches!(stale_seq, Err(TxFailure::Conflict)),
            "{stale_seq:?}"
        );
        // THEN nothing of e2 was written (atomic): no claim, state and history unchanged
        assert!(st.read_claim(&e2.id).await.unwrap().is_none());
        assert_eq!(st.group(&group).await.unwrap().unwrap(), current);
        assert_eq!(st.history(&group).await.unwrap().len(), 2);

        // WHEN an already-claimed event is written again on a fresh read
        let dup = st
            .transact(&group, Some(&current), e1.clone(), apply_now())
            .await;
        // THEN the claim condition reports it, and apply returns the stored result
        assert!(matches!(dup, Err(TxFailure::AlreadyClaimed)), "{dup:?}");
        let again = st.apply(e1, apply_now()).await.unwrap();
        assert!(!again.first_time);
        assert_eq!(again.event, r1.event);

        // AND a normal apply (fresh read) continues the sequence
        assert_eq!(st.apply(e2, apply_now()).await.unwrap().event.sequence, 3);
        assert_eq!(st.group(&group).await.unwrap().unwrap().sequence, 3);
    }

    #[tokio::test]
    async fn dynamo_items_have_the_documented_layout() {
        let Some(st) = store("layout").await else {
            return;
        };
        // GIVEN an applied event
        let e = sub_event("l1", EventType::SubscriptionStarted, "orig-l", 0, true);
        let group = e.group_key();
        let r = st.apply(e, apply_now()).await.unwrap();
        // THEN STATE carries seq, entitled, applied_at and the JSON state
        let state = st.get(group_pk(&group), "STATE").await.unwrap().unwrap();
        assert_eq!(get_n::<u64>(&state, "seq"), Some(2));
        assert_eq!(state.get("entitled").unwrap().as_bool().unwrap(), &true);
        assert_eq!(get_s(&state, "applied_at"), Some(t(0).to_string().as_str()));
        // AND, the group being due at its entitlement end, the due index keys
        assert_eq!(
            get_n::<i64>(&state, TABLE_DUE_AT_ATTRIBUTE),
            Some(t(30 * 24 * 60).millis())
        );
        assert_eq!(
            get_s(&state, TABLE_DUE_SHARD_ATTRIBUTE),
            Some(due_shard(&group).as_str())
        );
        assert!(due_shard(&group).parse::<u32>().unwrap() < TABLE_DUE_SHARDS);
        // AND history items are zero-padded, with a TTL
        let h = st
            .get(group_pk(&group), "EVT#00000000000000000002")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(get_s(&h, "type"), Some("ACCESS_GRANTED"));
        let ttl: i64 = get_n(&h, TTL_ATTRIBUTE).unwrap();
        assert_eq!(ttl, t(0).0.timestamp() + DEFAULT_RETENTION.as_secs() as i64);
        // AND the claim holds the event and a TTL
        let c = st.get(claim_pk(&r.event.id), "EVT").await.unwrap().unwrap();
        assert_eq!(get_n::<u64>(&c, "seq"), Some(1));
        assert!(get_n::<i64>(&c, TTL_ATTRIBUTE).is_some());
        // AND a delivery record lands on the claim without removing it
        st.record_delivery(
            &r.event.id,
            &DeliveryRecord {
                attempts: 1,
                last_status: Some(200),
                latency_ms: 7,
                delivered_at: Some(t(1)),
                last_error: None,
                last_attempt_at: Some(t(1)),
            },
        )
        .await
        .unwrap();
        let c = st.get(claim_pk(&r.event.id), "EVT").await.unwrap().unwrap();
        assert!(c.contains_key("event"));
        assert_eq!(get_n::<u16>(&c, "last_status"), Some(200));
    }
}
