//! The order service's Redis: orders, checkout transactions and the set of active ones.
//!
//! Keys: `order:{id}` (hash: `user`, `paid`, `total`, `checkout` while a transaction is in
//! flight, and `i:{item}` → quantity), `tx:{id}` (hash: the transaction record) and
//! `txs:active` (sorted set of unfinished transactions, scored by lease expiry in ms).

use std::time::Duration;

use common::protocol::Protocol;
use common::{Error, Refusal, Result};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use crate::checkout::machine::TxState;

const ACTIVE: &str = "txs:active";

fn order_key(id: &str) -> String {
    format!("order:{id}")
}

fn tx_key(id: &str) -> String {
    format!("tx:{id}")
}

/// An order as `GET /orders/find` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub user_id: String,
    pub paid: bool,
    pub total_cost: i64,
    pub items: Vec<(String, i64)>,
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
    /// Why the transaction aborted, once it does.
    pub refusal: Option<Refusal>,
}

/// What `begin` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    Started(TxRecord),
    InFlight(String),
    Paid,
    NotFound,
}

/// What `add_item` did.
#[derive(Debug, PartialEq, Eq)]
pub enum AddItem {
    Ok,
    NotFound,
    Paid,
    Busy,
    Overflow,
}

/// What `claim` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    Busy,
    Finished,
}

#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    add_item: Script,
    begin: Script,
    transition: Script,
    claim: Script,
}

impl Store {
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            add_item: Script::new(include_str!("lua/add_item.lua")),
            begin: Script::new(include_str!("lua/begin.lua")),
            transition: Script::new(include_str!("lua/transition.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    pub async fn create(&self, id: &str, user_id: &str) -> Result<()> {
        let fields = [("user", user_id), ("paid", "0"), ("total", "0")];
        let _: () = self.conn().hset_multiple(order_key(id), &fields).await?;
        Ok(())
    }

    /// Writes orders `ids`, each for `(user, [item, item])`, replacing what was there.
    pub async fn put_many(&self, orders: &[(u64, u64, [u64; 2])], total: i64) -> Result<()> {
        let mut pipe = redis::pipe();
        for (id, user, items) in orders {
            let key = order_key(&id.to_string());
            pipe.del(&key).ignore();
            pipe.hset_multiple(
                &key,
                &[
                    ("user", user.to_string()),
                    ("paid", "0".into()),
                    ("total", total.to_string()),
                ],
            )
            .ignore();
            for item in items {
                pipe.hincr(&key, format!("i:{item}"), 1).ignore();
            }
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    pub async fn find(&self, id: &str) -> Result<Option<Order>> {
        let fields: Vec<(String, String)> = self.conn().hgetall(order_key(id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut order = Order {
            user_id: String::new(),
            paid: false,
            total_cost: 0,
            items: Vec::new(),
        };
        for (field, value) in fields {
            match field.as_str() {
                "user" => order.user_id = value,
                "paid" => order.paid = value == "1",
                "total" => order.total_cost = number(&value)?,
                _ => {
                    if let Some(item) = field.strip_prefix("i:") {
                        order.items.push((item.to_string(), number(&value)?));
                    }
                }
            }
        }
        order.items.sort();
        Ok(Some(order))
    }

    pub async fn add_item(
        &self,
        id: &str,
        item_id: &str,
        quantity: i64,
        cost: i64,
    ) -> Result<AddItem> {
        let (status,): (String,) = self
            .add_item
            .key(order_key(id))
            .arg(item_id)
            .arg(quantity.to_string())
            .arg(cost.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match status.as_str() {
            "ok" => AddItem::Ok,
            "not_found" => AddItem::NotFound,
            "paid" => AddItem::Paid,
            "busy" => AddItem::Busy,
            _ => AddItem::Overflow,
        })
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
        let (status, other, fields): (String, String, Vec<String>) = self
            .begin
            .key(order_key(order_id))
            .key(tx_key(tx_id))
            .key(ACTIVE)
            .arg(tx_id)
            .arg(order_id)
            .arg(protocol.as_str())
            .arg(owner)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match status.as_str() {
            "started" => Begin::Started(record(tx_id, pairs(fields))?),
            "in_flight" => Begin::InFlight(other),
            "paid" => Begin::Paid,
            _ => Begin::NotFound,
        })
    }

    /// Moves `tx` from `from` to `to` (or, with `to == from`, only renews the lease) if `owner`
    /// still owns it. Returns false when fenced: someone else owns the transaction now.
    pub async fn transition(
        &self,
        tx: &TxRecord,
        owner: &str,
        to: TxState,
        lease: Duration,
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
            .arg(&tx.id);
        if let (TxState::Aborting, Some(refusal)) = (to, &tx.refusal) {
            invocation
                .arg("code")
                .arg(&refusal.code)
                .arg("detail")
                .arg(&refusal.detail);
        }
        let (status, _): (String, String) = invocation.invoke_async(&mut self.conn()).await?;
        Ok(status == "ok")
    }

    /// Takes over `tx_id` if its lease expired, or if its owner starts with `steal_prefix`.
    pub async fn claim(
        &self,
        tx_id: &str,
        owner: &str,
        lease: Duration,
        steal_prefix: &str,
    ) -> Result<Claim> {
        let (status, _): (String, String) = self
            .claim
            .key(tx_key(tx_id))
            .key(ACTIVE)
            .arg(owner)
            .arg(lease.as_millis() as u64)
            .arg(tx_id)
            .arg(steal_prefix)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match status.as_str() {
            "claimed" => Claim::Claimed,
            "busy" => Claim::Busy,
            _ => Claim::Finished,
        })
    }

    /// Unfinished transactions whose lease expired, or all of them with `all`.
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
    {
        let mut tx = TxRecord {
            id: tx_id.to_string(),
            order_id: String::new(),
            protocol: Protocol::Saga,
            state: TxState::Trying,
            user_id: String::new(),
            total: 0,
            items: Vec::new(),
            refusal: None,
        };
        let (mut code, mut detail) = (None, String::new());
        for (field, value) in fields {
            match field.as_str() {
                "order" => tx.order_id = value,
                "protocol" => {
                    tx.protocol = Protocol::parse(&value).ok_or_else(|| corrupt(tx_id, &field))?
                }
                "state" => {
                    tx.state = TxState::parse(&value).ok_or_else(|| corrupt(tx_id, &field))?
                }
                "user" => tx.user_id = value,
                "total" => tx.total = number(&value)?,
                "code" => code = Some(value),
                "detail" => detail = value,
                _ => {
                    if let Some(item) = field.strip_prefix("i:") {
                        tx.items.push((item.to_string(), number(&value)?));
                    }
                }
            }
        }
        tx.refusal = code.map(|code| Refusal { code, detail });
        Ok(tx)
    }
}

/// `[k1, v1, k2, v2, ...]` as pairs.
fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut flat = flat.into_iter();
    std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
}

fn number(text: &str) -> Result<i64> {
    text.parse()
        .map_err(|_| Error::Internal(format!("corrupt number {text:?} in the order store")))
}

fn corrupt(tx: &str, field: &str) -> Error {
    Error::Internal(format!("transaction {tx} has a corrupt {field}"))
}
