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
const QUIET_TICKS_PER_S: u64 = procs::TICKS_PER_S / 10;
/// Quiet seconds in a row that end the warm-up.
const QUIET_SECONDS: u32 = 2;
/// Seconds with checkouts the warm-up always runs: until the consumer groups have formed,
/// nothing reaches the request path, and the compilers may well be quiet.
const AT_LEAST_S: u32 = 3;

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
            compiler_ms = ticks * 1000 / procs::TICKS_PER_S,
            "warming the broker"
        );
        let settled = watch.settled(checkouts - done, ticks);
        (compiled, done, second) = (now, checkouts, second + 1);
        settled
    };
    let warm_up = warmup::run(&settings, enough, limit);
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

/// Tells when the broker's JIT has fallen quiet under the warm-up's load, one second at a time.
#[derive(Debug, Default)]
struct QuietWatch {
    /// Seconds in which checkouts were done.
    busy: u32,
    /// Quiet seconds in a row among those.
    quiet: u32,
}

impl QuietWatch {
    /// Takes one second's checkouts and compiler ticks; true once the warm-up ran checkouts
    /// for [`AT_LEAST_S`] seconds and the last [`QUIET_SECONDS`] of them were quiet. A second
    /// without checkouts (groups still forming, the broker stalled) starts the quiet count over.
    fn settled(&mut self, checkouts: u64, ticks: u64) -> bool {
        if checkouts == 0 {
            self.quiet = 0;
            return false;
        }
        self.busy += 1;
        self.quiet = if ticks < QUIET_TICKS_PER_S {
            self.quiet + 1
        } else {
            0
        };
        self.busy >= AT_LEAST_S && self.quiet >= QUIET_SECONDS
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

    /// (checkouts, compiler ticks) a second apart: the seconds at which the watch is settled.
    fn settled_at(seconds: &[(u64, u64)]) -> Vec<usize> {
        let mut watch = QuietWatch::default();
        (0..seconds.len())
            .filter(|&i| watch.settled(seconds[i].0, seconds[i].1))
            .collect()
    }

    #[test]
    fn settled_after_two_quiet_seconds_in_a_row() {
        let busy = [
            (500, 60),
            (900, 40),
            (1000, 3),
            (1200, 12),
            (1500, 2),
            (1600, 0),
        ];
        assert_eq!(settled_at(&busy), [5]);
    }

    #[test]
    fn quiet_seconds_before_the_checkouts_flow_do_not_count() {
        // The groups take three seconds to form, the compilers idle meanwhile.
        let late = [
            (0, 0),
            (0, 0),
            (0, 1),
            (200, 2),
            (800, 1),
            (900, 0),
            (950, 0),
        ];
        assert_eq!(settled_at(&late), [5, 6]);
        // A stall in the middle starts the quiet count over.
        let stalled = [(500, 1), (600, 1), (0, 0), (700, 2), (800, 2)];
        assert_eq!(settled_at(&stalled), [4]);
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
