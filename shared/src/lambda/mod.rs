//! The AWS Lambda edge (feature `lambda`; the four functions enable it, the
//! `storehook` CLI does not, so it links no Lambda runtime): the API Gateway
//! adapter of [`Ingest`](crate::ingest::Ingest), the SQS-event entry of the
//! [`Dispatcher`](crate::dispatch::Dispatcher), the scheduled (EventBridge)
//! entry of the [`Sweeper`](crate::sweep::Sweeper), each with the whole life of a
//! function (tracing, the cold start once, then every invocation), and the one
//! tracing setup of every function.

mod api_gateway;
mod schedule;
mod sqs;

pub use api_gateway::run_ingest;
pub use schedule::{
    MAX_ROUNDS, PLAY_VOIDED_JOB, ScheduledJobs, VOIDED_WINDOW, VoidedJob, handle_scheduled,
    run_sweeper, sweep_scheduled,
};
pub use sqs::{SqsConsumer, run_dispatcher};

/// What a function's `main` returns: the Lambda runtime's error.
pub use lambda_runtime::Error;

use std::fmt::Display;
use std::future::Future;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// HTTP and AWS SDK internals, capped at WARN whatever the function's level.
const QUIET: [&str; 8] = [
    "aws_smithy_runtime=warn",
    "aws_smithy_runtime_api=warn",
    "aws_config=warn",
    "hyper=warn",
    "hyper_util=warn",
    "h2=warn",
    "reqwest=warn",
    "rustls=warn",
];

/// The tracing of every function: Lambda's log controls (level from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, default INFO; JSON lines when
/// `AWS_LAMBDA_LOG_FORMAT` is `JSON`), no time or target (CloudWatch stamps
/// each line), and the HTTP and SDK internals capped at WARN.
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let mut filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .parse_lossy("");
    for quiet in QUIET {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

/// Tracing, then the cold start (configuration, secrets, clients, read once).
/// A cold start that fails is logged and ends the process (Lambda reports an
/// init error) rather than serve with a configuration it cannot judge.
async fn start<T, E>(cold_start: impl Future<Output = Result<T, E>>) -> Result<T, Error>
where
    E: Display + Into<Error>,
{
    init_tracing();
    cold_start.await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "refusing to start");
        e.into()
    })
}
