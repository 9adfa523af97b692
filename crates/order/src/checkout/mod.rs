//! Checkout: the order service coordinates a distributed transaction with the stock and
//! payment services, as a saga or as two-phase commit (see [`machine`]).
//!
//! Every transaction is driven by one task that owns it through a lease in Redis. Before
//! each step the task writes the transaction's state (the write-ahead record); it sends each
//! phase's commands to both participants at once and resends them until they answer. The
//! HTTP request only waits for the outcome, so a client that disconnects never leaves a
//! transaction halfway; and [`recovery`] finishes transactions whose owner vanished.

pub mod machine;
pub mod recovery;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bus::Bus;
use common::bus::replies::Replies;
use common::protocol::{
    Envelope, OrderReply, Outcome, Participant, PaymentCommand, Phase, StockCommand, step_key,
};
use common::{Error, Refusal, Result, Settings, db};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::{Begin, Claim, Store, TxRecord};
use machine::TxState;

/// How long a try may keep finding its participant busy before it counts as refused.
const BUSY_PATIENCE: Duration = Duration::from_secs(15);

/// How a checkout ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Final {
    Committed,
    Aborted(Refusal),
}

/// What the client is told about `tx` once that is settled: paid from the logged commit on,
/// refused only once every participant has been cancelled.
fn outcome_of(tx: &TxRecord) -> Option<Final> {
    match tx.state {
        TxState::Committing | TxState::Committed => Some(Final::Committed),
        TxState::Aborted => Some(Final::Aborted(
            tx.refusal.clone().unwrap_or_else(machine::presumed_abort),
        )),
        TxState::Trying | TxState::Aborting => None,
    }
}

/// Why a driving task stopped before the end.
#[derive(Debug)]
enum Stop {
    /// Another coordinator owns the transaction now; it finishes it.
    Fenced,
    /// Redis stayed away for too long; recovery finishes it once the lease expires.
    Failed(Error),
}

pub struct Coordinator {
    store: Store,
    bus: Bus,
    replies: Replies,
    settings: Settings,
    /// This incarnation's owner id: `{replica_id}/{uuid}`.
    owner: String,
    /// Transactions this process drives, with their outcome once known.
    driving: Mutex<HashMap<String, watch::Receiver<Option<Final>>>>,
}

impl Coordinator {
    pub fn new(store: Store, bus: Bus, replies: Replies, settings: Settings) -> Arc<Self> {
        let owner = format!("{}/{}", settings.replica_id, uuid::Uuid::new_v4());
        Arc::new(Self {
            store,
            bus,
            replies,
            settings,
            owner,
            driving: Mutex::default(),
        })
    }

    /// Checks an order out; `Ok` means it is paid. Idempotent: a paid order answers `Ok` at
    /// once, and a checkout in flight is joined rather than started again.
    pub async fn checkout(self: &Arc<Self>, order_id: &str) -> Result<()> {
        let deadline = Instant::now() + self.settings.checkout_timeout;
        loop {
            let tx_id = uuid::Uuid::new_v4().to_string();
            let (protocol, lease) = (self.settings.protocol, self.settings.lease);
            let begun = db::retry(self.settings.checkout_timeout, || {
                self.store
                    .begin(order_id, &tx_id, protocol, &self.owner, lease)
            })
            .await?;
            let outcome = match begun {
                Begin::NotFound => return Err(Error::not_found("order", order_id)),
                Begin::Paid => return Ok(()),
                Begin::Started(tx) => {
                    let outcome = self.spawn(tx);
                    self.wait(&tx_id, Some(outcome), deadline).await
                }
                Begin::InFlight(other) => {
                    let local = self
                        .driving
                        .lock()
                        .expect("lock poisoned")
                        .get(&other)
                        .cloned();
                    self.wait(&other, local, deadline).await
                }
            };
            match outcome {
                Some(Final::Committed) => return Ok(()),
                // Someone else's attempt was rolled back by recovery: that says nothing about
                // this order, so try again.
                Some(Final::Aborted(r))
                    if r == machine::presumed_abort() && Instant::now() < deadline => {}
                Some(Final::Aborted(r)) => return Err(Error::Refused(r)),
                None => {
                    return Err(Error::Timeout(format!(
                        "checkout of order {order_id} is still in progress"
                    )));
                }
            }
        }
    }

    /// Waits until transaction `tx_id` is decided: through its local driver when this
    /// process drives it, else by reading its record.
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
                Ok(Err(_)) => {} // the driver stopped; whoever took over writes the record
            }
        }
        while Instant::now() < deadline {
            match self.store.load(tx_id).await {
                Ok(Some(tx)) => {
                    if let Some(decided) = outcome_of(&tx) {
                        return Some(decided);
                    }
                }
                Ok(None) => return Some(Final::Aborted(machine::presumed_abort())),
                Err(e) => tracing::debug!(error = %e, "cannot read transaction yet"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    pub fn is_driving(&self, tx_id: &str) -> bool {
        self.driving
            .lock()
            .expect("lock poisoned")
            .contains_key(tx_id)
    }

    /// Drives `tx` in a task of its own and returns where its outcome will appear.
    fn spawn(self: &Arc<Self>, tx: TxRecord) -> watch::Receiver<Option<Final>> {
        let (outcome, receiver) = watch::channel(None);
        self.driving
            .lock()
            .expect("lock poisoned")
            .insert(tx.id.clone(), receiver.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let id = tx.id.clone();
            let span = tracing::info_span!("tx", %id, order = %tx.order_id, protocol = tx.protocol.as_str());
            let _ = tracing::Instrument::instrument(
                async {
                    match this.drive(tx, &outcome).await {
                        Ok(()) => {}
                        Err(Stop::Fenced) => {
                            tracing::info!("another coordinator took the transaction over")
                        }
                        Err(Stop::Failed(e)) => tracing::warn!(error = %e, "left to recovery"),
                    }
                },
                span,
            )
            .await;
            this.driving.lock().expect("lock poisoned").remove(&id);
        });
        receiver
    }

    /// Runs the state machine of `tx` to its end, publishing the outcome once decided.
    async fn drive(
        &self,
        mut tx: TxRecord,
        outcome: &watch::Sender<Option<Final>>,
    ) -> Result<(), Stop> {
        loop {
            if let Some(decided) = outcome_of(&tx) {
                outcome.send_replace(Some(decided));
            }
            let Some(phase) = tx.state.phase() else {
                return Ok(());
            };
            let outcomes = self.run_phase(&tx, phase).await?;
            let (next, refusal) = machine::next(tx.state, &outcomes);
            if phase == Phase::Try {
                common::failpoint::hit("coordinator_before_decision");
            }
            if refusal.is_some() {
                tx.refusal = refusal;
            }
            for o in &outcomes {
                if let (Outcome::Refused(r), Phase::Commit | Phase::Cancel) = (o, phase) {
                    tracing::error!(code = %r.code, detail = %r.detail, "participant refused a decision");
                }
            }
            self.advance(&mut tx, next).await?;
            if next == TxState::Committing {
                common::failpoint::hit("coordinator_after_decision");
            }
        }
    }

    /// Writes the next state of `tx` (fenced by our lease) before anything acts on it.
    async fn advance(&self, tx: &mut TxRecord, next: TxState) -> Result<(), Stop> {
        let written = db::retry(self.settings.lease * 4, || {
            self.store
                .transition(tx, &self.owner, next, self.settings.lease)
        })
        .await;
        match written {
            Ok(true) => {
                tracing::debug!(from = tx.state.as_str(), to = next.as_str(), "transition");
                tx.state = next;
                Ok(())
            }
            Ok(false) => Err(Stop::Fenced),
            Err(e) => Err(Stop::Failed(e)),
        }
    }

    /// Sends `phase` to both participants at once and waits for both answers, resending to a
    /// participant that does not answer in time and renewing the lease meanwhile.
    async fn run_phase(&self, tx: &TxRecord, phase: Phase) -> Result<Vec<Outcome>, Stop> {
        let asks = futures::future::join_all(Participant::ALL.map(|p| self.ask(tx, p, phase)));
        tokio::pin!(asks);
        let mut renew = tokio::time::interval(self.settings.lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                outcomes = &mut asks => return Ok(outcomes),
                _ = renew.tick() => {
                    match self.store.transition(tx, &self.owner, tx.state, self.settings.lease).await {
                        Ok(true) => {}
                        Ok(false) => return Err(Stop::Fenced),
                        Err(e) => tracing::debug!(error = %e, "lease not renewed"),
                    }
                }
            }
        }
    }

    /// Asks one participant for one phase until it answers for good: resending when it is
    /// silent, and asking again shortly when it is busy (its shortage may yet be released).
    async fn ask(&self, tx: &TxRecord, participant: Participant, phase: Phase) -> Outcome {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(2);
        loop {
            let mut waiter = self.replies.register(step_key(&tx.id, participant, phase));
            if let Err(e) = self.send(tx, participant, phase).await {
                tracing::warn!(error = %e, participant = participant.as_str(), ?phase, "command not sent");
            }
            match waiter.wait(self.settings.step_retry).await {
                Some(OrderReply::Step {
                    outcome: Outcome::Busy,
                    ..
                }) if started.elapsed() < BUSY_PATIENCE => {
                    // Back off: hundreds of checkouts may wait for the same last units.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Some(OrderReply::Step {
                    outcome: Outcome::Busy,
                    ..
                }) => {
                    let detail = "too little left while other checkouts hold the rest";
                    return Outcome::Refused(Refusal::new(
                        format!("{}_busy", participant.as_str()),
                        detail,
                    ));
                }
                Some(OrderReply::Step { outcome, .. }) => return outcome,
                _ => tracing::debug!(
                    participant = participant.as_str(),
                    ?phase,
                    "no answer yet; resending"
                ),
            }
        }
    }

    async fn send(&self, tx: &TxRecord, participant: Participant, phase: Phase) -> Result<()> {
        let reply_to = self.replies.reply_to();
        match participant {
            Participant::Stock => {
                let body = match phase {
                    Phase::Try => StockCommand::Try {
                        protocol: tx.protocol,
                        items: tx.items.clone(),
                    },
                    Phase::Commit => StockCommand::Commit,
                    Phase::Cancel => StockCommand::Cancel,
                };
                self.bus
                    .send(
                        &self.bus.topics.stock,
                        None,
                        &Envelope::new(&tx.id, reply_to, body),
                    )
                    .await
            }
            Participant::Payment => {
                let body = match phase {
                    Phase::Try => PaymentCommand::Try {
                        protocol: tx.protocol,
                        user_id: tx.user_id.clone(),
                        amount: tx.total,
                    },
                    Phase::Commit => PaymentCommand::Commit,
                    Phase::Cancel => PaymentCommand::Cancel,
                };
                self.bus
                    .send(
                        &self.bus.topics.payment,
                        None,
                        &Envelope::new(&tx.id, reply_to, body),
                    )
                    .await
            }
        }
    }

    /// Takes over `tx_id` if its owner's lease expired (or its owner was an earlier
    /// incarnation of this replica, with `steal_prefix`), and drives it to its end.
    pub async fn recover(self: &Arc<Self>, tx_id: &str, steal_prefix: &str) -> Result<()> {
        if self
            .store
            .claim(tx_id, &self.owner, self.settings.lease, steal_prefix)
            .await?
            != Claim::Claimed
        {
            return Ok(());
        }
        let Some(mut tx) = self.store.load(tx_id).await? else {
            return Ok(());
        };
        let (state, refusal) = machine::on_recovery(tx.protocol, tx.state);
        tracing::info!(tx = %tx.id, from = tx.state.as_str(), to = state.as_str(), "recovering transaction");
        if state != tx.state {
            tx.refusal = refusal;
            if let Err(stop) = self.advance(&mut tx, state).await {
                tracing::info!(?stop, tx = %tx.id, "recovery stopped");
                return Ok(());
            }
        }
        self.spawn(tx);
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
