//! The transaction log in the order service's Redis: the write-ahead record of every
//! checkout and the set of unfinished ones.
//!
//! Keys: `tx:{id}` (hash: the transaction record; expires [`STATE_RETENTION_S`] after it is
//! final), `txs:active` (sorted set of unfinished transactions, scored by lease expiry in
//! ms), and for the console `txs:recent` (the last 200 finished) and `stats:{slot}`
//! (outcomes and latencies per 5 seconds, kept 10 minutes), which [`Tally`] writes.
//! `begin` also marks the order (`checkout` → transaction id) and `transition` marks it paid
//! and frees it, in the same atomic steps.
//!
//! [`STATE_RETENTION_S`]: common::Settings::state_retention

use std::sync::Arc;
use std::time::Duration;

use common::protocol::Protocol;
use common::{Error, Result};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, FromRedisValue, ParsingError, Script, Value};

use super::machine::{Abort, TxState, abort_fields, abort_from_fields};
use super::tally::Tally;
use crate::orders::{number, order_key};

pub const ACTIVE: &str = "txs:active";
/// The ids of the last 200 finished transactions, newest first (for the console).
pub const RECENT: &str = "txs:recent";
/// Seconds each `stats:{slot}` bucket of outcomes and latencies covers (for the console).
pub const STATS_BUCKET_S: u64 = 5;

pub fn tx_key(id: &str) -> String {
    format!("tx:{id}")
}

/// The stats bucket of the 5-second slot `slot` (ms since the epoch / 5000).
pub fn stats_key(slot: u64) -> String {
    format!("stats:{slot}")
}

/// A checkout transaction as recorded in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    pub id: String,
    pub order_id: String,
    pub protocol: Protocol,
    pub state: TxState,
    pub user_id: String,
    pub total: i64,
    pub items: Vec<(String, i64)>,
    /// When the checkout began (ms since the epoch, the order Redis's clock).
    pub started_ms: u64,
    /// Why the transaction aborted, once it does.
    pub abort: Option<Abort>,
}

/// What `begin` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    Started(TxRecord),
    InFlight(String),
    Paid,
    Missing,
    /// `batch_init` is replacing this order; its checkout cannot begin meanwhile.
    Replacing,
}

/// The reply of `begin.lua` before the record is parsed.
struct BeginReply(String, String, Vec<String>);

impl FromRedisValue for BeginReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (status, other, fields) = FromRedisValue::from_redis_value(v)?;
        Ok(Self(status, other, fields))
    }
}

/// What `claim` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    /// Its owner's lease is still running.
    Owned,
    /// Final, or gone: nothing to drive.
    Finished,
}

impl FromRedisValue for Claim {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (status, _state): (String, String) = FromRedisValue::from_redis_value(v)?;
        match status.as_str() {
            "claimed" => Ok(Self::Claimed),
            "busy" => Ok(Self::Owned),
            "final" | "gone" => Ok(Self::Finished),
            other => Err(format!("claim.lua answered status {other:?}").into()),
        }
    }
}

/// The reply of `transition.lua`: the Redis clock (ms) of the write, `None` when fenced.
struct Transition(Option<u64>);

impl FromRedisValue for Transition {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (status, _state, now): (String, String, u64) = FromRedisValue::from_redis_value(v)?;
        match status.as_str() {
            "ok" => Ok(Self(Some(now))),
            "fenced" => Ok(Self(None)),
            other => Err(format!("transition.lua answered status {other:?}").into()),
        }
    }
}

#[derive(Clone)]
pub struct TxLog {
    redis: ConnectionManager,
    retention: Duration,
    begin: Script,
    transition: Script,
    claim: Script,
    /// The console's figures, counted as transitions are written.
    tally: Arc<Tally>,
}

impl TxLog {
    pub fn new(redis: ConnectionManager, retention: Duration) -> Self {
        Self {
            redis,
            retention,
            begin: Script::new(include_str!("lua/begin.lua")),
            transition: Script::new(include_str!("lua/transition.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            tally: Arc::default(),
        }
    }

    /// The console's figures this log counts; [`Tally::run`] writes them.
    pub fn tally(&self) -> Arc<Tally> {
        self.tally.clone()
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Starts transaction `tx_id` for the order, unless it is paid or has one in flight.
    pub async fn begin(
        &self,
        order_id: &str,
        tx_id: &str,
        protocol: Protocol,
        owner: &str,
        lease: Duration,
    ) -> Result<Begin> {
        let mut invocation = self.begin.prepare_invoke();
        invocation
            .key(order_key(order_id))
            .key(tx_key(tx_id))
            .key(ACTIVE)
            .key(crate::orders::BATCH_LOCK)
            .arg(tx_id)
            .arg(order_id)
            .arg(protocol.as_str())
            .arg(owner)
            .arg(lease.as_millis() as u64);
        let mut conn = self.conn();
        let BeginReply(status, other, fields) =
            common::metrics::script("begin", invocation.invoke_async(&mut conn)).await?;
        match status.as_str() {
            "started" => Ok(Begin::Started(record(tx_id, pairs(fields))?)),
            "in_flight" => Ok(Begin::InFlight(other)),
            "paid" => Ok(Begin::Paid),
            "missing" => Ok(Begin::Missing),
            "replacing" => Ok(Begin::Replacing),
            other => Err(Error::Internal(format!("begin.lua answered {other:?}"))),
        }
    }

    /// Moves `tx` to `to` (or, with `to == tx.state`, only renews the lease) if `owner` still
    /// owns it in the state `tx` says. Returns false when fenced: someone else owns the
    /// transaction now, or it moved on.
    pub async fn transition(
        &self,
        tx: &TxRecord,
        owner: &str,
        to: TxState,
        lease: Duration,
    ) -> Result<bool> {
        self.transition_noting(tx, owner, to, lease, &[]).await
    }

    /// [`TxLog::transition`], recording `notes` (field, value) in the record in the same step.
    pub async fn transition_noting(
        &self,
        tx: &TxRecord,
        owner: &str,
        to: TxState,
        lease: Duration,
        notes: &[(String, String)],
    ) -> Result<bool> {
        let next = if to == tx.state { "" } else { to.as_str() };
        let mut invocation = self.transition.prepare_invoke();
        invocation
            .key(tx_key(&tx.id))
            .key(ACTIVE)
            .key(order_key(&tx.order_id))
            .arg(owner)
            .arg(tx.state.as_str())
            .arg(next)
            .arg(lease.as_millis() as u64)
            .arg(&tx.id)
            .arg(self.retention.as_secs().max(1));
        if let (TxState::Aborting, Some(abort)) = (to, &tx.abort) {
            let (code, detail) = abort_fields(abort);
            invocation.arg("code").arg(code).arg("detail").arg(detail);
        }
        for (field, value) in notes {
            invocation.arg(field).arg(value);
        }
        let mut conn = self.conn();
        let Transition(written) =
            common::metrics::script("transition", invocation.invoke_async(&mut conn)).await?;
        let Some(now) = written else { return Ok(false) };
        if to != tx.state {
            self.count(tx, to, now);
        }
        Ok(true)
    }

    /// Counts a written transition for the console: the client's answer is decided when the
    /// transaction commits or aborts, and it is finished when it is final.
    fn count(&self, tx: &TxRecord, to: TxState, now: u64) {
        let took = now.saturating_sub(tx.started_ms);
        match to {
            TxState::Committing => self.tally.decided("committed", took, now),
            TxState::Aborted => {
                let outcome = match &tx.abort {
                    Some(Abort::Refused(r)) => r.code.as_str(),
                    _ => "interrupted",
                };
                self.tally.decided(outcome, took, now);
            }
            _ => {}
        }
        if to.phase().is_none() {
            self.tally.finished(&tx.id);
        }
    }

    /// Takes over `tx_id` if its lease expired, or if its owner starts with `steal_prefix`.
    pub async fn claim(
        &self,
        tx_id: &str,
        owner: &str,
        lease: Duration,
        steal_prefix: &str,
    ) -> Result<Claim> {
        let mut invocation = self.claim.prepare_invoke();
        invocation
            .key(tx_key(tx_id))
            .key(ACTIVE)
            .arg(owner)
            .arg(lease.as_millis() as u64)
            .arg(tx_id)
            .arg(steal_prefix);
        let mut conn = self.conn();
        Ok(common::metrics::script("claim", invocation.invoke_async(&mut conn)).await?)
    }

    /// Unfinished transactions whose lease expired, or all of them with `all`, at most `limit`.
    pub async fn active(&self, all: bool, limit: isize) -> Result<Vec<String>> {
        let mut conn = self.conn();
        if all {
            return Ok(conn.zrange(ACTIVE, 0, limit - 1).await?);
        }
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now = secs * 1000 + micros / 1000;
        Ok(conn
            .zrangebyscore_limit(ACTIVE, "-inf", now, 0, limit)
            .await?)
    }

    pub async fn load(&self, tx_id: &str) -> Result<Option<TxRecord>> {
        let fields: Vec<(String, String)> = self.conn().hgetall(tx_key(tx_id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        record(tx_id, fields).map(Some)
    }
}

/// A transaction record from its hash fields.
fn record(tx_id: &str, fields: Vec<(String, String)>) -> Result<TxRecord> {
    let mut tx = TxRecord {
        id: tx_id.to_string(),
        order_id: String::new(),
        protocol: Protocol::Saga,
        state: TxState::Trying,
        user_id: String::new(),
        total: 0,
        items: Vec::new(),
        started_ms: 0,
        abort: None,
    };
    let corrupt =
        |field: &str| Error::Internal(format!("transaction {tx_id} has a corrupt {field}"));
    let (mut code, mut detail) = (None, String::new());
    for (field, value) in fields {
        match field.as_str() {
            "order" => tx.order_id = value,
            "protocol" => tx.protocol = Protocol::parse(&value).ok_or_else(|| corrupt(&field))?,
            "state" => tx.state = TxState::parse(&value).ok_or_else(|| corrupt(&field))?,
            "user" => tx.user_id = value,
            "total" => tx.total = number(&value)?,
            "started" => tx.started_ms = value.parse().map_err(|_| corrupt(&field))?,
            "code" => code = Some(value),
            "detail" => detail = value,
            _ => {
                if let Some(item) = field.strip_prefix("i:") {
                    tx.items.push((item.to_string(), number(&value)?));
                }
            }
        }
    }
    if let Some(code) = code {
        tx.abort = Some(abort_from_fields(&code, detail).ok_or_else(|| corrupt("code"))?);
    }
    Ok(tx)
}

/// `[k1, v1, k2, v2, ...]` as pairs.
fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut flat = flat.into_iter();
    std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
}
