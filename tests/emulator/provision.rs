//! The test kit's provisioning (`storehook_testkit::provision`) against the
//! emulator: the queues, table and secret exactly as `template.yaml` declares them.

use std::collections::HashMap;
use std::io::Write as _;

use aws_sdk_dynamodb::types::{
    BillingMode, KeyType, PointInTimeRecoveryStatus, ScalarAttributeType, SseStatus,
    TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName as Q;

use storehook_shared::provision::*;
use storehook_testkit::emulator::{TEST_ENDPOINT_ENV, test_sdk_config};
use storehook_testkit::provision::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn sdk_config() -> Option<aws_config::SdkConfig> {
    let sdk = test_sdk_config().await;
    if sdk.is_none() {
        // Written past the test harness's capture so the skip is visible.
        let _ = writeln!(
            std::io::stderr(),
            "provision tests skipped: set {TEST_ENDPOINT_ENV} (scripts/test.sh starts moto and sets it)"
        );
    }
    sdk
}

fn unique(prefix: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{prefix}-{now}-{:08x}", fastrand::u32(..))
}

async fn queue_attrs(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<HashMap<Q, String>, Box<dyn std::error::Error>> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Q::All)
        .send()
        .await?;
    Ok(out.attributes().cloned().unwrap_or_default())
}

fn attr(attrs: &HashMap<Q, String>, name: Q) -> Option<&str> {
    attrs.get(&name).map(String::as_str)
}

#[tokio::test]
async fn creates_queues_and_table_exactly_as_the_template_declares() -> TestResult {
    let Some(config) = sdk_config().await else {
        return Ok(());
    };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let name = unique("storehook-provision");

    // WHEN the stack's resources are provisioned (twice: it must be idempotent)
    let provisioned = provision(&sqs, &ddb, &name).await?;
    let again = provision(&sqs, &ddb, &name).await?;
    assert_eq!(provisioned, again);

    // THEN the event queue has the template's attributes
    let q = queue_attrs(&sqs, &provisioned.queues.queue_url).await?;
    assert_eq!(attr(&q, Q::FifoQueue), Some("true"));
    assert_eq!(attr(&q, Q::ContentBasedDeduplication), Some("false"));
    assert_eq!(
        attr(&q, Q::DeduplicationScope),
        Some(QUEUE_DEDUPLICATION_SCOPE)
    );
    assert_eq!(
        attr(&q, Q::FifoThroughputLimit),
        Some(QUEUE_FIFO_THROUGHPUT_LIMIT)
    );
    assert_eq!(attr(&q, Q::MessageRetentionPeriod), Some("1209600"));
    assert_eq!(attr(&q, Q::VisibilityTimeout), Some("720"));
    assert_eq!(attr(&q, Q::SqsManagedSseEnabled), Some("true"));
    assert_eq!(
        attr(&q, Q::QueueArn),
        Some(provisioned.queues.queue_arn.as_str())
    );
    assert!(
        provisioned
            .queues
            .queue_url
            .ends_with(&format!("{name}.fifo"))
    );
    let redrive: serde_json::Value =
        serde_json::from_str(attr(&q, Q::RedrivePolicy).unwrap_or("null"))?;
    assert_eq!(
        redrive["deadLetterTargetArn"].as_str(),
        Some(provisioned.queues.dlq_arn.as_str())
    );
    let max_receive = match &redrive["maxReceiveCount"] {
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        v => v.as_u64(),
    };
    assert_eq!(max_receive, Some(u64::from(DEFAULT_MAX_RECEIVE_COUNT)));

    // AND the dead-letter queue is FIFO, kept 14 days, encrypted, without redrive
    let d = queue_attrs(&sqs, &provisioned.queues.dlq_url).await?;
    assert!(
        provisioned
            .queues
            .dlq_url
            .ends_with(&format!("{name}-dlq.fifo"))
    );
    assert_eq!(attr(&d, Q::FifoQueue), Some("true"));
    assert_eq!(attr(&d, Q::ContentBasedDeduplication), Some("false"));
    assert_eq!(attr(&d, Q::MessageRetentionPeriod), Some("1209600"));
    assert_eq!(attr(&d, Q::SqsManagedSseEnabled), Some("true"));
    assert_eq!(attr(&d, Q::RedrivePolicy), None);

    // AND the table has pk/sk string keys, on-demand billing, SSE, TTL and PITR
    let described = ddb.describe_table().table_name(&name).send().await?;
    let table = described.table().ok_or("DescribeTable without Table")?;
    let keys: Vec<(&str, &KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(keys, vec![("pk", &KeyType::Hash), ("sk", &KeyType::Range)]);
    let mut defs: Vec<(&str, &ScalarAttributeType)> = table
        .attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name(), a.attribute_type()))
        .collect();
    defs.sort_by_key(|(n, _)| *n);
    assert_eq!(
        defs,
        vec![
            ("due_at", &ScalarAttributeType::N),
            ("due_shard", &ScalarAttributeType::S),
            ("pk", &ScalarAttributeType::S),
            ("sk", &ScalarAttributeType::S)
        ]
    );
    // AND the sweeper's sparse due index: due_shard/due_at, projecting the state
    type Keys<'a> = Vec<(&'a str, &'a KeyType)>;
    let gsis: Vec<(&str, Keys<'_>, Vec<String>)> = table
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            (
                g.index_name().unwrap_or_default(),
                g.key_schema()
                    .iter()
                    .map(|k| (k.attribute_name(), k.key_type()))
                    .collect(),
                g.projection()
                    .map(|p| p.non_key_attributes().to_vec())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        gsis,
        vec![(
            "due",
            vec![("due_shard", &KeyType::Hash), ("due_at", &KeyType::Range)],
            vec!["state".to_owned()]
        )]
    );
    assert_eq!(
        table.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    assert_eq!(
        table.sse_description().and_then(|s| s.status()),
        Some(&SseStatus::Enabled)
    );
    let ttl = ddb.describe_time_to_live().table_name(&name).send().await?;
    let ttl = ttl.time_to_live_description().ok_or("no TTL description")?;
    assert_eq!(ttl.attribute_name(), Some("expires_at_epoch"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    let backups = ddb
        .describe_continuous_backups()
        .table_name(&name)
        .send()
        .await?;
    assert_eq!(
        backups
            .continuous_backups_description()
            .and_then(|b| b.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status()),
        Some(&PointInTimeRecoveryStatus::Enabled)
    );

    // WHEN destroyed THEN both queues and the table are gone, and destroying again is fine
    destroy(&sqs, &ddb, &provisioned).await?;
    assert!(
        queue_attrs(&sqs, &provisioned.queues.queue_url)
            .await
            .is_err()
    );
    assert!(
        queue_attrs(&sqs, &provisioned.queues.dlq_url)
            .await
            .is_err()
    );
    assert!(ddb.describe_table().table_name(&name).send().await.is_err());
    destroy(&sqs, &ddb, &provisioned).await?;
    Ok(())
}

#[tokio::test]
async fn stores_and_deletes_the_webhook_secret() -> TestResult {
    let Some(config) = sdk_config().await else {
        return Ok(());
    };
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    let name = unique("storehook-secret");
    let secret = generate_webhook_secret()?;

    // WHEN stored THEN it reads back by ARN
    let arn = create_webhook_secret(&sm, &name, &secret).await?;
    let read = sm.get_secret_value().secret_id(&arn).send().await?;
    assert_eq!(read.secret_string(), Some(secret.as_str()));

    // WHEN deleted (twice) THEN it is gone
    delete_webhook_secret(&sm, &arn).await?;
    delete_webhook_secret(&sm, &arn).await?;
    assert!(sm.get_secret_value().secret_id(&arn).send().await.is_err());
    Ok(())
}
