//! Warming a fresh broker up with the checkout's own message flow, on topics of its own.
//!
//! A fresh broker's JVM runs Kafka's request path in the interpreter first and compiles it
//! over the first tens of seconds of load. Measured on the local stack (docs/benchmark.md),
//! the broker cost twice the CPU per checkout in a benchmark's first 25 s as it did later,
//! and that was all of the difference between a cold stack and a warm one. Users benchmark
//! right after `make up`, so the local stack runs this once, before it starts the services.
//!
//! The flow is a checkout's, through this crate's own bus: an order side sends a try to each
//! participant topic and waits for both replies on its reply partition, then sends both
//! commits (not answered); a participant side answers in a consumer group
//! ([`commands::run`]). So the broker compiles what a checkout will use: idempotent
//! produce with `acks=all`, held fetches of a group and of an assigned partition, offset
//! commits and heartbeats. Nothing touches a service or a Redis, and the topics and groups
//! are deleted afterwards (the groups a few seconds later, see [`clean_up`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::commands;
use super::replies::Replies;
use super::{Bus, Topics};
use crate::error::Result;
use crate::protocol::{
    Envelope, OrderReply, Outcome, Participant, PaymentCommand, Phase, Protocol, Step,
    StockCommand, step_key,
};
use crate::settings::Settings;

/// Prefix of the warm-up's topics, so that they never meet a service's.
pub const TOPIC_PREFIX: &str = "warmup.";

/// Checkouts in flight at once: the benchmark's 64 clients.
const IN_FLIGHT: usize = 64;

/// How long one warm-up checkout waits for a reply before it starts over.
const REPLY_PATIENCE: Duration = Duration::from_secs(5);

/// How long each request of the clean-up may take.
const CLEAN_UP_PATIENCE: Duration = Duration::from_secs(5);

/// How long the warm-up's consumer groups may take to be deleted, in the background: their
/// static members' sessions (6 s) must expire first.
const GROUPS_PATIENCE: Duration = Duration::from_secs(20);

/// The longest a warm-up takes beyond its limit: its last checkouts end at once, its consumers
/// close, and the clean-up deletes its topics.
pub const PAST_LIMIT: Duration = Duration::from_secs(15);

/// What a warm-up did.
#[derive(Clone, Copy, Debug)]
pub struct Warmed {
    pub checkouts: u64,
    pub elapsed: Duration,
    /// Whether `enough` ended it (false: the limit did).
    pub enough: bool,
}

/// Runs checkouts against the broker of `settings` until `enough` says so (asked once a
/// second with the checkouts done so far) or `limit` has passed; then deletes its topics and
/// consumer groups. `settings` is a service's (the knobs a user set reach the warm-up too);
/// the topic prefix and the replica id are replaced by the warm-up's own.
pub async fn run(
    settings: &Settings,
    mut enough: impl FnMut(u64) -> bool,
    limit: Duration,
) -> Result<Warmed> {
    let settings = Settings {
        topic_prefix: TOPIC_PREFIX.into(),
        replica_id: "warmup-1".into(),
        ..settings.clone()
    };
    let started = Instant::now();
    let bus = Bus::connect(&settings, limit).await?;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(commands::run(
        bus.clone(),
        bus.topics.stock.clone(),
        group(Participant::Stock),
        |command: Envelope<StockCommand>| async move {
            match command.body {
                StockCommand::Step(step) => answer(Participant::Stock, step.phase),
                StockCommand::Price { .. } => None,
            }
        },
        stop.clone(),
    ));
    tasks.spawn(commands::run(
        bus.clone(),
        bus.topics.payment.clone(),
        group(Participant::Payment),
        |command: Envelope<PaymentCommand>| async move {
            let PaymentCommand::Step(step) = command.body;
            answer(Participant::Payment, step.phase)
        },
        stop.clone(),
    ));
    let replies = Replies::start(&bus, stop.clone())?;
    let done = Arc::new(AtomicU64::new(0));
    for lane in 0..IN_FLIGHT {
        let (bus, replies, done, stop) = (bus.clone(), replies.clone(), done.clone(), stop.clone());
        tasks.spawn(async move {
            for n in 0u64.. {
                let tx = format!("warmup-{lane}-{n}");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    ok = checkout(&bus, &replies, &tx) => if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    },
                }
            }
            Ok::<(), crate::error::Error>(())
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let enough = loop {
        tick.tick().await;
        if enough(done.load(Ordering::Relaxed)) {
            break true;
        }
        if started.elapsed() >= limit {
            break false;
        }
    };
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    drop(bus);
    clean_up(&settings).await;
    Ok(Warmed {
        checkouts: done.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        enough,
    })
}

fn group(participant: Participant) -> String {
    format!("warmup-{}", participant.as_str())
}

/// A participant that agrees to everything at once.
fn answer(participant: Participant, phase: Phase) -> Option<OrderReply> {
    phase.is_answered().then_some(OrderReply::Step {
        participant,
        phase,
        outcome: Outcome::Done,
    })
}

/// One saga-shaped checkout: both tries, both replies, both commits. False if a send failed
/// or a reply did not come in time.
async fn checkout(bus: &Bus, replies: &Replies, tx: &str) -> bool {
    let mut stock_reply = replies.register(step_key(tx, Participant::Stock, Phase::Try));
    let mut payment_reply = replies.register(step_key(tx, Participant::Payment, Phase::Try));
    if !to_both(bus, replies, tx, Phase::Try).await {
        return false;
    }
    let answered = tokio::join!(
        stock_reply.wait(REPLY_PATIENCE),
        payment_reply.wait(REPLY_PATIENCE)
    );
    answered.0.is_some() && answered.1.is_some() && to_both(bus, replies, tx, Phase::Commit).await
}

/// Sends `phase` of `tx` to both participants at once, shaped like a two-item checkout's.
async fn to_both(bus: &Bus, replies: &Replies, tx: &str, phase: Phase) -> bool {
    let step = |lines: &[(&str, i64)]| Step {
        phase,
        protocol: Protocol::Saga,
        lines: match phase {
            Phase::Try => lines.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            _ => Vec::new(),
        },
    };
    let stock = Envelope::new(
        tx,
        replies.reply_to(),
        StockCommand::Step(step(&[("item-1", 1), ("item-2", 1)])),
    );
    let payment = Envelope::new(
        tx,
        replies.reply_to(),
        PaymentCommand::Step(step(&[("user-1", 2)])),
    );
    let sent = tokio::join!(
        bus.send(&bus.topics.stock, None, &stock),
        bus.send(&bus.topics.payment, None, &payment),
    );
    sent.0.is_ok() && sent.1.is_ok()
}

/// Deletes the warm-up's topics, then its consumer groups. What cannot be deleted (the
/// broker is slow, say) is only logged: the topics' retention and the groups' offset retention
/// bound them anyway, and the next warm-up reuses them.
///
/// The participants' consumers are static members ([`commands::run`]), which leave their group
/// only when their session expires (6 s), and a group with members cannot be deleted. So the
/// groups are deleted in the background, tried every half second for [`GROUPS_PATIENCE`]: the
/// services need not wait for it.
async fn clean_up(settings: &Settings) {
    let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka_brokers)
        .create()
    {
        Ok(admin) => admin,
        Err(e) => return tracing::warn!(error = %e, "warm-up topics and groups left in place"),
    };
    let options = AdminOptions::new()
        .request_timeout(Some(CLEAN_UP_PATIENCE))
        .operation_timeout(Some(CLEAN_UP_PATIENCE));
    let topics = Topics::new(&settings.topic_prefix);
    let topics = [&topics.stock, &topics.payment, &topics.replies].map(String::as_str);
    match admin.delete_topics(&topics, &options).await {
        Ok(results) => {
            for (topic, code) in results.into_iter().filter_map(|r| r.err()) {
                tracing::warn!(topic, ?code, "warm-up topic not deleted");
            }
        }
        Err(e) => tracing::warn!(error = %e, "warm-up topics not deleted"),
    }
    tokio::spawn(async move {
        let mut groups = vec![group(Participant::Stock), group(Participant::Payment)];
        let deadline = Instant::now() + GROUPS_PATIENCE;
        loop {
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            let still = match admin.delete_groups(&names, &options).await {
                Ok(results) => results
                    .into_iter()
                    .filter_map(|r| r.err())
                    .filter(|(_, code)| *code != RDKafkaErrorCode::GroupIdNotFound)
                    .map(|(name, _)| name)
                    .collect(),
                Err(_) => groups.clone(),
            };
            groups = still;
            if groups.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return tracing::warn!(?groups, "warm-up consumer groups not deleted");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}
