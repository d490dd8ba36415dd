//! storehook's domain library: the event language, store verification and
//! translation, ingest, dispatch, state, queue and webhook ports.
//!
//! Every Lambda in `functions/` and the `storehook` CLI are thin shells around
//! this crate. docs/where-to-find-what.md maps each rule to its file.
#[cfg(feature = "aws")]
pub mod aws_sdk;
pub mod clock;
pub mod config;
pub mod country;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod http;
pub mod ingest;
pub mod json;
#[cfg(any(test, feature = "lambda"))]
pub mod lambda;
pub mod policy;
pub mod provision;
pub mod queue;
pub mod redb_file;
pub mod retry;
pub mod secrets;
pub mod state;
pub mod stores;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod webhook;
