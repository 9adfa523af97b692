//! Commands from the order service, applied exactly once.

use std::time::Duration;

use common::protocol::{
    Envelope, OrderReply, Outcome, Participant, PaymentCommand, Phase, Protocol,
};

use crate::App;

/// Payment never makes a checkout wait for held credit (stock does): if both participants
/// waited for each other's holds, two checkouts of one user could each hold what the other
/// needs until both gave up. A credit refusal that an abort would have undone is harmless: that abort
/// can only come from stock that has truly run out, which refuses this checkout too.
const HOLD_PATIENCE: Duration = Duration::ZERO;

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
    let outcome = app
        .ledger
        .step_patiently(&tx, phase, protocol, &lines, HOLD_PATIENCE)
        .await;
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
