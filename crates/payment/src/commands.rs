//! Commands from the order service, applied exactly once.

use std::time::Duration;

use common::db;
use common::protocol::{
    Envelope, OrderReply, Outcome, Participant, PaymentCommand, Phase, Protocol,
};

use crate::App;

/// A participant must eventually apply every command it received, so it keeps retrying
/// while its Redis is away; the offset is not stored meanwhile.
const PATIENCE: Duration = Duration::from_secs(3600);

pub async fn handle(app: App, envelope: Envelope<PaymentCommand>) -> OrderReply {
    let tx = envelope.tx;
    let (phase, protocol, lines) = match envelope.body {
        PaymentCommand::Try {
            protocol,
            user_id,
            amount,
        } => (Phase::Try, protocol, vec![(user_id, amount)]),
        PaymentCommand::Commit => (Phase::Commit, Protocol::TwoPc, Vec::new()),
        PaymentCommand::Cancel => (Phase::Cancel, Protocol::Saga, Vec::new()),
    };
    let outcome = db::retry(PATIENCE, || app.ledger.step(&tx, phase, protocol, &lines)).await;
    if phase == Phase::Try {
        common::failpoint::hit(concat!(env!("CARGO_PKG_NAME"), "_after_try"));
    }
    let outcome = outcome.unwrap_or_else(|e| {
        tracing::error!(error = %e, %tx, "step failed for good");
        Outcome::Refused(common::Refusal::new("internal", e.to_string()))
    });
    tracing::debug!(%tx, ?phase, ?outcome, "payment step");
    OrderReply::Step {
        participant: Participant::Payment,
        phase,
        outcome,
    }
}
