//! The AWS SDK configuration from the environment, loaded once at cold start
//! (the test kit pins one to a local emulator: `storehook_testkit::emulator`).

use aws_config::{BehaviorVersion, SdkConfig};

/// The SDK configuration from the environment (region, credentials,
/// `AWS_ENDPOINT_URL`), loaded once at cold start.
pub async fn sdk_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}
