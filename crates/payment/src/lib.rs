//! The payment service: users with a credit balance, in its own Redis.
//!
//! - [`routes`] — the public HTTP API under `/payment`.
//! - [`commands`] — the Kafka command handler — the checkout steps.

pub mod commands;
pub mod routes;

use common::Result;
use common::ledger::AccountKind;
use common::protocol::Participant;
use common::service::{self, Deps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const USERS: AccountKind = AccountKind {
    noun: "user",
    field: "credit",
    too_little: "insufficient_credit",
    waits_for_holds: false,
    participant: Participant::Payment,
};

/// Shared state of the handlers.
pub type App = service::Participant;

/// Starts the command loop and serves HTTP on `listener` until `shutdown`.
pub async fn run(deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let topic = deps.bus.topics.payment.clone();
    let (handle, router) = (commands::handle, routes::router);
    service::run_participant(
        deps, USERS, topic, "payment", handle, router, listener, shutdown,
    )
    .await
}
