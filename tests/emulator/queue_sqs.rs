//! The SQS adapters (`queue::sqs`) against the emulator: the queue port and
//! message control, and the Lambda batch path through SQS and DynamoDB.

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use std::time::Duration;
use storehook_shared::queue::message_control::{
    DLQ_ATTR_REASON, DLQ_ATTR_RECEIVE_COUNT, DLQ_ATTR_SOURCE_MESSAGE_ID, DeadLetterMessage,
    MessageControl,
};
use storehook_shared::queue::sqs::{SqsMessageControl, SqsQueue};
use storehook_shared::queue::{EventQueue, QueueError, QueueMessage};
use storehook_shared::retry::MAX_STEP;
use storehook_shared::webhook::{WebhookSecret, WebhookSecrets};
use storehook_testkit::emulator::{TEST_ENDPOINT_ENV, test_sdk_config};

async fn fifo_queue(client: &aws_sdk_sqs::Client, name: &str) -> String {
    client
        .create_queue()
        .queue_name(format!("{name}-{}.fifo", fastrand::u32(..)))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

#[tokio::test]
async fn sqs_queue_and_message_control_against_the_emulator() {
    let Some(sdk) = test_sdk_config().await else {
        eprintln!(
            "SKIP sqs_queue_and_message_control_against_the_emulator: {TEST_ENDPOINT_ENV} is not set"
        );
        return;
    };
    let client = aws_sdk_sqs::Client::new(&sdk);
    let q = fifo_queue(&client, "events").await;
    let dlq = fifo_queue(&client, "dlq").await;
    // GIVEN 12 messages of one group sent through the queue port (two batch calls)
    let queue = SqsQueue::new(client.clone(), q.clone());
    let messages: Vec<QueueMessage> = (0..12)
        .map(|i| QueueMessage {
            group_id: "sub_1".into(),
            dedup_id: format!("evt_{i}"),
            body: format!("{{\"n\":{i}}}"),
        })
        .collect();
    queue.send(&messages).await.unwrap();
    // WHEN received
    let mut got = Vec::new();
    let mut handles = Vec::new();
    while got.len() < 12 {
        let out = client
            .receive_message()
            .queue_url(&q)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let ms = out.messages.unwrap_or_default();
        assert!(!ms.is_empty(), "queue ran dry after {}", got.len());
        for m in ms {
            let attrs = m.attributes.clone().unwrap_or_default();
            assert_eq!(
                attrs
                    .get(&MessageSystemAttributeName::MessageGroupId)
                    .unwrap(),
                "sub_1"
            );
            got.push(m.body.clone().unwrap());
            handles.push(m.receipt_handle.clone().unwrap());
            client
                .delete_message()
                .queue_url(&q)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    // THEN all arrived in order
    assert_eq!(
        got,
        (0..12)
            .map(|i| format!("{{\"n\":{i}}}"))
            .collect::<Vec<_>>()
    );

    // GIVEN a received message WHEN delayed THEN it stays invisible
    queue
        .send(&[QueueMessage {
            group_id: "sub_2".into(),
            dedup_id: "evt_delay".into(),
            body: "{}".into(),
        }])
        .await
        .unwrap();
    let ctl = SqsMessageControl::new(client.clone(), q.clone(), dlq.clone());
    let m = client
        .receive_message()
        .queue_url(&q)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let rh = m.messages.unwrap()[0].receipt_handle.clone().unwrap();
    ctl.delay(&rh, Duration::from_secs(600)).await.unwrap();
    // A 12 h step a few seconds after the receive is accepted (capped below SQS's limit).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ctl.delay(&rh, MAX_STEP).await.unwrap();
    let again = client.receive_message().queue_url(&q).send().await.unwrap();
    assert!(again.messages.unwrap_or_default().is_empty());

    // WHEN a message is dead-lettered THEN the DLQ holds the body and the reason
    ctl.dead_letter(&DeadLetterMessage {
        body: "{\"id\":\"evt_x\"}".into(),
        group_id: "sub_3".into(),
        dedup_id: "msg-123".into(),
        reason: "webhook answered 410 Gone".into(),
        receive_count: 3,
    })
    .await
    .unwrap();
    let d = client
        .receive_message()
        .queue_url(&dlq)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let d = &d.messages.unwrap()[0];
    assert_eq!(d.body.as_deref(), Some("{\"id\":\"evt_x\"}"));
    let attrs = d.message_attributes.clone().unwrap();
    assert_eq!(
        attrs[DLQ_ATTR_REASON].string_value(),
        Some("webhook answered 410 Gone")
    );
    assert_eq!(attrs[DLQ_ATTR_RECEIVE_COUNT].string_value(), Some("3"));
    assert_eq!(
        attrs[DLQ_ATTR_SOURCE_MESSAGE_ID].string_value(),
        Some("msg-123")
    );

    // AND a send to a missing queue is a retryable error
    let gone = SqsQueue::new(client, format!("{q}-missing"));
    assert!(matches!(
        gone.send(&messages[..1]).await,
        Err(QueueError::Unavailable(_))
    ));
}

/// Receives up to 10 messages as the Lambda SQS poller would hand them over.
async fn receive_as_lambda_event(
    client: &aws_sdk_sqs::Client,
    q: &str,
) -> aws_lambda_events::sqs::SqsEvent {
    let out = client
        .receive_message()
        .queue_url(q)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut ev = aws_lambda_events::sqs::SqsEvent::default();
    for m in out.messages.unwrap_or_default() {
        let mut lm = aws_lambda_events::sqs::SqsMessage::default();
        lm.message_id = m.message_id.clone();
        lm.receipt_handle = m.receipt_handle.clone();
        lm.body = m.body.clone();
        lm.attributes = m
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect();
        ev.records.push(lm);
    }
    ev
}

#[tokio::test]
async fn lambda_batch_path_against_the_emulator() {
    use std::sync::Arc;
    use storehook_shared::clock::ManualClock;
    use storehook_shared::dispatch::Dispatcher;
    use storehook_shared::dispatch::sqs_batch::handle_sqs_batch;
    use storehook_shared::event::EventType;
    use storehook_shared::retry::RetrySchedule;
    use storehook_shared::state::{DynamoState, StateStore};
    use storehook_shared::webhook::HttpWebhookSender;
    use storehook_testkit::fixtures::*;
    use storehook_testkit::receiver::{Reply, TestReceiver};

    let Some(sdk) = test_sdk_config().await else {
        eprintln!("SKIP lambda_batch_path_against_the_emulator: {TEST_ENDPOINT_ENV} is not set");
        return;
    };
    // GIVEN a FIFO queue + DLQ, a table, and a receiver answering 500 then 200
    let client = aws_sdk_sqs::Client::new(&sdk);
    let q = fifo_queue(&client, "lambda").await;
    let dlq = fifo_queue(&client, "lambda-dlq").await;
    let clock = Arc::new(ManualClock::new(t(0).0));
    let state = DynamoState::from_sdk(
        &sdk,
        format!("storehook-lambda-{}", fastrand::u64(..)),
        clock.clone(),
    );
    state.create_table().await.unwrap();
    let state = Arc::new(state);
    let rx = TestReceiver::start().await.unwrap();
    rx.push(Reply::status(500));
    let secrets = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
    let sender =
        HttpWebhookSender::new(&rx.url(), secrets, Duration::from_secs(5), clock.clone()).unwrap();
    let d = Arc::new(Dispatcher::new(
        state.clone(),
        Arc::new(sender),
        RetrySchedule::parse("1s,1s").unwrap().with_jitter(0.0),
        clock,
    ));
    let ctl: Arc<dyn MessageControl> = Arc::new(SqsMessageControl::new(
        client.clone(),
        q.clone(),
        dlq.clone(),
    ));
    // AND two events of one subscription on the queue
    let e1 = sub_event("q1", EventType::SubscriptionStarted, "QQ", 1, true);
    let e2 = sub_event("q2", EventType::SubscriptionRenewed, "QQ", 2, true);
    let msgs = [
        QueueMessage::for_event(&e1).unwrap(),
        QueueMessage::for_event(&e2).unwrap(),
    ];
    SqsQueue::new(client.clone(), q.clone())
        .send(&msgs)
        .await
        .unwrap();

    // WHEN the first batch is handled (e1 gets the 500)
    let batch = receive_as_lambda_event(&client, &q).await;
    assert_eq!(batch.records.len(), 2);
    let resp = handle_sqs_batch(batch, d.clone(), ctl.clone(), None).await;
    // THEN both are reported failed (e2 unprocessed behind e1), e1 was applied once
    assert_eq!(resp.batch_item_failures.len(), 2);
    assert_eq!(rx.count(), 1);
    assert_eq!(state.history(&e1.group_key()).await.unwrap().len(), 2); // e1 + ACCESS_GRANTED

    // WHEN the messages come back (e1's visibility was set to 1 s; e2 returned at once
    // but FIFO holds it behind e1) and are handled again
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let batch = receive_as_lambda_event(&client, &q).await;
    let counts: Vec<String> = batch
        .records
        .iter()
        .map(|m| m.attributes["ApproximateReceiveCount"].clone())
        .collect();
    assert_eq!(
        batch.records[0].body.as_deref(),
        Some(msgs[0].body.as_str())
    );
    assert_eq!(counts[0], "2");
    let resp = handle_sqs_batch(batch, d, ctl, None).await;
    // THEN everything is delivered, in order, e1 with the same webhook-id as before
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    let ids: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.webhook_id().unwrap().to_owned())
        .collect();
    let granted = storehook_shared::event::EventId::derive(&[e1.id.as_str(), "ACCESS_GRANTED"]);
    assert_eq!(
        ids,
        vec![e1.id.0.clone(), e1.id.0.clone(), granted.0, e2.id.0.clone()]
    );
    let seqs: Vec<u64> = rx
        .requests()
        .iter()
        .map(|r| r.json().unwrap()["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 1, 2, 3]);
    assert_eq!(state.delivery(&e1.id).await.unwrap().unwrap().attempts, 2);
}
