//! The outage benchmark behind `make outage`: an open loop of distinct checkouts on a fresh
//! stack while the Kafka broker is frozen (SIGSTOP) for a while and then thawed (SIGCONT).
//!
//! Checkouts arrive at a fixed rate whatever happens to the earlier ones, each abandoned after
//! the client timeout, so the figures show what a client sees during a hung broker: how much
//! is still answered 2xx in time (goodput), how much is refused at once with 503 (admission
//! control), how much times out, and whether the order service's memory stays bounded while
//! it cannot finish anything. Per second of arrival; the order service's RSS is sampled every
//! second. The broker is thawed on every way out (end, error, Ctrl-C, panic): see [`Frozen`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use stack::Stack;

use crate::answers::Answers;
use crate::client::{Api, Class};
use crate::components;
use crate::fresh_stack::{FreshStack, Harness, with_fresh_stack};
use crate::plot_series::{self, Panel};
use crate::populate::{Population, populate};
use crate::run::{Live, Load, Record, drive_live};
use crate::verify::Verdict;
use crate::workload::{Ids, Workload};

#[derive(Clone, Debug, clap::Args)]
pub struct OutageArgs {
    /// Checkout protocol of the stack.
    #[arg(long, default_value = "saga")]
    pub protocol: String,
    /// Checkouts arriving per second (open loop).
    #[arg(long, default_value_t = 600.0, value_parser = crate::run::parse_rate)]
    pub rate: f64,
    /// A checkout unanswered after this many milliseconds is abandoned (a timeout).
    #[arg(long, default_value_t = 2000)]
    pub client_timeout_ms: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 70)]
    pub duration: u64,
    /// Second of the run at which the broker is frozen (SIGSTOP).
    #[arg(long, default_value_t = 10)]
    pub freeze_from: u64,
    /// Second of the run at which the broker is thawed (SIGCONT).
    #[arg(long, default_value_t = 40)]
    pub freeze_to: u64,
    /// The recovery figure: share of the arrivals from this second on answered 2xx in time.
    #[arg(long, default_value_t = 50)]
    pub recovered_from: u32,
    /// Seconds to wait after the load before reading back, for the checkouts that timed out
    /// to finish.
    #[arg(long, default_value_t = 30)]
    pub settle_s: u64,
    #[command(flatten)]
    pub harness: Harness,
    #[command(flatten)]
    pub population: Population,
}

/// Arrivals and what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub arrivals: u64,
    /// Answered 2xx within the client timeout.
    pub ok: u64,
    /// Answered 503.
    pub unavailable: u64,
    /// Abandoned at the client timeout.
    pub timeouts: u64,
    /// Anything else: 4xx, other 5xx, connection errors.
    pub other: u64,
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            arrivals: self.arrivals + o.arrivals,
            ok: self.ok + o.ok,
            unavailable: self.unavailable + o.unavailable,
            timeouts: self.timeouts + o.timeouts,
            other: self.other + o.other,
        }
    }
}

/// One second of arrivals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutageSecond {
    /// Seconds since the load started (by due time of the checkout).
    pub t: u32,
    #[serde(flatten)]
    pub counts: Counts,
    /// p99 latency of the 2xx answers, if there were any.
    pub p99_ok_ms: Option<f64>,
    /// The order service's RSS (all replicas), the largest sample taken in this second.
    pub order_rss_mib: Option<f64>,
}

/// The figures the acceptance uses, and totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutageSummary {
    #[serde(flatten)]
    pub counts: Counts,
    pub max_order_rss_mib: f64,
    pub recovered_from_s: u32,
    /// Share (0..=1) of the arrivals from `recovered_from_s` on answered 2xx in time.
    pub recovered_ok_share: f64,
}

/// What `outage.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutageReport {
    pub protocol: String,
    pub rate: f64,
    pub client_timeout_ms: u64,
    pub duration_s: u64,
    pub freeze_from_s: u64,
    pub freeze_to_s: u64,
    pub summary: OutageSummary,
    pub seconds: Vec<OutageSecond>,
    pub verdict: Option<Verdict>,
}

/// Buckets `record`'s samples by the second they were due, and joins the RSS samples
/// (seconds since the start, bytes).
pub fn per_second(record: &Record, timeout: Duration, rss: &[(f64, u64)]) -> Vec<OutageSecond> {
    let second_of = |us: u64| (us.saturating_sub(record.start_us) / 1_000_000) as usize;
    let n = record
        .samples
        .iter()
        .map(|s| second_of(s.start_us) + 1)
        .max()
        .unwrap_or(0);
    let mut out: Vec<OutageSecond> = (0..n)
        .map(|t| OutageSecond {
            t: t as u32,
            ..OutageSecond::default()
        })
        .collect();
    let mut latencies = vec![crate::stats::new_histogram(); n];
    let timeout_us = timeout.as_micros() as u64;
    for s in &record.samples {
        let t = second_of(s.start_us);
        let c = &mut out[t].counts;
        c.arrivals += 1;
        match s.class {
            Class::Ok if s.latency_us <= timeout_us => {
                c.ok += 1;
                crate::stats::record(&mut latencies[t], s.latency_us);
            }
            Class::Unavailable => c.unavailable += 1,
            Class::Timeout => c.timeouts += 1,
            _ => c.other += 1,
        }
    }
    for (sec, h) in out.iter_mut().zip(&latencies) {
        sec.p99_ok_ms = (!h.is_empty()).then(|| crate::stats::quantile_ms(h, 0.99));
    }
    for &(t, bytes) in rss {
        if let Some(sec) = out.get_mut(t as usize) {
            let mib = bytes as f64 / (1024.0 * 1024.0);
            sec.order_rss_mib = Some(sec.order_rss_mib.map_or(mib, |m| m.max(mib)));
        }
    }
    out
}

pub fn summarize(seconds: &[OutageSecond], recovered_from: u32) -> OutageSummary {
    let sum = |from: u32| -> Counts {
        seconds
            .iter()
            .filter(|s| s.t >= from)
            .fold(Counts::default(), |sum, s| sum + s.counts)
    };
    let late = sum(recovered_from);
    OutageSummary {
        counts: sum(0),
        max_order_rss_mib: seconds
            .iter()
            .filter_map(|s| s.order_rss_mib)
            .fold(0.0, f64::max),
        recovered_from_s: recovered_from,
        recovered_ok_share: if late.arrivals > 0 {
            late.ok as f64 / late.arrivals as f64
        } else {
            0.0
        },
    }
}

/// A process stopped with SIGSTOP; dropping it sends SIGCONT, so it is thawed on every way
/// out of the scope that froze it.
pub struct Frozen(u32);

impl Frozen {
    pub fn freeze(pid: u32) -> Result<Self> {
        stack::procs::signal(pid, Signal::SIGSTOP)?;
        Ok(Frozen(pid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = stack::procs::signal(self.0, Signal::SIGCONT) {
            eprintln!("  could not thaw pid {}: {e}", self.0);
        }
    }
}

pub async fn outage(args: OutageArgs) -> Result<()> {
    if args.freeze_from > args.freeze_to || args.freeze_to > args.duration {
        bail!("need --freeze-from <= --freeze-to <= --duration");
    }
    let needed = (args.rate * args.duration as f64).ceil() as u64;
    if needed > u64::from(args.population.orders) {
        bail!(
            "{} s at {}/s needs {needed} orders; raise --orders (at most 10 000 000)",
            args.duration,
            args.rate
        );
    }
    args.harness.prepare(true)?;
    let stack = FreshStack::start(&args.protocol, &args.harness.out, &[]).await?;
    let report = with_fresh_stack(stack, async |s: &FreshStack| run(&args, s).await).await?;

    let json = args.harness.out.join("outage.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let svg = args.harness.out.join("outage.svg");
    write_svg(&svg, &report)?;
    print!("{}", table(&report));
    println!("wrote {} and {}", json.display(), svg.display());
    match &report.verdict {
        Some(v) if !v.consistent() => {
            for e in &v.examples {
                println!("  {e}");
            }
            bail!(
                "INCONSISTENT after the outage: {} violations {:?}",
                v.violations,
                v.kinds
            )
        }
        _ => Ok(()),
    }
}

async fn run(args: &OutageArgs, stack: &FreshStack) -> Result<OutageReport> {
    let load = Load {
        concurrency: 64,
        rate: Some(args.rate),
        client_timeout_ms: args.client_timeout_ms,
    };
    let api = Api::new(stack.gateway_url(), load.pool(), Duration::from_secs(60))?;
    populate(
        &Api::new(stack.gateway_url(), 4, Duration::from_secs(600))?,
        &args.population,
    )
    .await?;
    let ids = Ids::new(Workload::Distinct, args.population.orders, 1);
    let started = Instant::now();
    let plan = load.plan(Duration::from_secs(args.duration), None);
    let work = async {
        tokio::join!(
            drive_live(
                &api,
                &ids,
                plan,
                started,
                "outage",
                Arc::new(Live::default())
            ),
            freeze_kafka(stack.stack(), started, args.freeze_from, args.freeze_to),
        )
    };
    tokio::pin!(work);
    let mut rss = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (record, froze) = loop {
        tokio::select! {
            done = &mut work => break done,
            _ = tick.tick() => rss.push((started.elapsed().as_secs_f64(), order_rss(stack.stack()))),
        }
    };
    froze?;
    let timeout = Duration::from_millis(args.client_timeout_ms);
    let seconds = per_second(&record, timeout, &rss);
    let answers = Answers::from_samples(&record.samples);
    let settle = Duration::from_secs(args.settle_s);
    let verdict = args
        .harness
        .verify(&api, &args.population, &answers, settle)
        .await;
    Ok(OutageReport {
        protocol: args.protocol.clone(),
        rate: args.rate,
        client_timeout_ms: args.client_timeout_ms,
        duration_s: args.duration,
        freeze_from_s: args.freeze_from,
        freeze_to_s: args.freeze_to,
        summary: summarize(&seconds, args.recovered_from),
        seconds,
        verdict,
    })
}

fn order_rss(stack: &Stack) -> u64 {
    components::rss_bytes(stack)
        .into_iter()
        .find(|(g, _)| g == "order-*")
        .map_or(0, |(_, b)| b)
}

/// Freezes the broker from `from` to `to` seconds after `started`.
async fn freeze_kafka(stack: &Stack, started: Instant, from: u64, to: u64) -> Result<()> {
    tokio::time::sleep_until((started + Duration::from_secs(from)).into()).await;
    let pid = stack
        .pid("kafka")
        .context("the kafka component has no pid file")?;
    let frozen = Frozen::freeze(pid)?;
    eprintln!("  {from} s: Kafka broker (pid {pid}) frozen with SIGSTOP");
    tokio::time::sleep_until((started + Duration::from_secs(to)).into()).await;
    drop(frozen);
    eprintln!("  {to} s: Kafka broker thawed with SIGCONT");
    Ok(())
}

/// The per-second table and the two headline figures.
pub fn table(r: &OutageReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4} {:>8} {:>8} {:>6} {:>8} {:>6} {:>10} {:>13}",
        "s", "arrivals", "2xx", "503", "timeouts", "other", "p99 2xx ms", "order RSS MiB"
    );
    for s in &r.seconds {
        let frozen = (r.freeze_from_s..r.freeze_to_s).contains(&u64::from(s.t));
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "{:>4} {:>8} {:>8} {:>6} {:>8} {:>6} {:>10} {:>13}{}",
            s.t,
            s.counts.arrivals,
            s.counts.ok,
            s.counts.unavailable,
            s.counts.timeouts,
            s.counts.other,
            cell(s.p99_ok_ms),
            cell(s.order_rss_mib),
            if frozen { "  (Kafka frozen)" } else { "" }
        );
    }
    let m = &r.summary;
    let c = &m.counts;
    let _ = writeln!(
        out,
        "{} arrivals at {}/s: {} 2xx within {} ms, {} 503, {} timeouts, {} other",
        c.arrivals, r.rate, c.ok, r.client_timeout_ms, c.unavailable, c.timeouts, c.other
    );
    let _ = writeln!(out, "max order-service RSS: {:.1} MiB", m.max_order_rss_mib);
    let _ = writeln!(
        out,
        "answered 2xx within the timeout from second {} on: {:.1} % of arrivals",
        m.recovered_from_s,
        m.recovered_ok_share * 100.0
    );
    let verdict = match &r.verdict {
        None => "skipped".to_owned(),
        Some(v) if v.consistent() => "consistent (0 violations)".to_owned(),
        Some(v) => format!("{} violations", v.violations),
    };
    let _ = writeln!(out, "verification: {verdict}");
    out
}

fn write_svg(path: &Path, r: &OutageReport) -> Result<()> {
    let series = |f: &dyn Fn(&OutageSecond) -> f64| -> Vec<(f64, f64)> {
        r.seconds
            .iter()
            .map(|s| (f64::from(s.t) + 0.5, f(s)))
            .collect()
    };
    let caption = |what: &str| {
        format!(
            "{what} (Kafka frozen {}-{} s, {} checkouts/s, timeout {} ms)",
            r.freeze_from_s, r.freeze_to_s, r.rate, r.client_timeout_ms
        )
    };
    // A panel of one line, with gaps where the value is missing.
    let one = |what: &str, unit: &str, name: &str, i, f: fn(&OutageSecond) -> Option<f64>| Panel {
        caption: caption(what),
        unit: unit.into(),
        lines: vec![plot_series::line(
            name,
            i,
            series(&|s| f(s).unwrap_or(f64::NAN)),
        )],
    };
    let panels = [
        Panel {
            caption: caption("checkouts by second of arrival"),
            unit: "per second".into(),
            lines: vec![
                plot_series::line("arrivals", 0, series(&|s| s.counts.arrivals as f64)),
                plot_series::line("2xx in time", 1, series(&|s| s.counts.ok as f64)),
                plot_series::line("503", 2, series(&|s| s.counts.unavailable as f64)),
                plot_series::line("timeouts", 3, series(&|s| s.counts.timeouts as f64)),
            ],
        },
        one("p99 latency of the 2xx answers", "ms", "p99 2xx", 1, |s| {
            s.p99_ok_ms
        }),
        one("order service RSS", "MiB", "order-*", 4, |s| {
            s.order_rss_mib
        }),
    ];
    plot_series::write(path, &panels, 1, "s")
}

#[cfg(test)]
#[path = "outage_tests.rs"]
mod tests;
