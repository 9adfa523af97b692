//! HTTP plumbing every service shares: health endpoints, JSON fallbacks, and the shutdown
//! signal.

use std::future::Future;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// Adds `/health/live`, `/health/ready` (which runs `ready`), and JSON answers for unknown
/// paths and methods, so that every failure a client can see has the `{error, detail}` shape.
pub fn with_common_routes<S, F, Fut>(router: Router<S>, ready: F) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    router
        .route("/health/live", get(|| async { axum::Json(serde_json::json!({"status": "live"})) }))
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

/// Turns a rejected path parameter set (wrong count) into our JSON error.
pub fn path_error(_: axum::extract::rejection::PathRejection) -> Error {
    Error::BadInput("malformed path parameters".into())
}
