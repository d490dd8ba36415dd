//! The AWS adapters of storehook-shared against a local AWS emulator (moto):
//! SQS, DynamoDB state and Play links, Secrets Manager, and the test kit's
//! provisioning. One test binary, one module per adapter.
//!
//! Run with `bash scripts/test.sh -p storehook-tests` (starts moto and sets
//! `STOREHOOK_TEST_AWS_ENDPOINT`); without it every test prints `SKIP` (the
//! parts that need no emulator still run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod links_dynamo;
mod provision;
mod queue_sqs;
mod secrets_manager;
mod state_dynamo;
