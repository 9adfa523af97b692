//! The payment service: users with a credit balance, in its own Redis.
//!
//! - [`routes`] — the public HTTP API under `/payment`.
//! - [`commands`] — the Kafka command handler — the checkout steps.

pub mod commands;
pub mod routes;

use common::Result;
use common::ledger::{AccountKind, Ledger};
use common::service::{self, Deps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const USERS: AccountKind = AccountKind {
    noun: "user",
    field: "credit",
    too_little: "insufficient_credit",
};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    pub deps: Deps,
    pub ledger: Ledger,
}

/// Starts the command loop and serves HTTP on `listener` until `shutdown`.
pub async fn run(deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let app = App {
        ledger: Ledger::new(deps.redis.clone(), USERS),
        deps: deps.clone(),
    };
    let handler_app = app.clone();
    let handle = move |envelope| commands::handle(handler_app.clone(), envelope);
    let topic = deps.bus.topics.payment.clone();
    service::run_participant(
        &deps,
        topic,
        "payment",
        handle,
        listener,
        routes::router(app),
        shutdown,
    )
    .await
}
