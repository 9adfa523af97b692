//! The accounts of the two participants (stock and payment), in their Redis; every write to
//! an account goes through here.
//!
//! Both keep a counter in a hash (`item:{id}` → `stock`, `user:{id}` → `credit`) beside
//! `held`, what undecided transactions took. Both take part in checkout the same way: a step
//! record per transaction (`step:{tx}`) written in the same Lua script as the effect, so a
//! step applies exactly once whatever Kafka redelivers, and a cancel that overtakes its try
//! forbids that try from ever running. The scripts keep the invariant available ≥ 0,
//! held ≥ 0, available + held ≤ i64::MAX with exact arithmetic (`lua/num.lua`).

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, FromRedisValue, ParsingError, Script, Value};

use crate::error::{Code, Error, Noun, Refusal, Result};
use crate::protocol::{Envelope, OrderReply, Outcome, Participant, Phase, Step};

/// The exact-arithmetic helpers every amount script starts with.
pub const NUM_LUA: &str = include_str!("lua/num.lua");

/// A script with the exact-arithmetic helpers prepended.
pub fn script_with_num(body: &str) -> Script {
    Script::new(&format!("{NUM_LUA}\n{body}"))
}

/// What an account is: its key prefix, its counter, and how to say it has too little.
#[derive(Clone, Copy, Debug)]
pub struct AccountKind {
    /// `item` or `user`: the key prefix, and the noun in error messages.
    pub noun: Noun,
    /// `stock` or `credit`.
    pub field: &'static str,
    /// `out_of_stock` or `insufficient_credit`.
    pub too_little: Code,
    /// Whether a try that is short only because of holds answers busy (and the coordinator
    /// asks again) instead of refusing. Only one of the two participants may wait: if both
    /// did, two checkouts of one user could each hold what the other needs until both gave
    /// up. Stock waits; payment refuses at once, which is harmless: the other checkout of
    /// the same user can only abort because stock truly ran out, which refuses this one too.
    pub waits_for_holds: bool,
    /// The participant these accounts belong to, which answers for them.
    pub participant: Participant,
}

/// Items (stock service): `item:{id}` → `stock`, and a `price` that never changes.
pub const ITEMS: AccountKind = AccountKind {
    noun: Noun::Item,
    field: "stock",
    too_little: Code::OutOfStock,
    waits_for_holds: true,
    participant: Participant::Stock,
};

/// Users (payment service): `user:{id}` → `credit`.
pub const USERS: AccountKind = AccountKind {
    noun: Noun::User,
    field: "credit",
    too_little: Code::InsufficientCredit,
    waits_for_holds: false,
    participant: Participant::Payment,
};

/// One account as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub available: i64,
    pub held: i64,
    /// Items only.
    pub price: Option<i64>,
}

/// Which way a direct adjustment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Add,
    Take,
}

/// Why `step.lua` refused, as it records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Missing,
    Short,
    Cancelled,
    NotPrepared,
    AlreadyCommitted,
}

/// The reply of `step.lua`: `{outcome, reason, account key, replayed}`.
#[derive(Debug, PartialEq, Eq)]
struct StepReply {
    answer: StepAnswer,
    /// The answer is the one recorded for an earlier copy of the command.
    replayed: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum StepAnswer {
    Done,
    Busy,
    Refused(Reason, String),
}

/// N strings, or a parsing error naming the script.
fn strings<const N: usize>(v: Value, script: &str) -> Result<[String; N], ParsingError> {
    let items: Vec<String> = FromRedisValue::from_redis_value(v)?;
    items
        .try_into()
        .map_err(|items| format!("{script}.lua answered {items:?}").into())
}

impl FromRedisValue for StepReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let [outcome, reason, key, replayed] = strings(v, "step")?;
        let replayed = match replayed.as_str() {
            "" => false,
            "1" => true,
            other => return Err(format!("step.lua answered replayed {other:?}").into()),
        };
        let reason = match reason.as_str() {
            "" => None,
            "missing" => Some(Reason::Missing),
            "short" => Some(Reason::Short),
            "cancelled" => Some(Reason::Cancelled),
            "not_prepared" => Some(Reason::NotPrepared),
            "already_committed" => Some(Reason::AlreadyCommitted),
            other => return Err(format!("step.lua answered reason {other:?}").into()),
        };
        let answer = match (outcome.as_str(), reason) {
            ("done", None) => StepAnswer::Done,
            ("busy", _) => StepAnswer::Busy,
            ("refused", Some(reason)) => StepAnswer::Refused(reason, key),
            (outcome, reason) => {
                return Err(format!("step.lua answered {outcome:?} with {reason:?}").into());
            }
        };
        Ok(Self { answer, replayed })
    }
}

/// The reply of `adjust.lua`: `{status, value}`.
#[derive(Debug, PartialEq, Eq)]
enum Adjusted {
    Ok(i64),
    Missing,
    Short(i64),
    Overflow,
}

impl FromRedisValue for Adjusted {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let [status, value] = strings(v, "adjust")?;
        let number = || {
            value
                .parse::<i64>()
                .map_err(|_| ParsingError::from(format!("adjust.lua answered value {value:?}")))
        };
        match status.as_str() {
            "ok" => Ok(Self::Ok(number()?)),
            "missing" => Ok(Self::Missing),
            "short" => Ok(Self::Short(number()?)),
            "overflow" => Ok(Self::Overflow),
            other => Err(format!("adjust.lua answered status {other:?}").into()),
        }
    }
}

/// The reply of a `batch_init` script (the ledger's and the order service's `batch.lua`):
/// `{status, id}`, the id being the first record in use when the batch was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchReply {
    Ok,
    InUse(String),
    /// The order service's batch lost its lock between two chunks.
    Lost,
}

impl FromRedisValue for BatchReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        match strings(v, "batch")? {
            [status, _] if status == "ok" => Ok(Self::Ok),
            [status, id] if status == "in_use" => Ok(Self::InUse(id)),
            [status, _] if status == "lost" => Ok(Self::Lost),
            other => Err(format!("batch.lua answered {other:?}").into()),
        }
    }
}

/// The accounts of one participant service in its Redis.
#[derive(Clone)]
pub struct Ledger {
    redis: ConnectionManager,
    kind: AccountKind,
    /// How long a finished step record lives; a try older than half of it is not applied.
    retention: Duration,
    step: Script,
    adjust: Script,
    batch: Script,
}

impl Ledger {
    pub fn new(redis: ConnectionManager, kind: AccountKind, retention: Duration) -> Self {
        Self {
            redis,
            kind,
            retention,
            step: script_with_num(include_str!("lua/step.lua")),
            adjust: script_with_num(include_str!("lua/adjust.lua")),
            batch: Script::new(include_str!("lua/batch.lua")),
        }
    }

    pub fn kind(&self) -> AccountKind {
        self.kind
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{id}", self.kind.noun.as_str())
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Creates an account with nothing available (and `price`, for items); returns its id.
    pub async fn create(&self, price: Option<i64>) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut fields = vec![(self.kind.field, 0), ("held", 0)];
        fields.extend(price.map(|p| ("price", p)));
        let _: () = self.conn().hset_multiple(self.key(&id), &fields).await?;
        Ok(id)
    }

    /// Replaces accounts `"0"..n` with `available` (and `price`), all at once, unless one of
    /// them is held by an unfinished checkout (then nothing changes).
    pub async fn batch_init(&self, n: u64, available: i64, price: Option<i64>) -> Result<()> {
        let mut invocation = self.batch.prepare_invoke();
        invocation
            .arg(format!("{}:", self.kind.noun.as_str()))
            .arg(n)
            .arg(self.kind.field)
            .arg(available);
        if let Some(price) = price {
            invocation.arg("price").arg(price);
        }
        let mut conn = self.conn();
        match crate::metrics::script("batch", invocation.invoke_async(&mut conn)).await? {
            BatchReply::Ok => Ok(()),
            BatchReply::InUse(id) => Err(Error::refused(
                Code::RecordsInUse,
                format!(
                    "{} {id:?} is part of an unfinished checkout; nothing was changed",
                    self.kind.noun.as_str()
                ),
            )),
            BatchReply::Lost => Err(Error::Internal(
                "the ledger's batch.lua answered lost, which only the order service's may".into(),
            )),
        }
    }

    /// The account `id`, or `None`. Waits out a Redis restart.
    pub async fn find(&self, id: &str) -> Result<Option<Account>> {
        let key = self.key(id);
        let (available, held, price): (Option<i64>, Option<i64>, Option<i64>) =
            crate::db::retry(crate::db::READ_PATIENCE, || {
                let (mut redis, key) = (self.conn(), key.clone());
                async move {
                    Ok(redis::cmd("HMGET")
                        .arg(key)
                        .arg(self.kind.field)
                        .arg("held")
                        .arg("price")
                        .query_async(&mut redis)
                        .await?)
                }
            })
            .await?;
        Ok(available.map(|available| Account {
            available,
            held: held.unwrap_or(0),
            price,
        }))
    }

    /// Adds to or takes from an account; returns the amount now available. Never below zero,
    /// never past the invariant's bound.
    pub async fn adjust(&self, id: &str, direction: Direction, amount: i64) -> Result<i64> {
        let sign = match direction {
            Direction::Add => "+",
            Direction::Take => "-",
        };
        let mut invocation = self.adjust.prepare_invoke();
        invocation
            .key(self.key(id))
            .arg(self.kind.field)
            .arg(sign)
            .arg(amount);
        let mut conn = self.conn();
        let adjusted: Adjusted =
            crate::metrics::script("adjust", invocation.invoke_async(&mut conn)).await?;
        let (noun, field) = (self.kind.noun.as_str(), self.kind.field);
        match adjusted {
            Adjusted::Ok(now) => Ok(now),
            Adjusted::Missing => Err(Error::not_found(self.kind.noun, id)),
            Adjusted::Short(have) => Err(Error::refused(
                self.kind.too_little,
                format!("{noun} {id:?} has {have} {field}, less than {amount}"),
            )),
            Adjusted::Overflow => Err(Error::BadInput(format!(
                "adding {amount} to {noun} {id:?} would take its {field} past 2^63-1"
            ))),
        }
    }

    /// Applies one step of transaction `tx` exactly once.
    /// [`Outcome::Busy`] means "too little now, but undecided transactions hold enough":
    /// nothing was recorded, and the caller should ask again shortly.
    pub async fn step(&self, tx: &str, step: &Step) -> Result<Outcome> {
        Ok(self.step_replayed(tx, step).await?.0)
    }

    /// [`Ledger::step`], and whether the answer is the one recorded for an earlier copy.
    async fn step_replayed(&self, tx: &str, step: &Step) -> Result<(Outcome, bool)> {
        let lines = merge(&step.lines);
        let mut invocation = self.step.prepare_invoke();
        invocation.key(format!("step:{tx}"));
        for (id, _) in &lines {
            invocation.key(self.key(id));
        }
        invocation
            .arg(step.phase.as_str())
            .arg(step.protocol.as_str())
            .arg(self.kind.field)
            .arg(if self.kind.waits_for_holds { "1" } else { "0" })
            .arg(self.retention.as_secs().max(1));
        for (_, amount) in &lines {
            invocation.arg(amount.to_string());
        }
        let mut conn = self.conn();
        let reply: StepReply =
            crate::metrics::script("step", invocation.invoke_async(&mut conn)).await?;
        let replayed = reply.replayed;
        let (reason, key) = match reply.answer {
            StepAnswer::Done => return Ok((Outcome::Done, replayed)),
            StepAnswer::Busy => return Ok((Outcome::Busy, replayed)),
            StepAnswer::Refused(reason, key) => (reason, key),
        };
        let id = key.split_once(':').map_or(key.as_str(), |(_, id)| id);
        let noun = self.kind.noun.as_str();
        let refusal = match reason {
            Reason::Missing => Refusal::new(
                self.kind.noun.not_found(),
                format!("{noun} {id:?} not found"),
            ),
            Reason::Short => Refusal::new(
                self.kind.too_little,
                format!("{noun} {id:?} has too little {}", self.kind.field),
            ),
            Reason::Cancelled => Refusal::new(
                Code::Cancelled,
                format!("transaction {tx} was already cancelled"),
            ),
            Reason::NotPrepared => Refusal::new(
                Code::NotPrepared,
                format!("transaction {tx} has nothing to commit here"),
            ),
            Reason::AlreadyCommitted => Refusal::new(
                Code::AlreadyCommitted,
                format!("transaction {tx} is already committed here"),
            ),
        };
        Ok((Outcome::Refused(refusal), replayed))
    }

    /// Applies one command's step as a participant must, and returns its outcome as a reply
    /// (the command loop sends it, except for a commit, see [`Phase::is_answered`]), or
    /// `None` when the command is parked: the script refused to run it, or Redis stayed away
    /// past [`COMMAND_PATIENCE`](crate::db::COMMAND_PATIENCE). A parked command is logged and
    /// left; the coordinator sends it again until it is answered, and settles the checkout
    /// on its deadline otherwise.
    ///
    /// A commit is never parked for a transient failure: nobody would send it again, so it
    /// waits for Redis as long as it takes (logging every few seconds), and the partition
    /// waits behind it. Nothing else on that partition could be applied meanwhile either, since
    /// every command needs the same Redis; readiness reports the outage.
    ///
    /// A try older than half the records' retention is answered [`Code::Expired`] and not
    /// applied: it may be a stale copy whose step record is already gone.
    pub async fn apply<C>(&self, envelope: &Envelope<C>, step: &Step) -> Option<OrderReply> {
        let started = std::time::Instant::now();
        let applied = self.apply_step(envelope, step).await;
        let participant = self.kind.participant.as_str();
        let result = match &applied {
            None => "parked",
            Some((_, true)) => "duplicate",
            Some((Outcome::Done, _)) => "done",
            Some((Outcome::Busy, _)) => "busy",
            Some((Outcome::Refused(r), _)) if r.code == Code::Expired => "expired",
            Some((Outcome::Refused(_), _)) => "refused",
        };
        metrics::counter!(crate::metrics::PARTICIPANT_STEPS, "participant" => participant, "phase" => step.phase.as_str(), "result" => result)
            .increment(1);
        metrics::histogram!(crate::metrics::PARTICIPANT_DURATION, "participant" => participant)
            .record(started.elapsed());
        applied.map(|(outcome, _)| OrderReply::Step {
            participant: self.kind.participant,
            phase: step.phase,
            outcome,
        })
    }

    /// The command loop's answer to a step: [`Ledger::apply`]'s reply; nothing to a commit,
    /// which is applied all the same.
    pub async fn answer<C>(&self, envelope: &Envelope<C>, step: &Step) -> Option<OrderReply> {
        let reply = self.apply(envelope, step).await;
        reply.filter(|_| step.phase.is_answered())
    }

    /// The outcome of the step, and whether it was replayed from the record; `None` parks.
    async fn apply_step<C>(&self, envelope: &Envelope<C>, step: &Step) -> Option<(Outcome, bool)> {
        let participant = self.kind.participant;
        let tx = &envelope.tx;
        let age = crate::protocol::now_ms().saturating_sub(envelope.sent_ms);
        let (outcome, replayed) = if step.phase == Phase::Try
            && age > self.horizon().as_millis() as u64
        {
            tracing::warn!(%tx, age_ms = age, "try older than the retention horizon; not applied");
            let refusal = Refusal::new(
                Code::Expired,
                format!("this copy of transaction {tx}'s try is too old to apply"),
            );
            (Outcome::Refused(refusal), false)
        } else {
            let attempt =
                || crate::db::retry(crate::db::COMMAND_PATIENCE, || self.step_replayed(tx, step));
            let mut applied = attempt().await;
            while let Err(e) = &applied
                && !step.phase.is_answered()
                && e.is_transient()
            {
                tracing::error!(error = %e, %tx, phase = ?step.phase, participant = participant.as_str(),
                    "commit cannot be applied yet; still trying (its partition waits)");
                applied = attempt().await;
            }
            match applied {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::error!(error = %e, %tx, phase = ?step.phase, participant = participant.as_str(),
                        "command cannot be applied; parked (the coordinator resends or settles it)");
                    return None;
                }
            }
        };
        if step.phase == Phase::Try {
            crate::failpoint::hit(&format!("{}_after_try", participant.as_str()));
        }
        if let (Outcome::Refused(r), false) = (&outcome, step.phase.is_answered()) {
            // Nobody hears this refusal: a copy redelivered after its record expired, or
            // records that contradict the logged decision.
            tracing::error!(%tx, phase = ?step.phase, code = %r.code, detail = %r.detail,
                participant = participant.as_str(), "commit refused");
        }
        tracing::debug!(%tx, phase = ?step.phase, ?outcome, replayed, participant = participant.as_str(), "step");
        Some((outcome, replayed))
    }

    /// Tries sent longer ago than this are not applied (see [`Ledger::apply`]).
    pub fn horizon(&self) -> Duration {
        self.retention / 2
    }
}

/// Sums the amounts of repeated accounts, so each account is one line of the step. A sum past
/// i64::MAX stays exact (as text in the script), and is simply more than any account holds.
fn merge(lines: &[(String, i64)]) -> Vec<(String, i128)> {
    let mut merged: Vec<(String, i128)> = Vec::with_capacity(lines.len());
    for (id, amount) in lines {
        match merged.iter_mut().find(|(other, _)| other == id) {
            Some((_, total)) => *total += i128::from(*amount),
            None => merged.push((id.clone(), i128::from(*amount))),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_accounts_are_merged_exactly() {
        let merged = merge(&[("a".into(), i64::MAX), ("b".into(), 2), ("a".into(), 3)]);
        assert_eq!(
            merged,
            vec![("a".into(), i128::from(i64::MAX) + 3), ("b".into(), 2)]
        );
    }

    #[test]
    fn script_replies_decode_and_unknown_ones_fail() {
        use crate::db::decode_reply;
        assert_eq!(
            decode_reply::<StepReply>(&["refused", "short", "item:1", ""]).unwrap(),
            StepReply {
                answer: StepAnswer::Refused(Reason::Short, "item:1".into()),
                replayed: false
            }
        );
        assert_eq!(
            decode_reply::<StepReply>(&["done", "", "", "1"]).unwrap(),
            StepReply {
                answer: StepAnswer::Done,
                replayed: true
            }
        );
        assert_eq!(
            decode_reply::<Adjusted>(&["short", "3"]).unwrap(),
            Adjusted::Short(3)
        );
        assert_eq!(
            decode_reply::<BatchReply>(&["in_use", "7"]).unwrap(),
            BatchReply::InUse("7".into())
        );
        let unknown_steps: [&[&str]; 4] = [
            &["refused", "nope", "", ""],
            &["maybe", "", "", ""],
            &["done", "", ""],
            &["done", "", "", "yes"],
        ];
        for reply in unknown_steps {
            assert!(decode_reply::<StepReply>(reply).is_err(), "{reply:?}");
        }
        for reply in [["ok", "x"], ["weird", "1"]] {
            assert!(decode_reply::<Adjusted>(&reply).is_err(), "{reply:?}");
        }
        assert!(decode_reply::<BatchReply>(&["nope", ""]).is_err());
    }
}
