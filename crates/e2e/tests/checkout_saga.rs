//! The checkout suite under the saga protocol.
const PROTOCOL: e2e::Protocol = e2e::Protocol::Saga;
#[path = "suite/checkout.rs"]
mod checkout;
