//! Commands from the order service: checkout steps, applied exactly once, and price lookups.

use common::protocol::{Envelope, OrderReply, StockCommand};
use common::service::Participant;
use futures::future::BoxFuture;

/// Answers one command. A try that finds too little while undecided checkouts hold enough
/// answers [`Outcome::Busy`](common::protocol::Outcome::Busy) and the coordinator asks again
/// shortly; the command slot is free meanwhile, so the aborts that release holds are never
/// stuck behind waiting tries.
pub fn handle(
    app: Participant,
    envelope: Envelope<StockCommand>,
) -> BoxFuture<'static, Option<OrderReply>> {
    Box::pin(async move {
        match &envelope.body {
            StockCommand::Step(step) => app.ledger.answer(&envelope, step).await,
            StockCommand::Price { item_id } => match app.ledger.find(item_id).await {
                Ok(item) => Some(OrderReply::Price {
                    item_id: item_id.clone(),
                    price: item.and_then(|item| item.price),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, %item_id, "price lookup failed; the order service asks again");
                    None
                }
            },
        }
    })
}
