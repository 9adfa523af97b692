//! HTTP plumbing every service shares: health endpoints, `/metrics`, the request span and
//! metrics of every request, JSON fallbacks, and the shutdown signal.

use std::future::Future;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// Adds `/health/live`, `/health/ready` (which runs `ready`), `/metrics`, and JSON answers for
/// unknown paths and methods, so that every failure a client can see has the `{error,
/// detail}` shape; then wraps every route in [`observe`].
pub fn with_common_routes<S, F, Fut>(router: Router<S>, ready: F) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    router
        .route("/health/live", get(|| async { axum::Json(serde_json::json!({"status": "live"})) }))
        .route("/metrics", get(|| async {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render())
        }))
        .route(
            "/health/ready",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready().await {
                        (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))).into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "not ready"})))
                            .into_response()
                    }
                }
            }),
        )
        .fallback(|| async { not_found() })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(serde_json::json!({"error": "method_not_allowed", "detail": "this path does not take that method"})),
            )
        })
        .layer(axum::middleware::from_fn(observe))
}

/// Runs a request in a span that continues the caller's trace (its `traceparent` header) or
/// starts one, and counts and times it by route template (`unmatched` for unknown paths).
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!("request", %method, %route, trace_id = tracing::field::Empty);
    let traceparent = request
        .headers()
        .get(crate::telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    crate::telemetry::continue_trace(&span, traceparent);
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    let service = crate::metrics::service();
    let status = response.status().as_u16().to_string();
    metrics::histogram!(crate::metrics::HTTP_DURATION, "service" => service, "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed());
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "service" => service, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "no_such_route", "detail": "no such endpoint; check the path and its parameters"})),
    )
        .into_response()
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown signal received");
        trigger.cancel();
    });
    token
}

/// The `{"msg": ...}` answer of `batch_init`.
#[derive(Debug, Serialize)]
pub struct Message {
    pub msg: String,
}

impl Message {
    pub fn new(msg: impl Into<String>) -> Self {
        Self { msg: msg.into() }
    }
}

/// Path parameters, rejected with our JSON error (400 `bad_input`) instead of axum's text.
/// Handlers then parse each parameter into its domain type ([`crate::input`]).
pub struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Params(params)),
            Err(e) => Err(Error::BadInput(format!("malformed path parameters: {e}"))),
        }
    }
}

/// Checks `Authorization: Bearer <token>` when an admin token is configured (`ADMIN_TOKEN`);
/// without one every caller is admitted, so the course benchmark runs unchanged.
pub fn require_admin(headers: &HeaderMap, token: Option<&str>) -> Result<(), Error> {
    let Some(token) = token else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare every byte, so the time taken does not tell how much of a guess was right.
    let matches = given.is_some_and(|given| {
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    });
    if matches {
        Ok(())
    } else {
        Err(Error::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_is_required_only_when_set() {
        let mut headers = HeaderMap::new();
        assert!(require_admin(&headers, None).is_ok());
        assert!(require_admin(&headers, Some("s3cret")).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(require_admin(&headers, Some("s3cret")).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(require_admin(&headers, Some("s3cret")).is_ok());
    }
}
