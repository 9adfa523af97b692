//! Item prices, asked of the stock service over Kafka and cached for good: a price never
//! changes after its item is created.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use common::bus::Bus;
use common::bus::replies::Replies;
use common::protocol::{Envelope, OrderReply, StockCommand};
use common::{Error, Noun, Result};

/// The cache is dropped whole when it reaches this many prices, so its memory is bounded
/// whatever the number of items (refilling costs one lookup per item).
const CACHE_BOUND: usize = 1 << 20;

pub struct Prices {
    cache: RwLock<HashMap<String, i64>>,
    bus: Bus,
    replies: Replies,
    patience: Duration,
    deadline: Duration,
}

impl Prices {
    pub fn new(bus: Bus, replies: Replies, patience: Duration, deadline: Duration) -> Self {
        Self {
            cache: RwLock::default(),
            bus,
            replies,
            patience,
            deadline,
        }
    }

    pub async fn get(&self, item_id: &str) -> Result<i64> {
        if let Some(price) = self.cache.read().expect("lock poisoned").get(item_id) {
            return Ok(*price);
        }
        let correlation = uuid::Uuid::new_v4().to_string();
        let request = Envelope::new(
            &correlation,
            self.replies.reply_to(),
            StockCommand::Price {
                item_id: item_id.to_string(),
            },
        );
        let mut waiter = self.replies.register(format!("{correlation}/price"));
        // Asked again every `patience`, until the deadline: right after start-up the stock
        // service's consumer group may still be forming.
        let deadline = tokio::time::Instant::now() + self.deadline;
        while tokio::time::Instant::now() < deadline {
            if let Err(e) = self.bus.send(&self.bus.topics.stock, None, &request).await {
                tracing::warn!(error = %e, "price request not sent");
            }
            match waiter.wait(self.patience).await {
                Some(OrderReply::Price {
                    price: Some(price), ..
                }) => {
                    let mut cache = self.cache.write().expect("lock poisoned");
                    if cache.len() >= CACHE_BOUND {
                        cache.clear();
                    }
                    cache.insert(item_id.to_string(), price);
                    return Ok(price);
                }
                Some(_) => return Err(Error::not_found(Noun::Item, item_id)),
                None => {}
            }
        }
        Err(Error::Timeout(format!(
            "the stock service did not answer for the price of item {item_id}"
        )))
    }
}
