//! The webhook secrets from Secrets Manager (`secrets::secrets_manager`)
//! against the emulator, and inline ones without it.

use storehook_shared::secrets::{SecretSource, SecretsError, load_webhook_secrets};
use storehook_shared::webhook::{WebhookSecret, WebhookSecrets};
use storehook_testkit::emulator::{TEST_ENDPOINT_ENV, emulator_sdk_config, test_sdk_config};

#[tokio::test]
async fn webhook_secrets_come_from_secrets_manager_or_inline() {
    // GIVEN inline secrets THEN no AWS call is needed
    let inline = WebhookSecrets::parse(&WebhookSecret::generate().unwrap()).unwrap();
    let sdk = emulator_sdk_config("http://127.0.0.1:9").await;
    let got = load_webhook_secrets(&sdk, &SecretSource::Inline(inline.clone()))
        .await
        .unwrap();
    assert_eq!(
        got.signature_header("a", 1, b"b"),
        inline.signature_header("a", 1, b"b")
    );

    let Some(sdk) = test_sdk_config().await else {
        eprintln!(
            "SKIP webhook_secrets_come_from_secrets_manager_or_inline (Secrets Manager part): {TEST_ENDPOINT_ENV} is not set"
        );
        return;
    };
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    // GIVEN a plain secret (SAM style) and a JSON secret in Secrets Manager
    let plain = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
    let name = format!("storehook-plain-{}", fastrand::u32(..));
    let arn = sm
        .create_secret()
        .name(&name)
        .secret_string(plain)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let s = load_webhook_secrets(&sdk, &SecretSource::SecretsManager(arn))
        .await
        .unwrap();
    assert_eq!(
        s.signature_header("a", 1, b"b"),
        WebhookSecrets::parse(plain)
            .unwrap()
            .signature_header("a", 1, b"b")
    );
    let two = format!(
        "{} {}",
        WebhookSecret::generate().unwrap(),
        WebhookSecret::generate().unwrap()
    );
    let jname = format!("storehook-json-{}", fastrand::u32(..));
    sm.create_secret()
        .name(&jname)
        .secret_string(serde_json::json!({ "secret": two }).to_string())
        .send()
        .await
        .unwrap();
    let s = load_webhook_secrets(&sdk, &SecretSource::SecretsManager(jname))
        .await
        .unwrap();
    assert_eq!(s.len(), 2);
    // AND a missing secret is an error that names no value
    let e = load_webhook_secrets(&sdk, &SecretSource::SecretsManager("nope-404".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, SecretsError::Fetch(_)));
}
