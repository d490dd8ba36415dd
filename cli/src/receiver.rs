//! The built-in webhook receiver of `storehook serve` (when no `--webhook-url`
//! is given): verifies every Standard Webhooks signature and prints each event
//! as one JSON line on standard output — what your backend would receive.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use std::sync::Arc;
use std::time::Duration;
use storehook_shared::webhook::{DEFAULT_TOLERANCE, WebhookSecrets, verify};

/// A running receiver.
#[derive(Debug)]
pub struct Receiver {
    /// Where it listens (`http://127.0.0.1:<port>/webhook`).
    pub url: String,
    _task: tokio::task::JoinHandle<()>,
}

/// Starts the receiver on a free loopback port.
pub async fn start(secrets: WebhookSecrets) -> anyhow::Result<Receiver> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhook", listener.local_addr()?);
    let app = Router::new()
        .route("/webhook", post(receive))
        .with_state(Arc::new(secrets));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "built-in receiver stopped");
        }
    });
    Ok(Receiver { url, _task: task })
}

async fn receive(
    State(secrets): State<Arc<WebhookSecrets>>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> http::StatusCode {
    let tolerance: Duration = DEFAULT_TOLERANCE;
    match verify(&headers, &body, &secrets, chrono::Utc::now(), tolerance) {
        Ok(_) => {
            println!("{}", String::from_utf8_lossy(&body));
            http::StatusCode::NO_CONTENT
        }
        Err(e) => {
            tracing::error!(error = %e, "built-in receiver: signature did not verify");
            http::StatusCode::UNAUTHORIZED
        }
    }
}
