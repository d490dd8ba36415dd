//! storehook's domain library: the event language, store verification and
//! translation, ingest, dispatch, state, queue and webhook ports.
//!
//! Every Lambda in `functions/` and the `storehook` CLI are thin shells around
//! this crate.

#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod config;
pub mod country;
pub mod dispatch;
pub mod embedded;
pub mod error;
pub mod event;
mod group_commit;
pub mod http_client;
pub mod ingest;
pub mod json;
pub mod policy;
#[cfg(feature = "aws")]
pub mod poller;
pub mod provision;
pub mod queue;
pub mod redb_file;
pub mod retry;
pub mod state;
pub mod stores;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod webhook;
