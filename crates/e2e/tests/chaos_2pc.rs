//! The crash-everything suite under two-phase commit, two replicas of each service.
const PROTOCOL: e2e::Protocol = e2e::Protocol::TwoPc;
#[path = "suite/chaos.rs"]
mod chaos;
