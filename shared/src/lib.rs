//! storehook's domain library: the event language, store verification and
//! translation, ingest, dispatch, state, queue and webhook ports.
//!
//! Every Lambda in `functions/` and the `storehook` CLI are thin shells around
//! this crate. docs/where-to-find-what.md maps each rule to its file.
//!
//! Test support lives in the `storehook-testkit` crate (a dev-dependency only).

// The test kit's event fixtures and StateStore conformance suite are compiled
// into the unit tests as modules (see `state`); they name this crate
// `storehook_shared`, as every crate using it does.
#[cfg(test)]
extern crate self as storehook_shared;

pub mod activity;
#[cfg(feature = "aws")]
pub mod aws_sdk;
pub mod clock;
pub mod config;
pub mod consumption;
pub mod country;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod fanout;
pub mod http;
pub mod ingest;
pub mod json;
#[cfg(any(test, feature = "lambda"))]
pub mod lambda;
pub mod metrics;
pub mod policy;
pub mod provision;
pub mod queue;
pub mod redb_file;
pub mod retry;
pub mod secrets;
pub mod state;
pub mod stores;
pub mod sweep;
pub mod webhook;
