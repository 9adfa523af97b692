//! The whole benchmark behind `make bench`.
//!
//! For each protocol and each workload: a fresh stack (so every measurement starts from the
//! course's data set on empty databases, with nothing left over from the previous one),
//! `batch_init` of the population, a warm-up, the measured run (for the cold workloads a cold
//! run after a short warm-up first, then the warm one), and the consistency verdict over
//! everything sent (warm-ups included). Each measured run also samples the CPU time of every
//! component just before and just after it, for the CPU cost per checkout. Then the tables
//! on stdout, `results.json` and `bench.svg` in the output folder.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use stack::Stack;

use crate::answers::Answers;
use crate::client::Api;
use crate::components;
use crate::fresh_stack::{FreshStack, Harness, Interrupted, with_fresh_stack};
use crate::populate::{Population, populate};
use crate::report::{self, BenchConfig, BenchReport, RunReport, Target};
use crate::run::{Load, Record, drive};
use crate::verify::Verdict;
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
    #[command(flatten)]
    pub load: Load,
    /// Seconds of each measured run. With the warm-up, a distinct run at ~2 000/s stays
    /// within the 100 000 orders of the course data.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seconds of load before the (warm) measured run (not measured, but verified). The
    /// Kafka broker's JIT needs about 20 s before its cost per message settles.
    #[arg(long, default_value_t = 25)]
    pub warmup: u64,
    /// Workloads that are also measured cold, on the same stack before the warm run: after
    /// `--cold-warmup` seconds of load; the cold run then counts towards the warm-up.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "distinct")]
    pub cold_workloads: Vec<Workload>,
    /// Seconds of load before a cold run.
    #[arg(long, default_value_t = 5)]
    pub cold_warmup: u64,
    /// No cold runs.
    #[arg(long)]
    pub no_cold: bool,
    /// Stop each measured run after this many checkouts.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Seed of the random workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-request timeout in seconds; slower checkouts count as transport errors.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    #[command(flatten)]
    pub harness: Harness,
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
        concurrency: args.load.concurrency,
        duration_s: args.duration,
        warmup_s: args.warmup,
        cold_warmup_s: (!args.no_cold).then_some(args.cold_warmup),
        max_requests: args.max_requests,
        rate: args.load.rate,
        runtime_threads: threads,
        seed: args.seed,
        population: args.population,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let out = &args.harness.out;
    args.harness.prepare(args.external.is_none())?;

    let mut runs = Vec::new();
    let mut failures = Vec::new();
    if let Some(url) = &args.external {
        let api = args.api(url)?;
        if let Err(e) = external(&args, &api, &mut runs).await {
            failures.push(format!("external: {e:#}"));
        }
    } else {
        'all: for protocol in &args.protocols {
            for &workload in &args.workloads {
                eprintln!("== {protocol} / {workload}");
                match on_fresh_stack(&args, protocol, workload).await {
                    Ok(measured) => runs.extend(measured),
                    Err(e) => {
                        eprintln!("  failed: {e:#}");
                        failures.push(format!("{protocol} {workload}: {e:#}"));
                        if e.is::<Interrupted>() {
                            break 'all;
                        }
                    }
                }
                // Keep what we have on disk in case a later run is interrupted.
                write_outputs(out, &config, &runs)?;
            }
        }
    }

    write_outputs(out, &config, &runs)?;
    println!();
    print!("{}", report::table(&runs));
    println!();
    print!("{}", report::cpu_table(&runs));
    println!(
        "wrote {} and {}",
        out.join("results.json").display(),
        out.join("bench.svg").display()
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

impl BenchArgs {
    fn api(&self, gateway: &str) -> Result<Api> {
        Api::new(gateway, self.load.pool(), Duration::from_secs(self.timeout))
    }

    /// Seconds of load before each measured run of `workload`: cold first, then warm.
    fn measured_after(&self, workload: Workload) -> Vec<u64> {
        if self.no_cold || !self.cold_workloads.contains(&workload) {
            vec![self.warmup]
        } else {
            let cold = self.cold_warmup;
            vec![cold, self.warmup.max(cold + self.duration)]
        }
    }
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

/// The measurements of one workload on its own stack.
async fn on_fresh_stack(
    args: &BenchArgs,
    protocol: &str,
    workload: Workload,
) -> Result<Vec<RunReport>> {
    let stack = FreshStack::start(protocol, &args.harness.out, &[]).await?;
    let work = async |stack: &FreshStack| {
        let api = args.api(stack.gateway_url())?;
        let slow = Api::new(api.base(), 4, Duration::from_secs(600))?;
        populate(&slow, &args.population).await?;
        let ids = Ids::new(workload, args.population.orders, args.seed);
        let mut phases = Phases::new(args, &api, Instant::now(), Some(stack.stack()));
        let mut runs = Vec::new();
        for after in args.measured_after(workload) {
            runs.push(phases.measure(&ids, protocol, workload, after).await);
        }
        let verdict = check(args, &api, &phases.records).await;
        for r in &mut runs {
            r.verdict.clone_from(&verdict);
        }
        Ok(runs)
    };
    with_fresh_stack(stack, work).await
}

/// The `--external` mode: one population, then each workload on the same stack.
async fn external(args: &BenchArgs, api: &Api, runs: &mut Vec<RunReport>) -> Result<()> {
    let slow = Api::new(api.base(), 4, Duration::from_secs(600))?;
    populate(&slow, &args.population).await?;
    let mut phases = Phases::new(args, api, Instant::now(), None);
    for &workload in &args.workloads {
        eprintln!("== external / {workload}");
        let ids = Ids::new(workload, args.population.orders, args.seed);
        phases.loaded_s = 0;
        for after in args.measured_after(workload) {
            runs.push(phases.measure(&ids, "external", workload, after).await);
        }
    }
    if let Some(last) = runs.last_mut() {
        last.verdict = check(args, api, &phases.records).await;
    }
    Ok(())
}

/// The phases (warm-ups and measured runs) driven against one population.
struct Phases<'a> {
    args: &'a BenchArgs,
    api: &'a Api,
    origin: Instant,
    /// The stack whose components' CPU is measured, when we run it.
    stack: Option<&'a Stack>,
    /// Seconds of load so far (of the current workload).
    loaded_s: u64,
    /// Every phase so far, for the verification.
    records: Vec<Record>,
}

impl<'a> Phases<'a> {
    fn new(args: &'a BenchArgs, api: &'a Api, origin: Instant, stack: Option<&'a Stack>) -> Self {
        Phases {
            args,
            api,
            origin,
            stack,
            loaded_s: 0,
            records: Vec::new(),
        }
    }

    /// Warms up until `after` seconds of load, then measures one run.
    async fn measure(
        &mut self,
        ids: &Ids,
        protocol: &str,
        workload: Workload,
        after: u64,
    ) -> RunReport {
        let args = self.args;
        if after > self.loaded_s {
            let plan = args
                .load
                .plan(Duration::from_secs(after - self.loaded_s), None);
            let warm = drive(self.api, ids, plan, self.origin, "warm-up").await;
            eprintln!(
                "  warm-up: {} checkouts, {:.0}/s",
                warm.samples.len(),
                warm.samples.len() as f64 / warm.elapsed_s().max(1e-9)
            );
            self.records.push(warm);
        }
        let plan = args
            .load
            .plan(Duration::from_secs(args.duration), args.max_requests);
        let cpu_before = self.stack.map(components::cpu_seconds);
        let label = format!("{workload} after {after} s");
        let record = drive(self.api, ids, plan, self.origin, &label).await;
        let cpu = self
            .stack
            .map(components::cpu_seconds)
            .zip(cpu_before)
            .map(|(end, start)| components::cpu_cost(&start, &end, record.samples.len() as u64))
            .unwrap_or_default();
        let mut run = RunReport::of(protocol, workload, &record, None);
        run.warmup_s = after;
        run.cpu = cpu;
        let s = &run.summary;
        let generator = run
            .generator_cores
            .map_or_else(String::new, |c| format!(", generator CPU {c:.2} cores"));
        eprintln!(
            "  run after {after} s: {} checkouts, {:.0}/s, p99 {:.1} ms, {} errors, {:.2} CPU ms/checkout{generator}",
            s.requests,
            s.throughput,
            s.p99_ms,
            s.errors(),
            run.cpu_total_ms(),
        );
        self.loaded_s = after + args.duration;
        self.records.push(record);
        run
    }
}

/// Verifies everything the records sent. Checkouts whose outcome the client never learned may
/// still be finishing, so those get a few seconds first.
async fn check(args: &BenchArgs, api: &Api, records: &[Record]) -> Option<Verdict> {
    let answers = Answers::from_samples(records.iter().flat_map(|r| &r.samples));
    let settle = Duration::from_secs(5);
    args.harness
        .verify(api, &args.population, &answers, settle)
        .await
}
