//! The messages services exchange over Kafka: one enum per topic, in one place.
//!
//! Every message travels in an [`Envelope`] that carries the format version, the transaction
//! (or correlation) id — also the Kafka key, so one transaction's messages stay in order on
//! one partition — and the reply address of the order replica that waits for the answer.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Refusal;

/// Wire format version; a consumer skips (and logs) envelopes of a version it does not know.
pub const VERSION: u8 = 1;

/// Which checkout protocol a transaction runs. Participants record it with their reservation
/// so that a saga action is final at once while a 2PC prepare waits for the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Saga,
    #[serde(rename = "2pc")]
    TwoPc,
}

impl Protocol {
    /// `saga` or `2pc`, any case, surrounding blanks ignored; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "saga" => Some(Self::Saga),
            "2pc" => Some(Self::TwoPc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Saga => "saga",
            Self::TwoPc => "2pc",
        }
    }
}

/// The reply partition of the order replica that sent a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub partition: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub v: u8,
    /// Transaction id for checkout steps, a fresh correlation id for lookups.
    pub tx: String,
    pub reply_to: ReplyTo,
    /// When this copy was sent (ms since the Unix epoch). A participant applies no try older
    /// than its records' retention horizon: such a copy may outlive its step record.
    pub sent_ms: u64,
    pub body: T,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<T: Serialize + DeserializeOwned> Envelope<T> {
    pub fn new(tx: impl Into<String>, reply_to: ReplyTo, body: T) -> Self {
        Self {
            v: VERSION,
            tx: tx.into(),
            reply_to,
            sent_ms: now_ms(),
            body,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("messages always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let env: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if env.v != VERSION {
            return Err(format!("unknown message version {}", env.v));
        }
        Ok(env)
    }
}

/// One phase of a participant's part in a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Saga: do the local action now. 2PC: prepare (reserve and vote).
    Try,
    /// 2PC: make the reservation permanent. Saga: confirm that the action will not be
    /// compensated, which releases its hold.
    Commit,
    /// Saga: compensate. 2PC: abort. Before `Try`, it forbids that `Try` from ever running.
    Cancel,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Try => "try",
            Self::Commit => "commit",
            Self::Cancel => "cancel",
        }
    }

    /// Whether the participant answers this step. A try is asked. A cancel is asked too: a
    /// refused checkout is answered only once it is undone everywhere, so a client that reads
    /// stock and credit next sees them given back. A commit is only told: the client was
    /// answered when the decision was logged, what it reads is already final (the try took
    /// the amounts), and once the broker holds the commit durably (idempotent producer,
    /// `acks=all`) the participant's consumer group delivers it until it is applied (see
    /// [`Ledger::apply`](crate::ledger::Ledger::apply)); waiting for an acknowledgement
    /// would cost two messages per checkout and add no guarantee.
    pub fn is_answered(self) -> bool {
        !matches!(self, Self::Commit)
    }
}

/// The participants of a checkout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Participant {
    Stock,
    Payment,
}

impl Participant {
    pub const ALL: [Participant; 2] = [Participant::Stock, Participant::Payment];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stock => "stock",
            Self::Payment => "payment",
        }
    }
}

/// One step of a transaction at one participant, the same shape for both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub phase: Phase,
    /// The transaction's protocol: decides whether a try is final (saga) or waits (2PC).
    pub protocol: Protocol,
    /// Try only: the accounts and amounts to take (stock: items and quantities; payment: the
    /// user and the total). Commit and cancel act on what the try recorded.
    pub lines: Vec<(String, i64)>,
}

/// Topic `stock.commands`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StockCommand {
    Step(Step),
    /// What does this item cost? Prices never change, so the answer may be cached forever.
    Price {
        item_id: String,
    },
}

/// Topic `payment.commands`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentCommand {
    Step(Step),
}

/// The result of one phase at one participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Refused(Refusal),
    /// Too little right now, but undecided transactions hold enough: nothing was recorded,
    /// and the coordinator asks again shortly (stock only; see `AccountKind::waits_for_holds`).
    Busy,
}

/// Topic `order.replies`, one partition per order replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderReply {
    Step {
        participant: Participant,
        phase: Phase,
        outcome: Outcome,
    },
    Price {
        item_id: String,
        price: Option<i64>,
    },
}

impl OrderReply {
    /// The key a waiting coordinator registered for this reply.
    pub fn wait_key(&self, tx: &str) -> String {
        match self {
            Self::Step {
                participant, phase, ..
            } => step_key(tx, *participant, *phase),
            Self::Price { .. } => format!("{tx}/price"),
        }
    }
}

/// The key under which the coordinator waits for a participant's answer to a phase.
pub fn step_key(tx: &str, participant: Participant, phase: Phase) -> String {
    format!("{tx}/{}/{phase:?}", participant.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone>(body: T) {
        let env = Envelope::new("tx-1", ReplyTo { partition: 3 }, body);
        assert_eq!(Envelope::<T>::decode(&env.encode()).unwrap(), env);
    }

    #[test]
    fn every_message_kind_round_trips() {
        round_trip(StockCommand::Step(Step {
            phase: Phase::Try,
            protocol: Protocol::TwoPc,
            lines: vec![("a".into(), 2)],
        }));
        round_trip(StockCommand::Price {
            item_id: "7".into(),
        });
        round_trip(PaymentCommand::Step(Step {
            phase: Phase::Cancel,
            protocol: Protocol::Saga,
            lines: vec![("u".into(), i64::MAX)],
        }));
        round_trip(OrderReply::Step {
            participant: Participant::Payment,
            phase: Phase::Try,
            outcome: Outcome::Refused(Refusal::new(Code::InsufficientCredit, "no")),
        });
        round_trip(OrderReply::Price {
            item_id: "1".into(),
            price: None,
        });
    }

    #[test]
    fn unknown_versions_and_garbage_are_rejected() {
        let commit = PaymentCommand::Step(Step {
            phase: Phase::Commit,
            protocol: Protocol::Saga,
            lines: Vec::new(),
        });
        let mut env = Envelope::new("t", ReplyTo { partition: 0 }, commit);
        env.v = 99;
        assert!(Envelope::<PaymentCommand>::decode(&env.encode()).is_err());
        assert!(Envelope::<StockCommand>::decode(b"{not json").is_err());
        let unknown_code = br#"{"v":1,"tx":"t","reply_to":{"partition":0},"sent_ms":1,
            "body":{"kind":"step","participant":"stock","phase":"try",
            "outcome":{"result":"refused","code":"out_of_stonk","detail":""}}}"#;
        assert!(Envelope::<OrderReply>::decode(unknown_code).is_err());
    }

    #[test]
    fn protocols_parse_strictly() {
        assert_eq!(Protocol::parse(" 2PC "), Some(Protocol::TwoPc));
        assert_eq!(Protocol::parse("Saga"), Some(Protocol::Saga));
        for bad in ["twopc", "3pc", "", "sagas"] {
            assert_eq!(Protocol::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reply_keys_match_step_keys() {
        let reply = OrderReply::Step {
            participant: Participant::Stock,
            phase: Phase::Cancel,
            outcome: Outcome::Done,
        };
        assert_eq!(
            reply.wait_key("t"),
            step_key("t", Participant::Stock, Phase::Cancel)
        );
    }
}
