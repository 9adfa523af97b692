//! Code the three services share.
//!
//! - [`settings`] — typed configuration from the environment.
//! - [`telemetry`] — logging, and the trace context across HTTP and Kafka.
//! - [`metrics`] — every metric's name, and the Prometheus recorder behind `/metrics`.
//! - [`error`] — the error type and its single mapping to HTTP.
//! - [`failpoint`] — crash points that fault tests arm.
//! - [`input`] — numbers and ids parsed at the edge into domain values.
//! - [`protocol`] — every Kafka message, one enum per topic.
//! - [`bus`] — the Kafka producer, the participants' command loop and the order replies.
//! - [`db`] — Redis connections and retries.
//! - [`periodic`] — background loops on a fixed period until shutdown.
//! - [`ledger`] — the participants' accounts and exactly-once transaction steps (Lua, with
//!   exact 64-bit arithmetic).
//! - [`http`] — health endpoints, JSON fallbacks, the shutdown signal.
//! - [`service`] — the start-up and serving life cycle of a service, and the one runner of
//!   both participants ([`service::ParticipantSpec`]).

pub mod bus;
pub mod db;
pub mod error;
pub mod failpoint;
pub mod http;
pub mod input;
pub mod ledger;
pub mod metrics;
pub mod periodic;
pub mod protocol;
pub mod service;
pub mod settings;
pub mod telemetry;

pub use error::{Code, Error, Noun, Refusal, Result};
pub use settings::Settings;
