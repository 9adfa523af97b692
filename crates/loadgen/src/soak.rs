//! The soak benchmark behind `make soak`: sustained distinct checkouts on a fresh stack for
//! many minutes, watching whether memory and disk level off once finished checkouts expire.
//!
//! Each checkout of the distinct workload consumes an order, so the orders for the whole run
//! are created up front by one `batch_init`, sized from the rate (`--rate`, or for the closed
//! loop `--expected-rate`) with a 10 % margin; a run that needs more than `batch_init` allows
//! is refused before it starts, and a closed loop that outruns its estimate fails saying so.
//!
//! Every `--sample-s` seconds: each Redis's `used_memory`, each Redis's AOF on disk, the Kafka
//! log dirs on disk, every component group's RSS, and the throughput and p99 of the interval,
//! appended to `soak.csv` as they come. At the end: `soak.svg`, the growth verdict of
//! [`crate::growth`] on total Redis memory, total AOF and Kafka, and the read-back
//! verification of every order checked out.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::answers::Answers;
use crate::client::Api;
use crate::fresh_stack::{FreshStack, Harness, with_fresh_stack};
use crate::growth::{self, Growth};
use crate::plot_series::{self, Panel};
use crate::populate::{Population, populate_via};
use crate::run::{Live, Load, drive_live};
use crate::watch::{Columns, Row, Watch};
use crate::workload::{Ids, Workload};

/// `batch_init`'s largest `n`.
pub const MAX_ORDERS: u64 = 10_000_000;

#[derive(Clone, Debug, clap::Args)]
pub struct SoakArgs {
    /// Checkout protocol of the stack.
    #[arg(long, default_value = "saga")]
    pub protocol: String,
    #[command(flatten)]
    pub load: Load,
    /// Minutes of sustained load.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// `STATE_RETENTION_S` of the services: how long records of finished checkouts live.
    #[arg(long, default_value_t = 60)]
    pub retention_s: u64,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 10)]
    pub sample_s: u64,
    /// Checkouts per second the closed loop is assumed to reach, to size the orders (this
    /// machine's stack reaches about 1 300/s; 30 minutes of it, three million orders, fit
    /// the order Redis's 1 GiB with room for the records in their retention window).
    #[arg(long, default_value_t = 1500.0, value_parser = crate::run::parse_rate)]
    pub expected_rate: f64,
    /// Orders to create (default: sized from the rate and the duration).
    #[arg(long)]
    pub orders: Option<u32>,
    /// A quantity grows if its least-squares slope over the second half of the run exceeds
    /// this percentage of its mean per minute.
    #[arg(long, default_value_t = 1.0)]
    pub max_growth_pct_per_min: f64,
    /// Per-request timeout in seconds for the closed loop.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    #[command(flatten)]
    pub harness: Harness,
}

/// Orders a run of `seconds` at `rate` checkouts per second needs: 10 % margin plus 1 000.
pub fn orders_for(rate: f64, seconds: f64) -> Result<u32> {
    let n = (rate * seconds).ceil() as u64 * 11 / 10 + 1000;
    if n > MAX_ORDERS {
        bail!(
            "{seconds:.0} s at {rate:.0} checkouts/s needs {n} orders, more than batch_init's \
             {MAX_ORDERS}: lower --minutes, --rate or --expected-rate"
        );
    }
    Ok(n as u32)
}

pub async fn soak(args: SoakArgs) -> Result<()> {
    let seconds = args.minutes * 60.0;
    let orders = match args.orders {
        Some(n) => n,
        None => orders_for(args.load.rate.unwrap_or(args.expected_rate), seconds)?,
    };
    let population = Population {
        orders,
        ..Population::course()
    };
    args.harness.prepare(true)?;
    let env = [("STATE_RETENTION_S", args.retention_s.to_string())];
    let stack = FreshStack::start(&args.protocol, &args.harness.out, &env).await?;
    let outcome = with_fresh_stack(stack, async |s: &FreshStack| {
        run(&args, s, &population, seconds).await
    })
    .await?;
    outcome.print(&args);
    outcome.fail_if_bad()
}

/// What a soak found.
struct Outcome {
    growth: Vec<Growth>,
    /// Quantities whose second half held too few samples to judge.
    unjudged: Vec<String>,
    verdict: Option<crate::verify::Verdict>,
    exhausted: bool,
    checkouts: u64,
    errors: u64,
}

async fn run(
    args: &SoakArgs,
    stack: &FreshStack,
    population: &Population,
    seconds: f64,
) -> Result<Outcome> {
    let api = Api::new(
        stack.gateway_url(),
        args.load.pool(),
        Duration::from_secs(args.timeout),
    )?;
    let slow = |url: &str| Api::new(url, 4, Duration::from_secs(3600));
    let order_1 = stack.stack().service_url("order-1").context("no order-1")?;
    populate_via(&slow(stack.gateway_url())?, &slow(&order_1)?, population).await?;

    let mut watch = Watch::connect(stack.stack()).await?;
    let csv_path = args.harness.out.join("soak.csv");
    let mut csv = std::fs::File::create(&csv_path)
        .with_context(|| format!("creating {}", csv_path.display()))?;
    writeln!(csv, "{}", watch.columns().csv_header())?;

    let ids = Ids::new(Workload::Distinct, population.orders, 1);
    let live = Arc::new(Live::default());
    let plan = args.load.plan(Duration::from_secs_f64(seconds), None);
    let started = Instant::now();
    let drive = drive_live(&api, &ids, plan, started, "soak", live.clone());
    tokio::pin!(drive);
    let mut tick = tokio::time::interval(Duration::from_secs(args.sample_s.max(1)));
    tick.tick().await;
    let mut rows = Vec::new();
    let record = loop {
        tokio::select! {
            record = &mut drive => break record,
            _ = tick.tick() => {
                let row = watch.sample(stack.stack(), started, &live).await;
                writeln!(csv, "{}", watch.columns().csv_row(&row))?;
                csv.flush()?;
                eprintln!("  {}", watch.columns().progress(&row));
                rows.push(row);
            }
        }
    };
    let columns = watch.columns().clone();
    write_svg(&args.harness.out.join("soak.svg"), &columns, &rows)?;
    eprintln!(
        "  wrote {} and {}",
        csv_path.display(),
        args.harness.out.join("soak.svg").display()
    );

    let mut growth = Vec::new();
    let mut unjudged = Vec::new();
    for (name, prefix) in [
        ("Redis used_memory (total)", "used_memory_"),
        ("AOF on disk (total)", "aof_"),
        ("Kafka log dirs", "kafka_dir"),
    ] {
        let series: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.t_s, columns.sum(r, prefix)))
            .filter(|p| p.1.is_finite())
            .collect();
        match growth::judge(name, &series, args.max_growth_pct_per_min) {
            Some(g) => growth.push(g),
            None => unjudged.push(name.to_owned()),
        }
    }

    // Distinct ids are handed out from 0 on: the orders checked out are 0..used.
    let used = record.samples.iter().map(|s| s.order + 1).max();
    let checked = Population {
        orders: used.unwrap_or(0),
        ..*population
    };
    let answers = Answers::from_samples(&record.samples);
    let settle = Duration::from_secs(5);
    let verdict = args.harness.verify(&api, &checked, &answers, settle).await;
    Ok(Outcome {
        growth,
        unjudged,
        verdict,
        exhausted: record.exhausted,
        checkouts: record.samples.len() as u64,
        errors: crate::stats::summarize(&record).errors(),
    })
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn write_svg(path: &Path, columns: &Columns, rows: &[Row]) -> Result<()> {
    // One line per column under `prefix`, plus their total when there are several.
    let series = |prefix: &str, scale: fn(f64) -> f64| -> Vec<plot_series::Line> {
        let over_time = |value: &dyn Fn(&Row) -> f64| -> Vec<(f64, f64)> {
            rows.iter()
                .map(|r| (r.t_s / 60.0, scale(value(r))))
                .collect()
        };
        let mut lines: Vec<_> = columns
            .matching(prefix)
            .enumerate()
            .map(|(i, (k, name))| {
                let short = name.strip_prefix(prefix).filter(|s| !s.is_empty());
                plot_series::line(short.unwrap_or(name), i, over_time(&|r| r.values[k]))
            })
            .collect();
        if lines.len() > 1 {
            let total = over_time(&|r| columns.sum(r, prefix));
            lines.push(plot_series::line("total", lines.len(), total));
        }
        lines
    };
    let panel = |caption: &str, unit: &str, lines| Panel {
        caption: caption.into(),
        unit: unit.into(),
        lines,
    };
    let same = |x: f64| x;
    let panels = [
        panel("Redis used_memory", "MiB", series("used_memory_", mib)),
        panel("AOF on disk", "MiB", series("aof_", mib)),
        panel("Kafka log dirs on disk", "MiB", series("kafka_dir", mib)),
        panel("RSS by component", "MiB", series("rss_", mib)),
        panel(
            "throughput per interval",
            "checkouts/s",
            series("checkouts_per_s", same),
        ),
        panel("p99 latency per interval", "ms", series("p99_ms", same)),
    ];
    plot_series::write(path, &panels, 2, "min")
}

impl Outcome {
    fn print(&self, args: &SoakArgs) {
        println!(
            "soak: {} checkouts, {} errors; growth over the second half (limit {} % of the mean per minute):",
            self.checkouts, self.errors, args.max_growth_pct_per_min
        );
        for g in &self.growth {
            println!(
                "  {:<26} {:>+12.1} KiB/min  mean {:>10.1} MiB  {:>+7.2} %/min  {}",
                g.name,
                g.slope_per_min / 1024.0,
                mib(g.mean),
                g.pct_per_min,
                if g.growing { "GROWING" } else { "flat" }
            );
        }
        for name in &self.unjudged {
            println!("  {name:<26} too few samples in the second half to judge");
        }
        if args.minutes * 30.0 < args.retention_s as f64 {
            println!(
                "  note: the second half starts before the retention window ({} s) has passed",
                args.retention_s
            );
        }
        match &self.verdict {
            None => println!("verification skipped"),
            Some(v) if v.consistent() => println!("consistent: 0 violations"),
            Some(v) => {
                println!("INCONSISTENT: {} violations {:?}", v.violations, v.kinds);
                for e in &v.examples {
                    println!("  {e}");
                }
            }
        }
    }

    fn fail_if_bad(&self) -> Result<()> {
        let mut why = Vec::new();
        if self.exhausted {
            why.push("the orders ran out before the time was up: raise --expected-rate".to_owned());
        }
        let growing: Vec<&str> = self
            .growth
            .iter()
            .filter(|g| g.growing)
            .map(|g| g.name.as_str())
            .collect();
        if !growing.is_empty() {
            why.push(format!(
                "still growing after the retention window: {}",
                growing.join(", ")
            ));
        }
        if !self.unjudged.is_empty() {
            why.push("the run was too short to judge growth".to_owned());
        }
        if let Some(v) = self.verdict.as_ref().filter(|v| !v.consistent()) {
            why.push(format!("{} consistency violations", v.violations));
        }
        if why.is_empty() {
            Ok(())
        } else {
            bail!("soak failed: {}", why.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_sized_with_a_margin_and_capped() {
        assert_eq!(orders_for(2000.0, 1800.0).unwrap(), 3_961_000);
        assert_eq!(orders_for(600.0, 60.0).unwrap(), 40_600);
        let err = orders_for(6000.0, 1800.0).unwrap_err().to_string();
        assert!(err.contains("11881000 orders"), "{err}");
    }
}
