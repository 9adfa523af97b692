//! Redis-side accounts shared by the two participants (stock and payment).
//!
//! Both keep counters in hashes (`item:{id}` → `stock`, `user:{id}` → `credit`) and both take
//! part in checkout the same way: a step record per transaction (`step:{tx}`) written in the
//! same Lua script as the effect, so a step applies exactly once whatever Kafka redelivers,
//! and a cancel that overtakes its try forbids that try from ever running. Amounts taken by
//! undecided transactions are also counted as `held`, so that a shortage they cause is told
//! apart from a real one (see `ledger.lua`).

use redis::Script;
use redis::aio::ConnectionManager;

use crate::error::{Error, Refusal, Result};
use crate::protocol::{OrderReply, Outcome, Participant, Phase, Protocol};

/// What an account is: its key prefix, its counter, and how to say it has too little.
#[derive(Clone, Copy, Debug)]
pub struct AccountKind {
    /// `item` or `user`: the key prefix, and the noun in error messages.
    pub noun: &'static str,
    /// `stock` or `credit`.
    pub field: &'static str,
    /// `out_of_stock` or `insufficient_credit`.
    pub too_little: &'static str,
    /// Whether a try that is short only because of holds answers busy (and the coordinator
    /// asks again) instead of refusing. Only one of the two participants may wait: if both
    /// did, two checkouts of one user could each hold what the other needs until both gave
    /// up. Stock waits; payment refuses at once, which is harmless: the other checkout of
    /// the same user can only abort because stock truly ran out, which refuses this one too.
    pub waits_for_holds: bool,
    /// The participant these accounts belong to, which answers for them.
    pub participant: Participant,
}

/// The result of a direct adjustment.
#[derive(Debug, PartialEq, Eq)]
pub enum Adjusted {
    Ok(i64),
    NotFound,
    TooLittle,
    Overflow,
}

/// The accounts of one participant service in its Redis.
#[derive(Clone)]
pub struct Ledger {
    redis: ConnectionManager,
    kind: AccountKind,
    step: Script,
    adjust: Script,
}

impl Ledger {
    pub fn new(redis: ConnectionManager, kind: AccountKind) -> Self {
        Self {
            redis,
            kind,
            step: Script::new(include_str!("ledger.lua")),
            adjust: Script::new(include_str!("adjust.lua")),
        }
    }

    pub fn key(&self, id: &str) -> String {
        format!("{}:{id}", self.kind.noun)
    }

    /// Applies one phase of transaction `tx` to `lines` (account id, amount) exactly once.
    /// [`Outcome::Busy`] means "too little now, but undecided transactions hold enough":
    /// nothing was recorded, and the caller should ask again shortly.
    pub async fn step(
        &self,
        tx: &str,
        phase: Phase,
        protocol: Protocol,
        lines: &[(String, i64)],
    ) -> Result<Outcome> {
        let mut invocation = self.step.prepare_invoke();
        invocation.key(format!("step:{tx}"));
        for (id, _) in lines {
            invocation.key(self.key(id));
        }
        let phase = match phase {
            Phase::Try => "try",
            Phase::Commit => "commit",
            Phase::Cancel => "cancel",
        };
        invocation
            .arg(phase)
            .arg(protocol.as_str())
            .arg(self.kind.field)
            .arg(self.kind.too_little)
            .arg(if self.kind.waits_for_holds { "1" } else { "0" });
        for (_, amount) in lines {
            invocation.arg(amount.to_string());
        }
        let (outcome, code, key): (String, String, String) =
            invocation.invoke_async(&mut self.redis.clone()).await?;
        match outcome.as_str() {
            "done" => return Ok(Outcome::Done),
            "busy" => return Ok(Outcome::Busy),
            _ => {}
        }
        let id = key.split_once(':').map(|(_, id)| id).unwrap_or(&key);
        let noun = self.kind.noun;
        let refusal = match code.as_str() {
            "not_found" => Refusal::new(
                format!("{noun}_not_found"),
                format!("{noun} {id:?} not found"),
            ),
            "cancelled" => Refusal::new(
                "cancelled",
                format!("transaction {tx} was already cancelled"),
            ),
            c if c == self.kind.too_little => Refusal::new(
                c,
                format!("{noun} {id:?} has too little {}", self.kind.field),
            ),
            other => Refusal::new(other, format!("transaction {tx}: {other}")),
        };
        Ok(Outcome::Refused(refusal))
    }

    /// Applies one command's step as a participant must: a command it received is never
    /// dropped, so Redis errors are retried (the offset is not stored meanwhile), and the
    /// answer is the reply the coordinator waits for.
    pub async fn apply(
        &self,
        tx: &str,
        phase: Phase,
        protocol: Protocol,
        lines: &[(String, i64)],
    ) -> OrderReply {
        let outcome = crate::db::retry(crate::db::COMMAND_PATIENCE, || {
            self.step(tx, phase, protocol, lines)
        })
        .await;
        let participant = self.kind.participant;
        if phase == Phase::Try {
            crate::failpoint::hit(&format!("{}_after_try", participant.as_str()));
        }
        let outcome = outcome.unwrap_or_else(|e| {
            tracing::error!(error = %e, %tx, "step failed for good");
            Outcome::Refused(Refusal::new("internal", e.to_string()))
        });
        tracing::debug!(%tx, ?phase, ?outcome, participant = participant.as_str(), "step");
        OrderReply::Step {
            participant,
            phase,
            outcome,
        }
    }

    /// Adds `delta` (which may be negative) to an account, never below zero, never overflowing.
    pub async fn adjust(&self, id: &str, delta: i128) -> Result<Adjusted> {
        let delta =
            i64::try_from(delta).map_err(|_| Error::BadInput("amount out of range".into()))?;
        let (status, value): (String, String) = self
            .adjust
            .key(self.key(id))
            .arg(self.kind.field)
            .arg(delta.to_string())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match status.as_str() {
            "ok" => Adjusted::Ok(
                value
                    .parse()
                    .map_err(|_| Error::Internal(format!("bad counter {value:?}")))?,
            ),
            "not_found" => Adjusted::NotFound,
            "too_little" => Adjusted::TooLittle,
            _ => Adjusted::Overflow,
        })
    }
}
