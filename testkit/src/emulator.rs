//! The AWS SDK configuration of the tests, pinned to a local emulator (moto)
//! named by [`TEST_ENDPOINT_ENV`] (`scripts/test.sh` starts one and sets it).

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Env var naming a local AWS emulator endpoint for tests (e.g. `http://127.0.0.1:5055`).
pub const TEST_ENDPOINT_ENV: &str = "STOREHOOK_TEST_AWS_ENDPOINT";

/// An SDK configuration for a local emulator (moto): fixed region
/// `us-east-1` and dummy credentials, so nothing from the environment can
/// point it at a real account.
pub async fn emulator_sdk_config(endpoint_url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint_url)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "storehook-emulator",
        ))
        .load()
        .await
}

/// The emulator configuration when [`TEST_ENDPOINT_ENV`] is set (tests).
pub async fn test_sdk_config() -> Option<SdkConfig> {
    let ep = std::env::var(TEST_ENDPOINT_ENV)
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(emulator_sdk_config(&ep).await)
}
