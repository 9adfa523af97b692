//! Exactly-once steps, duplicates and reordering, holds, and exact limits.

use std::time::Duration;

use common::Code;
use common::ledger::{Direction, Ledger};
use common::protocol::{Outcome, Phase, Protocol};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{IMPATIENT, RETENTION, redis, step};

async fn stock(conn: &mut ConnectionManager, id: &str) -> i64 {
    conn.hget(format!("item:{id}"), "stock").await.unwrap()
}

async fn held(conn: &mut ConnectionManager, id: &str) -> i64 {
    conn.hget::<_, _, Option<i64>>(format!("item:{id}"), "held")
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn stock_and_held(conn: &mut ConnectionManager, id: &str) -> (i64, i64) {
    (stock(conn, id).await, held(conn, id).await)
}

async fn item(conn: &mut ConnectionManager, id: &str, stock: i64) {
    let _: () = conn
        .hset_multiple(format!("item:{id}"), &[("stock", stock), ("price", 1)])
        .await
        .unwrap();
}

/// A private Redis, as [`redis`] makes it, holding item `a` with `stock` units.
async fn redis_with_a(stock: i64) -> (testkit::TestRedis, Ledger, ConnectionManager) {
    let (server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", stock).await;
    (server, ledger, conn)
}

fn lines(items: &[(&str, i64)]) -> Vec<(String, i64)> {
    items.iter().map(|(id, q)| (id.to_string(), *q)).collect()
}

/// `Ledger::step` with the phase, protocol and lines spelled out, as the tests read best.
async fn run(
    ledger: &Ledger,
    tx: &str,
    phase: Phase,
    protocol: Protocol,
    lines: &[(String, i64)],
) -> common::Result<Outcome> {
    let lines: Vec<(&str, i64)> = lines.iter().map(|(id, q)| (id.as_str(), *q)).collect();
    ledger.step(tx, &step(phase, protocol, &lines)).await
}

async fn try_(ledger: &Ledger, tx: &str, protocol: Protocol, lines: &[(String, i64)]) -> Outcome {
    run(ledger, tx, Phase::Try, protocol, lines).await.unwrap()
}

/// A try that must be done.
async fn try_ok(ledger: &Ledger, tx: &str, protocol: Protocol, lines: &[(String, i64)]) {
    assert_eq!(
        try_(ledger, tx, protocol, lines).await,
        Outcome::Done,
        "try of {tx}"
    );
}

async fn commit(ledger: &Ledger, tx: &str) -> Outcome {
    run(ledger, tx, Phase::Commit, Protocol::TwoPc, &[])
        .await
        .unwrap()
}

async fn cancel(ledger: &Ledger, tx: &str) -> Outcome {
    run(ledger, tx, Phase::Cancel, Protocol::TwoPc, &[])
        .await
        .unwrap()
}

fn refused_with(outcome: &Outcome) -> Option<Code> {
    match outcome {
        Outcome::Refused(r) => Some(r.code),
        Outcome::Done | Outcome::Busy => None,
    }
}

#[tokio::test]
async fn a_repeated_try_takes_once_and_answers_the_same() {
    let (_server, ledger, mut conn) = redis_with_a(10).await;
    item(&mut conn, "b", 10).await;
    let take = lines(&[("a", 3), ("b", 4)]);
    for _ in 0..3 {
        try_ok(&ledger, "t1", Protocol::Saga, &take).await;
    }
    assert_eq!(
        (stock(&mut conn, "a").await, stock(&mut conn, "b").await),
        (7, 6)
    );
}

#[tokio::test]
async fn a_try_is_all_or_nothing_and_its_refusal_is_recorded() {
    let (_server, ledger, mut conn) = redis_with_a(10).await;
    item(&mut conn, "b", 1).await;
    let take = lines(&[("a", 3), ("b", 2)]);
    let first = try_(&ledger, "t1", Protocol::TwoPc, &take).await;
    assert_eq!(refused_with(&first), Some(Code::OutOfStock));
    assert_eq!(
        (stock(&mut conn, "a").await, stock(&mut conn, "b").await),
        (10, 1)
    );
    // Even once stock arrives, the same transaction keeps its recorded answer.
    item(&mut conn, "b", 100).await;
    let again = try_(&ledger, "t1", Protocol::TwoPc, &take).await;
    assert_eq!(again, first);
    assert_eq!(stock(&mut conn, "a").await, 10);
    let missing = try_(&ledger, "t2", Protocol::Saga, &lines(&[("zz", 1)])).await;
    assert_eq!(refused_with(&missing), Some(Code::ItemNotFound));
}

#[tokio::test]
async fn compensation_gives_back_exactly_once() {
    let (_server, ledger, mut conn) = redis_with_a(10).await;
    try_(&ledger, "t1", Protocol::Saga, &lines(&[("a", 4)])).await;
    for _ in 0..3 {
        assert_eq!(cancel(&ledger, "t1").await, Outcome::Done);
    }
    assert_eq!(stock(&mut conn, "a").await, 10);
    // A late duplicate of the action must not take again after its compensation.
    let late = try_(&ledger, "t1", Protocol::Saga, &lines(&[("a", 4)])).await;
    assert_eq!(refused_with(&late), Some(Code::Cancelled));
    assert_eq!(stock(&mut conn, "a").await, 10);
}

#[tokio::test]
async fn a_cancel_that_overtakes_its_try_forbids_it() {
    let (_server, ledger, mut conn) = redis_with_a(10).await;
    for protocol in [Protocol::Saga, Protocol::TwoPc] {
        let tx = format!("early-{}", protocol.as_str());
        assert_eq!(cancel(&ledger, &tx).await, Outcome::Done);
        let late = try_(&ledger, &tx, protocol, &lines(&[("a", 5)])).await;
        assert_eq!(refused_with(&late), Some(Code::Cancelled));
    }
    assert_eq!(stock(&mut conn, "a").await, 10);
}

#[tokio::test]
async fn two_pc_reservation_is_held_until_the_decision() {
    let (_server, ledger, mut conn) = redis_with_a(10).await;
    try_ok(&ledger, "c", Protocol::TwoPc, &lines(&[("a", 6)])).await;
    // Reserved: no longer available to others, who are told to wait (busy) while the
    // reservation could still come back, and are refused when it cannot.
    let other = try_(&ledger, "other", Protocol::TwoPc, &lines(&[("a", 5)])).await;
    assert_eq!(other, Outcome::Busy);
    let hopeless = try_(&ledger, "hopeless", Protocol::TwoPc, &lines(&[("a", 11)])).await;
    assert_eq!(refused_with(&hopeless), Some(Code::OutOfStock));
    assert_eq!(stock(&mut conn, "a").await, 4);
    // Commit is idempotent, and an abort after commit is refused and changes nothing.
    for _ in 0..2 {
        assert_eq!(commit(&ledger, "c").await, Outcome::Done);
    }
    assert_eq!(held(&mut conn, "a").await, 0);
    let after = try_(&ledger, "other", Protocol::TwoPc, &lines(&[("a", 5)])).await;
    assert_eq!(
        refused_with(&after),
        Some(Code::OutOfStock),
        "with nothing held, a shortage is final"
    );
    let abort = cancel(&ledger, "c").await;
    assert_eq!(refused_with(&abort), Some(Code::AlreadyCommitted));
    assert_eq!(stock(&mut conn, "a").await, 4);
    // An aborted prepare returns its reservation once, and a commit after it is refused.
    try_ok(&ledger, "d", Protocol::TwoPc, &lines(&[("a", 4)])).await;
    assert_eq!(stock(&mut conn, "a").await, 0);
    cancel(&ledger, "d").await;
    cancel(&ledger, "d").await;
    assert_eq!(stock(&mut conn, "a").await, 4);
    let commit = commit(&ledger, "d").await;
    assert_eq!(refused_with(&commit), Some(Code::NotPrepared));
}

#[tokio::test]
async fn concurrent_subtracts_never_lose_an_update_nor_go_negative() {
    let (_server, ledger, mut conn) = redis_with_a(100).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.adjust("a", Direction::Take, 1).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 100);
    assert_eq!(stock(&mut conn, "a").await, 0);
}

#[tokio::test]
async fn adjustments_are_exact_at_the_limits() {
    let (_server, ledger, mut conn) = redis_with_a(0).await;
    assert_eq!(
        ledger.adjust("a", Direction::Add, i64::MAX).await.unwrap(),
        i64::MAX
    );
    assert!(ledger.adjust("a", Direction::Add, 1).await.is_err());
    assert_eq!(stock(&mut conn, "a").await, i64::MAX);
    assert_eq!(
        ledger.adjust("a", Direction::Take, i64::MAX).await.unwrap(),
        0
    );
    let short = ledger.adjust("a", Direction::Take, 1).await.unwrap_err();
    assert_eq!(short.status_and_code().1, "out_of_stock");
    let missing = ledger
        .adjust("missing", Direction::Add, 1)
        .await
        .unwrap_err();
    assert_eq!(missing.status_and_code().1, "item_not_found");
    assert_eq!(stock(&mut conn, "a").await, 0);
}

#[tokio::test]
async fn held_amounts_count_against_the_upper_limit() {
    let (_server, ledger, mut conn) = redis_with_a(i64::MAX).await;
    try_ok(&ledger, "h", Protocol::TwoPc, &lines(&[("a", 1)])).await;
    // available + held = i64::MAX: nothing may be added until the hold is decided.
    assert!(ledger.adjust("a", Direction::Add, 1).await.is_err());
    cancel(&ledger, "h").await;
    assert_eq!(stock(&mut conn, "a").await, i64::MAX);
    assert_eq!(held(&mut conn, "a").await, 0);
}

#[tokio::test]
async fn a_try_waits_for_an_aborting_hold_instead_of_refusing() {
    let (_server, ledger, mut conn) = redis_with_a(1).await;
    let one = lines(&[("a", 1)]);
    try_ok(&ledger, "first", Protocol::Saga, &one).await;
    let (seen_busy, busy) = tokio::sync::oneshot::channel();
    let waiting = {
        let (ledger, one) = (ledger.clone(), one.clone());
        tokio::spawn(async move { try_until_answered(&ledger, "second", &one, seen_busy).await })
    };
    // Only once the second try was told to wait does the first checkout fail elsewhere and
    // get compensated: the waiting one then gets the unit.
    tokio::time::timeout(Duration::from_secs(10), busy)
        .await
        .expect("the second try was never told to wait")
        .unwrap();
    cancel(&ledger, "first").await;
    let answered = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    assert_eq!(
        answered.expect("the waiting try got no answer").unwrap(),
        Outcome::Done
    );
    assert_eq!(stock_and_held(&mut conn, "a").await, (0, 1));
    // A confirmed saga action releases its hold, and then a shortage is final at once.
    commit(&ledger, "second").await;
    assert_eq!(held(&mut conn, "a").await, 0);
    let third = try_(&ledger, "third", Protocol::Saga, &one).await;
    assert_eq!(refused_with(&third), Some(Code::OutOfStock));
    let undo = cancel(&ledger, "second").await;
    assert_eq!(refused_with(&undo), Some(Code::AlreadyCommitted));
}

/// Asks again while the answer is busy, as the coordinator does, telling `seen_busy` the
/// first time it is told to wait.
async fn try_until_answered(
    ledger: &Ledger,
    tx: &str,
    lines: &[(String, i64)],
    seen_busy: tokio::sync::oneshot::Sender<()>,
) -> Outcome {
    let mut seen_busy = Some(seen_busy);
    loop {
        match run(ledger, tx, Phase::Try, Protocol::Saga, lines)
            .await
            .unwrap()
        {
            Outcome::Busy => {
                if let Some(tell) = seen_busy.take() {
                    let _ = tell.send(());
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            answer => return answer,
        }
    }
}

#[tokio::test]
async fn accounts_that_do_not_wait_refuse_a_held_shortage_for_good() {
    let (_server, waiting, mut conn) = redis().await;
    let ledger = Ledger::new(conn.clone(), IMPATIENT, RETENTION);
    item(&mut conn, "a", 1).await;
    let one = lines(&[("a", 1)]);
    try_ok(&ledger, "first", Protocol::Saga, &one).await;
    let second = try_(&ledger, "second", Protocol::Saga, &one).await;
    assert_eq!(refused_with(&second), Some(Code::OutOfStock));
    // The refusal is recorded: once the hold comes back, the same transaction still gets it.
    cancel(&ledger, "first").await;
    let again = try_(&ledger, "second", Protocol::Saga, &one).await;
    assert_eq!(again, second);
    assert_eq!(stock(&mut conn, "a").await, 1);
    // A waiting ledger on the same accounts would have said busy instead.
    try_(&ledger, "third", Protocol::Saga, &one).await;
    let busy = try_(&waiting, "fourth", Protocol::Saga, &one).await;
    assert_eq!(busy, Outcome::Busy);
}

#[tokio::test]
async fn finished_step_records_expire_and_undecided_ones_stay() {
    let (_server, ledger, conn) = redis_with_a(10).await;
    let one = lines(&[("a", 1)]);
    try_(&ledger, "open", Protocol::TwoPc, &one).await;
    try_(&ledger, "done", Protocol::TwoPc, &one).await;
    commit(&ledger, "done").await;
    cancel(&ledger, "early").await;
    let ttl = |tx: &'static str| {
        let mut conn = conn.clone();
        async move { conn.ttl::<_, i64>(format!("step:{tx}")).await.unwrap() }
    };
    assert_eq!(ttl("open").await, -1, "an undecided step must not expire");
    for tx in ["done", "early"] {
        let left = ttl(tx).await;
        assert!(
            left > 0 && left <= RETENTION.as_secs() as i64,
            "{tx}: ttl {left}"
        );
    }
}

#[tokio::test]
async fn a_script_error_writes_nothing() {
    let (_server, ledger, mut conn) = redis_with_a(10).await;
    let _: () = conn.hset("item:b", "stock", "not a number").await.unwrap();
    let both = lines(&[("a", 1), ("b", 1)]);
    assert!(
        run(&ledger, "bad", Phase::Try, Protocol::Saga, &both)
            .await
            .is_err()
    );
    assert_eq!(stock_and_held(&mut conn, "a").await, (10, 0));
    let record: i64 = conn.exists("step:bad").await.unwrap();
    assert_eq!(record, 0);
}

/// Exactly-once across the records' lifetime. A duplicate while the step record lives gets
/// the recorded answer. Once the record has expired, a late copy of the try is older than
/// the horizon (half the retention) and is not applied: every copy of a command is sent
/// before the transaction's final phase (a coordinator stops sending when its lease may be
/// lost), and the record outlives that phase by the whole retention. Late commits and
/// cancels need no record to be harmless.
#[tokio::test]
async fn redelivered_commands_move_nothing_twice_even_after_their_records_expire() {
    use common::protocol::{Envelope, OrderReply, PaymentCommand, ReplyTo, Step};
    let (_server, _, mut conn) = redis().await;
    let ledger = Ledger::new(conn.clone(), common::ledger::ITEMS, Duration::from_secs(2));
    item(&mut conn, "a", 10).await;
    // A command as the coordinator sends it: every copy of it is the same.
    let command = |phase: Phase, lines: &[(&str, i64)]| {
        let step = step(phase, Protocol::Saga, lines);
        let body = PaymentCommand::Step(step.clone());
        (Envelope::new("t", ReplyTo { partition: 0 }, body), step)
    };
    // Delivers one copy of `command` and returns the outcome the participant replies.
    let deliver = async |(envelope, step): &(Envelope<PaymentCommand>, Step)| match ledger
        .apply(envelope, step)
        .await
    {
        Some(OrderReply::Step { outcome, .. }) => outcome,
        other => panic!("unexpected reply {other:?}"),
    };
    let take = command(Phase::Try, &[("a", 3)]);
    assert_eq!(deliver(&take).await, Outcome::Done);
    assert_eq!(deliver(&take).await, Outcome::Done);
    assert_eq!(stock(&mut conn, "a").await, 7, "a duplicate moved stock");
    let commit = command(Phase::Commit, &[]);
    assert_eq!(deliver(&commit).await, Outcome::Done);
    assert_eq!(stock_and_held(&mut conn, "a").await, (7, 0));
    let expired = tokio::time::timeout(Duration::from_secs(10), async {
        while conn.exists::<_, bool>("step:t").await.unwrap() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(expired.is_ok(), "the finished step record never expired");
    assert_eq!(refused_with(&deliver(&take).await), Some(Code::Expired));
    assert_eq!(
        deliver(&commit).await,
        Outcome::Refused(common::Refusal::new(
            Code::NotPrepared,
            "transaction t has nothing to commit here"
        ))
    );
    assert_eq!(deliver(&command(Phase::Cancel, &[])).await, Outcome::Done);
    assert_eq!(stock_and_held(&mut conn, "a").await, (7, 0));
    // A copy within the horizon is judged by the record again: here the late cancel's
    // tombstone, which forbids the try for another retention period.
    let fresh = command(Phase::Try, &[("a", 3)]);
    assert_eq!(refused_with(&deliver(&fresh).await), Some(Code::Cancelled));
}
