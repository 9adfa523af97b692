//! Crash tests under two-phase commit.
const PROTOCOL: e2e::Protocol = e2e::Protocol::TwoPc;
#[path = "suite/faults.rs"]
mod faults;
