//! The Kafka bus: an idempotent producer, the topics, and the two consumer shapes the
//! services need — a consumer-group command loop for participants ([`commands`]) and a
//! per-replica reply router for the order service ([`replies`]).

mod closing;
pub mod commands;
pub mod replies;
pub mod warmup;

pub use closing::{Closing, wait_for_closes};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use metrics::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::protocol::Envelope;
use crate::settings::Settings;

/// How long librdkafka may wait for room in its queue to take a message.
const QUEUE_TIMEOUT_S: u64 = 5;
/// How long librdkafka may take to deliver a message it took (`message.timeout.ms`); it
/// reports every message within this.
const MESSAGE_TIMEOUT_S: u64 = 10;

/// How long [`Bus::send`] waits for a message's delivery report: both of librdkafka's timeouts
/// and a margin. The deadline is ours all the same, so that no caller waits for ever on a
/// report that never comes (a coordinator that did would renew its lease and hold its
/// transaction undecided).
pub const SEND_PATIENCE: Duration = Duration::from_secs(QUEUE_TIMEOUT_S + MESSAGE_TIMEOUT_S + 5);

/// How long the broker must answer a fresh client while this bus's producer cannot reach it
/// before the producer is taken for wedged and replaced (see [`Bus::watch_health`]). Longer
/// than a healthy producer takes to reconnect after a thaw (librdkafka backs off up to 10 s
/// between attempts), and than a probe queued behind a burst of sends may wait.
const WEDGED_AFTER: Duration = Duration::from_secs(15);

/// Topic names, optionally prefixed so several stacks can share one broker.
#[derive(Clone, Debug)]
pub struct Topics {
    pub stock: String,
    pub payment: String,
    pub replies: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Self {
            stock: format!("{prefix}stock.commands"),
            payment: format!("{prefix}payment.commands"),
            replies: format!("{prefix}order.replies"),
        }
    }
}

/// A handle on Kafka shared by all tasks of a service.
#[derive(Clone)]
pub struct Bus {
    /// The producer every send goes through; replaced whole if it wedges (see
    /// [`Bus::watch_health`]), and a replaced one is closed off the thread that drops it.
    producer: Arc<RwLock<Arc<Closing<FutureProducer>>>>,
    pub topics: Topics,
    settings: Settings,
    /// `kafka_produce_duration_seconds` of each topic, registered once.
    produce_timers: Arc<[(String, Histogram)]>,
}

impl Bus {
    /// Builds the producer and makes sure every topic exists. Retries until the broker answers
    /// or `give_up` elapses, so a service can start while Kafka is still coming up.
    pub async fn connect(settings: &Settings, give_up: Duration) -> Result<Self> {
        let producer = Arc::new(RwLock::new(Arc::new(Closing::new(new_producer(settings)?))));
        let topics = Topics::new(&settings.topic_prefix);
        let produce_timers = [&topics.stock, &topics.payment, &topics.replies]
            .map(|topic| {
                let timer = metrics::histogram!(crate::metrics::KAFKA_PRODUCE_DURATION, "topic" => topic.clone());
                (topic.clone(), timer)
            })
            .into();
        let bus = Self {
            producer,
            topics,
            settings: settings.clone(),
            produce_timers,
        };
        let deadline = tokio::time::Instant::now() + give_up;
        loop {
            match bus.ensure_topics().await {
                Ok(()) => return Ok(bus),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "kafka not ready yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The producer of the moment (see [`Bus::replace_producer`]).
    fn producer(&self) -> Arc<Closing<FutureProducer>> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts a new producer in place of the current one, which is dropped (and so closed) on a
    /// thread of its own once the sends still holding it are done with it. A new producer has
    /// a new idempotence identity, so a message of the old one that still lands may be a
    /// duplicate: every message of the protocol is idempotent to apply, as after a restart.
    fn replace_producer(&self) -> Result<()> {
        let fresh = Arc::new(Closing::new(new_producer(&self.settings)?));
        *self.producer.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Base consumer configuration for this service's settings.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.settings.kafka_brokers)
            .set("client.id", &self.settings.replica_id)
            .set("socket.nagle.disable", "true")
            .set("fetch.wait.max.ms", self.settings.fetch_wait_ms.to_string())
            .set("fetch.min.bytes", self.settings.fetch_min_bytes.to_string())
            .set("fetch.error.backoff.ms", "50")
            // A topic grown while this consumer runs (`ensure_topics` of a replica started
            // with more partitions) is seen, and its group rebalanced, within 10 s instead of
            // librdkafka's default 5 minutes, in which commands on the new partitions would
            // wait unread.
            .set("topic.metadata.refresh.interval.ms", "10000")
            // Feeds `kafka_consumer_lag` (see [`LagContext`]).
            .set("statistics.interval.ms", "5000");
        config
    }

    /// A consumer made from `config` (built on [`Bus::consumer_config`]). Every consumer of
    /// the bus is made here, so every one is closed off the thread that drops it ([`Closing`]).
    pub fn consumer(config: &ClientConfig) -> Result<Closing<StreamConsumer<LagContext>>> {
        Ok(Closing::new(config.create_with_context(LagContext)?))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Creates the topics if they are missing, and grows any that has fewer partitions than
    /// configured (idempotent; partitions are never removed).
    ///
    /// Growing matters where data outlives a deployment: a local stack started again with more
    /// replicas finds the topics of the last run, and an order replica whose reply partition
    /// did not exist could never be answered. Growing moves some transactions' keys to another
    /// command partition, so a later command of a transaction in flight may overtake an earlier
    /// copy on the old one. The participants' step records make that safe: a commit is sent
    /// only after its try was answered, a try read after its commit or cancel is answered from
    /// the record, and a cancel read first forbids the try.
    pub async fn ensure_topics(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.kafka_brokers)
            .create()?;
        let names = [
            &self.topics.stock,
            &self.topics.payment,
            &self.topics.replies,
        ];
        // Messages only need to live until they are consumed: a participant applies no try
        // older than half the state retention, commits and cancels are idempotent without
        // their records, and a coordinator resends what was not answered. So the log keeps
        // twice the state retention (a minute at least), in segments small enough to be
        // deleted on time, and disk stays flat under any load.
        let retention_ms = (2 * self.settings.state_retention.as_millis()).max(60_000);
        let retention_ms = retention_ms.to_string();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.settings.partitions,
                    TopicReplication::Fixed(self.settings.replication),
                )
                .set("retention.ms", &retention_ms)
                .set("segment.ms", &retention_ms)
                .set("segment.bytes", "16777216")
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        let mut existed = Vec::new();
        for result in admin.create_topics(&topics, &options).await? {
            match result {
                Ok(_) => {}
                Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => existed.push(topic),
                Err((topic, code)) => {
                    return Err(Error::Internal(format!(
                        "cannot create topic {topic}: {code}"
                    )));
                }
            }
        }
        let wanted = self.settings.partitions.max(1) as usize;
        let mut grow = Vec::new();
        for topic in existed {
            let found = self.partitions_of(&topic).await?;
            if found < wanted {
                tracing::info!(topic, found, wanted, "growing the topic's partitions");
                grow.push(topic);
            }
        }
        if grow.is_empty() {
            return Ok(());
        }
        let grow: Vec<_> = grow.iter().map(|t| NewPartitions::new(t, wanted)).collect();
        for result in admin.create_partitions(&grow, &options).await? {
            match result {
                Ok(_) => {}
                // Another replica starting at the same time grew it first; the next call
                // (every start makes one) checks the count again.
                Err((topic, RDKafkaErrorCode::InvalidPartitions)) => {
                    tracing::debug!(topic, "partitions already grown");
                }
                Err((topic, code)) => {
                    return Err(Error::Internal(format!(
                        "cannot grow topic {topic} to {wanted} partitions: {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Sends one message, with the current span's trace context in a `traceparent` header,
    /// and waits until the broker has it (`acks=all`).
    pub async fn send<T: Serialize + DeserializeOwned>(
        &self,
        topic: &str,
        partition: Option<i32>,
        message: &Envelope<T>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let payload = message.encode();
        let traceparent = crate::telemetry::current_traceparent();
        let mut record = FutureRecord::to(topic).key(&message.tx).payload(&payload);
        if let Some(value) = &traceparent {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: crate::telemetry::TRACEPARENT,
                value: Some(value.as_str()),
            }));
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let sent = tokio::time::timeout(
            SEND_PATIENCE,
            self.producer()
                .send(record, Timeout::After(Duration::from_secs(QUEUE_TIMEOUT_S))),
        )
        .await;
        if let Some((_, timer)) = self.produce_timers.iter().find(|(t, _)| t == topic) {
            timer.record(started.elapsed());
        }
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => {
                self.exit_if_fatal();
                Err(Error::Kafka(e))
            }
            Err(_) => {
                tracing::warn!(topic, tx = %message.tx, "no delivery report within {SEND_PATIENCE:?}");
                Err(Error::Kafka(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageTimedOut,
                )))
            }
        }
    }

    /// How many partitions `topic` has, as the broker's metadata says (a blocking call, so on
    /// a blocking thread).
    pub async fn partitions_of(&self, topic: &str) -> Result<usize> {
        let (producer, name) = (self.producer(), topic.to_string());
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), Duration::from_secs(5))
        })
        .await
        .map_err(|e| Error::Internal(format!("metadata lookup: {e}")))??;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len());
        partitions.ok_or_else(|| Error::Internal(format!("no metadata for topic {topic}")))
    }

    /// An idempotent producer that librdkafka declares fatally failed can send nothing more.
    /// The process exits, crash-only: the supervisor starts it again with a fresh producer,
    /// and everything it was doing is recovered from Redis.
    fn exit_if_fatal(&self) {
        if let Some((code, reason)) = self.producer().client().fatal_error() {
            tracing::error!(?code, %reason, "kafka producer failed for good; exiting");
            std::process::exit(70);
        }
    }

    /// True when the broker answers a metadata request within a second.
    pub async fn is_ready(&self) -> bool {
        let (producer, topic) = (self.producer(), self.topics.replies.clone());
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(1))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// True when the broker answers a metadata request from a client made for the purpose,
    /// within two seconds: whether the broker is there, whatever state our producer is in.
    async fn answers_a_fresh_client(&self) -> bool {
        let (brokers, topic) = (
            self.settings.kafka_brokers.clone(),
            self.topics.replies.clone(),
        );
        tokio::task::spawn_blocking(move || {
            // Quiet: while the broker is away this runs every second, and our own clients
            // already say so.
            let Ok(probe) = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set_log_level(RDKafkaLogLevel::Emerg)
                .create::<BaseProducer>()
            else {
                return false;
            };
            let answered = probe
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .is_ok();
            drop(Closing::new(probe));
            answered
        })
        .await
        .unwrap_or(false)
    }

    /// Starts probing the broker every second until `shutdown`; the answer tells the order
    /// service to refuse new checkouts at once, and to hand its transactions over, while the
    /// broker is away (or frozen: a stopped broker keeps its connections open but answers
    /// nothing, which only a request with a deadline notices).
    ///
    /// The probe goes through this bus's producer, and so also watches the producer itself.
    /// After a frozen broker thawed, an idempotent producer was seen to lose its connection
    /// and never make another (every send timed out for minutes, with no fatal error), while
    /// every other client reconnected at once. So while our producer gets no answer, a fresh
    /// client asks too; if the broker answers it for [`WEDGED_AFTER`] while ours still gets
    /// nothing, the producer is replaced by a new one.
    pub fn watch_health(&self, shutdown: CancellationToken) -> BrokerHealth {
        let health = BrokerHealth(Arc::new(AtomicBool::new(true)));
        let (bus, flag) = (self.clone(), health.clone());
        tokio::spawn(async move {
            // Kept across runs of the probe, which `every` makes one at a time.
            let wedge = std::sync::Mutex::new(WedgeWatch::default());
            crate::periodic::every(Duration::from_secs(1), &shutdown, || async {
                let up = bus.is_ready().await;
                if flag.0.swap(up, Ordering::Relaxed) != up {
                    if up {
                        tracing::info!("kafka answers again");
                    } else {
                        tracing::warn!("kafka does not answer; refusing new checkouts");
                    }
                }
                let others = !up && bus.answers_a_fresh_client().await;
                let wedged = wedge.lock().unwrap_or_else(|e| e.into_inner()).wedged(
                    up,
                    others,
                    Instant::now(),
                );
                if wedged {
                    tracing::warn!(
                        "kafka answers a fresh client but not our producer; replacing the producer"
                    );
                    if let Err(e) = bus.replace_producer() {
                        tracing::error!(error = %e, "no new producer");
                    }
                }
            })
            .await;
        });
        health
    }
}

/// Tells a wedged producer from a broker that is away, one probe at a time (see
/// [`Bus::watch_health`]).
#[derive(Debug, Default)]
struct WedgeWatch {
    /// Since when the broker has answered fresh clients while our producer got no answer.
    others_answered_since: Option<Instant>,
}

impl WedgeWatch {
    /// Takes one probe's findings at `now`: whether our producer got an answer, and whether a
    /// fresh client did. True when the producer is to be replaced: the broker has answered
    /// others for [`WEDGED_AFTER`] and never us. The watch starts over after saying so.
    fn wedged(&mut self, ours: bool, others: bool, now: Instant) -> bool {
        if ours || !others {
            self.others_answered_since = None;
            return false;
        }
        let since = *self.others_answered_since.get_or_insert(now);
        let wedged = now.duration_since(since) >= WEDGED_AFTER;
        if wedged {
            self.others_answered_since = None;
        }
        wedged
    }
}

/// A producer for `settings`: idempotent, every message acknowledged by all replicas.
fn new_producer(settings: &Settings) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka_brokers)
        .set("client.id", &settings.replica_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", settings.linger_ms.to_string())
        .set("message.timeout.ms", (MESSAGE_TIMEOUT_S * 1000).to_string())
        .set("socket.nagle.disable", "true")
        .create()?)
}

/// The `traceparent` header of a received message, if it has one.
pub fn traceparent_of<H: Headers>(headers: Option<&H>) -> Option<String> {
    let headers = headers?;
    headers
        .iter()
        .find(|h| h.key == crate::telemetry::TRACEPARENT)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
        .map(str::to_owned)
}

/// The context of every consumer: turns librdkafka's statistics (every 5 s) into
/// `kafka_consumer_lag{topic, partition}`, the messages between the consumer's position and
/// the end of each partition it reads.
pub struct LagContext;

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // -1 is librdkafka's internal partition; negative offsets mean "not read here".
                if *partition < 0 || p.app_offset < 0 || p.hi_offset < 0 {
                    continue;
                }
                metrics::gauge!(crate::metrics::KAFKA_CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set((p.hi_offset - p.app_offset).max(0) as f64);
            }
        }
    }
}

impl ConsumerContext for LagContext {}

/// Whether the broker answered its last probe (see [`Bus::watch_health`]).
#[derive(Clone, Debug)]
pub struct BrokerHealth(Arc<AtomicBool>);

impl BrokerHealth {
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A health that is always up, for callers that do not watch the broker.
    pub fn always_up() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

/// The seconds at which a watch (`says`) speaks up, given one pair of findings a second.
/// For the tests of the watches here and in [`commands`].
#[cfg(test)]
fn seconds_said(
    ticks: &[(bool, bool)],
    mut says: impl FnMut(bool, bool, Instant) -> bool,
) -> Vec<usize> {
    let start = Instant::now();
    (0..ticks.len())
        .filter(|&s| {
            says(
                ticks[s].0,
                ticks[s].1,
                start + Duration::from_secs(s as u64),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probes a second apart, (ours, others) each: the seconds at which the producer is wedged.
    fn verdicts(probes: &[(bool, bool)]) -> Vec<usize> {
        let mut watch = WedgeWatch::default();
        seconds_said(probes, |ours, others, now| watch.wedged(ours, others, now))
    }

    #[test]
    fn a_producer_is_wedged_only_while_others_get_answers_and_it_does_not() {
        let limit = WEDGED_AFTER.as_secs() as usize;
        // The broker away for a long time: nobody gets an answer, nothing is replaced.
        assert!(verdicts(&vec![(false, false); 5 * limit]).is_empty());
        // Others answered from second 0 and ours never: replaced at the limit, then again a
        // limit later if the new one fares no better.
        assert_eq!(
            verdicts(&vec![(false, true); 2 * limit + 2]),
            vec![limit, 2 * limit + 1]
        );
        // Ours answers once within the limit, or the broker goes away again: start over.
        for gap in [(true, true), (false, false)] {
            let mut probes = vec![(false, true); limit];
            probes.push(gap);
            probes.extend(vec![(false, true); limit]);
            assert!(verdicts(&probes).is_empty(), "after {gap:?}");
        }
    }
}
