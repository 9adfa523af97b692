//! The driver: `concurrency` workers, each sending one checkout at a time until the deadline,
//! the request budget or (distinct workload) the orders run out.
//!
//! Without a rate the loop is closed: a worker sends its next checkout as soon as the last one
//! is answered, so the offered load adapts to the system. With `rate` it is open: checkout `n`
//! of the run is due at `n / rate` seconds (worker `w` takes every `concurrency`-th slot), and
//! latency counts from the due time, so a system that falls behind sees its queueing delay in
//! the percentiles instead of hiding it (no coordinated omission). `concurrency` then caps the
//! checkouts in flight.
//!
//! Each worker keeps its own sample vector and URL buffer, so the hot loop shares nothing but
//! two relaxed counters; everything is aggregated after the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Api, Class};
use crate::workload::Ids;

/// How long and how hard to drive.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    /// Checkouts per second for an open loop; `None` for a closed loop.
    pub rate: Option<f64>,
}

/// Parses `--rate`: a positive, finite number of checkouts per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a positive number of checkouts per second"
        )),
    }
}

/// When slot `k` of worker `w` is due in an open loop: slots interleave across the workers so
/// that the whole run is evenly spaced at `rate`.
pub fn due_offset(worker: usize, k: u64, workers: usize, rate: f64) -> Duration {
    let n = k * workers as u64 + worker as u64;
    Duration::from_secs_f64(n as f64 / rate)
}

/// One checkout. Times are microseconds since the run's shared origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub order: u32,
    pub class: Class,
    pub start_us: u64,
    pub latency_us: u64,
}

impl Sample {
    pub fn done_us(&self) -> u64 {
        self.start_us + self.latency_us
    }
}

/// Everything one phase (warm-up or measured run) produced.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// When the phase started and when its last request finished, since the origin.
    pub start_us: u64,
    pub end_us: u64,
    pub samples: Vec<Sample>,
    /// A distinct workload stopped because every order had been checked out.
    pub exhausted: bool,
    /// CPU seconds this process used during the phase, where `/proc` tells.
    pub cpu_s: Option<f64>,
}

impl Record {
    pub fn elapsed_s(&self) -> f64 {
        self.end_us.saturating_sub(self.start_us) as f64 / 1e6
    }
}

/// User plus system CPU time of this process, from `/proc/self/stat` (Linux, 100 ticks/s).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = rest.next()?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn micros_since(origin: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(origin).as_micros() as u64
}

/// Runs one phase. `origin` is shared by all phases against the same population, so samples
/// of the warm-up and of the run can be ordered against each other.
pub async fn drive(api: &Api, ids: &Ids, plan: Plan, origin: Instant, label: &str) -> Record {
    ids.next_phase();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let deadline = started + plan.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));

    let workers: Vec<_> = (0..plan.concurrency.max(1))
        .map(|w| {
            let api = api.clone();
            let mut picker = ids.picker(w);
            let (issued, done, exhausted) = (issued.clone(), done.clone(), exhausted.clone());
            let (max, rate, workers) = (plan.max_requests, plan.rate, plan.concurrency.max(1));
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(1024);
                let mut url = String::with_capacity(api.base().len() + 32);
                for k in 0.. {
                    let due = match rate {
                        Some(rate) => {
                            let due = started + due_offset(w, k, workers, rate);
                            if due >= deadline {
                                break;
                            }
                            tokio::time::sleep_until(due.into()).await;
                            due
                        }
                        None => Instant::now(),
                    };
                    if due >= deadline {
                        break;
                    }
                    if max.is_some_and(|max| issued.fetch_add(1, Ordering::Relaxed) >= max) {
                        break;
                    }
                    let Some(order) = picker.next_id() else {
                        exhausted.store(true, Ordering::Relaxed);
                        break;
                    };
                    let class = api.checkout(order, &mut url).await;
                    samples.push(Sample {
                        order,
                        class,
                        start_us: micros_since(origin, due),
                        latency_us: due.elapsed().as_micros() as u64,
                    });
                    done.fetch_add(1, Ordering::Relaxed);
                }
                samples
            })
        })
        .collect();

    let progress = tokio::spawn(report_progress(done.clone(), label.to_owned()));
    let mut samples = Vec::new();
    for w in futures::future::join_all(workers).await {
        // A worker only ends by returning; a panic here is a bug worth surfacing.
        samples.extend(w.expect("worker task panicked"));
    }
    progress.abort();

    let start_us = micros_since(origin, started);
    let end_us = samples
        .iter()
        .map(Sample::done_us)
        .max()
        .unwrap_or(start_us)
        .max(start_us);
    Record {
        start_us,
        end_us,
        samples,
        exhausted: exhausted.load(Ordering::Relaxed),
        cpu_s: cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before),
    }
}

/// A line on stderr every five seconds so a long run shows it is alive.
async fn report_progress(done: Arc<AtomicU64>, label: String) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let mut last = 0;
    let mut elapsed = 0;
    loop {
        tick.tick().await;
        elapsed += 5;
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "  {label}: {elapsed:>3} s, {now} checkouts, {:.0}/s over the last 5 s",
            (now - last) as f64 / 5.0
        );
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_readable_and_grows() {
        let before = cpu_seconds().expect("/proc/self/stat on Linux");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds().unwrap() >= before);
    }

    #[test]
    fn rate_must_be_positive() {
        assert_eq!(parse_rate("1500"), Ok(1500.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-3", "NaN", "inf", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_loop_slots_are_evenly_spaced_across_workers() {
        let (workers, rate) = (4, 1000.0);
        let mut due: Vec<Duration> = (0..workers)
            .flat_map(|w| (0..25).map(move |k| due_offset(w, k, workers, rate)))
            .collect();
        due.sort();
        for (n, d) in due.iter().enumerate() {
            assert_eq!(d.as_micros(), n as u128 * 1000);
        }
    }
}
