//! What a benchmark produces: the JSON document in `.bench/results.json` and the table on stdout.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::components::{self, ComponentCpu};
use crate::populate::Population;
use crate::run::Record;
use crate::stats::{self, Quantile, Second, Summary};
use crate::verify::Verdict;
use crate::workload::Workload;

/// The figure we quote: at least this many checkouts per second...
pub const TARGET_THROUGHPUT: f64 = 1500.0;
/// ...at a p99 of at most this many milliseconds, with no error and a consistent state.
pub const TARGET_P99_MS: f64 = 100.0;

/// One measured run: one protocol, one workload, on a fresh stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub protocol: String,
    pub workload: Workload,
    /// Seconds of load on the stack before this run began: short for a cold run.
    #[serde(default)]
    pub warmup_s: u64,
    pub summary: Summary,
    /// A distinct workload that ran out of orders before the duration was up.
    pub exhausted: bool,
    pub series: Vec<Second>,
    pub latency_curve: Vec<Quantile>,
    /// Absent when verification was skipped.
    pub verdict: Option<Verdict>,
    /// CPU the load generator itself used, in cores (1.0 = one core busy), to show it was not
    /// the bottleneck.
    pub generator_cores: Option<f64>,
    /// CPU of each component group over the run (empty when the stack is not ours).
    #[serde(default)]
    pub cpu: Vec<ComponentCpu>,
}

impl RunReport {
    pub fn of(
        protocol: &str,
        workload: Workload,
        record: &Record,
        verdict: Option<Verdict>,
    ) -> Self {
        RunReport {
            protocol: protocol.to_owned(),
            workload,
            warmup_s: 0,
            summary: stats::summarize(record),
            exhausted: record.exhausted,
            series: stats::per_second(record),
            latency_curve: stats::curve(record),
            verdict,
            generator_cores: record
                .cpu_s
                .filter(|_| record.elapsed_s() > 0.0)
                .map(|cpu| cpu / record.elapsed_s()),
            cpu: Vec::new(),
        }
    }

    /// CPU milliseconds per checkout of all components together.
    pub fn cpu_total_ms(&self) -> f64 {
        components::total_ms(&self.cpu)
    }

    pub fn meets_target(&self) -> bool {
        self.summary.throughput >= TARGET_THROUGHPUT
            && self.summary.p99_ms <= TARGET_P99_MS
            && self.summary.errors() == 0
            && self.verdict.as_ref().is_none_or(Verdict::consistent)
    }
}

/// How the benchmark was run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub concurrency: usize,
    pub duration_s: u64,
    pub warmup_s: u64,
    /// Seconds of load before the cold runs; absent without cold runs.
    #[serde(default)]
    pub cold_warmup_s: Option<u64>,
    pub max_requests: Option<u64>,
    /// Checkouts per second of an open loop; absent for a closed loop.
    pub rate: Option<f64>,
    pub runtime_threads: usize,
    pub seed: u64,
    pub population: Population,
    pub cores: usize,
}

/// The whole of `.bench/results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Seconds since the Unix epoch.
    pub finished_at: u64,
    pub config: BenchConfig,
    pub target: Target,
    pub runs: Vec<RunReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub throughput: f64,
    pub p99_ms: f64,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            throughput: TARGET_THROUGHPUT,
            p99_ms: TARGET_P99_MS,
        }
    }
}

fn verdict_cell(v: Option<&Verdict>) -> String {
    match v {
        None => "skipped".into(),
        Some(v) if v.consistent() => "ok".into(),
        Some(v) => format!("{} violations", v.violations),
    }
}

/// A fixed-width table, one row per run.
pub fn table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>14}  target",
        "protocol",
        "workload",
        "warm-up",
        "requests",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "2xx",
        "4xx",
        "5xx",
        "transp",
        "consistency",
    );
    for r in runs {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "{:<9} {:<9} {:>7} {:>8} {:>8.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>6} {:>6} {:>6} {:>14}  {}",
            r.protocol,
            r.workload.to_string() + if r.exhausted { "*" } else { "" },
            format!("{} s", r.warmup_s),
            s.requests,
            s.throughput,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.max_ms,
            s.ok_2xx,
            s.refused_4xx,
            s.server_5xx,
            s.transport,
            verdict_cell(r.verdict.as_ref()),
            if r.meets_target() { "met" } else { "missed" }
        );
    }
    if runs.iter().any(|r| r.exhausted) {
        let _ = writeln!(
            out,
            "* every order was checked out before the duration ended"
        );
    }
    let _ = writeln!(
        out,
        "target: >= {TARGET_THROUGHPUT:.0} checkouts/s at p99 <= {TARGET_P99_MS:.0} ms, no error, consistent"
    );
    for r in runs {
        if let Some(v) = r.verdict.as_ref().filter(|v| !v.consistent()) {
            let _ = writeln!(
                out,
                "{} {}: violations by kind {:?}",
                r.protocol, r.workload, v.kinds
            );
            for e in &v.examples {
                let _ = writeln!(out, "  {e}");
            }
        }
    }
    out
}

/// The component groups of `runs`, in order of first appearance.
pub fn cpu_components<'a>(runs: impl IntoIterator<Item = &'a RunReport>) -> Vec<String> {
    components::names(runs.into_iter().map(|r| r.cpu.as_slice()))
}

/// CPU milliseconds per checkout, one row per run, one column per component group.
pub fn cpu_table(runs: &[RunReport]) -> String {
    let runs: Vec<&RunReport> = runs.iter().filter(|r| !r.cpu.is_empty()).collect();
    let names = cpu_components(runs.iter().copied());
    let mut out = String::new();
    if runs.is_empty() {
        return out;
    }
    let _ = write!(
        out,
        "CPU ms per checkout\n{:<9} {:<9} {:>7}",
        "protocol", "workload", "warm-up"
    );
    for n in &names {
        let _ = write!(out, " {n:>10}");
    }
    let _ = writeln!(out, " {:>8}", "total");
    for r in runs {
        let _ = write!(
            out,
            "{:<9} {:<9} {:>7}",
            r.protocol,
            r.workload.to_string(),
            format!("{} s", r.warmup_s)
        );
        for n in &names {
            let _ = write!(out, " {:>10.3}", components::ms_of(&r.cpu, n));
        }
        let _ = writeln!(out, " {:>8.3}", r.cpu_total_ms());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(throughput: f64, p99_ms: f64, errors: u64, violations: u64) -> RunReport {
        RunReport {
            protocol: "saga".into(),
            workload: Workload::Distinct,
            warmup_s: 25,
            summary: Summary {
                requests: 100,
                throughput,
                p99_ms,
                transport: errors,
                ..Summary::default()
            },
            exhausted: false,
            series: vec![],
            latency_curve: vec![],
            verdict: Some(Verdict {
                violations,
                ..Verdict::default()
            }),
            generator_cores: None,
            cpu: Vec::new(),
        }
    }

    #[test]
    fn target_needs_all_four_conditions() {
        assert!(run(1500.0, 100.0, 0, 0).meets_target());
        assert!(!run(1499.0, 50.0, 0, 0).meets_target());
        assert!(!run(2000.0, 101.0, 0, 0).meets_target());
        assert!(!run(2000.0, 50.0, 1, 0).meets_target());
        assert!(!run(2000.0, 50.0, 0, 1).meets_target());
    }

    #[test]
    fn table_has_a_row_per_run() {
        let t = table(&[run(1600.0, 20.0, 0, 0), run(100.0, 20.0, 0, 3)]);
        assert_eq!(
            t.lines()
                .filter(|l| l.ends_with("met") || l.ends_with("missed"))
                .count(),
            2
        );
        assert!(t.contains("met"));
        assert!(t.contains("3 violations"));
    }

    #[test]
    fn cpu_table_has_a_column_per_component_and_the_total() {
        let cpu = |component: &str, ms: f64| ComponentCpu {
            component: component.into(),
            cpu_s: ms,
            ms_per_checkout: ms,
        };
        let mut a = run(1600.0, 20.0, 0, 0);
        a.cpu = vec![cpu("kafka", 0.5), cpu("order-*", 0.25)];
        let mut b = run(1600.0, 20.0, 0, 0);
        b.warmup_s = 5;
        b.cpu = vec![cpu("kafka", 1.0), cpu("gateway", 0.125)];
        let t = cpu_table(&[a, b, run(1.0, 1.0, 0, 0)]);
        let lines: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(lines[1][3..], ["kafka", "order-*", "gateway", "total"]);
        assert_eq!(
            lines[2][2..],
            ["25", "s", "0.500", "0.250", "0.000", "0.750"]
        );
        assert_eq!(
            lines[3][2..],
            ["5", "s", "1.000", "0.000", "0.125", "1.125"]
        );
        assert_eq!(cpu_table(&[run(1.0, 1.0, 0, 0)]), "");
    }
}
