//! The stock service: items with a price and a stock count, in its own Redis.
//!
//! - [`routes`] — the public HTTP API under `/stock`.
//! - [`commands`] — the Kafka command handler — checkout steps and price lookups.

pub mod commands;
pub mod routes;

use common::Result;
use common::ledger::AccountKind;
use common::protocol::Participant;
use common::service::{self, Deps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ITEMS: AccountKind = AccountKind {
    noun: "item",
    field: "stock",
    too_little: "out_of_stock",
    waits_for_holds: true,
    participant: Participant::Stock,
};

/// Shared state of the handlers.
pub type App = service::Participant;

/// Starts the command loop and serves HTTP on `listener` until `shutdown`.
pub async fn run(deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let topic = deps.bus.topics.stock.clone();
    let (handle, router) = (commands::handle, routes::router);
    service::run_participant(
        deps, ITEMS, topic, "stock", handle, router, listener, shutdown,
    )
    .await
}
