//! The attributes of storehook's AWS resources — the SQS FIFO queue with its
//! FIFO dead-letter queue and redrive policy, the DynamoDB table with TTL, and
//! the webhook secret — exactly as `template.yaml` declares them for the
//! deployed stack. The test kit (`storehook_testkit::provision`) creates the
//! tests' resources with these values.
//!
//! The attribute values are the `pub const`s below. `scripts/check_template.py`
//! (run by `scripts/test.sh` and CI) parses them from this file and fails when
//! `template.yaml` declares anything else, so keep each one a plain literal on
//! one line: `pub const NAME: type = literal;`.

/// The queue and the dead-letter queue are FIFO queues.
pub const QUEUE_FIFO: bool = true;
/// Deduplication uses the explicit `MessageDeduplicationId` (the event id), never the body hash.
pub const QUEUE_CONTENT_BASED_DEDUPLICATION: bool = false;
/// High-throughput FIFO: deduplication per message group ...
pub const QUEUE_DEDUPLICATION_SCOPE: &str = "messageGroup";
/// ... and the throughput quota per message group (subscription).
pub const QUEUE_FIFO_THROUGHPUT_LIMIT: &str = "perMessageGroupId";
/// 14 days (the SQS maximum); the retry schedule spans about 4 days.
pub const QUEUE_MESSAGE_RETENTION_S: u32 = 1209600;
/// Visibility timeout of the queue: at least 6 × [`DISPATCHER_TIMEOUT_S`]
/// (AWS guidance for a queue consumed by a Lambda event source mapping).
pub const QUEUE_VISIBILITY_TIMEOUT_S: u32 = 720;
/// Server-side encryption with SQS-managed keys.
pub const QUEUE_SQS_MANAGED_SSE: bool = true;
/// 14 days; a FIFO queue resets the enqueue time of a dead-lettered message.
pub const DLQ_MESSAGE_RETENTION_S: u32 = 1209600;
/// Receives before SQS moves a message to the dead-letter queue: the attempts of
/// the default retry schedule (`retry::DEFAULT_MAX_ATTEMPTS`, checked by
/// `scripts/check_template.py` together with the template's `MaxReceiveCount`).
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 14;
/// Appended to the queue name; the dead-letter queue is `<name>-dlq.fifo`.
pub const FIFO_SUFFIX: &str = ".fifo";
/// Inserted before [`FIFO_SUFFIX`] in the dead-letter queue's name.
pub const DLQ_NAME_SUFFIX: &str = "-dlq";

/// The dispatcher Lambda's timeout (template `DispatcherFunction.Timeout`).
pub const DISPATCHER_TIMEOUT_S: u32 = 120;
/// Messages per dispatcher invocation: the FIFO event source maximum.
pub const DISPATCHER_BATCH_SIZE: u32 = 10;

/// Partition key attribute (string).
pub const TABLE_PARTITION_KEY: &str = "pk";
/// Sort key attribute (string).
pub const TABLE_SORT_KEY: &str = "sk";
/// TTL attribute (epoch seconds) of history items and delivery records.
pub const TABLE_TTL_ATTRIBUTE: &str = "expires_at_epoch";
/// On-demand capacity.
pub const TABLE_BILLING_MODE: &str = "PAY_PER_REQUEST";
/// Point-in-time recovery of the table.
pub const TABLE_POINT_IN_TIME_RECOVERY: bool = true;
/// Server-side encryption with the AWS managed KMS key (`SSEEnabled: true`).
pub const TABLE_SSE_ENABLED: bool = true;

/// The sparse global secondary index of the sweeper's due groups: only the
/// `STATE` items of groups due at some time carry its keys.
pub const TABLE_DUE_INDEX: &str = "due";
/// Its partition key (string): one of [`TABLE_DUE_SHARDS`] fixed shards.
pub const TABLE_DUE_SHARD_ATTRIBUTE: &str = "due_shard";
/// Its sort key (number): the due time in epoch milliseconds.
pub const TABLE_DUE_AT_ATTRIBUTE: &str = "due_at";
/// Shards of the due index (`"0"` .. `"3"`): spreads the index's writes over
/// partitions; the sweeper queries each.
pub const TABLE_DUE_SHARDS: u32 = 4;
/// The non-key attribute the due index projects (the group state).
pub const TABLE_DUE_PROJECTED_ATTRIBUTE: &str = "state";

/// Length of the generated webhook secret: alphanumeric characters, so valid
/// base64 (32 characters = 24 bytes of key), like the template's
/// `GenerateSecretString { PasswordLength: 32, ExcludePunctuation: true }`.
pub const WEBHOOK_SECRET_LENGTH: u32 = 32;

// The relations cfn-lint does not check, also enforced at compile time.
const _: () = assert!(QUEUE_VISIBILITY_TIMEOUT_S >= 6 * DISPATCHER_TIMEOUT_S);
const _: () = assert!(QUEUE_VISIBILITY_TIMEOUT_S <= 43_200);
const _: () = assert!(DISPATCHER_BATCH_SIZE > 0);
const _: () = assert!(DISPATCHER_BATCH_SIZE <= 10);
// A batch of one subscription's events is delivered one after the other.
const _: () = assert!(
    crate::webhook::DEFAULT_TIMEOUT.as_secs() * DISPATCHER_BATCH_SIZE as u64
        <= DISPATCHER_TIMEOUT_S as u64
);
const _: () = assert!(DEFAULT_MAX_RECEIVE_COUNT == crate::retry::DEFAULT_MAX_ATTEMPTS);
