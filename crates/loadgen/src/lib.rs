//! Load generator and consistency checker for the webshop, behind `make bench`.
//!
//! It drives the public HTTP API through the gateway (DESIGN.md §1) and nothing else:
//!
//! * [`client`]: the pooled HTTP client and the response types it reads.
//! * [`populate`]: the data set and the three `batch_init` calls that load it.
//! * [`workload`]: which order each checkout targets (`distinct` or the course's `random` mix).
//! * [`run`]: the driver (closed loop, or open loop at a fixed rate) that sends checkouts and
//!   records every answer.
//! * [`stats`]: throughput, latency percentiles and the per-second series of a run.
//! * [`answers`]: what the clients were told, per order, for the verifier to hold the system to.
//! * [`verify`]: reading all state back and the consistency verdict.
//! * [`procfs`] and [`components`]: CPU time and resident memory of the stack's components.
//! * [`bench`]: the whole benchmark: fresh stacks, both protocols, both workloads.
//! * [`report`] and [`plot`]: the table, `.bench/results.json` and `.bench/bench.svg`.
//! * [`soak`]: sustained load for many minutes; [`watch`] samples memory and disk over time,
//!   [`growth`] judges whether they level off, [`plot_series`] draws time series.
//! * [`outage`]: an open loop while the Kafka broker is frozen, second by second.
//! * [`compare`]: two builds, or two settings, side by side in interleaved pairs of runs.

pub mod answers;
pub mod bench;
pub mod client;
pub mod compare;
pub mod components;
pub mod fresh_stack;
pub mod growth;
pub mod outage;
pub mod plot;
pub mod plot_series;
pub mod populate;
pub mod procfs;
pub mod report;
pub mod run;
pub mod soak;
pub mod stats;
pub mod verify;
pub mod watch;
pub mod workload;
