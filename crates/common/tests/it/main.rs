//! The participants' Lua scripts against a real redis-server.
//!
//! - `ledger` — exactly-once steps, duplicate and reordered commands, compensation before
//!   action, holds, exact limits, no lost updates under races.
//! - `model` — a property test: random sequences of steps and direct adjustments, with
//!   amounts around 2^53 and i64::MAX, compared step by step with a pure model.

mod decisions;
mod ledger;
mod model;

use std::time::Duration;

use common::ledger::{AccountKind, ITEMS, Ledger};
use common::protocol::{Phase, Protocol, Step};
use redis::aio::ConnectionManager;
use testkit::TestRedis;

/// The same accounts, but refusing at once when short, as payment does.
pub const IMPATIENT: AccountKind = AccountKind {
    waits_for_holds: false,
    ..ITEMS
};

pub const RETENTION: Duration = Duration::from_secs(600);

/// A private Redis, a ledger of items on it, and a raw connection to inspect it.
pub async fn redis() -> (TestRedis, Ledger, ConnectionManager) {
    let server = TestRedis::start(&[]);
    let conn = common::db::connect(&server.url(), Duration::from_secs(10))
        .await
        .unwrap();
    (server, Ledger::new(conn.clone(), ITEMS, RETENTION), conn)
}

pub fn step(phase: Phase, protocol: Protocol, lines: &[(&str, i64)]) -> Step {
    Step {
        phase,
        protocol,
        lines: lines.iter().map(|(id, q)| (id.to_string(), *q)).collect(),
    }
}
