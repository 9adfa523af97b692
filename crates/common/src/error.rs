//! The one error type of the services and its single mapping to HTTP.
//!
//! A 4xx answer is a business outcome only (bad input, unknown id, too little stock or
//! credit, a conflict) and says what was wrong with a stable machine [`Code`]. A 5xx means our
//! own system could not do it now: 503 with `Retry-After` when it is overloaded, a dependency
//! is away or a checkout could not be decided in time; its body is opaque and its cause is
//! logged once, here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every machine code a refusal can carry, between services and to clients.
///
/// Serialized in `snake_case` on the wire (Kafka messages, Redis records, HTTP bodies); an
/// unknown code fails to decode instead of turning into some other code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    ItemNotFound,
    UserNotFound,
    OrderNotFound,
    OutOfStock,
    InsufficientCredit,
    AlreadyPaid,
    CheckoutInProgress,
    /// `batch_init` over records that are part of an unfinished checkout.
    RecordsInUse,
    /// A protocol answer, never a business one: the transaction was cancelled before this
    /// try arrived, so the try may never run.
    Cancelled,
    /// A protocol answer: a commit for a step that was never prepared.
    NotPrepared,
    /// A protocol answer: a cancel for a step that is already committed.
    AlreadyCommitted,
    /// A protocol answer: the try is older than the step records' retention horizon, so it
    /// may be a stale copy and is not applied.
    Expired,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ItemNotFound => "item_not_found",
            Self::UserNotFound => "user_not_found",
            Self::OrderNotFound => "order_not_found",
            Self::OutOfStock => "out_of_stock",
            Self::InsufficientCredit => "insufficient_credit",
            Self::AlreadyPaid => "already_paid",
            Self::CheckoutInProgress => "checkout_in_progress",
            Self::RecordsInUse => "records_in_use",
            Self::Cancelled => "cancelled",
            Self::NotPrepared => "not_prepared",
            Self::AlreadyCommitted => "already_committed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
    }

    /// True for the outcomes a client may be told with a 4xx. The others are answers of the
    /// checkout protocol itself: a transaction that aborts because of one was interrupted,
    /// not refused, and the client hears 503 (it may retry).
    pub fn is_business(self) -> bool {
        !matches!(
            self,
            Self::Cancelled | Self::NotPrepared | Self::AlreadyCommitted | Self::Expired
        )
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::ItemNotFound | Self::UserNotFound | Self::OrderNotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A business refusal that travels between services (a participant says "no").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: Code,
    /// Human text.
    pub detail: String,
}

impl Refusal {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

/// What a record is, for "not found" answers and key prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Noun {
    Item,
    User,
    Order,
}

impl Noun {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Item => "item",
            Self::User => "user",
            Self::Order => "order",
        }
    }

    pub fn not_found(self) -> Code {
        match self {
            Self::Item => Code::ItemNotFound,
            Self::User => Code::UserNotFound,
            Self::Order => Code::OrderNotFound,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} {id:?} not found", .noun.as_str())]
    NotFound { noun: Noun, id: String },
    #[error("{0}")]
    BadInput(String),
    #[error("{}", .0.detail)]
    Refused(Refusal),
    #[error("a valid admin token is required")]
    Unauthorized,
    /// Made through `From`, which counts it in `redis_errors_total`.
    #[error("redis: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Could not be done in time; safe to retry (checkout is idempotent).
    #[error("timed out: {0}")]
    Timeout(String),
    /// A dependency this request needs is away (for checkout: the Kafka broker).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Admission control: too much in flight right now.
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        metrics::counter!(crate::metrics::REDIS_ERRORS).increment(1);
        Self::Redis(e)
    }
}

impl Error {
    pub fn not_found(noun: Noun, id: impl Into<String>) -> Self {
        Self::NotFound {
            noun,
            id: id.into(),
        }
    }

    pub fn refused(code: Code, detail: impl Into<String>) -> Self {
        Self::Refused(Refusal::new(code, detail))
    }

    /// True for failures worth trying again shortly: a Redis or Kafka that is away or
    /// refusing writes for memory. A script error or a malformed reply is not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Redis(e) => is_transient(e),
            Self::Kafka(_) => true,
            _ => false,
        }
    }

    /// HTTP status and machine code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound { noun, .. } => (StatusCode::NOT_FOUND, noun.not_found().as_str()),
            Self::BadInput(_) => (StatusCode::BAD_REQUEST, "bad_input"),
            Self::Refused(r) => (r.code.status(), r.code.as_str()),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Redis(e) if is_out_of_memory(e) => {
                (StatusCode::SERVICE_UNAVAILABLE, "out_of_memory")
            }
            Self::Redis(_) | Self::Kafka(_) | Self::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Self::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Self::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::Config(_) | Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// True for a Redis failure worth trying again shortly: the server is away, restarting, or
/// refusing writes for memory. A script error or a malformed reply is not: trying again gives
/// the same answer.
fn is_transient(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || is_out_of_memory(e)
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
}

/// True when Redis refused a write because it reached `maxmemory` (policy `noeviction`).
pub fn is_out_of_memory(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM")
        || e.detail()
            .is_some_and(|d| d.contains("OOM command not allowed"))
}

/// The JSON body of every failure.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_S: &str = "1";

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = if status.is_server_error() {
            if matches!(self, Self::Overloaded(_) | Self::Unavailable(_)) {
                tracing::debug!(error = %self, "request shed");
            } else {
                tracing::error!(error = %self, "request failed");
            }
            "the service could not complete the request now; it is safe to retry".to_string()
        } else {
            self.to_string()
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: code.to_string(),
                detail,
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_refusals_are_4xx_and_failures_5xx() {
        assert_eq!(
            Error::refused(Code::OutOfStock, "x").status_and_code().0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            Error::refused(Code::ItemNotFound, "x").status_and_code(),
            (StatusCode::NOT_FOUND, "item_not_found")
        );
        assert_eq!(
            Error::not_found(Noun::Order, "1").status_and_code().1,
            "order_not_found"
        );
        assert_eq!(
            Error::Unauthorized.status_and_code().0,
            StatusCode::UNAUTHORIZED
        );
        for failure in [
            Error::Timeout("x".into()),
            Error::Overloaded("x".into()),
            Error::Internal("x".into()),
        ] {
            assert!(failure.status_and_code().0.is_server_error());
        }
    }

    #[test]
    fn unavailable_answers_carry_retry_after() {
        let response = Error::Timeout("x".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let response = Error::refused(Code::OutOfStock, "x").into_response();
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_rejected() {
        for code in [Code::OutOfStock, Code::RecordsInUse, Code::Expired] {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().into())
            );
        }
        assert_eq!(Code::parse("out_of_stonk"), None);
        assert!(!Code::Cancelled.is_business());
        assert!(Code::InsufficientCredit.is_business());
    }
}
