//! Service tests without a stack: each test spawns the services it needs in this process
//! (`e2e::spawn`), each on port 0 with a private Redis, beside one Kafka broker shared by
//! the whole binary.
//!
//! - `participants` — the HTTP APIs of stock and payment, each test run against both.
//! - `shop` — checkout through an in-process order service, with stock and payment beside it.
//! - `topics` — topics grow with `KAFKA_PARTITIONS` when a shop starts again with more.

mod participants;
mod shop;
mod topics;
