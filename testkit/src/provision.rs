//! Creates storehook's AWS resources for the tests — the SQS FIFO queue with
//! its FIFO dead-letter queue and redrive policy, the DynamoDB table with TTL,
//! and the webhook secret — against any endpoint (a local emulator such as
//! moto, or a real account), with exactly the attributes `template.yaml`
//! declares for the deployed stack: the `pub const`s of
//! [`storehook_shared::provision`], which `scripts/check_template.py` compares
//! with the template.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    ScalarAttributeType, SseSpecification, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use storehook_shared::provision::*;

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A queue or table name AWS would reject.
    #[error("invalid resource name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An AWS call failed (the message includes the service's error code).
    #[error("{operation} failed: {message}")]
    Aws {
        /// The API operation, e.g. `CreateQueue`.
        operation: &'static str,
        /// The SDK error with its causes.
        message: String,
    },
    /// An AWS answer lacked a field that is always present on AWS.
    #[error("{operation} answered without {field}")]
    MissingField {
        /// The API operation.
        operation: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// An existing resource differs from what storehook needs.
    #[error("{resource} exists with a different configuration: {detail}")]
    Mismatch {
        /// The resource name.
        resource: String,
        /// What differs.
        detail: String,
    },
    /// The table did not become ACTIVE in time.
    #[error("table {table} is not ACTIVE after {waited_s} s")]
    TableNotActive {
        /// The table name.
        table: String,
        /// Seconds waited.
        waited_s: u64,
    },
    /// The system random generator failed.
    #[error("random generator failed")]
    Random,
}

impl ProvisionError {
    /// Whether trying again later can succeed (AWS throttling, network, a slow table).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Aws { .. } | Self::TableNotActive { .. })
    }
}

/// The base name must be 1–80 characters of `[A-Za-z0-9_-]` once the
/// dead-letter suffix is added (SQS's rule, stricter than DynamoDB's).
pub fn validate_name(name: &str) -> Result<(), ProvisionError> {
    let invalid = |reason| {
        Err(ProvisionError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() + DLQ_NAME_SUFFIX.len() + FIFO_SUFFIX.len() > 80 {
        return invalid("longer than 80 characters with \"-dlq.fifo\"");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return invalid("only ASCII letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

/// Queue name for a base name: `<name>.fifo`.
pub fn queue_name(name: &str) -> String {
    format!("{name}{FIFO_SUFFIX}")
}

/// Dead-letter queue name for a base name: `<name>-dlq.fifo`.
pub fn dead_letter_queue_name(name: &str) -> String {
    format!("{name}{DLQ_NAME_SUFFIX}{FIFO_SUFFIX}")
}

/// A webhook signing secret like the template's generated one: 32 random
/// alphanumeric characters, i.e. valid base64 for 24 bytes of key.
pub fn generate_webhook_secret() -> Result<String, ProvisionError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let want = WEBHOOK_SECRET_LENGTH as usize;
    let mut out = String::with_capacity(want);
    while out.len() < want {
        let mut buf = [0u8; 64];
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| ProvisionError::Random)?;
        // Rejection sampling: 248 = 4 × 62 keeps the choice uniform.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == want {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

/// The queues [`create_queues`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    /// URL of the FIFO event queue (`QUEUE_URL`).
    pub queue_url: String,
    /// ARN of the FIFO event queue.
    pub queue_arn: String,
    /// URL of the FIFO dead-letter queue (`DLQ_URL`).
    pub dlq_url: String,
    /// ARN of the FIFO dead-letter queue.
    pub dlq_arn: String,
}

/// What [`provision`] made; hand it to [`destroy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The queues.
    pub queues: QueueUrls,
    /// The table name (`TABLE_NAME`).
    pub table_name: String,
}

fn aws_err<E>(operation: &'static str) -> impl FnOnce(E) -> ProvisionError
where
    E: std::error::Error,
{
    move |e| ProvisionError::Aws {
        operation,
        message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// The attributes of the dead-letter queue, as `template.yaml` declares them.
pub fn dead_letter_queue_attributes() -> Vec<(QueueAttributeName, String)> {
    vec![
        (QueueAttributeName::FifoQueue, bool_str(QUEUE_FIFO).into()),
        (
            QueueAttributeName::ContentBasedDeduplication,
            bool_str(QUEUE_CONTENT_BASED_DEDUPLICATION).into(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_MESSAGE_RETENTION_S.to_string(),
        ),
        (
            QueueAttributeName::SqsManagedSseEnabled,
            bool_str(QUEUE_SQS_MANAGED_SSE).into(),
        ),
    ]
}

/// The attributes of the event queue, as `template.yaml` declares them.
pub fn queue_attributes(
    dlq_arn: &str,
    max_receive_count: u32,
    visibility_timeout_s: u32,
) -> Vec<(QueueAttributeName, String)> {
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count,
    });
    vec![
        (QueueAttributeName::FifoQueue, bool_str(QUEUE_FIFO).into()),
        (
            QueueAttributeName::ContentBasedDeduplication,
            bool_str(QUEUE_CONTENT_BASED_DEDUPLICATION).into(),
        ),
        (
            QueueAttributeName::DeduplicationScope,
            QUEUE_DEDUPLICATION_SCOPE.into(),
        ),
        (
            QueueAttributeName::FifoThroughputLimit,
            QUEUE_FIFO_THROUGHPUT_LIMIT.into(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            QUEUE_MESSAGE_RETENTION_S.to_string(),
        ),
        (
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_s.to_string(),
        ),
        (
            QueueAttributeName::SqsManagedSseEnabled,
            bool_str(QUEUE_SQS_MANAGED_SSE).into(),
        ),
        (QueueAttributeName::RedrivePolicy, redrive.to_string()),
    ]
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: String,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<(String, String), ProvisionError> {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        req = req.attributes(k, v);
    }
    let out = req.send().await.map_err(aws_err("CreateQueue"))?;
    let url = out
        .queue_url()
        .ok_or(ProvisionError::MissingField {
            operation: "CreateQueue",
            field: "QueueUrl",
        })?
        .to_owned();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_err("GetQueueAttributes"))?;
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .ok_or(ProvisionError::MissingField {
            operation: "GetQueueAttributes",
            field: "QueueArn",
        })?
        .clone();
    Ok((url, arn))
}

/// Creates (or reuses, when the attributes are identical) the FIFO queue
/// `<name>.fifo` and its FIFO dead-letter queue `<name>-dlq.fifo` with the
/// redrive policy after `max_receive_count` receives. Production values:
/// [`DEFAULT_MAX_RECEIVE_COUNT`], [`QUEUE_VISIBILITY_TIMEOUT_S`]; tests may
/// use small ones.
#[tracing::instrument(skip(sqs))]
pub async fn create_queues(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    max_receive_count: u32,
    visibility_timeout_s: u32,
) -> Result<QueueUrls, ProvisionError> {
    validate_name(name)?;
    let (dlq_url, dlq_arn) = create_queue(
        sqs,
        dead_letter_queue_name(name),
        dead_letter_queue_attributes(),
    )
    .await?;
    let (queue_url, queue_arn) = create_queue(
        sqs,
        queue_name(name),
        queue_attributes(&dlq_arn, max_receive_count, visibility_timeout_s),
    )
    .await?;
    Ok(QueueUrls {
        queue_url,
        queue_arn,
        dlq_url,
        dlq_arn,
    })
}

/// Creates (or reuses) the table `name` with the key schema, the sweeper's
/// due index, billing mode, encryption, TTL and point-in-time recovery
/// `template.yaml` declares, and
/// waits until it is ACTIVE.
#[tracing::instrument(skip(ddb))]
pub async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), ProvisionError> {
    validate_name(name)?;
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(aws_err("CreateTable"))
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .map_err(aws_err("CreateTable"))
    };
    let created = ddb
        .create_table()
        .table_name(name)
        .attribute_definitions(attr(TABLE_PARTITION_KEY)?)
        .attribute_definitions(attr(TABLE_SORT_KEY)?)
        .attribute_definitions(attr(TABLE_DUE_SHARD_ATTRIBUTE)?)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(TABLE_DUE_AT_ATTRIBUTE)
                .attribute_type(ScalarAttributeType::N)
                .build()
                .map_err(aws_err("CreateTable"))?,
        )
        .key_schema(key(TABLE_PARTITION_KEY, KeyType::Hash)?)
        .key_schema(key(TABLE_SORT_KEY, KeyType::Range)?)
        .global_secondary_indexes(
            storehook_shared::state::DynamoState::due_index().map_err(aws_err("CreateTable"))?,
        )
        .billing_mode(BillingMode::from(TABLE_BILLING_MODE))
        .sse_specification(
            SseSpecification::builder()
                .enabled(TABLE_SSE_ENABLED)
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            tracing::debug!("table exists, reusing it");
        }
        Err(e) => return Err(aws_err("CreateTable")(e)),
    }
    wait_active(ddb, name).await?;
    enable_ttl(ddb, name).await?;
    ddb.update_continuous_backups()
        .table_name(name)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(TABLE_POINT_IN_TIME_RECOVERY)
                .build()
                .map_err(aws_err("UpdateContinuousBackups"))?,
        )
        .send()
        .await
        .map_err(aws_err("UpdateContinuousBackups"))?;
    Ok(())
}

async fn wait_active(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), ProvisionError> {
    const STEP: Duration = Duration::from_millis(250);
    const LIMIT: Duration = Duration::from_secs(120);
    let mut waited = Duration::ZERO;
    loop {
        let out = ddb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(aws_err("DescribeTable"))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if waited >= LIMIT {
            return Err(ProvisionError::TableNotActive {
                table: name.to_owned(),
                waited_s: waited.as_secs(),
            });
        }
        tokio::time::sleep(STEP).await;
        waited += STEP;
    }
}

async fn enable_ttl(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), ProvisionError> {
    let ttl = ddb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(aws_err("DescribeTimeToLive"))?;
    let desc = ttl.time_to_live_description();
    let status = desc.and_then(|d| d.time_to_live_status());
    if matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        let attribute = desc.and_then(|d| d.attribute_name()).unwrap_or_default();
        if attribute != TABLE_TTL_ATTRIBUTE {
            return Err(ProvisionError::Mismatch {
                resource: name.to_owned(),
                detail: format!("TTL attribute is {attribute:?}, not {TABLE_TTL_ATTRIBUTE:?}"),
            });
        }
        return Ok(());
    }
    ddb.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TABLE_TTL_ATTRIBUTE)
                .build()
                .map_err(aws_err("UpdateTimeToLive"))?,
        )
        .send()
        .await
        .map_err(aws_err("UpdateTimeToLive"))?;
    Ok(())
}

/// Stores `secret` (e.g. from [`generate_webhook_secret`]) as the Secrets
/// Manager secret `name`; returns its ARN (`WEBHOOK_SECRET_ARN`).
#[tracing::instrument(skip(sm, secret))]
pub async fn create_webhook_secret(
    sm: &aws_sdk_secretsmanager::Client,
    name: &str,
    secret: &str,
) -> Result<String, ProvisionError> {
    let out = sm
        .create_secret()
        .name(name)
        .description("storehook webhook signing secret")
        .secret_string(secret)
        .send()
        .await
        .map_err(aws_err("CreateSecret"))?;
    out.arn()
        .map(str::to_owned)
        .ok_or(ProvisionError::MissingField {
            operation: "CreateSecret",
            field: "ARN",
        })
}

/// Deletes the secret at once (no recovery window); a missing secret is fine.
#[tracing::instrument(skip(sm))]
pub async fn delete_webhook_secret(
    sm: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<(), ProvisionError> {
    match sm
        .delete_secret()
        .secret_id(secret_id)
        .force_delete_without_recovery(true)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(aws_err("DeleteSecret")(e)),
    }
}

/// Queues `<name>.fifo` + `<name>-dlq.fifo` and table `<name>` with the
/// production values.
pub async fn provision(
    sqs: &aws_sdk_sqs::Client,
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<Provisioned, ProvisionError> {
    let queues = create_queues(
        sqs,
        name,
        DEFAULT_MAX_RECEIVE_COUNT,
        QUEUE_VISIBILITY_TIMEOUT_S,
    )
    .await?;
    create_table(ddb, name).await?;
    Ok(Provisioned {
        queues,
        table_name: name.to_owned(),
    })
}

/// Deletes both queues and the table. Resources already gone are fine;
/// every deletion is tried, the first failure is returned.
#[tracing::instrument(skip(sqs, ddb))]
pub async fn destroy(
    sqs: &aws_sdk_sqs::Client,
    ddb: &aws_sdk_dynamodb::Client,
    provisioned: &Provisioned,
) -> Result<(), ProvisionError> {
    let mut first = None;
    for url in [&provisioned.queues.queue_url, &provisioned.queues.dlq_url] {
        match sqs.delete_queue().queue_url(url).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) => {}
            Err(e) => {
                first.get_or_insert(aws_err("DeleteQueue")(e));
            }
        }
    }
    match ddb
        .delete_table()
        .table_name(&provisioned.table_name)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => {
            first.get_or_insert(aws_err("DeleteTable")(e));
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_sqs_rules() {
        // GIVEN base names WHEN validated THEN only SQS-safe ones pass.
        assert!(validate_name("storehook-test_1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name("dot.fifo").is_err());
        assert!(validate_name(&"a".repeat(71)).is_ok());
        assert!(validate_name(&"a".repeat(72)).is_err());
        assert_eq!(queue_name("x"), "x.fifo");
        assert_eq!(dead_letter_queue_name("x"), "x-dlq.fifo");
    }

    #[test]
    fn generated_secret_is_32_base64_alphanumerics() -> Result<(), ProvisionError> {
        // GIVEN two generated secrets THEN both are 32 alphanumerics (24 bytes of base64) and differ.
        let a = generate_webhook_secret()?;
        let b = generate_webhook_secret()?;
        assert_eq!(a.len(), WEBHOOK_SECRET_LENGTH as usize);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        Ok(())
    }
}
