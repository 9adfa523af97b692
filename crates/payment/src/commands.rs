//! Commands from the order service: checkout steps, applied exactly once.

use common::protocol::{Envelope, OrderReply, PaymentCommand};
use common::service::Participant;
use futures::future::BoxFuture;

pub fn handle(
    app: Participant,
    envelope: Envelope<PaymentCommand>,
) -> BoxFuture<'static, Option<OrderReply>> {
    Box::pin(async move {
        let PaymentCommand::Step(step) = &envelope.body;
        app.ledger.answer(&envelope, step).await
    })
}
