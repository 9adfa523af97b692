//! A property test of the ledger's scripts: random sequences of tries, commits and cancels
//! (repeated and out of order) interleaved with direct adds and takes, with amounts drawn
//! around 0, 2^53 and i64::MAX, run on a real Redis and compared after every step with a
//! pure model of what the ledger promises. The model also checks the invariant and
//! conservation, so a script that agrees with it keeps them too.

use std::time::Duration;

use common::Code;
use common::ledger::{Direction, Ledger};
use common::protocol::{Outcome, Phase, Protocol};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use testkit::TestRedis;

use common::ledger::ITEMS;

use super::{RETENTION, step};

const ACCOUNTS: [&str; 3] = ["a", "b", "c"];
const TXS: usize = 4;
const MAX: i128 = i64::MAX as i128;

#[derive(Clone, Copy, Debug)]
enum Op {
    Step(usize, Phase),
    Add(usize, i64),
    Take(usize, i64),
}

#[derive(Clone, Debug)]
struct Case {
    initial: [i64; 3],
    txs: Vec<(Protocol, Vec<(usize, i64)>)>,
    ops: Vec<Op>,
}

/// The amounts where doubles and 64-bit integers part ways, and a few ordinary ones.
fn amount() -> impl Strategy<Value = i64> {
    let p53 = 1i64 << 53;
    prop_oneof![
        3 => 0i64..4,
        1 => prop::sample::select(vec![
            p53 - 1, p53, p53 + 1, p53 + 3, p53 + 4,
            i64::MAX / 2, i64::MAX / 2 + 1, i64::MAX - 1, i64::MAX,
        ]),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let protocol = prop_oneof![Just(Protocol::Saga), Just(Protocol::TwoPc)];
    let lines = prop::collection::vec((0..ACCOUNTS.len(), amount()), 1..3);
    let phase = prop_oneof![Just(Phase::Try), Just(Phase::Commit), Just(Phase::Cancel)];
    let op = prop_oneof![
        6 => (0..TXS, phase).prop_map(|(tx, phase)| Op::Step(tx, phase)),
        1 => (0..ACCOUNTS.len(), amount()).prop_map(|(a, x)| Op::Add(a, x)),
        1 => (0..ACCOUNTS.len(), amount()).prop_map(|(a, x)| Op::Take(a, x)),
    ];
    (
        prop::array::uniform3(amount()),
        prop::collection::vec((protocol, lines), TXS),
        prop::collection::vec(op, 1..30),
    )
        .prop_map(|(initial, txs, ops)| Case { initial, txs, ops })
}

/// A step record, as the model keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Taken,
    Committed,
    Undone,
    Cancelled,
    Refused,
}

#[derive(Debug)]
struct Model {
    available: [i128; 3],
    held: [i128; 3],
    steps: [Option<St>; TXS],
    /// What committed steps took out for good, and what direct changes moved.
    sold: i128,
    added: i128,
    initial: i128,
}

/// What an operation answered: an outcome's code, or an adjustment's value or error code.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Done,
    Busy,
    Refused(Code),
    Value(i64),
    Error(String),
}

impl Model {
    fn new(initial: [i64; 3]) -> Self {
        Self {
            available: initial.map(i128::from),
            held: [0; 3],
            steps: [None; TXS],
            sold: 0,
            added: 0,
            initial: initial.iter().map(|&x| i128::from(x)).sum(),
        }
    }

    /// The lines of a try, merged by account in order of first appearance, as the ledger does.
    fn merged(lines: &[(usize, i64)]) -> Vec<(usize, i128)> {
        let mut merged: Vec<(usize, i128)> = Vec::new();
        for &(a, x) in lines {
            match merged.iter_mut().find(|(b, _)| *b == a) {
                Some((_, sum)) => *sum += i128::from(x),
                None => merged.push((a, i128::from(x))),
            }
        }
        merged
    }

    fn step(&mut self, tx: usize, phase: Phase, case: &Case) -> Answer {
        let lines = Self::merged(&case.txs[tx].1);
        match (phase, self.steps[tx]) {
            (Phase::Try, Some(St::Taken | St::Committed)) => Answer::Done,
            (Phase::Try, Some(St::Refused)) => Answer::Refused(Code::OutOfStock),
            (Phase::Try, Some(_)) => Answer::Refused(Code::Cancelled),
            (Phase::Try, None) => {
                for &(a, want) in &lines {
                    if self.available[a] < want {
                        let held = self.held[a];
                        if held > 0 && self.available[a] + held >= want {
                            return Answer::Busy;
                        }
                        self.steps[tx] = Some(St::Refused);
                        return Answer::Refused(Code::OutOfStock);
                    }
                }
                for &(a, want) in &lines {
                    self.available[a] -= want;
                    self.held[a] += want;
                }
                self.steps[tx] = Some(St::Taken);
                Answer::Done
            }
            (Phase::Commit, Some(St::Taken)) => {
                for &(a, x) in &lines {
                    self.held[a] -= x;
                    self.sold += x;
                }
                self.steps[tx] = Some(St::Committed);
                Answer::Done
            }
            (Phase::Commit, Some(St::Committed)) => Answer::Done,
            (Phase::Commit, _) => Answer::Refused(Code::NotPrepared),
            (Phase::Cancel, None) => {
                self.steps[tx] = Some(St::Cancelled);
                Answer::Done
            }
            (Phase::Cancel, Some(St::Taken)) => {
                for &(a, x) in &lines {
                    self.held[a] -= x;
                    self.available[a] += x;
                }
                self.steps[tx] = Some(St::Undone);
                Answer::Done
            }
            (Phase::Cancel, Some(St::Committed)) => Answer::Refused(Code::AlreadyCommitted),
            (Phase::Cancel, Some(_)) => Answer::Done,
        }
    }

    fn adjust(&mut self, a: usize, direction: Direction, x: i64) -> Answer {
        let x = i128::from(x);
        match direction {
            Direction::Add if self.available[a] + x + self.held[a] > MAX => {
                Answer::Error("bad_input".into())
            }
            Direction::Add => {
                self.available[a] += x;
                self.added += x;
                Answer::Value(self.available[a] as i64)
            }
            Direction::Take if self.available[a] < x => Answer::Error("out_of_stock".into()),
            Direction::Take => {
                self.available[a] -= x;
                self.added -= x;
                Answer::Value(self.available[a] as i64)
            }
        }
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        for a in 0..ACCOUNTS.len() {
            let (available, held) = (self.available[a], self.held[a]);
            prop_assert!(available >= 0 && held >= 0 && available + held <= MAX);
        }
        let now: i128 = (0..ACCOUNTS.len())
            .map(|a| self.available[a] + self.held[a])
            .sum();
        prop_assert_eq!(now, self.initial + self.added - self.sold, "conservation");
        Ok(())
    }
}

async fn run_case(
    ledger: &Ledger,
    mut conn: ConnectionManager,
    case: Case,
) -> Result<(), TestCaseError> {
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    for (a, initial) in ACCOUNTS.iter().zip(case.initial) {
        let _: () = conn
            .hset_multiple(
                format!("item:{a}"),
                &[("stock", initial), ("held", 0), ("price", 1)],
            )
            .await
            .unwrap();
    }
    let mut model = Model::new(case.initial);
    for (i, op) in case.ops.iter().enumerate() {
        let (expected, actual) = match *op {
            Op::Step(tx, phase) => {
                let (protocol, lines) = &case.txs[tx];
                let lines: Vec<(&str, i64)> =
                    lines.iter().map(|&(a, x)| (ACCOUNTS[a], x)).collect();
                let actual = match ledger
                    .step(&format!("tx{tx}"), &step(phase, *protocol, &lines))
                    .await
                {
                    Ok(Outcome::Done) => Answer::Done,
                    Ok(Outcome::Busy) => Answer::Busy,
                    Ok(Outcome::Refused(r)) => Answer::Refused(r.code),
                    Err(e) => Answer::Error(e.to_string()),
                };
                (model.step(tx, phase, &case), actual)
            }
            Op::Add(a, x) | Op::Take(a, x) => {
                let direction = if matches!(op, Op::Add(..)) {
                    Direction::Add
                } else {
                    Direction::Take
                };
                let actual = match ledger.adjust(ACCOUNTS[a], direction, x).await {
                    Ok(v) => Answer::Value(v),
                    Err(e) => Answer::Error(e.status_and_code().1.to_string()),
                };
                (model.adjust(a, direction, x), actual)
            }
        };
        prop_assert_eq!(&actual, &expected, "op {} {:?}", i, op);
        model.check_invariants()?;
        for (a, name) in ACCOUNTS.iter().enumerate() {
            let (available, held): (i64, i64) = redis::cmd("HMGET")
                .arg(format!("item:{name}"))
                .arg("stock")
                .arg("held")
                .query_async(&mut conn)
                .await
                .unwrap();
            prop_assert_eq!(
                (i128::from(available), i128::from(held)),
                (model.available[a], model.held[a]),
                "account {} after op {} {:?}",
                name,
                i,
                op
            );
        }
    }
    Ok(())
}

#[test]
fn the_ledger_matches_its_model_at_every_edge() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = TestRedis::start(&[]);
    let conn = rt
        .block_on(common::db::connect(&server.url(), Duration::from_secs(10)))
        .unwrap();
    let ledger = Ledger::new(conn.clone(), ITEMS, RETENTION);
    let cases = std::env::var("MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        rt.block_on(run_case(&ledger, conn.clone(), case))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
