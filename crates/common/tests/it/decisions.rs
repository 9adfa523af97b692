//! A commit is not answered, so nobody would send it again: a participant must never park
//! one. A try may be parked (its coordinator resends it); a commit waits for Redis as long as
//! it takes, then applies.

use std::time::Duration;

use common::protocol::{Envelope, OrderReply, Outcome, Phase, Protocol, ReplyTo, StockCommand};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{redis, step};

fn command(
    tx: &str,
    phase: Phase,
    lines: &[(&str, i64)],
) -> (Envelope<StockCommand>, common::protocol::Step) {
    let step = step(phase, Protocol::TwoPc, lines);
    let envelope = Envelope::new(
        tx,
        ReplyTo { partition: 0 },
        StockCommand::Step(step.clone()),
    );
    (envelope, step)
}

async fn item_a(conn: &mut ConnectionManager) {
    let _: () = conn
        .hset_multiple("item:a", &[("stock", 10), ("price", 1)])
        .await
        .unwrap();
}

async fn stock_and_held(conn: &mut ConnectionManager) -> (i64, i64) {
    let (stock, held): (i64, Option<i64>) = redis::pipe()
        .hget("item:a", "stock")
        .hget("item:a", "held")
        .query_async(conn)
        .await
        .unwrap();
    (stock, held.unwrap_or(0))
}

async fn maxmemory(conn: &mut ConnectionManager, bytes: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(bytes)
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_commit_outlasts_a_redis_that_refuses_writes_and_a_try_is_parked() {
    let (_server, ledger, mut conn) = redis().await;
    item_a(&mut conn).await;
    let (prepare, try_step) = command("t1", Phase::Try, &[("a", 3)]);
    assert!(matches!(
        ledger.answer(&prepare, &try_step).await,
        Some(OrderReply::Step {
            outcome: Outcome::Done,
            ..
        })
    ));

    // Redis now refuses every write (out of memory: a transient failure) for longer than a
    // participant's patience with a try.
    maxmemory(&mut conn, "1").await;
    let (commit, commit_step) = command("t1", Phase::Commit, &[]);
    let decision = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.apply(&commit, &commit_step).await }
    });
    let (other, other_step) = command("t2", Phase::Try, &[("a", 1)]);
    let parked = tokio::time::timeout(Duration::from_secs(20), ledger.answer(&other, &other_step))
        .await
        .expect("a try gives up after the participant's patience");
    assert!(
        parked.is_none(),
        "a try Redis refused was answered: {parked:?}"
    );
    assert!(!decision.is_finished(), "the commit gave up like the try");

    maxmemory(&mut conn, "0").await;
    let applied = tokio::time::timeout(Duration::from_secs(10), decision)
        .await
        .expect("the commit applies once Redis takes writes again")
        .unwrap();
    assert!(matches!(
        applied,
        Some(OrderReply::Step {
            outcome: Outcome::Done,
            ..
        })
    ));
    assert_eq!(
        stock_and_held(&mut conn).await,
        (7, 0),
        "the commit did not take effect once"
    );
}

#[tokio::test]
async fn commits_are_applied_but_not_answered_and_cancels_are_answered() {
    let (_server, ledger, mut conn) = redis().await;
    item_a(&mut conn).await;
    for (tx, decision) in [("c", Phase::Commit), ("x", Phase::Cancel)] {
        let (prepare, try_step) = command(tx, Phase::Try, &[("a", 4)]);
        assert!(
            ledger.answer(&prepare, &try_step).await.is_some(),
            "a try is answered"
        );
        let (decided, step) = command(tx, decision, &[]);
        let answer = ledger.answer(&decided, &step).await;
        assert_eq!(
            answer.is_some(),
            decision == Phase::Cancel,
            "{decision:?} answered {answer:?}"
        );
    }
    assert_eq!(
        stock_and_held(&mut conn).await,
        (6, 0),
        "one reservation committed, one given back"
    );
}
