//! API Gateway (HTTP API, payload 2.0) in, [`Ingest`] through, the store's
//! answer out.

use super::{Error, start};
use crate::ingest::{Ingest, StoreRequest, StoreResponse};
use lambda_http::{Body, Request, Response};
use std::future::Future;

impl Ingest {
    /// The Lambda (API Gateway HTTP API) entry point.
    pub async fn lambda(&self, req: Request) -> Result<Response<Body>, std::convert::Infallible> {
        let (parts, body) = req.into_parts();
        let body = match body {
            Body::Empty => bytes::Bytes::new(),
            Body::Text(t) => bytes::Bytes::from(t),
            Body::Binary(b) => bytes::Bytes::from(b),
            _ => bytes::Bytes::new(),
        };
        let resp = self
            .handle(StoreRequest {
                method: parts.method.as_str().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body,
            })
            .await;
        Ok(to_lambda(resp))
    }
}

/// The whole life of an ingest function: tracing, the cold start (read once),
/// then every request through [`Ingest::lambda`].
pub async fn run_ingest<E>(cold_start: impl Future<Output = Result<Ingest, E>>) -> Result<(), Error>
where
    E: std::fmt::Display + Into<Error>,
{
    let ingest = start(cold_start).await?;
    lambda_http::run(lambda_http::service_fn(move |req| {
        let ingest = ingest.clone();
        async move {
            let answer = ingest.lambda(req).await;
            // This invocation's metrics (CloudWatch EMF on standard output).
            crate::metrics::flush_emf();
            answer
        }
    }))
    .await
}

fn to_lambda(resp: StoreResponse) -> Response<Body> {
    let mut r = Response::new(Body::Text(resp.body));
    *r.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
