//! The participants' Lua scripts against a real redis-server: exactly-once steps, duplicate
//! and reordered commands, compensation before action, and no lost updates under races.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ledger::{AccountKind, Adjusted, Ledger};
use common::protocol::{Outcome, Participant, Phase, Protocol};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

const ITEMS: AccountKind = AccountKind {
    noun: "item",
    field: "stock",
    too_little: "out_of_stock",
    waits_for_holds: true,
    participant: Participant::Stock,
};

/// The same accounts, but refusing at once when short, as payment does.
const IMPATIENT: AccountKind = AccountKind {
    waits_for_holds: false,
    ..ITEMS
};

/// A private redis-server on a free port, killed when dropped.
struct Redis {
    child: Child,
    url: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis() -> (Redis, Ledger, ConnectionManager) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("ledger-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (make test installs it)");
    let server = Redis {
        child,
        url: format!("redis://127.0.0.1:{port}"),
        _dir: TempDir(dir),
    };
    let conn = common::db::connect(&server.url, Duration::from_secs(10))
        .await
        .unwrap();
    (server, Ledger::new(conn.clone(), ITEMS), conn)
}

async fn stock(conn: &mut ConnectionManager, id: &str) -> i64 {
    conn.hget(format!("item:{id}"), "stock").await.unwrap()
}

async fn held(conn: &mut ConnectionManager, id: &str) -> i64 {
    conn.hget::<_, _, Option<i64>>(format!("item:{id}"), "held")
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn item(conn: &mut ConnectionManager, id: &str, stock: i64) {
    let _: () = conn
        .hset_multiple(format!("item:{id}"), &[("stock", stock), ("price", 1)])
        .await
        .unwrap();
}

fn lines(items: &[(&str, i64)]) -> Vec<(String, i64)> {
    items.iter().map(|(id, q)| (id.to_string(), *q)).collect()
}

fn refused_with(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Refused(r) => &r.code,
        Outcome::Done => "done",
        Outcome::Busy => "busy",
    }
}

#[tokio::test]
async fn a_repeated_try_takes_once_and_answers_the_same() {
    let (_server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", 10).await;
    item(&mut conn, "b", 10).await;
    let take = lines(&[("a", 3), ("b", 4)]);
    for _ in 0..3 {
        let outcome = ledger
            .step("t1", Phase::Try, Protocol::Saga, &take)
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Done);
    }
    assert_eq!(
        (stock(&mut conn, "a").await, stock(&mut conn, "b").await),
        (7, 6)
    );
}

#[tokio::test]
async fn a_try_is_all_or_nothing_and_its_refusal_is_recorded() {
    let (_server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", 10).await;
    item(&mut conn, "b", 1).await;
    let take = lines(&[("a", 3), ("b", 2)]);
    let first = ledger
        .step("t1", Phase::Try, Protocol::TwoPc, &take)
        .await
        .unwrap();
    assert_eq!(refused_with(&first), "out_of_stock");
    assert_eq!(
        (stock(&mut conn, "a").await, stock(&mut conn, "b").await),
        (10, 1)
    );
    // Even once stock arrives, the same transaction keeps its recorded answer.
    item(&mut conn, "b", 100).await;
    let again = ledger
        .step("t1", Phase::Try, Protocol::TwoPc, &take)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(stock(&mut conn, "a").await, 10);
    let missing = ledger
        .step("t2", Phase::Try, Protocol::Saga, &lines(&[("zz", 1)]))
        .await
        .unwrap();
    assert_eq!(refused_with(&missing), "item_not_found");
}

#[tokio::test]
async fn compensation_gives_back_exactly_once() {
    let (_server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", 10).await;
    ledger
        .step("t1", Phase::Try, Protocol::Saga, &lines(&[("a", 4)]))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            ledger
                .step("t1", Phase::Cancel, Protocol::Saga, &[])
                .await
                .unwrap(),
            Outcome::Done
        );
    }
    assert_eq!(stock(&mut conn, "a").await, 10);
    // A late duplicate of the action must not take again after its compensation.
    let late = ledger
        .step("t1", Phase::Try, Protocol::Saga, &lines(&[("a", 4)]))
        .await
        .unwrap();
    assert_eq!(refused_with(&late), "cancelled");
    assert_eq!(stock(&mut conn, "a").await, 10);
}

#[tokio::test]
async fn a_cancel_that_overtakes_its_try_forbids_it() {
    let (_server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", 10).await;
    for protocol in [Protocol::Saga, Protocol::TwoPc] {
        let tx = format!("early-{}", protocol.as_str());
        assert_eq!(
            ledger
                .step(&tx, Phase::Cancel, protocol, &[])
                .await
                .unwrap(),
            Outcome::Done
        );
        let late = ledger
            .step(&tx, Phase::Try, protocol, &lines(&[("a", 5)]))
            .await
            .unwrap();
        assert_eq!(refused_with(&late), "cancelled");
    }
    assert_eq!(stock(&mut conn, "a").await, 10);
}

#[tokio::test]
async fn two_pc_reservation_is_held_until_the_decision() {
    let (_server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", 10).await;
    let take = lines(&[("a", 6)]);
    assert_eq!(
        ledger
            .step("c", Phase::Try, Protocol::TwoPc, &take)
            .await
            .unwrap(),
        Outcome::Done
    );
    // Reserved: no longer available to others, who are told to wait (busy) while the
    // reservation could still come back, and are refused when it cannot.
    let other = ledger
        .step("other", Phase::Try, Protocol::TwoPc, &lines(&[("a", 5)]))
        .await
        .unwrap();
    assert_eq!(other, Outcome::Busy);
    let hopeless = ledger
        .step(
            "hopeless",
            Phase::Try,
            Protocol::TwoPc,
            &lines(&[("a", 11)]),
        )
        .await
        .unwrap();
    assert_eq!(refused_with(&hopeless), "out_of_stock");
    assert_eq!(stock(&mut conn, "a").await, 4);
    // Commit is idempotent, and an abort after commit is refused and changes nothing.
    for _ in 0..2 {
        assert_eq!(
            ledger
                .step("c", Phase::Commit, Protocol::TwoPc, &[])
                .await
                .unwrap(),
            Outcome::Done
        );
    }
    assert_eq!(held(&mut conn, "a").await, 0);
    let after = ledger
        .step("other", Phase::Try, Protocol::TwoPc, &lines(&[("a", 5)]))
        .await
        .unwrap();
    assert_eq!(
        refused_with(&after),
        "out_of_stock",
        "with nothing held, a shortage is final"
    );
    let abort = ledger
        .step("c", Phase::Cancel, Protocol::TwoPc, &[])
        .await
        .unwrap();
    assert_eq!(refused_with(&abort), "already_committed");
    assert_eq!(stock(&mut conn, "a").await, 4);
    // An aborted prepare returns its reservation once, and a commit after it is refused.
    assert_eq!(
        ledger
            .step("d", Phase::Try, Protocol::TwoPc, &lines(&[("a", 4)]))
            .await
            .unwrap(),
        Outcome::Done
    );
    assert_eq!(stock(&mut conn, "a").await, 0);
    ledger
        .step("d", Phase::Cancel, Protocol::TwoPc, &[])
        .await
        .unwrap();
    ledger
        .step("d", Phase::Cancel, Protocol::TwoPc, &[])
        .await
        .unwrap();
    assert_eq!(stock(&mut conn, "a").await, 4);
    let commit = ledger
        .step("d", Phase::Commit, Protocol::TwoPc, &[])
        .await
        .unwrap();
    assert_eq!(refused_with(&commit), "not_prepared");
}

#[tokio::test]
async fn concurrent_subtracts_never_lose_an_update_nor_go_negative() {
    let (_server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", 100).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.adjust("a", -1).await.unwrap() })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Adjusted::Ok(_)) {
            ok += 1;
        }
    }
    assert_eq!(ok, 100);
    assert_eq!(stock(&mut conn, "a").await, 0);
}

#[tokio::test]
async fn adjustments_are_exact_at_the_limits() {
    let (_server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", 0).await;
    assert_eq!(
        ledger.adjust("a", i64::MAX as i128).await.unwrap(),
        Adjusted::Ok(i64::MAX)
    );
    assert_eq!(ledger.adjust("a", 1).await.unwrap(), Adjusted::Overflow);
    assert_eq!(stock(&mut conn, "a").await, i64::MAX);
    assert_eq!(
        ledger.adjust("a", -(i64::MAX as i128)).await.unwrap(),
        Adjusted::Ok(0)
    );
    assert_eq!(ledger.adjust("a", -1).await.unwrap(), Adjusted::TooLittle);
    assert_eq!(
        ledger.adjust("missing", 1).await.unwrap(),
        Adjusted::NotFound
    );
    assert_eq!(stock(&mut conn, "a").await, 0);
}

#[tokio::test]
async fn a_try_waits_for_an_aborting_hold_instead_of_refusing() {
    let (_server, ledger, mut conn) = redis().await;
    item(&mut conn, "a", 1).await;
    let one = lines(&[("a", 1)]);
    assert_eq!(
        ledger
            .step("first", Phase::Try, Protocol::Saga, &one)
            .await
            .unwrap(),
        Outcome::Done
    );
    let waiting = {
        let (ledger, one) = (ledger.clone(), one.clone());
        tokio::spawn(async move { try_until_answered(&ledger, "second", &one).await })
    };
    // The first checkout fails elsewhere and is compensated: the waiting one gets the unit.
    ledger
        .step("first", Phase::Cancel, Protocol::Saga, &[])
        .await
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    assert_eq!(
        answered.expect("the waiting try got no answer").unwrap(),
        Outcome::Done
    );
    assert_eq!(
        (stock(&mut conn, "a").await, held(&mut conn, "a").await),
        (0, 1)
    );
    // A confirmed saga action releases its hold, and then a shortage is final at once.
    ledger
        .step("second", Phase::Commit, Protocol::Saga, &[])
        .await
        .unwrap();
    assert_eq!(held(&mut conn, "a").await, 0);
    let third = ledger
        .step("third", Phase::Try, Protocol::Saga, &one)
        .await
        .unwrap();
    assert_eq!(refused_with(&third), "out_of_stock");
    let undo = ledger
        .step("second", Phase::Cancel, Protocol::Saga, &[])
        .await
        .unwrap();
    assert_eq!(refused_with(&undo), "already_committed");
}

/// Asks again while the answer is busy, as the coordinator does.
async fn try_until_answered(ledger: &Ledger, tx: &str, lines: &[(String, i64)]) -> Outcome {
    loop {
        match ledger
            .step(tx, Phase::Try, Protocol::Saga, lines)
            .await
            .unwrap()
        {
            Outcome::Busy => tokio::time::sleep(Duration::from_millis(3)).await,
            answer => return answer,
        }
    }
}

#[tokio::test]
async fn accounts_that_do_not_wait_refuse_a_held_shortage_for_good() {
    let (_server, waiting, mut conn) = redis().await;
    let ledger = Ledger::new(conn.clone(), IMPATIENT);
    item(&mut conn, "a", 1).await;
    let one = lines(&[("a", 1)]);
    assert_eq!(
        ledger
            .step("first", Phase::Try, Protocol::Saga, &one)
            .await
            .unwrap(),
        Outcome::Done
    );
    let second = ledger
        .step("second", Phase::Try, Protocol::Saga, &one)
        .await
        .unwrap();
    assert_eq!(refused_with(&second), "out_of_stock");
    // The refusal is recorded: once the hold comes back, the same transaction still gets it.
    ledger
        .step("first", Phase::Cancel, Protocol::Saga, &[])
        .await
        .unwrap();
    let again = ledger
        .step("second", Phase::Try, Protocol::Saga, &one)
        .await
        .unwrap();
    assert_eq!(again, second);
    assert_eq!(stock(&mut conn, "a").await, 1);
    // A waiting ledger on the same accounts would have said busy instead.
    ledger
        .step("third", Phase::Try, Protocol::Saga, &one)
        .await
        .unwrap();
    let busy = waiting
        .step("fourth", Phase::Try, Protocol::Saga, &one)
        .await
        .unwrap();
    assert_eq!(busy, Outcome::Busy);
}
