//! The order service's Lua scripts against a real redis-server: starting a checkout
//! (`begin`), the write-ahead transitions fenced by their owner (`transition`), and taking
//! over transactions whose lease expired (`claim`); orders' exact totals (`add_item`) and
//! `batch_init`'s refusal over checkouts in flight.

use std::time::Duration;

use common::protocol::Protocol;
use order::checkout::log::{ACTIVE, Begin, Claim, TxLog, TxRecord};
use order::checkout::machine::{Abort, TxState};
use order::orders::{NewOrders, Orders};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use testkit::TestRedis;

const LEASE: Duration = Duration::from_millis(400);
const RETENTION: Duration = Duration::from_secs(60);

async fn redis() -> (TestRedis, ConnectionManager, Orders, TxLog) {
    let server = TestRedis::start(&[]);
    let conn = common::db::connect(&server.url(), Duration::from_secs(10))
        .await
        .unwrap();
    let (orders, log) = (
        Orders::new(conn.clone()),
        TxLog::new(conn.clone(), RETENTION),
    );
    (server, conn, orders, log)
}

/// An order of `user` with 2 units of item `a` at 5 each.
async fn order(orders: &Orders) -> String {
    let id = orders.create("u1").await.unwrap();
    assert_eq!(orders.add_item(&id, "a", 2, 10).await.unwrap(), 10);
    id
}

/// `begin` with the test lease.
async fn begin(log: &TxLog, order: &str, tx: &str, protocol: Protocol, owner: &str) -> Begin {
    log.begin(order, tx, protocol, owner, LEASE).await.unwrap()
}

/// Begins checkout `tx` of `order`, which must start.
async fn started(log: &TxLog, order: &str, tx: &str, protocol: Protocol, owner: &str) -> TxRecord {
    match begin(log, order, tx, protocol, owner).await {
        Begin::Started(record) => record,
        other => panic!("checkout {tx} of {order} did not start: {other:?}"),
    }
}

/// `transition` with the test lease: whether `owner` moved `tx` on to `to`.
async fn moved(log: &TxLog, tx: &TxRecord, owner: &str, to: TxState) -> bool {
    log.transition(tx, owner, to, LEASE).await.unwrap()
}

/// `claim` with the test lease.
async fn claim(log: &TxLog, tx: &str, owner: &str, steal_prefix: &str) -> Claim {
    log.claim(tx, owner, LEASE, steal_prefix).await.unwrap()
}

#[tokio::test]
async fn begin_snapshots_the_order_and_admits_one_checkout_at_a_time() {
    let (_s, _conn, orders, log) = redis().await;
    let id = order(&orders).await;
    let tx = started(&log, &id, "t1", Protocol::TwoPc, "me").await;
    assert_eq!(
        (
            tx.state,
            tx.user_id.as_str(),
            tx.total,
            tx.items.clone(),
            tx.protocol
        ),
        (
            TxState::Trying,
            "u1",
            10,
            vec![("a".to_string(), 2)],
            Protocol::TwoPc
        )
    );
    assert_eq!(log.load("t1").await.unwrap(), Some(tx.clone()));
    assert_eq!(
        begin(&log, &id, "t2", Protocol::TwoPc, "me").await,
        Begin::InFlight("t1".into())
    );
    // Items cannot change under a checkout in flight.
    let busy = orders.add_item(&id, "b", 1, 1).await.unwrap_err();
    assert_eq!(busy.status_and_code().1, "checkout_in_progress");
    assert_eq!(
        begin(&log, "nope", "t3", Protocol::Saga, "me").await,
        Begin::Missing
    );
}

#[tokio::test]
async fn transitions_are_fenced_by_owner_and_state_and_pay_the_order_once() {
    let (_s, mut conn, orders, log) = redis().await;
    let id = order(&orders).await;
    let mut tx = started(&log, &id, "t1", Protocol::Saga, "me").await;
    assert!(!moved(&log, &tx, "someone-else", TxState::Committing).await);
    let mut stale = tx.clone();
    stale.state = TxState::Aborting;
    assert!(!moved(&log, &stale, "me", TxState::Aborted).await);
    assert!(moved(&log, &tx, "me", TxState::Committing).await);
    tx.state = TxState::Committing;
    assert!(
        orders.find(&id).await.unwrap().unwrap().paid,
        "paid with the logged commit"
    );
    assert_eq!(
        begin(&log, &id, "t2", Protocol::Saga, "me").await,
        Begin::Paid
    );
    assert!(moved(&log, &tx, "me", TxState::Committed).await);
    // Final: out of the active set, the order's slot freed, the record bound to expire.
    let active: Vec<String> = conn.zrange("txs:active", 0, -1).await.unwrap();
    assert!(active.is_empty());
    let slot: Option<String> = conn.hget(format!("order:{id}"), "checkout").await.unwrap();
    assert_eq!(slot, None);
    let ttl: i64 = conn.ttl("tx:t1").await.unwrap();
    assert!(ttl > 0 && ttl <= RETENTION.as_secs() as i64, "ttl {ttl}");
}

#[tokio::test]
async fn an_abort_records_its_reason_and_leaves_the_order_unpaid() {
    let (_s, _conn, orders, log) = redis().await;
    let id = order(&orders).await;
    let mut tx = started(&log, &id, "t1", Protocol::TwoPc, "me").await;
    tx.abort = Some(Abort::Interrupted("presumed".into()));
    assert!(moved(&log, &tx, "me", TxState::Aborting).await);
    tx.state = TxState::Aborting;
    assert!(moved(&log, &tx, "me", TxState::Aborted).await);
    let recorded = log.load("t1").await.unwrap().unwrap();
    assert_eq!(
        (recorded.state, recorded.abort),
        (TxState::Aborted, tx.abort)
    );
    assert!(!orders.find(&id).await.unwrap().unwrap().paid);
    assert!(matches!(
        begin(&log, &id, "t2", Protocol::TwoPc, "me").await,
        Begin::Started(_)
    ));
}

#[tokio::test]
async fn only_an_expired_lease_or_an_earlier_self_can_be_claimed() {
    let (_s, _conn, orders, log) = redis().await;
    let id = order(&orders).await;
    let tx = started(&log, &id, "t1", Protocol::Saga, "order-1/old").await;
    assert_eq!(claim(&log, "t1", "order-2/x", "").await, Claim::Owned);
    assert!(
        log.active(false, 10).await.unwrap().is_empty(),
        "nothing expired yet"
    );
    // A restarted incarnation of the same replica takes its own transactions back at once.
    assert_eq!(
        claim(&log, "t1", "order-1/new", "order-1/").await,
        Claim::Claimed
    );
    assert!(
        !moved(&log, &tx, "order-1/old", TxState::Committing).await,
        "the old owner is fenced"
    );
    // Once the lease runs out, any replica may claim it.
    let expired = async {
        loop {
            if log.active(false, 10).await.unwrap() == vec!["t1".to_string()] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(10 * LEASE, expired)
        .await
        .expect("the lease never expired");
    assert_eq!(claim(&log, "t1", "order-2/x", "").await, Claim::Claimed);
    assert!(moved(&log, &tx, "order-2/x", TxState::Committing).await);
    let mut done = tx.clone();
    done.state = TxState::Committing;
    assert!(moved(&log, &done, "order-2/x", TxState::Committed).await);
    assert_eq!(claim(&log, "t1", "order-3/y", "").await, Claim::Finished);
}

#[tokio::test]
async fn order_totals_are_exact_and_never_leave_64_bits() {
    let (_s, _conn, orders, _log) = redis().await;
    let id = orders.create("u").await.unwrap();
    let big = (1i64 << 53) + 1;
    assert_eq!(orders.add_item(&id, "a", 1, big).await.unwrap(), big);
    assert_eq!(orders.add_item(&id, "b", 1, 2).await.unwrap(), big + 2);
    assert_eq!(
        orders
            .add_item(&id, "c", 1, i64::MAX - big - 2)
            .await
            .unwrap(),
        i64::MAX
    );
    let over = orders.add_item(&id, "d", 1, 1).await.unwrap_err();
    assert_eq!(over.status_and_code().1, "bad_input");
    let order = orders.find(&id).await.unwrap().unwrap();
    assert_eq!((order.total_cost, order.items.len()), (i64::MAX, 3));
}

#[tokio::test]
async fn batch_init_refuses_orders_with_a_checkout_in_flight() {
    let (_s, _conn, orders, log) = redis().await;
    let batch = NewOrders {
        n: 100,
        n_items: 5,
        n_users: 7,
        total: 20,
    };
    orders.batch_init(batch, ACTIVE).await.unwrap();
    let first = orders.find("42").await.unwrap().unwrap();
    assert_eq!(first.total_cost, 20);
    assert_eq!(first.items.iter().map(|(_, q)| q).sum::<i64>(), 2);
    assert!(
        first
            .items
            .iter()
            .all(|(i, _)| i.parse::<u64>().unwrap() < 5)
    );
    assert!(first.user_id.parse::<u64>().unwrap() < 7);
    assert!(matches!(
        begin(&log, "42", "t", Protocol::Saga, "me").await,
        Begin::Started(_)
    ));
    let refused = orders.batch_init(batch, ACTIVE).await.unwrap_err();
    assert_eq!(refused.status_and_code().1, "records_in_use");
    assert_eq!(orders.find("42").await.unwrap().unwrap(), first);
    assert!(orders.find("100").await.unwrap().is_none());
}

#[tokio::test]
async fn batch_init_writes_in_chunks_and_no_checkout_begins_meanwhile() {
    use order::orders::{BATCH_CHUNK, BATCH_LOCK};
    let (_s, mut conn, orders, log) = redis().await;
    let n = 2 * BATCH_CHUNK + 7;
    let batch = NewOrders {
        n,
        n_items: 5,
        n_users: 7,
        total: 20,
    };
    orders.batch_init(batch, ACTIVE).await.unwrap();
    let last = orders.find(&(n - 1).to_string()).await.unwrap().unwrap();
    assert_eq!(last.items.iter().map(|(_, q)| q).sum::<i64>(), 2);
    assert!(orders.find(&n.to_string()).await.unwrap().is_none());
    let lock: Option<String> = conn.get(BATCH_LOCK).await.unwrap();
    assert_eq!(lock, None, "a finished batch left its lock");

    // While a batch holds the lock, none of its orders begins a checkout, other orders do,
    // and no other batch starts.
    let _: () = conn
        .hset_multiple(BATCH_LOCK, &[("token", "another batch"), ("n", "10")])
        .await
        .unwrap();
    assert!(matches!(
        begin(&log, "3", "t", Protocol::Saga, "me").await,
        Begin::Replacing
    ));
    assert!(matches!(
        begin(&log, "10", "u", Protocol::Saga, "me").await,
        Begin::Started(_)
    ));
    let refused = orders.batch_init(batch, ACTIVE).await.unwrap_err();
    assert_eq!(refused.status_and_code().1, "records_in_use");
    let _: () = conn.del(BATCH_LOCK).await.unwrap();
    assert!(matches!(
        begin(&log, "3", "t", Protocol::Saga, "me").await,
        Begin::Started(_)
    ));
}
