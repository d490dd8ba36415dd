//! Consuming the SQS queue outside Lambda, the way Lambda's event source
//! mapping does (`storehook serve --aws`, end-to-end tests): long-poll up to 10
//! messages, hand them to the same batch handler as the dispatcher Lambda
//! ([`handle_sqs_batch`]), delete the ones not reported as failures.
//!
//! Also the dead-letter replay (`storehook replay --aws`).

use crate::dispatch::Dispatcher;
use crate::dispatch::sqs_batch::handle_sqs_batch;
use crate::queue::message_control::MessageControl;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Failures talking to SQS.
#[derive(Debug, thiserror::Error)]
#[error("sqs: {0}")]
pub struct PollError(pub String);

fn err<E: std::error::Error + 'static>(e: aws_sdk_sqs::error::SdkError<E>) -> PollError {
    PollError(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
}

/// One poll-and-dispatch round; returns how many messages were received.
pub async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait: Duration,
    dispatcher: Arc<Dispatcher>,
    control: Arc<dyn MessageControl>,
) -> Result<usize, PollError> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(i32::try_from(wait.as_secs().min(20)).unwrap_or(20))
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(err)?;
    let messages = out.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let records: Vec<SqsMessage> = messages
        .iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.receipt_handle = m.receipt_handle.clone();
            r.body = m.body.clone();
            r.attributes = m
                .attributes
                .as_ref()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect::<HashMap<_, _>>()
                })
                .unwrap_or_default();
            r.event_source = Some("aws:sqs".into());
            r
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    let response = handle_sqs_batch(event, dispatcher, control, None).await;
    let failed: std::collections::HashSet<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .set_receipt_handle(m.receipt_handle.clone())
                .build()
                .ok()
        })
        .collect();
    if !done.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(done))
            .send()
            .await
            .map_err(err)?;
    }
    Ok(messages.len())
}

/// Moves dead letters back to the queue: all of them, or those whose event id
/// is in `only`. A replayed message keeps its message group (so it is ordered
/// with its subscription) and gets a fresh deduplication id (SQS would
/// otherwise drop a replay within 5 minutes of the original). Returns how many
/// were moved.
pub async fn replay_dead_letters(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    only: Option<&[String]>,
) -> Result<usize, PollError> {
    let mut moved = 0;
    let mut skipped_handles = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(err)?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let body = m.body.clone().unwrap_or_default();
            let event_id = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned));
            let wanted = only.is_none_or(|ids| {
                event_id
                    .as_ref()
                    .is_some_and(|id| ids.iter().any(|s| crate::fanout::selects(s, id)))
            });
            let receipt = m.receipt_handle.clone().unwrap_or_default();
            if !wanted {
                skipped_handles.push(receipt);
                continue;
            }
            let group = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId).cloned())
                .or_else(|| event_id.clone())
                .unwrap_or_else(|| "replay".into());
            let dedup = format!(
                "replay-{}-{}",
                m.message_id.as_deref().unwrap_or("x"),
                chrono::Utc::now().timestamp_millis()
            );
            sqs.send_message()
                .queue_url(queue_url)
                .message_body(body)
                .message_group_id(group)
                .message_deduplication_id(dedup)
                .send()
                .await
                .map_err(err)?;
            sqs.delete_message()
                .queue_url(dlq_url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(err)?;
            moved += 1;
        }
    }
    // Release the ones we looked at but were not asked to move.
    for receipt in skipped_handles {
        let _ = sqs
            .change_message_visibility()
            .queue_url(dlq_url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await;
    }
    Ok(moved)
}
