//! The participant side: consume commands in a consumer group, apply each through an
//! idempotent handler, send the reply, and only then store the offset.
//!
//! Handlers run concurrently (their Redis scripts are atomic and record every step, so any
//! interleaving is safe), but offsets are stored strictly in the order messages arrived: a
//! message's offset is stored only once it and every message before it have their effect
//! and reply durable. A crash therefore redelivers, and never skips, a command.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::{BrokerHealth, Bus, Closing, LagContext};
use crate::error::Result;
use crate::protocol::{Envelope, OrderReply};

/// How many commands one replica works on at once.
const MAX_IN_FLIGHT: usize = 512;

/// How long a consumer may hold no partition before it is replaced: far longer than a group
/// takes to form, so members never replace each other in turn. (A group with more replicas
/// than partitions would still churn its idle members: keep `KAFKA_PARTITIONS` above the
/// number of replicas.)
const UNASSIGNED_PATIENCE: Duration = Duration::from_secs(90);

/// How long a consumer may hold nothing in the [`AFTER_OUTAGE`] window before it is replaced.
const REJOIN_PATIENCE: Duration = Duration::from_secs(5);

/// How long after the broker answers again a consumer that holds nothing is suspect. Its
/// session may time out some seconds after the thaw (it was still assigned when the broker
/// came back), and after a broker fenced itself it was seen never to rejoin.
const AFTER_OUTAGE: Duration = Duration::from_secs(60);

/// Runs the command loop of `group` on `topic` until `shutdown`.
///
/// `handle` must be idempotent and must retry transient failures itself, for a bounded time:
/// the reply it returns is sent, and then the command counts as done; `None` parks the command
/// (it could not be applied; the handler logged why) and the partition flows on, since the
/// coordinator sends every unanswered command again.
///
/// A consumer that librdkafka declares fatally failed (a static member fenced after a broker
/// restart, for instance) is replaced by a new one; the commands it was working on are simply
/// delivered again, which their idempotent handling makes harmless.
pub async fn run<C, H, F>(
    bus: Bus,
    topic: String,
    group: String,
    handle: H,
    shutdown: CancellationToken,
) -> Result<()>
where
    C: Serialize + DeserializeOwned + Send + 'static,
    H: Fn(Envelope<C>) -> F + Send + Sync + 'static,
    F: Future<Output = Option<OrderReply>> + Send + 'static,
{
    let handle = Arc::new(handle);
    let broker = bus.watch_health(shutdown.clone());
    while !shutdown.is_cancelled() {
        let consumer = Bus::consumer(
            bus.consumer_config()
                .set("group.id", &group)
                // Static membership: a replica the watchdog restarts gets its partitions back at once.
                .set("group.instance.id", static_identity(&bus, &topic).await)
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "1000")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "200")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest"),
        )?;
        consumer.subscribe(&[&topic])?;
        consume(
            &bus,
            &broker,
            consumer,
            &topic,
            &group,
            handle.clone(),
            &shutdown,
        )
        .await;
    }
    Ok(())
}

/// The replica's static identity in its group: its id and the topic's partition count.
///
/// A static member that rejoins is handed its previous assignment without a rebalance, and
/// librdkafka's leader rebalances only when the metadata changes while it watches. So after a
/// topic grew (`Bus::ensure_topics`, on a restart with more replicas), a replica back under its
/// old identity would keep the old partitions and leave the new ones unread. Under the new
/// count it joins as a new member instead: the group rebalances once the old identity's
/// session has expired (6 s), and every partition is assigned.
async fn static_identity(bus: &Bus, topic: &str) -> String {
    let partitions = match bus.partitions_of(topic).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, topic, "partition count unknown; assuming the configured one");
            bus.settings().partitions.max(1) as usize
        }
    };
    format!("{}.p{partitions}", bus.settings().replica_id)
}

/// Consumes until `shutdown`, or until the consumer fails for good.
async fn consume<C, H, F>(
    bus: &Bus,
    broker: &BrokerHealth,
    consumer: Closing<StreamConsumer<LagContext>>,
    topic: &str,
    group: &str,
    handle: Arc<H>,
    shutdown: &CancellationToken,
) where
    C: Serialize + DeserializeOwned + Send + 'static,
    H: Fn(Envelope<C>) -> F + Send + Sync + 'static,
    F: Future<Output = Option<OrderReply>> + Send + 'static,
{
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let mut in_flight = FuturesOrdered::new();
    let mut watch = AssignmentWatch::default();
    tracing::info!(topic, group, "command loop started");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = health.tick() => {
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    tracing::error!(?code, %reason, "consumer failed for good; replacing it");
                    break;
                }
                let assigned = consumer.assignment().map(|a| a.count() > 0).unwrap_or(false);
                if watch.stuck(broker.is_up(), assigned, Instant::now()) {
                    tracing::warn!(topic, group, "no partitions; replacing the consumer");
                    break;
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let (partition, offset): (i32, i64) = done;
                if let Err(e) = consumer.store_offset(topic, partition, offset) {
                    // A rebalance took the partition away; its new owner redelivers.
                    tracing::debug!(error = %e, partition, offset, "offset not stored");
                }
            }
            received = consumer.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let message = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (partition, offset) = (message.partition(), message.offset());
                let decoded = Envelope::<C>::decode(message.payload().unwrap_or_default());
                let traceparent = super::traceparent_of(message.headers());
                drop(message);
                // The command continues its checkout's trace; every log line of its handling
                // carries the transaction id.
                let tx = decoded.as_ref().map_or("", |e| e.tx.as_str());
                let span = tracing::info_span!("command", %tx, participant = group, trace_id = tracing::field::Empty);
                crate::telemetry::continue_trace(&span, traceparent.as_deref());
                let (bus, handle) = (bus.clone(), handle.clone());
                let handled = async move {
                    match decoded {
                        Ok(envelope) => {
                            let (tx, reply_to) = (envelope.tx.clone(), envelope.reply_to);
                            if let Some(reply) = handle(envelope).await {
                                send_reply(&bus, tx, reply_to.partition, reply).await;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, partition, offset, "skipping undecodable command"),
                    }
                    (partition, offset)
                };
                in_flight.push_back(tracing::Instrument::instrument(handled, span));
            }
        }
    }
}

/// Tells a consumer that will never rejoin its group from one between assignments, one
/// health tick at a time.
///
/// A consumer whose group session timed out while the broker was frozen may never rejoin
/// (seen with static membership after SIGSTOP/SIGCONT of the broker, and after the broker
/// fenced itself on the thaw): no partitions, no error. So within [`AFTER_OUTAGE`] of the
/// broker answering again, a consumer that holds nothing for [`REJOIN_PATIENCE`] is replaced;
/// and at any time, one that holds nothing for [`UNASSIGNED_PATIENCE`].
#[derive(Debug, Default)]
struct AssignmentWatch {
    unassigned_since: Option<Instant>,
    back_since: Option<Instant>,
    /// Whether the broker was away at the last tick.
    was_down: bool,
}

impl AssignmentWatch {
    /// Takes one tick's findings at `now`; true when the consumer is to be replaced.
    fn stuck(&mut self, broker_up: bool, assigned: bool, now: Instant) -> bool {
        if broker_up && self.was_down {
            self.back_since = Some(now);
        }
        self.was_down = !broker_up;
        if assigned {
            self.unassigned_since = None;
            return false;
        }
        let since = *self.unassigned_since.get_or_insert(now);
        match self.back_since {
            // Counted from the thaw at the earliest: no consumer rejoins while the broker is away.
            Some(back) if broker_up && now.duration_since(back) < AFTER_OUTAGE => {
                now.duration_since(since.max(back)) > REJOIN_PATIENCE
            }
            _ => now.duration_since(since) > UNASSIGNED_PATIENCE,
        }
    }
}

/// Sends a reply, retrying while Kafka is away: the command's offset must not be stored
/// before its reply is out, or the coordinator would wait for an answer that never comes.
async fn send_reply(bus: &Bus, tx: String, partition: i32, reply: OrderReply) {
    let envelope = Envelope::new(tx, crate::protocol::ReplyTo { partition }, reply);
    let sent = crate::db::retry(crate::db::COMMAND_PATIENCE, || {
        bus.send(&bus.topics.replies, Some(partition), &envelope)
    })
    .await;
    if let Err(e) = sent {
        // The offset is stored anyway; the coordinator sends the command again.
        tracing::error!(error = %e, tx = %envelope.tx, "reply not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks a second apart, (broker up, assigned) each: the seconds at which the consumer
    /// is stuck.
    fn verdicts(ticks: &[(bool, bool)]) -> Vec<usize> {
        let mut watch = AssignmentWatch::default();
        super::super::seconds_said(ticks, |up, assigned, now| watch.stuck(up, assigned, now))
    }

    fn secs(d: Duration) -> usize {
        d.as_secs() as usize
    }

    #[test]
    fn a_consumer_that_never_rejoins_after_an_outage_is_replaced_within_seconds() {
        // Frozen for 10 s, assigned again for 3 s after the thaw, then the session times out
        // and the consumer never rejoins.
        let mut ticks = vec![(true, true); 5];
        ticks.extend(vec![(false, true); 10]);
        ticks.extend(vec![(true, true); 3]);
        ticks.extend(vec![(true, false); 20]);
        let lost = 18;
        assert_eq!(verdicts(&ticks)[0], lost + secs(REJOIN_PATIENCE) + 1);
    }

    #[test]
    fn a_consumer_unassigned_during_the_outage_gets_its_patience_from_the_thaw() {
        let mut ticks = vec![(false, false); 20];
        ticks.extend(vec![(true, false); 20]);
        assert_eq!(verdicts(&ticks)[0], 20 + secs(REJOIN_PATIENCE) + 1);
    }

    #[test]
    fn outside_an_outage_a_consumer_may_wait_long_for_partitions() {
        // A fresh consumer waiting to join, and one between assignments later: patient.
        let mut ticks = vec![(true, false); secs(UNASSIGNED_PATIENCE)];
        ticks.extend(vec![(true, true); 3]);
        ticks.extend(vec![(true, false); 20]);
        assert!(verdicts(&ticks).is_empty());
        // While the broker is away nobody is assigned; that is no reason to replace.
        let mut ticks = vec![(true, true); 3];
        ticks.extend(vec![(false, false); 60]);
        assert!(verdicts(&ticks).is_empty());
        // Long after the outage, the long patience is back.
        let mut ticks = vec![(false, true); 3];
        ticks.extend(vec![(true, true); secs(AFTER_OUTAGE) + 1]);
        ticks.extend(vec![(true, false); 20]);
        assert!(verdicts(&ticks).is_empty());
        // Nothing for good: replaced after the long patience.
        let ticks = vec![(true, false); secs(UNASSIGNED_PATIENCE) + 2];
        assert_eq!(verdicts(&ticks), vec![secs(UNASSIGNED_PATIENCE) + 1]);
    }
}
