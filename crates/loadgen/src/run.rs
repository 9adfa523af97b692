//! The driver: sends checkouts until the deadline, the request budget or (distinct workload)
//! the orders run out, and records every answer.
//!
//! Without a rate the loop is closed: `concurrency` workers each send their next checkout as
//! soon as the last one is answered, so the offered load adapts to the system. With `rate` it
//! is open: checkout `n` of the phase is sent at `n / rate` seconds whatever happened to the
//! earlier ones (one task per checkout, no cap on those in flight), each is abandoned after
//! the client timeout, and latency counts from the due time, so a system that falls behind
//! sees its queueing delay in the percentiles instead of hiding it (no coordinated omission).
//!
//! Samples are kept per worker (closed loop) or per task (open loop) and aggregated after the
//! phase; [`Live`] counts answers as they come, for progress lines and interval sampling.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::client::{Api, Class};
use crate::stats;
use crate::workload::{Ids, Picker};

/// How long and how hard to drive.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Workers of a closed loop (ignored by an open loop).
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    /// Checkouts per second for an open loop; `None` for a closed loop.
    pub rate: Option<f64>,
    /// A checkout still unanswered after this long is abandoned and counted as a timeout.
    pub client_timeout: Option<Duration>,
}

/// How the load is offered, as the `run`, `bench` and `soak` commands take it.
#[derive(Clone, Copy, Debug, PartialEq, clap::Args)]
pub struct Load {
    /// Checkouts in flight at any time (closed loop).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Open loop at this many checkouts per second instead of a closed loop: checkouts are
    /// sent on a fixed schedule whatever the answers, latency counted from the due time.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open loop: a checkout unanswered after this many milliseconds is abandoned and counted
    /// as a timeout.
    #[arg(long, default_value_t = 2000)]
    pub client_timeout_ms: u64,
}

impl Load {
    pub fn plan(&self, duration: Duration, max_requests: Option<u64>) -> Plan {
        Plan {
            concurrency: self.concurrency,
            duration,
            max_requests,
            rate: self.rate,
            client_timeout: self
                .rate
                .map(|_| Duration::from_millis(self.client_timeout_ms)),
        }
    }

    /// Connections the HTTP client keeps open.
    pub fn pool(&self) -> usize {
        match self.rate {
            // What is in flight at the rate, if each takes up to ~50 ms.
            Some(rate) => (rate / 20.0).ceil().max(self.concurrency as f64) as usize,
            None => self.concurrency,
        }
    }
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

/// When checkout `n` of an open loop is due, after the phase's start.
pub fn due_offset(n: u64, rate: f64) -> Duration {
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

/// Answers since the last [`Live::take`].
#[derive(Debug)]
pub struct Window {
    pub requests: u64,
    /// Anything but a 2xx.
    pub errors: u64,
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            requests: 0,
            errors: 0,
            latency: stats::new_histogram(),
        }
    }
}

/// Answers counted as they arrive, shared by the driver and whoever watches it.
#[derive(Debug, Default)]
pub struct Live {
    done: AtomicU64,
    window: Mutex<Window>,
}

impl Live {
    pub fn record(&self, s: &Sample) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let mut w = self.window.lock().expect("not poisoned");
        w.requests += 1;
        w.errors += u64::from(s.class != Class::Ok);
        stats::record(&mut w.latency, s.latency_us);
    }

    /// Answers so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The answers since the last call, and a fresh window.
    pub fn take(&self) -> Window {
        std::mem::take(&mut *self.window.lock().expect("not poisoned"))
    }
}

/// User plus system CPU time of this process, from `/proc/self/stat`.
pub fn cpu_seconds() -> Option<f64> {
    crate::procfs::self_cpu_seconds()
}

fn micros_since(origin: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(origin).as_micros() as u64
}

/// Runs one phase. `origin` is shared by all phases against the same population, so samples
/// of the warm-up and of the run can be ordered against each other.
pub async fn drive(api: &Api, ids: &Ids, plan: Plan, origin: Instant, label: &str) -> Record {
    drive_live(api, ids, plan, origin, label, Arc::default()).await
}

/// [`drive`], counting every answer in `live` as it arrives.
pub async fn drive_live(
    api: &Api,
    ids: &Ids,
    plan: Plan,
    origin: Instant,
    label: &str,
    live: Arc<Live>,
) -> Record {
    ids.next_phase();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let progress = tokio::spawn(report_progress(live.clone(), label.to_owned()));
    let phase = Phase {
        api: api.clone(),
        origin,
        started,
        deadline: started + plan.duration,
        plan,
        issued: Arc::default(),
        exhausted: Arc::default(),
        live,
    };
    let samples = match plan.rate {
        Some(rate) => phase.open_loop(ids.picker(0), rate).await,
        None => phase.closed_loop(ids).await,
    };
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
        exhausted: phase.exhausted.load(Ordering::Relaxed),
        cpu_s: cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before),
    }
}

/// What every worker or task of one phase shares.
#[derive(Clone)]
struct Phase {
    api: Api,
    origin: Instant,
    started: Instant,
    deadline: Instant,
    plan: Plan,
    issued: Arc<AtomicU64>,
    exhausted: Arc<AtomicBool>,
    live: Arc<Live>,
}

impl Phase {
    /// The next order to check out, or `None` when the budget or the orders are used up.
    fn next_order(&self, picker: &mut Picker) -> Option<u32> {
        let issued = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.plan.max_requests.is_some_and(|max| issued >= max) {
            return None;
        }
        let order = picker.next_id();
        if order.is_none() {
            self.exhausted.store(true, Ordering::Relaxed);
        }
        order
    }

    /// One checkout due at `due`; records and returns its sample.
    async fn checkout(&self, order: u32, due: Instant, url: &mut String) -> Sample {
        let answer = self.api.checkout(order, url);
        let class = match self.plan.client_timeout {
            Some(t) => tokio::time::timeout_at((due + t).into(), answer)
                .await
                .unwrap_or(Class::Timeout),
            None => answer.await,
        };
        let sample = Sample {
            order,
            class,
            start_us: micros_since(self.origin, due),
            latency_us: due.elapsed().as_micros() as u64,
        };
        self.live.record(&sample);
        sample
    }

    async fn closed_loop(&self, ids: &Ids) -> Vec<Sample> {
        let workers: Vec<_> = (0..self.plan.concurrency.max(1))
            .map(|w| {
                let phase = self.clone();
                let mut picker = ids.picker(w);
                tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(1024);
                    let mut url = String::with_capacity(phase.api.base().len() + 32);
                    while Instant::now() < phase.deadline {
                        let Some(order) = phase.next_order(&mut picker) else {
                            break;
                        };
                        samples.push(phase.checkout(order, Instant::now(), &mut url).await);
                    }
                    samples
                })
            })
            .collect();
        let mut samples = Vec::new();
        for w in futures::future::join_all(workers).await {
            // A worker only ends by returning; a panic here is a bug worth surfacing.
            samples.extend(w.expect("worker task panicked"));
        }
        samples
    }

    /// One task per checkout, spawned on schedule; finished ones are collected as it goes.
    async fn open_loop(&self, mut picker: Picker, rate: f64) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut tasks = JoinSet::new();
        for n in 0.. {
            let due = self.started + due_offset(n, rate);
            if due >= self.deadline {
                break;
            }
            let Some(order) = self.next_order(&mut picker) else {
                break;
            };
            tokio::time::sleep_until(due.into()).await;
            let phase = self.clone();
            tasks.spawn(async move { phase.checkout(order, due, &mut String::new()).await });
            while let Some(done) = tasks.try_join_next() {
                samples.push(done.expect("checkout task panicked"));
            }
        }
        while let Some(done) = tasks.join_next().await {
            samples.push(done.expect("checkout task panicked"));
        }
        samples
    }
}

/// A line on stderr every five seconds so a long run shows it is alive.
async fn report_progress(live: Arc<Live>, label: String) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let mut last = 0;
    let mut elapsed = 0;
    loop {
        tick.tick().await;
        elapsed += 5;
        let now = live.done();
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
        // Busy work until the counter shows 0.1 s more; a counter that is stuck (or counts
        // something else) never gets there.
        let before = cpu_seconds().expect("/proc/self/stat on Linux");
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        while cpu_seconds().unwrap() < before + 0.1 {
            assert!(
                Instant::now() < give_up,
                "20 s of busy work, CPU time stuck"
            );
            for i in 0..1_000_000u64 {
                x = x.wrapping_add(i * i);
            }
            std::hint::black_box(x);
        }
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
    fn open_loop_slots_are_evenly_spaced() {
        for n in 0..100 {
            assert_eq!(due_offset(n, 1000.0).as_micros(), u128::from(n) * 1000);
        }
    }
}
