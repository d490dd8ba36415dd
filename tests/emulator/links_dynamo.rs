//! The Google Play purchase-token links on DynamoDB (`DynamoLinkStore`)
//! against the emulator.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use storehook_shared::stores::playstore::links::dynamo::{DynamoLinkStore, link_pk};
use storehook_shared::stores::playstore::links::{Lineage, LinkStore, lineage_of};
use storehook_shared::stores::playstore::model::PurchaseToken;
use storehook_testkit::emulator::{TEST_ENDPOINT_ENV, emulator_sdk_config, test_sdk_config};
use storehook_testkit::provision;

/// The current time in epoch milliseconds.
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

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
    provision::create_table(&client, &table).await.unwrap();
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
    let Some((store, client)) = emulator_store("dynamo_links_insert_once_and_resolve").await else {
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
    let Some((store, _)) = emulator_store("dynamo_links_first_writer_wins_under_concurrency").await
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
    let Some((one, client)) = emulator_store("dynamo_links_keep_a_chain_across_instances").await
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

#[tokio::test]
async fn dynamo_latest_token_keeps_the_purchase_started_last() {
    let Some((store, client)) =
        emulator_store("dynamo_latest_token_keeps_the_purchase_started_last").await
    else {
        return;
    };
    let sub = Lineage::rooted_at(&token("A")).subscription_id;
    // GIVEN nothing recorded THEN none
    assert_eq!(store.latest(&sub).await.unwrap(), None);
    let (a, b, c) = (token("A"), token("B"), token("C"));
    // WHEN tokens are recorded out of order
    store.record_latest(&sub, &b, 200).await.unwrap();
    store.record_latest(&sub, &a, 100).await.unwrap();
    // THEN the one started last stays
    assert_eq!(store.latest(&sub).await.unwrap(), Some(b.clone()));
    store.record_latest(&sub, &c, 300).await.unwrap();
    assert_eq!(store.latest(&sub).await.unwrap(), Some(c.clone()));
    // AND it is not a link: the tokens do not resolve through it
    assert_eq!(store.resolve(&c).await.unwrap(), None);
    // AND its key is under the links' prefix (the Play function's IAM
    // condition allows only LINK#GOOGLE_PLAY#* leading keys)
    let item = client
        .get_item()
        .table_name(store.table())
        .set_key(Some(
            storehook_shared::stores::playstore::links::dynamo::latest_key(&sub),
        ))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("newest-token item");
    assert!(item["pk"].as_s().unwrap().starts_with("LINK#GOOGLE_PLAY#"));
    assert_eq!(item["token"].as_s().unwrap(), c.as_str());
}
