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
//!   that the action will not be compensated (which releases its hold, see `ledger.lua`);
//! - in recovery: a coordinator that takes over a transaction still in `Trying` retries a
//!   saga (its steps are idempotent) but aborts a 2PC transaction (no decision was logged,
//!   so the answer is presumed abort).
//!
//! In both, `Cancel` goes to every participant: for one that refused it is a no-op, and for
//! one whose `Try` never arrived it forbids that `Try` from running later.

use common::Refusal;
use common::protocol::{Outcome, Phase, Protocol};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxState {
    Trying,
    Committing,
    Committed,
    Aborting,
    Aborted,
}

impl TxState {
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
        [
            Self::Trying,
            Self::Committing,
            Self::Committed,
            Self::Aborting,
            Self::Aborted,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// The phase the coordinator runs in this state, or `None` when the transaction is over.
    pub fn phase(self) -> Option<Phase> {
        match self {
            Self::Trying => Some(Phase::Try),
            Self::Committing => Some(Phase::Commit),
            Self::Aborting => Some(Phase::Cancel),
            Self::Committed | Self::Aborted => None,
        }
    }
}

/// Where the participants' answers to the phase of `state` lead, and why it aborts if it does.
pub fn next(state: TxState, outcomes: &[Outcome]) -> (TxState, Option<Refusal>) {
    let refusal = outcomes.iter().find_map(|o| match o {
        Outcome::Refused(r) => Some(r.clone()),
        Outcome::Done => None,
        // `ask` never hands on a busy answer; were one to slip through, refusing is safe.
        Outcome::Busy => Some(Refusal::new("busy", "a participant stayed busy")),
    });
    match (state, refusal) {
        (TxState::Trying, Some(refusal)) => (TxState::Aborting, Some(refusal)),
        (TxState::Trying, None) => (TxState::Committing, None),
        (TxState::Committing, _) => (TxState::Committed, None),
        (TxState::Aborting, _) => (TxState::Aborted, None),
        (final_state, _) => (final_state, None),
    }
}

/// The refusal recorded when recovery aborts a 2PC transaction that had no decision.
pub fn presumed_abort() -> Refusal {
    Refusal::new(
        "coordinator_failed",
        "the checkout was interrupted by a coordinator failure and rolled back",
    )
}

/// Where a transaction resumes when a coordinator takes it over from one that vanished.
pub fn on_recovery(protocol: Protocol, state: TxState) -> (TxState, Option<Refusal>) {
    match (protocol, state) {
        (Protocol::TwoPc, TxState::Trying) => (TxState::Aborting, Some(presumed_abort())),
        (_, state) => (state, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Outcome {
        Outcome::Refused(Refusal::new("out_of_stock", "none left"))
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
    fn any_refusal_aborts_with_its_reason() {
        let (state, why) = next(TxState::Trying, &[Outcome::Done, refused()]);
        assert_eq!(state, TxState::Aborting);
        assert_eq!(why.unwrap().code, "out_of_stock");
        let aborted = next(TxState::Aborting, &[Outcome::Done, Outcome::Done]).0;
        assert_eq!(aborted, TxState::Aborted);
    }

    #[test]
    fn recovery_presumes_abort_only_for_undecided_two_pc() {
        assert_eq!(
            on_recovery(Protocol::TwoPc, TxState::Trying).0,
            TxState::Aborting
        );
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
    fn states_round_trip_and_final_states_have_no_phase() {
        for s in [
            TxState::Trying,
            TxState::Committing,
            TxState::Committed,
            TxState::Aborting,
            TxState::Aborted,
        ] {
            assert_eq!(TxState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TxState::Committed.phase(), None);
        assert_eq!(TxState::Aborted.phase(), None);
    }
}
