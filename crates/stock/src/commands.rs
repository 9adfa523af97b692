//! Commands from the order service, applied exactly once.

use common::db;
use common::protocol::{Envelope, OrderReply, Phase, Protocol, StockCommand};
use redis::AsyncCommands;

use crate::App;

/// Applies one command. A try that finds too little while undecided checkouts hold enough
/// answers [`Outcome::Busy`](common::protocol::Outcome::Busy) and the coordinator asks again
/// shortly; the command slot is free meanwhile, so the aborts that release holds are never
/// stuck behind waiting tries.
pub async fn handle(app: App, envelope: Envelope<StockCommand>) -> OrderReply {
    let (phase, protocol, lines) = match envelope.body {
        StockCommand::Price { item_id } => {
            let price = db::retry(db::COMMAND_PATIENCE, || {
                let mut redis = app.deps.redis.clone();
                let key = app.ledger.key(&item_id);
                async move { Ok(redis.hget::<_, _, Option<i64>>(key, "price").await?) }
            })
            .await;
            return OrderReply::Price {
                item_id,
                price: price.unwrap_or(None),
            };
        }
        StockCommand::Try { protocol, items } => (Phase::Try, protocol, merge(items)),
        StockCommand::Commit => (Phase::Commit, Protocol::TwoPc, Vec::new()),
        StockCommand::Cancel => (Phase::Cancel, Protocol::Saga, Vec::new()),
    };
    app.ledger
        .apply(&envelope.tx, phase, protocol, &lines)
        .await
}

/// Sums the quantities of repeated items, so each item is one line of the step.
fn merge(items: Vec<(String, i64)>) -> Vec<(String, i64)> {
    let mut merged: Vec<(String, i64)> = Vec::with_capacity(items.len());
    for (id, quantity) in items {
        match merged.iter_mut().find(|(other, _)| *other == id) {
            Some((_, total)) => *total = total.saturating_add(quantity),
            None => merged.push((id, quantity)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn repeated_items_are_merged() {
        let merged = merge(vec![("a".into(), 1), ("b".into(), 2), ("a".into(), 3)]);
        assert_eq!(merged, vec![("a".into(), 4), ("b".into(), 2)]);
    }
}
