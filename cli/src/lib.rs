//! The `storehook` CLI as a library, so its tests and benchmarks drive the very
//! code the binary runs.

pub mod admin;
pub mod apple_api;
pub mod backfill;
pub mod console;
pub mod listener;
pub mod receiver;
pub mod replay;
pub mod serve;
pub mod test_notification;
pub mod translate;
