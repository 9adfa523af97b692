//! The one error type of the services and its single mapping to HTTP.
//!
//! 4xx answers say what was wrong with a stable machine code; 5xx answers are opaque and
//! their cause is logged once, here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A business refusal that travels between services (a participant says "no").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Machine code, e.g. `out_of_stock`.
    pub code: String,
    /// Human text.
    pub detail: String,
}

impl Refusal {
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    BadInput(String),
    #[error("{}", .0.detail)]
    Refused(Refusal),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn refused(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Refused(Refusal::new(code, detail))
    }

    /// HTTP status and machine code of this error.
    pub fn status_and_code(&self) -> (StatusCode, String) {
        match self {
            Self::NotFound { kind, .. } => (StatusCode::NOT_FOUND, format!("{kind}_not_found")),
            Self::BadInput(_) => (StatusCode::BAD_REQUEST, "bad_input".into()),
            Self::Refused(r) if r.code.ends_with("_not_found") => {
                (StatusCode::NOT_FOUND, r.code.clone())
            }
            Self::Refused(r) => (StatusCode::CONFLICT, r.code.clone()),
            Self::Redis(_) | Self::Kafka(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
            }
            Self::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout".into()),
            Self::Config(_) | Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal".into())
            }
        }
    }
}

/// The JSON body of every failure.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "the service could not complete the request; it is safe to retry".to_string()
        } else {
            self.to_string()
        };
        (
            status,
            Json(ErrorBody {
                error: code,
                detail,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_refusals_are_4xx_and_failures_5xx() {
        assert_eq!(
            Error::refused("out_of_stock", "x").status_and_code().0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            Error::refused("item_not_found", "x").status_and_code().0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Error::not_found("order", "1").status_and_code().1,
            "order_not_found"
        );
        assert!(
            Error::Timeout("x".into())
                .status_and_code()
                .0
                .is_server_error()
        );
    }
}
