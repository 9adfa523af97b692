//! The broker's warm-up at start: checkouts' messages on topics of their own
//! (`common::bus::warmup`) until the broker's JIT compilers fall quiet.
//!
//! Why: the first 25 s of a benchmark on a fresh stack cost the broker twice the CPU per
//! checkout they cost later, all of it the JVM interpreting and compiling Kafka's request
//! path (docs/benchmark.md, ninth pass). Users benchmark right after `make up`.
//!
//! When to stop is read from the broker itself: the CPU time of its `C1`/`C2` compiler
//! threads (`/proc/PID/task/*/stat`). While the warm-up's load still makes the JVM compile,
//! so would the first checkouts; once the compilers have been nearly idle for
//! [`QUIET_SECONDS`] seconds in a row, the paths a checkout takes are compiled.

use std::time::Duration;

use tracing::{debug, info, warn};

use common::bus::warmup;

use crate::config::{PortLayout, StackConfig};
use crate::procs;

/// Compiler CPU per second under which a second counts as quiet: a tenth of a core.
const QUIET_TICKS_PER_S: u64 = 10;
/// Quiet seconds in a row that end the warm-up.
const QUIET_SECONDS: u32 = 2;
/// Seconds the warm-up always runs: the first checkouts make the compilers start.
const AT_LEAST_S: u64 = 3;

/// Warms the broker up, at most `cfg.kafka_warmup_s` seconds; logs what it did. Every
/// failure is only logged: the stack works without a warm-up, only slower at first.
pub async fn warm_broker(cfg: &StackConfig, ports: &PortLayout) {
    let limit = Duration::from_secs(cfg.kafka_warmup_s.into());
    let Some(broker) = procs::read_pid(&cfg.pid_file("kafka")) else {
        return warn!("no broker pid; no warm-up");
    };
    let brokers = format!("127.0.0.1:{}", ports.kafka);
    let partitions = cfg.partitions().to_string();
    // The knobs of `make up`'s environment (KAFKA_LINGER_MS, ...) reach the services too.
    let settings = common::settings::Settings::from_lookup(|key| match key {
        "KAFKA_BROKERS" => Some(brokers.clone()),
        "KAFKA_PARTITIONS" => Some(partitions.clone()),
        _ => std::env::var(key).ok(),
    });
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return warn!(error = %e, "no warm-up"),
    };
    let mut watch = QuietWatch::default();
    let mut compiled = compiler_ticks(broker);
    let mut done = 0;
    let mut second = 0;
    let enough = |checkouts: u64| {
        let now = compiler_ticks(broker);
        let ticks = now.saturating_sub(compiled);
        debug!(
            second,
            checkouts = checkouts - done,
            compiler_ms = ticks * 10,
            "warming the broker"
        );
        (compiled, done, second) = (now, checkouts, second + 1);
        watch.quiet(ticks) && second >= AT_LEAST_S
    };
    let warm_up = common::bus::warmup::run(&settings, enough, limit);
    let Ok(warmed) = tokio::time::timeout(limit + warmup::PAST_LIMIT, warm_up).await else {
        return warn!(
            "broker warm-up abandoned after {:?}",
            limit + warmup::PAST_LIMIT
        );
    };
    match warmed {
        Ok(w) if !w.enough => info!(
            "broker warmed up by {} checkouts in {:.1?}, its limit; its JIT was still compiling",
            w.checkouts, w.elapsed
        ),
        Ok(w) => info!(
            "broker warmed up by {} checkouts in {:.1?}, until its JIT fell quiet",
            w.checkouts, w.elapsed
        ),
        Err(e) => warn!(error = %e, "broker warm-up failed"),
    }
}

/// Counts quiet seconds in a row.
#[derive(Debug, Default)]
struct QuietWatch {
    in_a_row: u32,
}

impl QuietWatch {
    /// Takes one second's compiler ticks; true once [`QUIET_SECONDS`] in a row were quiet.
    fn quiet(&mut self, ticks: u64) -> bool {
        self.in_a_row = if ticks < QUIET_TICKS_PER_S {
            self.in_a_row + 1
        } else {
            0
        };
        self.in_a_row >= QUIET_SECONDS
    }
}

/// CPU time, in ticks of `USER_HZ`, of the JVM `pid`'s JIT compiler threads so far (0 when
/// it cannot be read: the warm-up then runs until its limit).
fn compiler_ticks(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| is_compiler_thread(name.trim()))
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| procs::parse_stat(&stat))
        .map(|stat| stat.own_ticks)
        .sum()
}

/// HotSpot names its JIT threads `C1 CompilerThread0`, `C2 CompilerThread1`, ...; the kernel
/// keeps the first 15 bytes.
fn is_compiler_thread(name: &str) -> bool {
    name.starts_with("C1 CompilerThre") || name.starts_with("C2 CompilerThre")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_takes_two_quiet_seconds_in_a_row() {
        let mut watch = QuietWatch::default();
        let said: Vec<bool> = [40, 3, 12, 2, 0, 1].map(|t| watch.quiet(t)).into();
        assert_eq!(said, [false, false, false, false, true, true]);
    }

    #[test]
    fn compiler_threads_are_told_by_their_truncated_names() {
        assert!(is_compiler_thread("C2 CompilerThre"));
        assert!(is_compiler_thread("C1 CompilerThre"));
        assert!(!is_compiler_thread("data-plane-kafk"));
        assert!(!is_compiler_thread("VM Thread"));
    }

    #[test]
    fn this_process_has_no_compiler_threads() {
        assert_eq!(compiler_ticks(std::process::id()), 0);
    }
}
