//! The closed-loop driver: `concurrency` workers, each sending one checkout at a time until the
//! deadline, the request budget or (distinct workload) the orders run out.
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
}

impl Record {
    pub fn elapsed_s(&self) -> f64 {
        self.end_us.saturating_sub(self.start_us) as f64 / 1e6
    }
}

fn micros_since(origin: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(origin).as_micros() as u64
}

/// Runs one phase. `origin` is shared by all phases against the same population, so samples
/// of the warm-up and of the run can be ordered against each other.
pub async fn drive(api: &Api, ids: &Ids, plan: Plan, origin: Instant, label: &str) -> Record {
    ids.next_phase();
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
            let max = plan.max_requests;
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(1024);
                let mut url = String::with_capacity(api.base().len() + 32);
                while Instant::now() < deadline {
                    if max.is_some_and(|max| issued.fetch_add(1, Ordering::Relaxed) >= max) {
                        break;
                    }
                    let Some(order) = picker.next_id() else {
                        exhausted.store(true, Ordering::Relaxed);
                        break;
                    };
                    let t = Instant::now();
                    let class = api.checkout(order, &mut url).await;
                    let latency_us = t.elapsed().as_micros() as u64;
                    samples.push(Sample {
                        order,
                        class,
                        start_us: micros_since(origin, t),
                        latency_us,
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
