//! The stock service: items with a price and a stock count, in its own Redis.
//!
//! - [`routes`] — the public HTTP API under `/stock`.
//! - [`commands`] — the Kafka command handler — checkout steps and price lookups.

pub mod commands;
pub mod routes;

use common::Result;
use common::ledger::{AccountKind, Ledger};
use common::service::{self, Deps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ITEMS: AccountKind = AccountKind {
    noun: "item",
    field: "stock",
    too_little: "out_of_stock",
};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    pub deps: Deps,
    pub ledger: Ledger,
}

/// Connects, starts the command loop, and serves HTTP on `listener` until `shutdown`.
pub async fn run(deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let app = App {
        ledger: Ledger::new(deps.redis.clone(), ITEMS),
        deps: deps.clone(),
    };
    let handler_app = app.clone();
    let handle = move |envelope| commands::handle(handler_app.clone(), envelope);
    let topic = deps.bus.topics.stock.clone();
    service::run_participant(
        &deps,
        topic,
        "stock",
        handle,
        listener,
        routes::router(app),
        shutdown,
    )
    .await
}
