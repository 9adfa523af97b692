//! Commands from the order service, applied exactly once.

use common::protocol::{Envelope, OrderReply, PaymentCommand, Phase, Protocol};

use crate::App;

pub async fn handle(app: App, envelope: Envelope<PaymentCommand>) -> OrderReply {
    let (phase, protocol, lines) = match envelope.body {
        PaymentCommand::Try {
            protocol,
            user_id,
            amount,
        } => (Phase::Try, protocol, vec![(user_id, amount)]),
        PaymentCommand::Commit => (Phase::Commit, Protocol::TwoPc, Vec::new()),
        PaymentCommand::Cancel => (Phase::Cancel, Protocol::Saga, Vec::new()),
    };
    app.ledger
        .apply(&envelope.tx, phase, protocol, &lines)
        .await
}
