//! The driver: one task per transaction runs its state machine. Before each step it writes
//! the transaction's state (the write-ahead record); it sends each phase's step to both
//! participants at once, resending a try or cancel, backing off, until they answer or the
//! phase's deadline passes, and renewing its lease meanwhile. It stops sending the moment its
//! lease may be lost or the broker is away, so no copy of a command ever comes from a
//! coordinator that no longer owns the transaction.

use std::time::Duration;

use common::metrics as m;
use common::protocol::{
    Envelope, OrderReply, Outcome, Participant, PaymentCommand, Phase, Step, StockCommand, step_key,
};
use common::{Result, db};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::log::TxRecord;
use super::machine::{self, TxState};
use super::{Coordinator, Final, Stop, outcome_of};

impl Coordinator {
    /// Runs the state machine of `tx` to its end, publishing the outcome once decided.
    pub(super) async fn drive(
        &self,
        mut tx: TxRecord,
        outcome: &watch::Sender<Option<Final>>,
    ) -> Result<(), Stop> {
        let mut lease_until = Instant::now() + self.settings.lease;
        loop {
            if let Some(decided) = outcome_of(&tx) {
                outcome.send_replace(Some(decided));
            }
            let Some(phase) = tx.state.phase() else {
                return Ok(());
            };
            let patience = match phase {
                Phase::Try => self.settings.checkout_timeout,
                Phase::Commit | Phase::Cancel => 2 * self.settings.checkout_timeout,
            };
            let asked = self
                .run_phase(&tx, phase, Instant::now() + patience, &mut lease_until)
                .instrument(tracing::debug_span!("phase", phase = phase.as_str()))
                .await?;
            let notes = notes(phase, &asked);
            let answers: Option<Vec<Outcome>> = asked.into_iter().map(|(_, o, _)| o).collect();
            let (next, abort) = match &answers {
                Some(outcomes) => machine::next(tx.state, outcomes),
                None if phase == Phase::Try => machine::on_deadline(tx.state),
                None => {
                    tracing::warn!(
                        ?phase,
                        "decision not delivered before the deadline; left to recovery"
                    );
                    return Err(Stop::GaveUp);
                }
            };
            if phase == Phase::Try {
                common::failpoint::hit("coordinator_before_decision");
            }
            if abort.is_some() {
                tx.abort = abort;
            }
            if phase == Phase::Cancel {
                for o in answers.iter().flatten() {
                    if let Outcome::Refused(r) = o {
                        tracing::error!(code = %r.code, detail = %r.detail, "participant refused a cancel");
                    }
                }
            }
            self.advance(&mut tx, next, &notes).await?;
            lease_until = Instant::now() + self.settings.lease;
            if next == TxState::Committing {
                common::failpoint::hit("coordinator_after_decision");
            }
        }
    }

    /// Writes the next state of `tx` (fenced by our lease) before anything acts on it, with
    /// `notes` about the phase that led there.
    pub(super) async fn advance(
        &self,
        tx: &mut TxRecord,
        next: TxState,
        notes: &[(String, String)],
    ) -> Result<(), Stop> {
        let written = db::retry(self.settings.lease, || {
            self.log
                .transition_noting(tx, &self.owner, next, self.settings.lease, notes)
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

    /// Sends `phase` to both participants at once and waits for both answers until
    /// `deadline` (each `None` then, with how long it was asked), resending to a participant that does not answer and renewing
    /// the lease meanwhile. Stops sending as soon as the lease may be lost or the broker is
    /// away, so no copy of a command is ever sent by a coordinator that no longer owns it.
    async fn run_phase(
        &self,
        tx: &TxRecord,
        phase: Phase,
        deadline: Instant,
        lease_until: &mut Instant,
    ) -> Result<Vec<Asked>, Stop> {
        let asks = futures::future::join_all(Participant::ALL.map(|p| async move {
            let started = Instant::now();
            let span = tracing::debug_span!("ask", participant = p.as_str());
            let outcome = self.ask(tx, p, phase, deadline).instrument(span).await;
            (p, outcome, started.elapsed())
        }));
        tokio::pin!(asks);
        let lease = self.settings.lease;
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = renew.tick() => {
                    if !self.broker.is_up() {
                        return Err(Stop::Handover);
                    }
                    let asked = Instant::now();
                    match self.log.transition(tx, &self.owner, tx.state, lease).await {
                        Ok(true) => *lease_until = asked + lease,
                        Ok(false) => return Err(Stop::Fenced),
                        Err(e) => {
                            tracing::debug!(error = %e, "lease not renewed");
                            if *lease_until < Instant::now() + lease / 2 {
                                return Err(Stop::LeaseLost);
                            }
                        }
                    }
                }
                asked = &mut asks => return Ok(asked),
            }
        }
    }

    /// Asks one participant for one phase until it answers for good or `deadline` passes:
    /// resending, backing off, when it is silent, and asking again shortly when it is busy
    /// (its shortage may yet be released). A commit is only told (see [`Coordinator::tell`]).
    async fn ask(
        &self,
        tx: &TxRecord,
        participant: Participant,
        phase: Phase,
        deadline: Instant,
    ) -> Option<Outcome> {
        if !phase.is_answered() {
            return self.tell(tx, participant, deadline).await;
        }
        let mut busy_pause = Duration::from_millis(2);
        let mut silence = self.settings.step_retry;
        while Instant::now() < deadline {
            let mut waiter = self.replies.register(step_key(&tx.id, participant, phase));
            if let Err(e) = self.send(tx, participant, phase).await {
                tracing::warn!(error = %e, participant = participant.as_str(), ?phase, "command not sent");
            }
            let patience = silence.min(deadline.saturating_duration_since(Instant::now()));
            match waiter.wait(patience).await {
                Some(OrderReply::Step {
                    outcome: Outcome::Busy,
                    ..
                }) => {
                    metrics::counter!(m::BUSY_RETRIES, "participant" => participant.as_str())
                        .increment(1);
                    // Back off: hundreds of checkouts may wait for the same last units.
                    tokio::time::sleep(busy_pause).await;
                    busy_pause = (busy_pause * 2).min(Duration::from_millis(100));
                }
                Some(OrderReply::Step { outcome, .. }) => return Some(outcome),
                _ => {
                    tracing::debug!(
                        participant = participant.as_str(),
                        ?phase,
                        "no answer yet; resending"
                    );
                    metrics::counter!(m::STEP_RESENDS, "participant" => participant.as_str(), "phase" => phase.as_str())
                        .increment(1);
                    silence = (silence * 3 / 2).min(4 * self.settings.step_retry);
                }
            }
        }
        None
    }

    /// Sends a commit until the broker holds it durably (`Done`), or `deadline` passes
    /// (`None`). The participant does not answer it ([`Phase::is_answered`]): from the broker
    /// on, its consumer group delivers the commit until it is applied. Every copy of the try
    /// was sent before (under the same lease), so on the participant's partition the commit
    /// comes after all of them.
    async fn tell(
        &self,
        tx: &TxRecord,
        participant: Participant,
        deadline: Instant,
    ) -> Option<Outcome> {
        let phase = Phase::Commit;
        let mut pause = Duration::from_millis(50);
        while Instant::now() < deadline {
            match self.send(tx, participant, phase).await {
                Ok(()) => return Some(Outcome::Done),
                Err(e) => {
                    tracing::warn!(error = %e, participant = participant.as_str(), ?phase, "commit not sent yet");
                    metrics::counter!(m::STEP_RESENDS, "participant" => participant.as_str(), "phase" => phase.as_str())
                        .increment(1);
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    pause = (pause * 2).min(self.settings.step_retry);
                }
            }
        }
        None
    }

    /// Sends the step of `phase` of `tx` to `participant`.
    async fn send(&self, tx: &TxRecord, participant: Participant, phase: Phase) -> Result<()> {
        let lines = match (phase, participant) {
            (Phase::Try, Participant::Stock) => tx.items.clone(),
            (Phase::Try, Participant::Payment) => vec![(tx.user_id.clone(), tx.total)],
            (Phase::Commit | Phase::Cancel, _) => Vec::new(),
        };
        let step = Step {
            phase,
            protocol: tx.protocol,
            lines,
        };
        let reply_to = self.replies.reply_to();
        let topics = &self.bus.topics;
        match participant {
            Participant::Stock => {
                let envelope = Envelope::new(&tx.id, reply_to, StockCommand::Step(step));
                self.bus.send(&topics.stock, None, &envelope).await
            }
            Participant::Payment => {
                let envelope = Envelope::new(&tx.id, reply_to, PaymentCommand::Step(step));
                self.bus.send(&topics.payment, None, &envelope).await
            }
        }
    }
}

/// One participant's answer to a phase (`None`: silent until the deadline) and how long it
/// took to come.
type Asked = (Participant, Option<Outcome>, Duration);

/// What the record notes about a phase, for the console: `a:{participant}:{phase}` →
/// `{result} {ms}`, result being `done` (`sent` for a commit), `busy`, a refusal code or
/// `silent`.
fn notes(phase: Phase, asked: &[Asked]) -> Vec<(String, String)> {
    asked
        .iter()
        .map(|(participant, outcome, took)| {
            let result = match outcome {
                Some(Outcome::Done) if !phase.is_answered() => "sent",
                Some(Outcome::Done) => "done",
                Some(Outcome::Busy) => "busy",
                Some(Outcome::Refused(r)) => r.code.as_str(),
                None => "silent",
            };
            (
                format!("a:{}:{}", participant.as_str(), phase.as_str()),
                format!("{result} {}", took.as_millis()),
            )
        })
        .collect()
}
