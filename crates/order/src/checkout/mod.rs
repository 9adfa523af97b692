//! Checkout: the order service coordinates a distributed transaction with the stock and
//! payment services, as a saga or as two-phase commit (see [`machine`]).
//!
//! - [`machine`] — the protocol as a pure state machine.
//! - `driver` — the task that runs one transaction's machine: phases, resends, the lease.
//! - [`log`] — the write-ahead transaction records in Redis.
//! - [`recovery`] — finishes transactions whose coordinator vanished.
//! - [`tally`] — the console's figures, counted in memory and written once a second.
//!
//! Every transaction is driven by one task that owns it through a lease in Redis. Before
//! each step the task writes the transaction's state (the write-ahead record); it sends each
//! phase's step to both participants at once and resends it, backing off, until they answer
//! or the phase's deadline passes. The HTTP request only waits for the outcome, so a client
//! that disconnects never leaves a transaction halfway.
//!
//! Everything is bounded: at most `MAX_INFLIGHT_CHECKOUTS` drivers per replica (beyond it a
//! checkout answers 503 before writing anything), every wait has a deadline, and a driver
//! that cannot reach the broker or renew its lease stops sending and lets its lease expire,
//! so that a replica that can drive the transaction takes it over.

mod driver;
pub mod log;
pub mod machine;
pub mod recovery;
pub mod tally;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bus::replies::Replies;
use common::bus::{BrokerHealth, Bus};
use common::metrics as m;
use common::{Error, Noun, Result, Settings, db};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::Instrument;

use log::{Begin, Claim, TxLog, TxRecord};
use machine::{Abort, TxState};

/// How a checkout ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Final {
    Committed,
    Aborted(Abort),
}

/// What the client is told about `tx` once that is settled: paid from the logged commit on,
/// aborted only once every participant has been cancelled.
fn outcome_of(tx: &TxRecord) -> Option<Final> {
    match tx.state {
        TxState::Committing | TxState::Committed => Some(Final::Committed),
        TxState::Aborted => Some(Final::Aborted(tx.abort.clone().unwrap_or_else(|| {
            Abort::Interrupted("aborted without a recorded reason".into())
        }))),
        TxState::Trying | TxState::Aborting => None,
    }
}

/// Why a driving task stopped before the end; in every case the transaction's record stays
/// in Redis and whoever owns it next finishes it.
#[derive(Debug)]
enum Stop {
    /// Another coordinator owns the transaction now.
    Fenced,
    /// Our lease may have run out (Redis did not renew it), so we must not send any more.
    LeaseLost,
    /// The broker does not answer: we stop renewing, so a replica that reaches it takes over.
    Handover,
    /// The participants did not answer a cancel, or the broker did not take a commit, before
    /// the phase's deadline; recovery resumes it once the lease expires.
    GaveUp,
    /// Redis stayed away while writing the next state.
    Failed(Error),
}

pub struct Coordinator {
    log: TxLog,
    bus: Bus,
    broker: BrokerHealth,
    replies: Replies,
    settings: Settings,
    /// This incarnation's owner id: `{replica_id}/{uuid}`.
    owner: String,
    /// Transactions this process drives, with their outcome once known.
    driving: Mutex<HashMap<String, watch::Receiver<Option<Final>>>>,
    /// One permit per driver of a new checkout: admission control.
    permits: Arc<Semaphore>,
    /// Places in the queue of checkouts waiting for a permit.
    queue: Semaphore,
    /// One permit per driver of a recovered transaction: recovery's own, so that it never
    /// waits behind new checkouts (see [`Coordinator::try_recovery_permit`]).
    recovery_permits: Arc<Semaphore>,
}

/// How many recovered transactions one replica drives at once: a quarter of the admission
/// bound, at least one. Enough to drain a replica's worth of expired leases within seconds of
/// an outage, and new checkouts keep their whole bound.
fn recovery_drivers(max_inflight_checkouts: usize) -> usize {
    max_inflight_checkouts.div_ceil(4).max(1)
}

impl Coordinator {
    pub fn new(
        log: TxLog,
        bus: Bus,
        broker: BrokerHealth,
        replies: Replies,
        settings: Settings,
    ) -> Arc<Self> {
        let owner = format!("{}/{}", settings.replica_id, uuid::Uuid::new_v4());
        let permits = Arc::new(Semaphore::new(settings.max_inflight_checkouts));
        let queue = Semaphore::new(settings.max_inflight_checkouts);
        let recovery_permits = Arc::new(Semaphore::new(recovery_drivers(
            settings.max_inflight_checkouts,
        )));
        Arc::new(Self {
            log,
            bus,
            broker,
            replies,
            settings,
            owner,
            driving: Mutex::default(),
            permits,
            queue,
            recovery_permits,
        })
    }

    /// Checks an order out; `Ok` means it is paid. Idempotent: a paid order answers `Ok` at
    /// once, and a checkout in flight is joined rather than started again.
    pub async fn checkout(self: &Arc<Self>, order_id: &str) -> Result<()> {
        let started = std::time::Instant::now();
        let answer = self.settle(order_id).await;
        let outcome = match &answer {
            Ok(()) => "committed",
            Err(e) => e.status_and_code().1,
        };
        let protocol = self.settings.protocol.as_str();
        metrics::counter!(m::CHECKOUTS, "protocol" => protocol, "outcome" => outcome).increment(1);
        metrics::histogram!(m::CHECKOUT_DURATION, "protocol" => protocol).record(started.elapsed());
        answer
    }

    async fn settle(self: &Arc<Self>, order_id: &str) -> Result<()> {
        let deadline = Instant::now() + self.settings.checkout_timeout;
        loop {
            if !self.broker.is_up() {
                return Err(Error::Unavailable(
                    "the message broker does not answer; checkout cannot run now".into(),
                ));
            }
            let permit = self.admit(deadline).await?;
            let tx_id = uuid::Uuid::new_v4().to_string();
            let (protocol, lease) = (self.settings.protocol, self.settings.lease);
            let begun = db::retry(self.settings.checkout_timeout, || {
                self.log
                    .begin(order_id, &tx_id, protocol, &self.owner, lease)
            })
            .await?;
            let outcome = match begun {
                Begin::Missing => return Err(Error::not_found(Noun::Order, order_id)),
                Begin::Replacing => {
                    return Err(Error::Unavailable(
                        "batch_init is replacing this order; checkout can run once it is done"
                            .into(),
                    ));
                }
                Begin::Paid => return Ok(()),
                Begin::Started(tx) => {
                    let outcome = self.spawn(tx, permit);
                    self.wait(&tx_id, Some(outcome), deadline).await
                }
                Begin::InFlight(other) => {
                    drop(permit);
                    let local = self.local_outcome(&other);
                    self.wait(&other, local, deadline).await
                }
            };
            match outcome {
                Some(Final::Committed) => return Ok(()),
                Some(Final::Aborted(Abort::Refused(r))) => return Err(Error::Refused(r)),
                // Interrupted says nothing about the order itself: try again while there is
                // time, after a pause that keeps a failing dependency from being hammered.
                Some(Final::Aborted(Abort::Interrupted(why)))
                    if Instant::now() + RETRY_PAUSE < deadline =>
                {
                    tracing::info!(order = order_id, %why, "checkout interrupted; trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Some(Final::Aborted(Abort::Interrupted(why))) => {
                    return Err(Error::Timeout(format!(
                        "checkout of order {order_id} could not be decided: {why}"
                    )));
                }
                None => {
                    return Err(Error::Timeout(format!(
                        "checkout of order {order_id} is still in progress"
                    )));
                }
            }
        }
    }

    /// A driver's permit: at once if one is free; else after a wait in a queue as long as the
    /// permits, until `deadline`. Beyond that queue, or past the deadline, the checkout is
    /// refused (503) before anything is written. The queue absorbs a burst (a thousand
    /// checkouts fired at once, as the course's consistency test does); the bound keeps a
    /// sustained overload from turning into unbounded memory and latency.
    async fn admit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let overloaded = || {
            Error::Overloaded(format!(
                "{} checkouts in flight on this replica and as many waiting",
                self.settings.max_inflight_checkouts
            ))
        };
        let _in_queue = self.queue.try_acquire().map_err(|_| overloaded())?;
        match tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(overloaded()),
        }
    }

    fn local_outcome(&self, tx_id: &str) -> Option<watch::Receiver<Option<Final>>> {
        self.driving
            .lock()
            .expect("lock poisoned")
            .get(tx_id)
            .cloned()
    }

    /// Waits until transaction `tx_id` is decided: through its local driver when this
    /// process drives it, else by reading its record, backing off between reads.
    async fn wait(
        &self,
        tx_id: &str,
        local: Option<watch::Receiver<Option<Final>>>,
        deadline: Instant,
    ) -> Option<Final> {
        if let Some(mut outcome) = local {
            let decided =
                tokio::time::timeout_at(deadline, outcome.wait_for(Option::is_some)).await;
            match decided {
                Ok(Ok(value)) => return value.clone(),
                Err(_) => return None,
                Ok(Err(_)) => {} // the driver stopped; whoever takes over writes the record
            }
        }
        let mut pause = Duration::from_millis(5);
        while Instant::now() < deadline {
            match self.log.load(tx_id).await {
                Ok(Some(tx)) => {
                    if let Some(decided) = outcome_of(&tx) {
                        return Some(decided);
                    }
                }
                Ok(None) => {
                    return Some(Final::Aborted(Abort::Interrupted(
                        "the transaction record is gone".into(),
                    )));
                }
                Err(e) => tracing::debug!(error = %e, "cannot read transaction yet"),
            }
            tokio::time::sleep(pause.min(deadline - Instant::now())).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
        None
    }

    pub fn is_driving(&self, tx_id: &str) -> bool {
        self.driving
            .lock()
            .expect("lock poisoned")
            .contains_key(tx_id)
    }

    /// Drives `tx` in a task of its own, holding `permit` until it stops, and returns where
    /// its outcome will appear.
    fn spawn(
        self: &Arc<Self>,
        tx: TxRecord,
        permit: OwnedSemaphorePermit,
    ) -> watch::Receiver<Option<Final>> {
        let (outcome, receiver) = watch::channel(None);
        self.driving
            .lock()
            .expect("lock poisoned")
            .insert(tx.id.clone(), receiver.clone());
        let this = self.clone();
        // A child of the request's span, so in the checkout's trace; a recovered transaction
        // starts a trace of its own.
        let span = tracing::info_span!("tx", id = %tx.id, order = %tx.order_id, protocol = tx.protocol.as_str(), trace_id = tracing::field::Empty);
        if tracing::Span::current().is_none() {
            common::telemetry::continue_trace(&span, None);
        }
        let in_flight = metrics::gauge!(m::CHECKOUTS_IN_FLIGHT);
        in_flight.increment(1.0);
        tokio::spawn(async move {
            let id = tx.id.clone();
            let stopped = this.drive(tx, &outcome).instrument(span).await;
            match stopped {
                Ok(()) | Err(Stop::GaveUp) => {}
                Err(Stop::Fenced) => {
                    tracing::info!(tx = %id, "another coordinator took the transaction over")
                }
                Err(Stop::Failed(e)) => tracing::warn!(tx = %id, error = %e, "left to recovery"),
                Err(stop) => tracing::warn!(tx = %id, ?stop, "left to recovery"),
            }
            this.driving.lock().expect("lock poisoned").remove(&id);
            in_flight.decrement(1.0);
            drop(permit);
        });
        receiver
    }

    /// Takes over `tx_id` if its owner's lease expired (or its owner was an earlier
    /// incarnation of this replica, with `steal_prefix`), and drives it to its end with
    /// `permit`.
    pub async fn recover(
        self: &Arc<Self>,
        tx_id: &str,
        steal_prefix: &str,
        permit: OwnedSemaphorePermit,
    ) -> Result<()> {
        let lease = self.settings.lease;
        if self
            .log
            .claim(tx_id, &self.owner, lease, steal_prefix)
            .await?
            != Claim::Claimed
        {
            return Ok(());
        }
        let Some(mut tx) = self.log.load(tx_id).await? else {
            return Ok(());
        };
        metrics::counter!(m::RECOVERY_CLAIMS).increment(1);
        let (state, abort) = machine::on_recovery(tx.protocol, tx.state);
        tracing::info!(tx = %tx.id, from = tx.state.as_str(), to = state.as_str(), "recovering transaction");
        if state != tx.state {
            tx.abort = abort;
            if let Err(stop) = self.advance(&mut tx, state, &[]).await {
                tracing::info!(?stop, tx = %tx.id, "recovery stopped");
                return Ok(());
            }
        }
        self.spawn(tx, permit);
        Ok(())
    }

    /// A permit to drive a recovered transaction, if one is free now.
    ///
    /// Recovery has drivers of its own. With one pool for both, new checkouts starved it: a
    /// transaction left to recovery (its coordinator died, or handed it over while the broker
    /// did not answer) still holds the stock and credit it took, so new checkouts of the same
    /// items are answered "busy" and keep their permits while they wait for that stock. Their
    /// clients retry, the queue hands every freed permit to the next checkout, and the
    /// recovery that would release the stock never got one: in the chaos suite, after a Kafka
    /// restart on a loaded machine, no transaction was decided for two minutes.
    pub fn try_recovery_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.recovery_permits.clone().try_acquire_owned().ok()
    }

    pub fn broker_is_up(&self) -> bool {
        self.broker.is_up()
    }

    pub fn log(&self) -> &TxLog {
        &self.log
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// The pause before a checkout whose transaction was interrupted starts another one.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::recovery_drivers;

    #[test]
    fn recovery_has_a_quarter_of_the_admission_bound_and_at_least_one_driver() {
        assert_eq!(recovery_drivers(512), 128);
        assert_eq!(recovery_drivers(5), 2);
        assert_eq!(recovery_drivers(1), 1);
    }
}
