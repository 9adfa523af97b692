//! The stock service: items with a price and a stock count, in its own Redis.
//!
//! - [`routes`] — the public HTTP API under `/stock`.
//! - [`commands`] — the Kafka command handler: checkout steps and price lookups.

pub mod commands;
pub mod routes;

use common::ledger::ITEMS;
use common::protocol::StockCommand;
use common::service::ParticipantSpec;

/// The stock service as a participant: run it with [`ParticipantSpec::run`].
pub const SERVICE: ParticipantSpec<StockCommand> = ParticipantSpec {
    accounts: ITEMS,
    topic: |topics| &topics.stock,
    handle: commands::handle,
    router: routes::router,
};
