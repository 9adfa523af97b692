//! The order side of request/reply: every order replica reads its own partition of the
//! reply topic and hands each reply to the task that waits for it.
//!
//! Nothing here is durable on purpose. A replica that restarts starts at the end of its
//! partition; the transactions it was driving are recovered from Redis and their commands
//! sent again, and participants answer a repeated command with the result they recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Bus;
use crate::error::Result;
use crate::protocol::{Envelope, OrderReply, ReplyTo};

/// Routes replies on this replica's partition to their waiters.
#[derive(Clone)]
pub struct Replies {
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<OrderReply>>>>,
    reply_to: ReplyTo,
}

/// A registered wait; dropping it unregisters the key.
pub struct Waiter {
    key: String,
    rx: oneshot::Receiver<OrderReply>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<OrderReply>>>>,
}

impl Waiter {
    /// Waits for the reply for at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<OrderReply> {
        tokio::time::timeout(timeout, &mut self.rx)
            .await
            .ok()
            .and_then(|r| r.ok())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.pending
            .lock()
            .expect("lock poisoned")
            .remove(&self.key);
    }
}

impl Replies {
    /// Starts consuming this replica's reply partition.
    pub fn start(bus: &Bus, shutdown: CancellationToken) -> Result<Self> {
        let settings = bus.settings();
        let partition = (settings.replica_ordinal() % settings.partitions as u32) as i32;
        let consumer = Bus::consumer(
            bus.consumer_config()
                .set("group.id", format!("{}-replies", settings.replica_id))
                .set("enable.auto.commit", "false"),
        )?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&bus.topics.replies, partition, Offset::End)?;
        consumer.assign(&assignment)?;
        let replies = Self {
            pending: Arc::default(),
            reply_to: ReplyTo { partition },
        };
        let router = replies.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    received = consumer.recv() => match received {
                        Ok(message) => router.route(message.payload().unwrap_or_default()),
                        Err(e) => {
                            tracing::warn!(error = %e, "reply receive failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
        tracing::info!(partition, "reply router started");
        Ok(replies)
    }

    pub fn reply_to(&self) -> ReplyTo {
        self.reply_to
    }

    /// Registers interest in `key` (see [`OrderReply::wait_key`]); register before sending.
    pub fn register(&self, key: String) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("lock poisoned")
            .insert(key.clone(), tx);
        Waiter {
            key,
            rx,
            pending: self.pending.clone(),
        }
    }

    fn route(&self, payload: &[u8]) {
        match Envelope::<OrderReply>::decode(payload) {
            Ok(envelope) => {
                let key = envelope.body.wait_key(&envelope.tx);
                let waiter = self.pending.lock().expect("lock poisoned").remove(&key);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(envelope.body);
                }
            }
            Err(e) => tracing::error!(error = %e, "skipping undecodable reply"),
        }
    }
}
