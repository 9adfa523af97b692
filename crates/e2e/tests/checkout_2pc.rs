//! The checkout suite under two-phase commit.
const PROTOCOL: e2e::Protocol = e2e::Protocol::TwoPc;
#[path = "suite/checkout.rs"]
mod checkout;
