//! The checkout protocols as one state machine, pure and small enough to read at once.
//!
//! ```text
//!            all done ──────► Committing ──(commit all)──► Committed
//! Trying ──┤
//!            any refusal ───► Aborting ────(cancel all)───► Aborted
//! ```
//!
//! `Committing` is the logged outcome: the order is paid from that write on, and the client
//! is answered. The protocols share every state and differ where the protocols differ:
//!
//! - at the participants: a saga's `Try` is the local action itself (taken at once, undone
//!   only by a compensating `Cancel`), while a 2PC `Try` is a prepare whose reservation waits
//!   for the decision. `Commit` makes a 2PC reservation permanent; for a saga it only confirms
//!   that the action will not be compensated (which releases its hold, see `step.lua`);
//! - in recovery: a coordinator that takes over a transaction still in `Trying` retries a
//!   saga (its steps are idempotent) but aborts a 2PC transaction (no decision was logged,
//!   so the answer is presumed abort).
//!
//! In both, `Cancel` goes to every participant: for one that refused it is a no-op, and for
//! one whose `Try` never arrived it forbids that `Try` from running later.

use common::protocol::{Outcome, Protocol};
use common::{Code, Refusal};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxState {
    Trying,
    Committing,
    Committed,
    Aborting,
    Aborted,
}

impl TxState {
    pub const ALL: [TxState; 5] = [
        Self::Trying,
        Self::Committing,
        Self::Committed,
        Self::Aborting,
        Self::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trying => "trying",
            Self::Committing => "committing",
            Self::Committed => "committed",
            Self::Aborting => "aborting",
            Self::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// The phase the coordinator runs in this state, or `None` when the transaction is over.
    pub fn phase(self) -> Option<common::protocol::Phase> {
        use common::protocol::Phase;
        match self {
            Self::Trying => Some(Phase::Try),
            Self::Committing => Some(Phase::Commit),
            Self::Aborting => Some(Phase::Cancel),
            Self::Committed | Self::Aborted => None,
        }
    }
}

/// Why a transaction aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Abort {
    /// A participant refused for a business reason (out of stock, not enough credit, unknown
    /// id): the client is told so with a 4xx.
    Refused(Refusal),
    /// The transaction could not be decided: a coordinator failed before the decision (2PC
    /// presumed abort), a participant stayed busy or unreachable past its deadline, or a
    /// protocol answer (a stale try, a cancelled one) ended it. Nothing about the order is
    /// known, so a client may try again (503 once its own deadline has passed).
    Interrupted(String),
}

/// Where the participants' answers to the phase of `state` lead, and why it aborts if it does.
pub fn next(state: TxState, outcomes: &[Outcome]) -> (TxState, Option<Abort>) {
    let abort = outcomes.iter().find_map(|o| match o {
        Outcome::Refused(r) if r.code.is_business() => Some(Abort::Refused(r.clone())),
        Outcome::Refused(r) => Some(Abort::Interrupted(r.detail.clone())),
        Outcome::Done => None,
        // `ask` never hands on a busy answer; were one to slip through, aborting is safe.
        Outcome::Busy => Some(Abort::Interrupted("a participant stayed busy".into())),
    });
    match (state, abort) {
        (TxState::Trying, Some(abort)) => (TxState::Aborting, Some(abort)),
        (TxState::Trying, None) => (TxState::Committing, None),
        (TxState::Committing, _) => (TxState::Committed, None),
        (TxState::Aborting, _) => (TxState::Aborted, None),
        (final_state, _) => (final_state, None),
    }
}

/// Where a transaction resumes when a coordinator takes it over from one that vanished.
pub fn on_recovery(protocol: Protocol, state: TxState) -> (TxState, Option<Abort>) {
    match (protocol, state) {
        (Protocol::TwoPc, TxState::Trying) => (
            TxState::Aborting,
            Some(Abort::Interrupted(
                "the coordinator failed before deciding; presumed abort".into(),
            )),
        ),
        (_, state) => (state, None),
    }
}

/// Where a transaction goes when its driver gives up waiting for the participants' answers
/// to a try: it aborts (cancel is always safe, and forbids a late try from running).
pub fn on_deadline(state: TxState) -> (TxState, Option<Abort>) {
    match state {
        TxState::Trying => (
            TxState::Aborting,
            Some(Abort::Interrupted(
                "the participants did not answer in time".into(),
            )),
        ),
        state => (state, None),
    }
}

/// How an abort is recorded in the transaction record: a code and a detail.
pub fn abort_fields(abort: &Abort) -> (&str, &str) {
    match abort {
        Abort::Refused(r) => (r.code.as_str(), &r.detail),
        Abort::Interrupted(detail) => ("interrupted", detail),
    }
}

/// The abort a record's code and detail describe (the inverse of [`abort_fields`]).
pub fn abort_from_fields(code: &str, detail: String) -> Option<Abort> {
    if code == "interrupted" {
        return Some(Abort::Interrupted(detail));
    }
    Code::parse(code).map(|code| Abort::Refused(Refusal::new(code, detail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: Code) -> Outcome {
        Outcome::Refused(Refusal::new(code, "no"))
    }

    #[test]
    fn the_outcome_is_logged_before_the_participants_hear_it() {
        let outcomes = [Outcome::Done, Outcome::Done];
        assert_eq!(
            next(TxState::Trying, &outcomes),
            (TxState::Committing, None)
        );
        assert_eq!(next(TxState::Committing, &outcomes).0, TxState::Committed);
    }

    #[test]
    fn a_business_refusal_aborts_with_its_reason() {
        let (state, why) = next(TxState::Trying, &[Outcome::Done, refused(Code::OutOfStock)]);
        assert_eq!(state, TxState::Aborting);
        assert!(matches!(why, Some(Abort::Refused(r)) if r.code == Code::OutOfStock));
        let aborted = next(TxState::Aborting, &[Outcome::Done, Outcome::Done]).0;
        assert_eq!(aborted, TxState::Aborted);
    }

    #[test]
    fn a_protocol_answer_interrupts_and_is_never_a_refusal() {
        for code in [Code::Cancelled, Code::Expired] {
            let (state, why) = next(TxState::Trying, &[refused(code), Outcome::Done]);
            assert_eq!(state, TxState::Aborting);
            assert!(matches!(why, Some(Abort::Interrupted(_))), "{code}");
        }
    }

    #[test]
    fn recovery_presumes_abort_only_for_undecided_two_pc() {
        let (state, why) = on_recovery(Protocol::TwoPc, TxState::Trying);
        assert_eq!(state, TxState::Aborting);
        assert!(matches!(why, Some(Abort::Interrupted(_))));
        assert_eq!(
            on_recovery(Protocol::Saga, TxState::Trying).0,
            TxState::Trying
        );
        assert_eq!(
            on_recovery(Protocol::TwoPc, TxState::Committing).0,
            TxState::Committing
        );
        assert_eq!(
            on_recovery(Protocol::Saga, TxState::Aborting).0,
            TxState::Aborting
        );
    }

    #[test]
    fn a_deadline_aborts_only_an_undecided_transaction() {
        assert_eq!(on_deadline(TxState::Trying).0, TxState::Aborting);
        assert_eq!(on_deadline(TxState::Committing).0, TxState::Committing);
    }

    #[test]
    fn aborts_round_trip_through_their_record_fields() {
        for abort in [
            Abort::Refused(Refusal::new(Code::InsufficientCredit, "poor")),
            Abort::Interrupted("lost".into()),
        ] {
            let (code, detail) = abort_fields(&abort);
            assert_eq!(
                abort_from_fields(code, detail.to_string()),
                Some(abort.clone())
            );
        }
        assert_eq!(abort_from_fields("bogus", String::new()), None);
    }

    #[test]
    fn states_round_trip_and_final_states_have_no_phase() {
        for s in TxState::ALL {
            assert_eq!(TxState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TxState::Committed.phase(), None);
        assert_eq!(TxState::Aborted.phase(), None);
    }
}
