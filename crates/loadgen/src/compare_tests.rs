use super::*;

fn cpu(component: &str, ms: f64) -> ComponentCpu {
    ComponentCpu {
        component: component.into(),
        cpu_s: ms,
        ms_per_checkout: ms,
    }
}

fn run(
    protocol: &str,
    pair: usize,
    side: Side,
    throughput: f64,
    kafka: f64,
    order: f64,
) -> Measured {
    Measured {
        protocol: protocol.into(),
        pair,
        side,
        throughput,
        p99_ms: 100.0,
        errors: 0,
        cpu: vec![cpu("kafka", kafka), cpu("order-*", order)],
    }
}

#[test]
fn sides_alternate_which_runs_first() {
    use Side::{Baseline as B, Candidate as C};
    assert_eq!(
        schedule(3),
        vec![(0, B), (0, C), (1, C), (1, B), (2, B), (2, C)]
    );
    assert!(schedule(0).is_empty());
}

#[test]
fn env_arguments_need_a_key() {
    assert_eq!(
        parse_env("KAFKA_JVM_OPTS=-XX:A=1 -XX:B"),
        Ok(("KAFKA_JVM_OPTS".into(), "-XX:A=1 -XX:B".into()))
    );
    assert_eq!(parse_env("EMPTY="), Ok(("EMPTY".into(), String::new())));
    assert!(parse_env("=1").is_err());
    assert!(parse_env("NOVALUE").is_err());
}

#[test]
fn ratios_are_taken_within_pairs_and_only_complete_ones() {
    let runs = vec![
        run("saga", 0, Side::Baseline, 1000.0, 2.0, 2.0),
        run("saga", 0, Side::Candidate, 2000.0, 1.0, 1.0),
        // A slower minute: both sides slower, the ratio the same.
        run("saga", 1, Side::Candidate, 500.0, 2.0, 2.0),
        run("saga", 1, Side::Baseline, 250.0, 4.0, 4.0),
        // Pair 2 lacks its candidate (the run failed): no ratio.
        run("saga", 2, Side::Baseline, 1000.0, 1.0, 1.0),
        run("2pc", 0, Side::Baseline, 1000.0, 1.0, 1.0),
        run("2pc", 0, Side::Candidate, 1000.0, 1.5, 1.5),
    ];
    assert_eq!(
        pair_ratios(&runs, "saga", Measured::cpu_total_ms),
        vec![0.5, 0.5]
    );
    assert_eq!(pair_ratios(&runs, "saga", |r| r.throughput), vec![2.0, 2.0]);
    assert_eq!(pair_ratios(&runs, "2pc", Measured::cpu_total_ms), vec![1.5]);
    assert!(pair_ratios(&runs, "none", Measured::cpu_total_ms).is_empty());
}

#[test]
fn spread_ignores_what_is_not_a_number() {
    let s = Spread::of([1.0, 3.0, f64::NAN, 2.0]).unwrap();
    assert_eq!((s.mean, s.min, s.max), (2.0, 1.0, 3.0));
    assert_eq!(Spread::of(std::iter::empty()), None);
}

#[test]
fn summary_shows_each_side_per_component_and_the_pair_ratios() {
    let runs = vec![
        run("saga", 0, Side::Baseline, 1000.0, 2.0, 1.0),
        run("saga", 0, Side::Candidate, 1500.0, 1.0, 0.5),
        run("saga", 1, Side::Candidate, 1300.0, 1.0, 1.0),
        run("saga", 1, Side::Baseline, 900.0, 3.0, 1.0),
    ];
    let text = summary(&runs);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][rows[0].len() - 2..], ["kafka", "order-*"], "{text}");
    // saga baseline: 2 runs, 950/s, p99 100, 0 errors, CPU 3.5 (3.0-4.0), kafka 2.5, order 1.0
    assert_eq!(
        rows[1],
        [
            "saga",
            "baseline",
            "2",
            "950",
            "100.0",
            "0",
            "3.500",
            "(3.000-4.000)",
            "2.500",
            "1.000"
        ],
        "{text}"
    );
    assert_eq!(
        rows[2],
        [
            "saga",
            "candidate",
            "2",
            "1400",
            "100.0",
            "0",
            "1.750",
            "(1.500-2.000)",
            "1.000",
            "0.750"
        ],
        "{text}"
    );
    // CPU ratios 1.5/3.0 = 0.5 and 2.0/4.0 = 0.5; throughput 1.5 and 1.444...
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(
            "saga      2 pairs: CPU per checkout 0.50 (0.50-0.50), checkouts/s 1.47 (1.44-1.50)"
        ),
        "{text}"
    );
}

#[test]
fn an_older_report_without_cpu_still_reads() {
    let text = r#"{"runs": [{"summary": {"throughput": 812.5, "p99_ms": 90.0, "transport": 2}}]}"#;
    let file: ResultsFile = serde_json::from_str(text).unwrap();
    let run = &file.runs[0];
    assert_eq!(run.summary.throughput, 812.5);
    assert_eq!(run.summary.transport + run.summary.server_5xx, 2);
    assert!(run.cpu.is_empty());
}
