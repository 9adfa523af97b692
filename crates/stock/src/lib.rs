//! The stock service: items with a price and a stock count, in its own Redis.
//!
//! - [`routes`] — the public HTTP API under `/stock`.
//! - [`commands`] — the Kafka command handler: checkout steps and price lookups.

pub mod commands;
pub mod routes;

use common::ledger::AccountKind;
use common::protocol::{Participant, StockCommand};
use common::service::ParticipantSpec;
use common::{Code, Noun};

/// Items: `item:{id}` → `stock` (and `price`, which never changes).
pub const ITEMS: AccountKind = AccountKind {
    noun: Noun::Item,
    field: "stock",
    too_little: Code::OutOfStock,
    waits_for_holds: true,
    participant: Participant::Stock,
};

/// The stock service as a participant: run it with [`ParticipantSpec::run`].
pub const SERVICE: ParticipantSpec<StockCommand> = ParticipantSpec {
    accounts: ITEMS,
    topic: |topics| &topics.stock,
    handle: commands::handle,
    router: routes::router,
};
