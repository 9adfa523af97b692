//! The order service's Lua scripts against a real redis-server: starting a checkout
//! (`begin`), the write-ahead transitions fenced by their owner (`transition`), and taking
//! over transactions whose lease expired (`claim`); orders' exact totals (`add_item`) and
//! `batch_init`'s refusal over checkouts in flight.

use std::time::Duration;

use common::protocol::Protocol;
use order::checkout::log::{Begin, Claim, TxLog};
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

#[tokio::test]
async fn begin_snapshots_the_order_and_admits_one_checkout_at_a_time() {
    let (_s, _conn, orders, log) = redis().await;
    let id = order(&orders).await;
    let Begin::Started(tx) = log
        .begin(&id, "t1", Protocol::TwoPc, "me", LEASE)
        .await
        .unwrap()
    else {
        panic!("not started")
    };
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
        log.begin(&id, "t2", Protocol::TwoPc, "me", LEASE)
            .await
            .unwrap(),
        Begin::InFlight("t1".into())
    );
    // Items cannot change under a checkout in flight.
    let busy = orders.add_item(&id, "b", 1, 1).await.unwrap_err();
    assert_eq!(busy.status_and_code().1, "checkout_in_progress");
    assert_eq!(
        log.begin("nope", "t3", Protocol::Saga, "me", LEASE)
            .await
            .unwrap(),
        Begin::Missing
    );
}

#[tokio::test]
async fn transitions_are_fenced_by_owner_and_state_and_pay_the_order_once() {
    let (_s, mut conn, orders, log) = redis().await;
    let id = order(&orders).await;
    let Begin::Started(mut tx) = log
        .begin(&id, "t1", Protocol::Saga, "me", LEASE)
        .await
        .unwrap()
    else {
        panic!("not started")
    };
    assert!(
        !log.transition(&tx, "someone-else", TxState::Committing, LEASE)
            .await
            .unwrap()
    );
    let mut stale = tx.clone();
    stale.state = TxState::Aborting;
    assert!(
        !log.transition(&stale, "me", TxState::Aborted, LEASE)
            .await
            .unwrap()
    );
    assert!(
        log.transition(&tx, "me", TxState::Committing, LEASE)
            .await
            .unwrap()
    );
    tx.state = TxState::Committing;
    assert!(
        orders.find(&id).await.unwrap().unwrap().paid,
        "paid with the logged commit"
    );
    assert_eq!(
        log.begin(&id, "t2", Protocol::Saga, "me", LEASE)
            .await
            .unwrap(),
        Begin::Paid
    );
    assert!(
        log.transition(&tx, "me", TxState::Committed, LEASE)
            .await
            .unwrap()
    );
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
    let Begin::Started(mut tx) = log
        .begin(&id, "t1", Protocol::TwoPc, "me", LEASE)
        .await
        .unwrap()
    else {
        panic!("not started")
    };
    tx.abort = Some(Abort::Interrupted("presumed".into()));
    assert!(
        log.transition(&tx, "me", TxState::Aborting, LEASE)
            .await
            .unwrap()
    );
    tx.state = TxState::Aborting;
    assert!(
        log.transition(&tx, "me", TxState::Aborted, LEASE)
            .await
            .unwrap()
    );
    let recorded = log.load("t1").await.unwrap().unwrap();
    assert_eq!(
        (recorded.state, recorded.abort),
        (TxState::Aborted, tx.abort)
    );
    assert!(!orders.find(&id).await.unwrap().unwrap().paid);
    assert!(matches!(
        log.begin(&id, "t2", Protocol::TwoPc, "me", LEASE)
            .await
            .unwrap(),
        Begin::Started(_)
    ));
}

#[tokio::test]
async fn only_an_expired_lease_or_an_earlier_self_can_be_claimed() {
    let (_s, _conn, orders, log) = redis().await;
    let id = order(&orders).await;
    let Begin::Started(tx) = log
        .begin(&id, "t1", Protocol::Saga, "order-1/old", LEASE)
        .await
        .unwrap()
    else {
        panic!("not started")
    };
    assert_eq!(
        log.claim("t1", "order-2/x", LEASE, "").await.unwrap(),
        Claim::Owned
    );
    assert!(
        log.active(false, 10).await.unwrap().is_empty(),
        "nothing expired yet"
    );
    // A restarted incarnation of the same replica takes its own transactions back at once.
    assert_eq!(
        log.claim("t1", "order-1/new", LEASE, "order-1/")
            .await
            .unwrap(),
        Claim::Claimed
    );
    assert!(
        !log.transition(&tx, "order-1/old", TxState::Committing, LEASE)
            .await
            .unwrap(),
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
    assert_eq!(
        log.claim("t1", "order-2/x", LEASE, "").await.unwrap(),
        Claim::Claimed
    );
    assert!(
        log.transition(&tx, "order-2/x", TxState::Committing, LEASE)
            .await
            .unwrap()
    );
    let mut done = tx.clone();
    done.state = TxState::Committing;
    assert!(
        log.transition(&done, "order-2/x", TxState::Committed, LEASE)
            .await
            .unwrap()
    );
    assert_eq!(
        log.claim("t1", "order-3/y", LEASE, "").await.unwrap(),
        Claim::Finished
    );
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
    orders.batch_init(batch).await.unwrap();
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
        log.begin("42", "t", Protocol::Saga, "me", LEASE)
            .await
            .unwrap(),
        Begin::Started(_)
    ));
    let refused = orders.batch_init(batch).await.unwrap_err();
    assert_eq!(refused.status_and_code().1, "records_in_use");
    assert_eq!(orders.find("42").await.unwrap().unwrap(), first);
    assert!(orders.find("100").await.unwrap().is_none());
}
