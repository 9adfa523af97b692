//! The payment service: users with a credit balance, in its own Redis.
//!
//! - [`routes`] — the public HTTP API under `/payment`.
//! - [`commands`] — the Kafka command handler: the checkout steps.

pub mod commands;
pub mod routes;

use common::ledger::AccountKind;
use common::protocol::{Participant, PaymentCommand};
use common::service::ParticipantSpec;
use common::{Code, Noun};

/// Users: `user:{id}` → `credit`.
pub const USERS: AccountKind = AccountKind {
    noun: Noun::User,
    field: "credit",
    too_little: Code::InsufficientCredit,
    waits_for_holds: false,
    participant: Participant::Payment,
};

/// The payment service as a participant: run it with [`ParticipantSpec::run`].
pub const SERVICE: ParticipantSpec<PaymentCommand> = ParticipantSpec {
    accounts: USERS,
    topic: |topics| &topics.payment,
    handle: commands::handle,
    router: routes::router,
};
