//! storehook's domain library: the event language, store verification and
//! translation, ingest, dispatch, state, queue and webhook ports.
//!
//! Every Lambda in `functions/` and the `storehook` CLI are thin shells around
//! this crate.

pub mod clock;
pub mod country;
pub mod error;
pub mod event;
pub mod policy;
pub mod queue;
pub mod stores;
