//! `loadgen compare`: two builds, or two settings of one build, side by side.
//!
//! On a shared or virtual machine one run per side cannot rank them: this project's 2-core
//! box ran one build at 0.40 ms of CPU per checkout and, ten minutes later, at 1.24 ms. What
//! does rank them is a series of pairs: each run on a fresh stack through its own side's
//! `loadgen bench` (so each side runs its own services, broker flags and stack code), the two
//! runs of a pair back to back, in the order A B, B A, A B, ... so that neither side always
//! runs first. The two runs of a pair saw nearly the same machine, so the figure to read is
//! the ratio within each pair, with its range over the pairs; the means and ranges of each
//! side are printed too.
//!
//! Each run is `bench --workloads distinct --no-cold --no-verify` with the given warm-up and
//! duration (a cold run by default: 5 s of load, then 20 s measured). Consistency is not
//! read back (that is `make bench`'s job); any non-2xx answer is counted and shown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::components::{self, ComponentCpu};
use crate::fresh_stack;

#[derive(Clone, Debug, clap::Args)]
pub struct CompareArgs {
    /// The baseline's checkout of this repository (its `target/release/loadgen` runs its
    /// runs). Default: this checkout, for comparing two settings of one build.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// An environment variable for the baseline's runs, `KEY=VALUE` (repeatable): a knob
    /// such as `KAFKA_LINGER_MS=5` or `KAFKA_JVM_OPTS=...`.
    #[arg(long = "baseline-env", value_parser = parse_env)]
    pub baseline_env: Vec<(String, String)>,
    /// An environment variable for this checkout's runs, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    pub candidate_env: Vec<(String, String)>,
    /// Pairs of runs per protocol.
    #[arg(long, default_value_t = 4)]
    pub pairs: usize,
    /// Checkout protocols, each compared on its own pairs.
    #[arg(long, value_delimiter = ',', default_value = "saga,2pc")]
    pub protocols: Vec<String>,
    /// Seconds of load before each measured run: 5 compares cold stacks, 35 warm ones.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Output folder: each run's own bench folder and log, and `compare.json`.
    #[arg(long, default_value = ".bench/compare")]
    pub out: PathBuf,
    /// Do not build either side first (by default both are built, as `make build` does).
    #[arg(long)]
    pub no_build: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Which side of the comparison a run belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Baseline,
    Candidate,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Candidate => "candidate",
        }
    }
}

/// The order of the runs of `pairs` pairs: A B, B A, A B, ... so that neither side always
/// runs first (a machine that drifts within a pair favours both sides equally often).
pub fn schedule(pairs: usize) -> Vec<(usize, Side)> {
    (0..pairs)
        .flat_map(|i| {
            let order = if i % 2 == 0 {
                [Side::Baseline, Side::Candidate]
            } else {
                [Side::Candidate, Side::Baseline]
            };
            order.map(|side| (i, side))
        })
        .collect()
}

/// What one run measured, read from its `results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub protocol: String,
    pub pair: usize,
    pub side: Side,
    pub throughput: f64,
    pub p99_ms: f64,
    /// Answers other than 2xx, transport errors included.
    pub errors: u64,
    pub cpu: Vec<ComponentCpu>,
}

impl Measured {
    pub fn cpu_total_ms(&self) -> f64 {
        components::total_ms(&self.cpu)
    }
}

/// The parts of a `results.json` a comparison reads. Kept apart from [`crate::report`]'s
/// types and lenient (every field defaulted) so that a baseline from an older build, whose
/// report may lack newer fields, still reads.
#[derive(Deserialize)]
struct ResultsFile {
    #[serde(default)]
    runs: Vec<ResultsRun>,
}

#[derive(Deserialize)]
struct ResultsRun {
    summary: ResultsSummary,
    #[serde(default)]
    cpu: Vec<ComponentCpu>,
}

#[derive(Deserialize)]
struct ResultsSummary {
    throughput: f64,
    p99_ms: f64,
    #[serde(default)]
    refused_4xx: u64,
    #[serde(default)]
    server_5xx: u64,
    #[serde(default)]
    transport: u64,
}

/// Mean, smallest and largest of some figures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        Some(Spread {
            mean: values.iter().sum::<f64>() / n,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Candidate over baseline within each complete pair of `protocol`, for `figure`.
pub fn pair_ratios(
    runs: &[Measured],
    protocol: &str,
    figure: impl Fn(&Measured) -> f64,
) -> Vec<f64> {
    let find = |pair: usize, side: Side| {
        runs.iter()
            .find(|r| r.protocol == protocol && r.pair == pair && r.side == side)
    };
    let mut pairs: Vec<usize> = runs
        .iter()
        .filter(|r| r.protocol == protocol)
        .map(|r| r.pair)
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .into_iter()
        .filter_map(|p| {
            let (b, c) = (find(p, Side::Baseline)?, find(p, Side::Candidate)?);
            let base = figure(b);
            (base > 0.0).then(|| figure(c) / base)
        })
        .collect()
}

/// The comparison as a table: per protocol, each side's means (ranges in brackets) and CPU
/// per component, then the ratios within pairs.
pub fn summary(runs: &[Measured]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut protocols: Vec<&str> = Vec::new();
    for r in runs {
        if !protocols.contains(&r.protocol.as_str()) {
            protocols.push(&r.protocol);
        }
    }
    let groups = components::names(runs.iter().map(|r| r.cpu.as_slice()));
    let _ = write!(
        out,
        "{:<9} {:<9} {:>4} {:>12} {:>8} {:>6} {:>20}",
        "protocol", "side", "runs", "checkouts/s", "p99 ms", "errors", "CPU ms/checkout"
    );
    for c in &groups {
        let _ = write!(out, " {c:>10}");
    }
    let _ = writeln!(out);
    for p in &protocols {
        for side in [Side::Baseline, Side::Candidate] {
            let mine: Vec<&Measured> = runs
                .iter()
                .filter(|r| r.protocol == *p && r.side == side)
                .collect();
            let (Some(rate), Some(p99), Some(cpu)) = (
                Spread::of(mine.iter().map(|r| r.throughput)),
                Spread::of(mine.iter().map(|r| r.p99_ms)),
                Spread::of(mine.iter().map(|r| r.cpu_total_ms())),
            ) else {
                continue;
            };
            let errors: u64 = mine.iter().map(|r| r.errors).sum();
            let _ = write!(
                out,
                "{:<9} {:<9} {:>4} {:>12.0} {:>8.1} {:>6} {:>20}",
                p,
                side.as_str(),
                mine.len(),
                rate.mean,
                p99.mean,
                errors,
                format!("{:.3} ({:.3}-{:.3})", cpu.mean, cpu.min, cpu.max)
            );
            for c in &groups {
                let mean = Spread::of(mine.iter().map(|r| components::ms_of(&r.cpu, c)))
                    .map_or(0.0, |s| s.mean);
                let _ = write!(out, " {mean:>10.3}");
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(out, "candidate / baseline within each pair: mean (range)");
    for p in &protocols {
        let cpu = Spread::of(pair_ratios(runs, p, Measured::cpu_total_ms));
        let rate = Spread::of(pair_ratios(runs, p, |r| r.throughput));
        let p99 = Spread::of(pair_ratios(runs, p, |r| r.p99_ms));
        let cell = |s: Option<Spread>| {
            s.map_or("-".to_owned(), |s| {
                format!("{:.2} ({:.2}-{:.2})", s.mean, s.min, s.max)
            })
        };
        let pairs = pair_ratios(runs, p, |_| 1.0).len();
        let _ = writeln!(
            out,
            "{p:<9} {pairs} pairs: CPU per checkout {}, checkouts/s {}, p99 {}",
            cell(cpu),
            cell(rate),
            cell(p99)
        );
    }
    out
}

/// One side: where its build is and what its runs get in their environment.
struct Build {
    side: Side,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Build {
    fn loadgen(&self) -> PathBuf {
        self.dir.join("target/release/loadgen")
    }
}

/// Runs the comparison and prints the summary; `compare.json` holds every run.
pub async fn compare(args: CompareArgs) -> Result<()> {
    if args.pairs == 0 {
        bail!("--pairs must be at least 1");
    }
    let here = stack::StackConfig::default_workspace();
    let baseline_dir = args.baseline.clone().unwrap_or_else(|| here.clone());
    let baseline_dir = std::path::absolute(&baseline_dir)
        .with_context(|| format!("resolving {}", baseline_dir.display()))?;
    if baseline_dir == here && args.baseline_env == args.candidate_env {
        bail!(
            "both sides are this checkout with the same environment: give --baseline, --env or --baseline-env"
        );
    }
    let builds = [
        Build {
            side: Side::Baseline,
            dir: baseline_dir,
            env: args.baseline_env.clone(),
        },
        Build {
            side: Side::Candidate,
            dir: here,
            env: args.candidate_env.clone(),
        },
    ];
    let out = std::path::absolute(&args.out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if !args.no_build {
        fresh_stack::build_binaries()?;
        if builds[0].dir != builds[1].dir {
            fresh_stack::build_in(&builds[0].dir)?;
        }
    }
    for b in &builds {
        if !b.loadgen().is_file() {
            bail!(
                "{} has no {}: build it first (make build there)",
                b.dir.display(),
                b.loadgen().display()
            );
        }
    }

    let mut runs = Vec::new();
    for protocol in &args.protocols {
        for (pair, side) in schedule(args.pairs) {
            let build = &builds[usize::from(side == Side::Candidate)];
            let measured = run_one(&args, build, protocol, pair, &out).await?;
            eprintln!(
                "{protocol} pair {} {:<9}: {:.0}/s, p99 {:.1} ms, {:.3} ms CPU per checkout, {} errors",
                pair + 1,
                side.as_str(),
                measured.throughput,
                measured.p99_ms,
                measured.cpu_total_ms(),
                measured.errors
            );
            runs.push(measured);
            let json = serde_json::to_string_pretty(&runs)?;
            std::fs::write(out.join("compare.json"), json)?;
        }
    }
    println!();
    print!("{}", summary(&runs));
    println!("wrote {}", out.join("compare.json").display());
    Ok(())
}

/// One run through `build`'s own `loadgen bench`, with a deadline: the load, plus a few
/// minutes for the stack to start, be populated and stop.
async fn run_one(
    args: &CompareArgs,
    build: &Build,
    protocol: &str,
    pair: usize,
    out: &Path,
) -> Result<Measured> {
    let name = format!("{protocol}-{}-{}", pair + 1, build.side.as_str());
    let dir = out.join(&name);
    let log = std::fs::File::create(out.join(format!("{name}.log")))?;
    let mut cmd = tokio::process::Command::new(build.loadgen());
    cmd.current_dir(&build.dir)
        .args(["bench", "--protocols", protocol, "--workloads", "distinct"])
        .args(["--no-cold", "--no-verify", "--no-build"])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .arg("--out")
        .arg(&dir)
        .envs(build.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let deadline = Duration::from_secs(args.warmup + args.duration + 300);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", build.loadgen().display()))?;
    let status = match tokio::time::timeout(deadline, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            // SIGINT first: the child stops its stack on Ctrl-C; kill_on_drop is the backstop.
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
            bail!("{name} did not finish within {} s", deadline.as_secs());
        }
    };
    if !status.success() {
        bail!("{name} failed ({status}); see {}.log", dir.display());
    }
    let path = dir.join("results.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: ResultsFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(run) = file.runs.into_iter().next() else {
        bail!("{} holds no run", path.display());
    };
    let s = run.summary;
    Ok(Measured {
        protocol: protocol.to_owned(),
        pair,
        side: build.side,
        throughput: s.throughput,
        p99_ms: s.p99_ms,
        errors: s.refused_4xx + s.server_5xx + s.transport,
        cpu: run.cpu,
    })
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
