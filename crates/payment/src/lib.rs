//! The payment service: users with a credit balance, in its own Redis.
//!
//! - [`routes`] — the public HTTP API under `/payment`.
//! - [`commands`] — the Kafka command handler: the checkout steps.

pub mod commands;
pub mod routes;

use common::ledger::USERS;
use common::protocol::PaymentCommand;
use common::service::ParticipantSpec;

/// The payment service as a participant: run it with [`ParticipantSpec::run`].
pub const SERVICE: ParticipantSpec<PaymentCommand> = ParticipantSpec {
    accounts: USERS,
    topic: |topics| &topics.payment,
    handle: commands::handle,
    router: routes::router,
};
