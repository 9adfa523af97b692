//! The order service: orders in its own Redis, and the coordinator of checkout.
//!
//! - [`routes`] — the public HTTP API under `/orders`.
//! - [`orders`] — orders in Redis (Lua scripts in `lua/`).
//! - [`prices`] — item prices from the stock service, over Kafka, cached.
//! - [`checkout`] — the saga / 2PC coordinator: its state machine, its transaction log and
//!   its recovery.
//! - [`console`] — the live console at `/console/`, its assets embedded.

pub mod checkout;
pub mod console;
pub mod orders;
pub mod prices;
pub mod routes;

use std::sync::Arc;

use common::Result;
use common::bus::replies::Replies;
use common::service::{self, Deps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use checkout::Coordinator;
use checkout::log::TxLog;
use orders::Orders;
use prices::Prices;
use routes::App;

/// Starts the reply router, the broker probe and recovery, and serves HTTP on `listener`
/// until `shutdown`.
pub async fn run(deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let replies = Replies::start(&deps.bus, shutdown.clone())?;
    let settings = deps.settings.clone();
    let log = TxLog::new(deps.redis.clone(), settings.state_retention);
    tokio::spawn(log.tally().run(deps.redis.clone(), shutdown.clone()));
    let coordinator = Coordinator::new(
        log,
        deps.bus.clone(),
        deps.bus.watch_health(shutdown.clone()),
        replies.clone(),
        settings.clone(),
    );
    let prices = Prices::new(
        deps.bus.clone(),
        replies,
        settings.step_retry,
        settings.checkout_timeout,
    );
    tokio::spawn(checkout::recovery::run(
        coordinator.clone(),
        shutdown.clone(),
    ));
    tracing::info!(protocol = settings.protocol.as_str(), replica = %settings.replica_id, "order service starting");
    let app = Arc::new(App {
        orders: Orders::new(deps.redis.clone()),
        deps,
        prices,
        coordinator,
    });
    service::run(listener, routes::router(app), shutdown).await
}
