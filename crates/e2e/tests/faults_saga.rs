//! Crash tests under the saga protocol.
const PROTOCOL: e2e::Protocol = e2e::Protocol::Saga;
#[path = "suite/faults.rs"]
mod faults;
