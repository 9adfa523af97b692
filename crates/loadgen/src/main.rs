//! `loadgen`: populate, run, verify, or the whole benchmark (`make bench`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use loadgen::answers::Answers;
use loadgen::bench::{self, BenchArgs};
use loadgen::client::Api;
use loadgen::compare::CompareArgs;
use loadgen::outage::OutageArgs;
use loadgen::populate::{Population, populate};
use loadgen::report::{self, BenchReport, RunReport};
use loadgen::run::{Load, drive};
use loadgen::soak::SoakArgs;
use loadgen::verify::verify;
use loadgen::workload::{Ids, Workload};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator and consistency checker for the webshop"
)]
struct Cli {
    /// Tokio worker threads: the stack shares the machine's cores with the generator.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Gateway {
    /// Base URL of the gateway.
    #[arg(long, env = "LOADGEN_GATEWAY", default_value = "http://127.0.0.1:8000")]
    gateway: String,
    /// Per-request timeout in seconds; a request that takes longer counts as a transport error.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Load the data set through the three `batch_init` endpoints.
    Populate {
        #[command(flatten)]
        gateway: Gateway,
        #[command(flatten)]
        population: Population,
    },
    /// Drive checkouts and report throughput, latency and errors.
    Run {
        #[command(flatten)]
        gateway: Gateway,
        #[arg(long, value_enum, default_value_t = Workload::Distinct)]
        workload: Workload,
        #[command(flatten)]
        load: Load,
        /// Seconds to run.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Stop after this many checkouts even if time remains.
        #[arg(long)]
        max_requests: Option<u64>,
        /// Orders in the population: ids are drawn from `0..orders`.
        #[arg(long, default_value_t = 100_000)]
        orders: u32,
        /// Seed of the random workload.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the run's report (summary and per-second series) here as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write what each order was answered here, for `verify --answers`.
        #[arg(long)]
        answers: Option<PathBuf>,
    },
    /// Read all state back and check it is consistent; exits 1 on any violation.
    Verify {
        #[command(flatten)]
        gateway: Gateway,
        #[command(flatten)]
        population: Population,
        /// Answers written by `run --answers`: then every 2xx order must be paid, every 4xx-only
        /// order unpaid, and no other order paid. Without it only conservation is checked.
        #[arg(long)]
        answers: Option<PathBuf>,
        /// Reads in flight.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// The whole benchmark on fresh local stacks (`make bench`).
    Bench(BenchArgs),
    /// Sustained load on a fresh stack, watching memory and disk (`make soak`); exits 1 if
    /// they keep growing after the retention window or the state is inconsistent.
    Soak(SoakArgs),
    /// Open-loop checkouts on a fresh stack while the Kafka broker is frozen (`make outage`).
    Outage(OutageArgs),
    /// Two builds, or two settings of this one, side by side: interleaved pairs of cold
    /// benchmark runs, each side through its own `loadgen bench`, and the ratios within pairs.
    Compare(CompareArgs),
    /// Redraw the SVG plot from a `results.json`.
    Plot {
        #[arg(long, default_value = ".bench/results.json")]
        results: PathBuf,
        #[arg(long, default_value = ".bench/bench.svg")]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(cli.command, cli.threads))
}

fn api(g: &Gateway, pool: usize) -> Result<Api> {
    Api::new(&g.gateway, pool, Duration::from_secs(g.timeout))
}

fn write_json(path: &PathBuf, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

async fn run(command: Command, threads: usize) -> Result<()> {
    match command {
        Command::Populate {
            gateway,
            population,
        } => {
            let api = Api::new(&gateway.gateway, 4, Duration::from_secs(600))?;
            populate(&api, &population).await
        }
        Command::Run {
            gateway,
            workload,
            load,
            duration,
            max_requests,
            orders,
            seed,
            json,
            answers,
        } => {
            let api = api(&gateway, load.pool())?;
            let ids = Ids::new(workload, orders, seed);
            let plan = load.plan(Duration::from_secs(duration), max_requests);
            let record = drive(&api, &ids, plan, Instant::now(), &workload.to_string()).await;
            let report = RunReport::of("-", workload, &record, None);
            print!("{}", report::table(std::slice::from_ref(&report)));
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
            if let Some(path) = answers {
                // Compact: one id per line would make a 100 000-order file needlessly long.
                let text = serde_json::to_string(&Answers::from_samples(&record.samples))?;
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Verify {
            gateway,
            population,
            answers,
            concurrency,
        } => {
            let api = api(&gateway, concurrency)?;
            let answers: Option<Answers> = match answers {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Some(serde_json::from_str(&text).context("parsing the answers")?)
                }
                None => None,
            };
            let v = verify(&api, &population, answers.as_ref(), concurrency).await;
            println!(
                "read {} orders, {} items, {} users in {:.1} s; {} paid orders, {} stock sold, {} credit charged",
                population.orders,
                population.items,
                population.users,
                v.read_s,
                v.paid_orders,
                v.stock_sold,
                v.credit_charged
            );
            if v.consistent() {
                println!("consistent: 0 violations");
                Ok(())
            } else {
                println!("INCONSISTENT: {} violations {:?}", v.violations, v.kinds);
                for e in &v.examples {
                    println!("  {e}");
                }
                std::process::exit(1);
            }
        }
        Command::Bench(args) => bench::bench(args, threads).await,
        Command::Soak(args) => loadgen::soak::soak(args).await,
        Command::Outage(args) => loadgen::outage::outage(args).await,
        Command::Compare(args) => loadgen::compare::compare(args).await,
        Command::Plot { results, out } => {
            let text = std::fs::read_to_string(&results)
                .with_context(|| format!("reading {}", results.display()))?;
            let report: BenchReport = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", results.display()))?;
            loadgen::plot::write_svg(&report.runs, &out)
        }
    }
}
