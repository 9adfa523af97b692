//! Orders in the order service's Redis.
//!
//! Key `order:{id}`, a hash: `user`, `paid` (`0`/`1`), `total`, `i:{item}` → quantity, and
//! `checkout` → the transaction id while a checkout is in flight (see [`crate::checkout::log`],
//! which snapshots the order into the transaction record when the checkout begins).

use common::ledger::{BatchReply, script_with_num};
use common::{Code, Error, Noun, Result};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, FromRedisValue, ParsingError, Script, Value};

/// Held while `batch_init` replaces orders; `begin` refuses new checkouts meanwhile.
pub const BATCH_LOCK: &str = "orders:batch";
/// Orders written by one script of `batch_init`.
pub const BATCH_CHUNK: u64 = 20_000;
/// How long the batch lock outlives its last chunk if the batch's caller dies.
const BATCH_LOCK_MS: u64 = 30_000;

pub fn order_key(id: &str) -> String {
    format!("order:{id}")
}

/// An order as `GET /orders/find` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub user_id: String,
    pub paid: bool,
    pub total_cost: i64,
    pub items: Vec<(String, i64)>,
}

/// The reply of `add_item.lua`: `{status, total}`.
#[derive(Debug, PartialEq, Eq)]
enum AddItem {
    Ok(i64),
    Missing,
    Paid,
    Busy,
    Overflow,
}

impl FromRedisValue for AddItem {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (status, total): (String, String) = FromRedisValue::from_redis_value(v)?;
        Ok(match status.as_str() {
            "ok" => Self::Ok(
                total
                    .parse()
                    .map_err(|_| format!("add_item.lua answered total {total:?}"))?,
            ),
            "missing" => Self::Missing,
            "paid" => Self::Paid,
            "busy" => Self::Busy,
            "overflow" => Self::Overflow,
            other => return Err(format!("add_item.lua answered status {other:?}").into()),
        })
    }
}

/// What `batch_init` creates.
#[derive(Clone, Copy, Debug)]
pub struct NewOrders {
    pub n: u64,
    pub n_items: u64,
    pub n_users: u64,
    /// Each order's total: two items at the batch's price.
    pub total: i64,
}

#[derive(Clone)]
pub struct Orders {
    redis: ConnectionManager,
    add_item: Script,
    batch: Script,
}

impl Orders {
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            add_item: script_with_num(include_str!("lua/add_item.lua")),
            batch: Script::new(include_str!("lua/batch.lua")),
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Creates an empty order of `user_id`; returns its id.
    pub async fn create(&self, user_id: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let fields = [("user", user_id), ("paid", "0"), ("total", "0")];
        let _: () = self.conn().hset_multiple(order_key(&id), &fields).await?;
        Ok(id)
    }

    /// Replaces orders `"0"..n`, unless one of them has a checkout in flight (a member of the
    /// transaction log's `active` set); none of them can begin a checkout while it runs (see
    /// `lua/batch.lua`). In chunks of [`BATCH_CHUNK`] orders, each one script:
    /// a million orders take seconds, and Redis must answer the rest of the shop meanwhile.
    pub async fn batch_init(&self, batch: NewOrders, active: &str) -> Result<()> {
        let token = uuid::Uuid::new_v4().to_string();
        let seed = rand::random::<u32>();
        let step = |name: &str| {
            let mut invocation = self.batch.prepare_invoke();
            invocation
                .key(BATCH_LOCK)
                .key(active)
                .arg(name)
                .arg(&token)
                .arg(BATCH_LOCK_MS);
            invocation
        };
        let mut conn = self.conn();
        let run = async |invocation: redis::ScriptInvocation<'_>, conn: &mut ConnectionManager| {
            let answer: BatchReply =
                common::metrics::script("order_batch", invocation.invoke_async(conn)).await?;
            match answer {
                BatchReply::Ok => Ok(()),
                BatchReply::InUse(id) if id.is_empty() => Err(Error::refused(
                    Code::RecordsInUse,
                    "another batch_init is replacing the orders; nothing was changed",
                )),
                BatchReply::InUse(id) => Err(Error::refused(
                    Code::RecordsInUse,
                    format!("order {id:?} has a checkout in flight; nothing was changed"),
                )),
                BatchReply::Lost => Err(Error::Unavailable(
                    "batch_init lost its lock between two chunks; run it again".into(),
                )),
            }
        };
        let mut begin = step("begin");
        begin.arg(batch.n);
        run(begin, &mut conn).await?;
        let mut first = 0;
        while first < batch.n {
            let end = (first + BATCH_CHUNK).min(batch.n);
            let mut chunk = step("chunk");
            chunk
                .arg(first)
                .arg(end)
                .arg(batch.n_items)
                .arg(batch.n_users)
                .arg(batch.total)
                .arg(seed.wrapping_add(first as u32));
            run(chunk, &mut conn).await?;
            first = end;
        }
        run(step("end"), &mut conn).await
    }

    /// The order `id`, or `None`. Waits out a Redis restart.
    pub async fn find(&self, id: &str) -> Result<Option<Order>> {
        let fields: Vec<(String, String)> =
            common::db::retry(common::db::READ_PATIENCE, || async {
                Ok(self.conn().hgetall(order_key(id)).await?)
            })
            .await?;
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

    /// Adds `quantity` of `item_id` costing `cost` in all to order `id`; returns the new total,
    /// as the script computed it in the same atomic step.
    pub async fn add_item(&self, id: &str, item_id: &str, quantity: i64, cost: i64) -> Result<i64> {
        let mut conn = self.conn();
        let mut invocation = self.add_item.prepare_invoke();
        invocation
            .key(order_key(id))
            .arg(item_id)
            .arg(quantity)
            .arg(cost);
        let answer: AddItem =
            common::metrics::script("add_item", invocation.invoke_async(&mut conn)).await?;
        match answer {
            AddItem::Ok(total) => Ok(total),
            AddItem::Missing => Err(Error::not_found(Noun::Order, id)),
            AddItem::Paid => Err(already_paid(id)),
            AddItem::Busy => Err(Error::refused(
                Code::CheckoutInProgress,
                format!("order {id:?} is being checked out; its items cannot change now"),
            )),
            AddItem::Overflow => Err(overflow(id)),
        }
    }
}

pub fn already_paid(id: &str) -> Error {
    Error::refused(Code::AlreadyPaid, format!("order {id:?} is already paid"))
}

pub fn overflow(id: &str) -> Error {
    Error::BadInput(format!(
        "the order {id:?} would hold more than 2^63-1 of an item or cost more than 2^63-1"
    ))
}

pub(crate) fn number(text: &str) -> Result<i64> {
    text.parse()
        .map_err(|_| Error::Internal(format!("corrupt number {text:?} in the order store")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_replies_decode_and_unknown_ones_fail() {
        use common::db::decode_reply;
        assert_eq!(
            decode_reply::<AddItem>(&["ok", "12"]).unwrap(),
            AddItem::Ok(12)
        );
        for reply in [["ok", "x"], ["later", ""]] {
            assert!(decode_reply::<AddItem>(&reply).is_err(), "{reply:?}");
        }
    }
}
