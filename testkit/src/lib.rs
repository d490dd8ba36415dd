//! storehook's test kit: everything the tests, benchmarks and fuzz targets
//! need that the Lambdas must never contain. A dev-dependency only (the fuzz
//! crate, outside the workspace, is its one normal user), so no Lambda build
//! graph holds test code.
//!
//! - [`receiver`]: a scripted webhook receiver on loopback, [`receiver::free_port`];
//! - [`loopback`]: a raw HTTP/1.1 server for tests of outbound calls;
//! - [`appstore`]: a generated Apple-like PKI and notification builders;
//! - [`apple_api`]: a fake App Store Server API that checks the JWT it gets;
//! - [`playstore`]: a fake Google (JWKS, OAuth, androidpublisher) and push builders;
//! - [`huawei`]: a generated IAP key, body builders and a fake Huawei API;
//! - [`amazon`]: a generated SNS PKI served over loopback HTTPS, SNS signing and a fake RVS;
//! - [`fixtures`]: event builders; [`conformance`]: the [`StateStore`] suite
//!   every adapter passes (both also compiled into storehook-shared's unit tests);
//! - with the `aws` feature, [`emulator`]: the SDK configuration of a local
//!   emulator, and [`provision`]: the tests' queues, table and secret, created
//!   with the template's attributes.
//!
//! [`StateStore`]: storehook_shared::state::StateStore

pub mod amazon;
pub mod apple_api;
pub mod appstore;
pub mod conformance;
#[cfg(feature = "aws")]
pub mod emulator;
pub mod fixtures;
pub mod huawei;
pub mod loopback;
pub mod playstore;
#[cfg(feature = "aws")]
pub mod provision;
pub mod receiver;
