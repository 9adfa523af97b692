//! The order service: orders in its own Redis, and the coordinator of checkout.
//!
//! - [`routes`] — the public HTTP API under `/orders`.
//! - [`store`] — orders and transaction records in Redis (Lua scripts in `lua/`).
//! - [`prices`] — item prices from the stock service, over Kafka, cached.
//! - [`checkout`] — the saga / 2PC coordinator, its state machine and its recovery.

pub mod checkout;
pub mod prices;
pub mod routes;
pub mod store;

use std::sync::Arc;

use common::Result;
use common::bus::replies::Replies;
use common::service::{self, Deps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use checkout::Coordinator;
use prices::Prices;
use store::Store;

/// Shared state of the handlers.
pub struct App {
    pub deps: Deps,
    pub store: Store,
    pub prices: Prices,
    pub coordinator: Arc<Coordinator>,
}

/// Starts the reply router and recovery, and serves HTTP on `listener` until `shutdown`.
pub async fn run(deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let replies = Replies::start(&deps.bus, shutdown.clone())?;
    let store = Store::new(deps.redis.clone());
    let settings = deps.settings.clone();
    let coordinator = Coordinator::new(
        store.clone(),
        deps.bus.clone(),
        replies.clone(),
        settings.clone(),
    );
    let prices = Prices::new(deps.bus.clone(), replies, settings.step_retry);
    tokio::spawn(checkout::recovery::run(
        coordinator.clone(),
        shutdown.clone(),
    ));
    tracing::info!(protocol = settings.protocol.as_str(), replica = %settings.replica_id, "order service starting");
    let app = Arc::new(App {
        deps,
        store,
        prices,
        coordinator,
    });
    service::run(listener, routes::router(app), shutdown).await
}
