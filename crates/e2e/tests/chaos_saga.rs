//! The crash-everything suite under the saga protocol, two replicas of each service.
const PROTOCOL: e2e::Protocol = e2e::Protocol::Saga;
#[path = "suite/chaos.rs"]
mod chaos;
