//! The whole benchmark behind `make bench`.
//!
//! For each protocol and each workload: a fresh stack (so every measurement starts from the
//! course's data set on empty databases, with nothing left over from the previous one),
//! `batch_init` of the population, a short warm-up, the measured run, a quiet moment, and the
//! consistency verdict over everything sent (warm-up included). Then the table on stdout,
//! `results.json` and `bench.svg` in the output folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::answers::Answers;
use crate::client::Api;
use crate::fresh_stack::FreshStack;
use crate::populate::{Population, populate};
use crate::report::{self, BenchConfig, BenchReport, RunReport, Target};
use crate::run::{Plan, Record, drive};
use crate::stats;
use crate::verify::verify;
use crate::workload::{Ids, Workload};

#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Checkout protocols to benchmark, each on its own fresh stacks.
    #[arg(long, value_delimiter = ',', default_value = "saga,2pc")]
    pub protocols: Vec<String>,
    /// Workloads to run for each protocol.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "distinct,random"
    )]
    pub workloads: Vec<Workload>,
    /// Checkouts in flight (closed loop).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds of each measured run. With the warm-up, a distinct run at ~2 000/s stays
    /// within the 100 000 orders of the course data.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seconds of warm-up before each run (not measured, but verified). The Kafka broker's
    /// JIT needs about 20 s before its cost per message settles.
    #[arg(long, default_value_t = 25)]
    pub warmup: u64,
    /// Stop each measured run after this many checkouts.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Open loop at this many checkouts per second (latency counted from the due time),
    /// instead of a closed loop; `--concurrency` then caps the checkouts in flight.
    #[arg(long, value_parser = crate::run::parse_rate)]
    pub rate: Option<f64>,
    /// Seed of the random workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Reads in flight while verifying.
    #[arg(long, default_value_t = 256)]
    pub verify_concurrency: usize,
    /// Skip the consistency check (saves the read-back of every order, item and user).
    #[arg(long)]
    pub no_verify: bool,
    /// Per-request timeout in seconds; slower checkouts count as transport errors.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Where `results.json` and `bench.svg` go (and, while it runs, the stack's state).
    #[arg(long, default_value = ".bench")]
    pub out: PathBuf,
    /// Do not build the services first (by default `cargo build --release` makes sure the
    /// stack runs the current code).
    #[arg(long)]
    pub no_build: bool,
    /// Benchmark the stack already running at this URL instead of starting fresh ones: one
    /// population, then the workloads in turn (the random run then also meets orders paid by
    /// the distinct run). Reported under the protocol name `external`.
    #[arg(long)]
    pub external: Option<String>,
    #[command(flatten)]
    pub population: Population,
}

/// Runs the benchmark; `threads` is only recorded in the report.
pub async fn bench(args: BenchArgs, threads: usize) -> Result<()> {
    let config = BenchConfig {
        concurrency: args.concurrency,
        duration_s: args.duration,
        warmup_s: args.warmup,
        max_requests: args.max_requests,
        rate: args.rate,
        runtime_threads: threads,
        seed: args.seed,
        population: args.population,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let mut runs = Vec::new();
    let mut failures = Vec::new();
    if let Some(url) = &args.external {
        let api = Api::new(url, args.concurrency, Duration::from_secs(args.timeout))?;
        if let Err(e) = external(&args, &api, &mut runs).await {
            failures.push(format!("external: {e:#}"));
        }
    } else {
        if !args.no_build {
            crate::fresh_stack::build_binaries()?;
        }
        'all: for protocol in &args.protocols {
            for &workload in &args.workloads {
                eprintln!("== {protocol} / {workload}");
                match on_fresh_stack(&args, protocol, workload).await {
                    Ok(run) => runs.push(run),
                    Err(e) => {
                        eprintln!("  failed: {e:#}");
                        failures.push(format!("{protocol} {workload}: {e:#}"));
                        if e.is::<Interrupted>() {
                            break 'all;
                        }
                    }
                }
                // Keep what we have on disk in case a later run is interrupted.
                write_outputs(&args.out, &config, &runs)?;
            }
        }
    }

    write_outputs(&args.out, &config, &runs)?;
    println!();
    print!("{}", report::table(&runs));
    println!(
        "wrote {} and {}",
        args.out.join("results.json").display(),
        args.out.join("bench.svg").display()
    );
    if !failures.is_empty() {
        bail!("{} run(s) failed:\n{}", failures.len(), failures.join("\n"));
    }
    if runs
        .iter()
        .any(|r| r.verdict.as_ref().is_some_and(|v| !v.consistent()))
    {
        bail!("the state was inconsistent after at least one run");
    }
    Ok(())
}

fn write_outputs(out: &Path, config: &BenchConfig, runs: &[RunReport]) -> Result<()> {
    let report = BenchReport {
        finished_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        config: config.clone(),
        target: Target::default(),
        runs: runs.to_vec(),
    };
    let path = out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    crate::plot::write_svg(runs, &out.join("bench.svg"))
}

/// Ctrl-C during a measurement: stop the stack and skip the remaining runs.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// One measurement on its own stack; the stack is stopped whatever happens, Ctrl-C included.
async fn on_fresh_stack(args: &BenchArgs, protocol: &str, workload: Workload) -> Result<RunReport> {
    let t = Instant::now();
    let stack = FreshStack::start(protocol, &args.out).await?;
    eprintln!(
        "  stack up at {} in {:.1} s",
        stack.gateway_url(),
        t.elapsed().as_secs_f64()
    );
    let outcome = tokio::select! {
        r = measure(args, stack.gateway_url(), protocol, workload) => r,
        _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
    };
    let stopped = stack.stop().await;
    let run = outcome?;
    stopped?;
    Ok(run)
}

async fn measure(
    args: &BenchArgs,
    gateway: &str,
    protocol: &str,
    workload: Workload,
) -> Result<RunReport> {
    let api = Api::new(gateway, args.concurrency, Duration::from_secs(args.timeout))?;
    let slow = Api::new(gateway, 4, Duration::from_secs(600))?;
    populate(&slow, &args.population).await?;
    let ids = Ids::new(workload, args.population.orders, args.seed);
    let origin = Instant::now();
    let (warm, record) = warm_and_run(args, &api, &ids, origin, workload).await;
    let verdict = if args.no_verify {
        None
    } else {
        Some(check(args, &api, [&warm, &record]).await)
    };
    Ok(RunReport::of(protocol, workload, &record, verdict))
}

/// The `--external` mode: one population, then each workload on the same stack.
async fn external(args: &BenchArgs, api: &Api, runs: &mut Vec<RunReport>) -> Result<()> {
    let slow = Api::new(api.base(), 4, Duration::from_secs(600))?;
    populate(&slow, &args.population).await?;
    let origin = Instant::now();
    let mut all = Vec::new();
    for &workload in &args.workloads {
        eprintln!("== external / {workload}");
        let ids = Ids::new(workload, args.population.orders, args.seed);
        let (warm, record) = warm_and_run(args, api, &ids, origin, workload).await;
        runs.push(RunReport::of("external", workload, &record, None));
        all.push(warm);
        all.push(record);
    }
    if !args.no_verify
        && let Some(last) = runs.last_mut()
    {
        last.verdict = Some(check(args, api, all.iter()).await);
    }
    Ok(())
}

async fn warm_and_run(
    args: &BenchArgs,
    api: &Api,
    ids: &Ids,
    origin: Instant,
    workload: Workload,
) -> (Record, Record) {
    let warm = drive(
        api,
        ids,
        Plan {
            concurrency: args.concurrency,
            duration: Duration::from_secs(args.warmup),
            max_requests: None,
            rate: args.rate,
        },
        origin,
        "warm-up",
    )
    .await;
    eprintln!(
        "  warm-up: {} checkouts, {:.0}/s",
        warm.samples.len(),
        warm.samples.len() as f64 / warm.elapsed_s().max(1e-9)
    );
    let plan = Plan {
        concurrency: args.concurrency,
        duration: Duration::from_secs(args.duration),
        max_requests: args.max_requests,
        rate: args.rate,
    };
    let record = drive(api, ids, plan, origin, &workload.to_string()).await;
    let s = stats::summarize(&record);
    let cpu = record.cpu_s.map_or_else(String::new, |cpu| {
        format!(
            ", generator CPU {:.2} cores",
            cpu / record.elapsed_s().max(1e-9)
        )
    });
    eprintln!(
        "  run: {} checkouts, {:.0}/s, p99 {:.1} ms, {} errors{cpu}",
        s.requests,
        s.throughput,
        s.p99_ms,
        s.errors()
    );
    (warm, record)
}

/// Verifies everything the records sent. Checkouts whose outcome the client never learned may
/// still be finishing, so those get a few seconds first.
async fn check<'a>(
    args: &BenchArgs,
    api: &Api,
    records: impl IntoIterator<Item = &'a Record>,
) -> crate::verify::Verdict {
    let answers = Answers::from_samples(records.into_iter().flat_map(|r| &r.samples));
    if !answers.unknown.is_empty() {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let v = verify(
        api,
        &args.population,
        Some(&answers),
        args.verify_concurrency,
    )
    .await;
    eprintln!(
        "  verified in {:.1} s: {} paid orders, {} violations",
        v.read_s, v.paid_orders, v.violations
    );
    v
}
