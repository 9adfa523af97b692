//! The SVG plot of a benchmark: one column per workload; rows are throughput per second, p99
//! latency per second, and the latency distribution (log scale); one line per run (protocol,
//! and the warm-up when a workload was measured cold and warm). Below, when the runs measured
//! it, a stacked bar per run of the CPU milliseconds per checkout by component.
//!
//! [`panel`] and [`Line`] also draw the time series of `soak` and `outage`.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::report::RunReport;
use crate::stats::CURVE;
use crate::workload::Workload;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1050;
/// Height of the CPU bars below the panels.
const CPU_HEIGHT: u32 = 420;

fn color(protocol: &str, index: usize) -> RGBColor {
    match protocol {
        "saga" => RGBColor(31, 119, 180),
        "2pc" => RGBColor(214, 39, 40),
        _ => {
            let c = Palette99::pick(index + 2).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// Halfway to white: the cold run's line next to the warm one of the same protocol.
fn lighter(c: RGBColor) -> RGBColor {
    let half = |x: u8| ((u16::from(x) + 255) / 2) as u8;
    RGBColor(half(c.0), half(c.1), half(c.2))
}

pub(crate) fn max_or(values: impl Iterator<Item = f64>, floor: f64) -> f64 {
    values.fold(floor, f64::max)
}

/// Formats an axis key point.
pub(crate) type Label<'a> = &'a dyn Fn(&f64) -> String;

/// One line in a panel.
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a line per run, with a legend.
pub(crate) fn panel<DB, Y>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    x: (f64, f64),
    y: Y,
    (x_desc, y_desc): (&str, &str),
    (x_labels, y_labels): (Label, Label),
    lines: &[Line],
) -> Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot: {e}");
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(x.0..x.1, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_labels)
        .y_label_formatter(y_labels)
        .draw()
        .map_err(err)?;
    for Line {
        name,
        color: c,
        points,
    } in lines
    {
        let c = *c;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    if !lines.is_empty() {
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    Ok(())
}

/// Draws the legend of the chart's labelled series in `corner`.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    corner: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(corner)
        .draw()
        .map_err(|e| anyhow!("drawing the plot: {e}"))
}

/// Axis key points fall between integers too; those stay unlabelled.
pub(crate) fn integer_label(x: f64) -> Option<u64> {
    let i = x.round();
    ((x - i).abs() < 1e-6 && i >= 0.0).then_some(i as u64)
}

/// At most two decimals, without trailing zeros: axis steps like 0.1 * 6 print as "0.6".
pub(crate) fn number(y: f64) -> String {
    let s = format!("{y:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Writes the plot of `runs` to `path`.
pub fn write_svg(runs: &[RunReport], path: &Path) -> Result<()> {
    let with_cpu = runs.iter().any(|r| !r.cpu.is_empty());
    let height = HEIGHT + if with_cpu { CPU_HEIGHT } else { 0 };
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow!("drawing the plot: {e}"))?;
    let (root, bottom) = root.split_vertically(HEIGHT);
    if with_cpu {
        cpu_bars(&bottom, runs)?;
    }
    // A column per workload that has runs (both when there is nothing to draw).
    let mut workloads: Vec<Workload> = [Workload::Distinct, Workload::Random]
        .into_iter()
        .filter(|w| runs.iter().any(|r| r.workload == *w))
        .collect();
    if workloads.is_empty() {
        workloads = vec![Workload::Distinct, Workload::Random];
    }
    let grid = root.split_evenly((3, workloads.len()));

    for (col, workload) in workloads.iter().enumerate() {
        let runs: Vec<(usize, &RunReport)> = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.workload == *workload)
            .collect();
        let longest = runs.iter().map(|(_, r)| r.warmup_s).max().unwrap_or(0);
        let several = runs.iter().any(|(_, r)| r.warmup_s != longest);
        let lines = |f: &dyn Fn(&RunReport) -> Vec<(f64, f64)>| -> Vec<_> {
            runs.iter()
                .map(|(i, r)| {
                    let c = color(&r.protocol, *i);
                    Line {
                        name: match several {
                            true => format!("{} after {} s", r.protocol, r.warmup_s),
                            false => r.protocol.clone(),
                        },
                        color: if r.warmup_s < longest { lighter(c) } else { c },
                        points: f(r),
                    }
                })
                .collect()
        };
        let t_max = max_or(
            runs.iter()
                .flat_map(|(_, r)| r.series.iter().map(|s| f64::from(s.t) + 1.0)),
            1.0,
        );
        let time_label = |x: &f64| integer_label(*x).map_or_else(String::new, |t| t.to_string());

        let throughput = lines(&|r| {
            r.series
                .iter()
                .map(|s| (f64::from(s.t) + 0.5, s.throughput))
                .collect()
        });
        let y_max = max_or(
            throughput.iter().flat_map(|l| l.points.iter().map(|p| p.1)),
            10.0,
        ) * 1.15;
        panel(
            &grid[col],
            &format!("{workload}: throughput"),
            (0.0, t_max),
            0.0..y_max,
            ("time (s)", "checkouts/s"),
            (&time_label, &|y: &f64| format!("{y:.0}")),
            &throughput,
        )?;

        let p99 = lines(&|r| {
            r.series
                .iter()
                .map(|s| (f64::from(s.t) + 0.5, s.p99_ms))
                .collect()
        });
        let y_max = max_or(p99.iter().flat_map(|l| l.points.iter().map(|p| p.1)), 1.0) * 1.15;
        panel(
            &grid[workloads.len() + col],
            &format!("{workload}: p99 latency per second"),
            (0.0, t_max),
            0.0..y_max,
            ("time (s)", "ms"),
            (&time_label, &|y: &f64| number(*y)),
            &p99,
        )?;

        let curve = lines(&|r| {
            r.latency_curve
                .iter()
                .enumerate()
                .map(|(i, q)| (i as f64, q.ms.max(0.01)))
                .collect()
        });
        let y_max = max_or(curve.iter().flat_map(|l| l.points.iter().map(|p| p.1)), 1.0) * 2.0;
        let y_min = curve
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(f64::INFINITY, f64::min)
            .clamp(0.01, 1.0)
            / 2.0;
        let percentile_label = |x: &f64| {
            integer_label(*x)
                .and_then(|i| CURVE.get(i as usize))
                .map(|p| format!("p{p}"))
                .unwrap_or_default()
        };
        panel(
            &grid[2 * workloads.len() + col],
            &format!("{workload}: latency distribution"),
            (0.0, (CURVE.len() - 1) as f64),
            (y_min..y_max).log_scale(),
            ("percentile", "ms (log)"),
            (&percentile_label, &|y: &f64| number(*y)),
            &curve,
        )?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// A stacked bar per run: CPU milliseconds per checkout, one segment per component group.
fn cpu_bars<DB>(area: &DrawingArea<DB, plotters::coord::Shift>, runs: &[RunReport]) -> Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot: {e}");
    let runs: Vec<&RunReport> = runs.iter().filter(|r| !r.cpu.is_empty()).collect();
    let names = crate::report::cpu_components(runs.iter().copied());
    let y_max = max_or(runs.iter().map(|r| r.cpu_total_ms()), 0.01) * 1.3;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "CPU per checkout by component (measured run)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(10)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5..runs.len() as f64 - 0.5, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc("CPU ms per checkout")
        .y_label_formatter(&|y| number(*y))
        .draw()
        .map_err(err)?;
    for (k, name) in names.iter().enumerate() {
        let c = Palette99::pick(k).to_rgba();
        let fill = RGBColor(c.0, c.1, c.2).filled();
        let bars = runs.iter().enumerate().filter_map(|(i, r)| {
            let below: f64 = r
                .cpu
                .iter()
                .take_while(|c| &c.component != name)
                .map(|c| c.ms_per_checkout)
                .sum();
            let ms = r.cpu.iter().find(|c| &c.component == name)?.ms_per_checkout;
            let x = i as f64;
            Some(Rectangle::new(
                [(x - 0.35, below), (x + 0.35, below + ms)],
                fill,
            ))
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], fill));
    }
    let labels = runs.iter().enumerate().map(|(i, r)| {
        Text::new(
            format!(
                "{} {} after {} s: {:.2} ms",
                r.protocol,
                r.workload,
                r.warmup_s,
                r.cpu_total_ms()
            ),
            (i as f64 - 0.4, r.cpu_total_ms() + y_max * 0.03),
            ("sans-serif", 13),
        )
    });
    chart.draw_series(labels).map_err(err)?;
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::ComponentCpu;
    use crate::stats::{Quantile, Second, Summary};

    fn run(protocol: &str, workload: Workload, scale: f64) -> RunReport {
        RunReport {
            protocol: protocol.into(),
            workload,
            warmup_s: 25,
            summary: Summary::default(),
            exhausted: false,
            series: (0..5)
                .map(|t| Second {
                    t,
                    requests: 100,
                    errors: 0,
                    throughput: 1000.0 * scale + f64::from(t),
                    p50_ms: 5.0,
                    p99_ms: 20.0 * scale,
                })
                .collect(),
            latency_curve: CURVE
                .iter()
                .map(|&p| Quantile {
                    percentile: p,
                    ms: 1.0 + p * scale,
                })
                .collect(),
            verdict: None,
            generator_cores: None,
            cpu: Vec::new(),
        }
    }

    fn svg_of(runs: &[RunReport], name: &str) -> String {
        let path = std::env::temp_dir().join(format!("loadgen-{name}-{}.svg", std::process::id()));
        write_svg(runs, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        svg
    }

    #[test]
    fn writes_an_svg_with_every_panel_and_protocol() {
        let runs = [
            run("saga", Workload::Distinct, 1.0),
            run("2pc", Workload::Distinct, 1.5),
            run("saga", Workload::Random, 1.2),
        ];
        let svg = svg_of(&runs, "plot");
        assert!(svg.starts_with("<svg"));
        for text in [
            "distinct: throughput",
            "random: latency distribution",
            "saga",
            "2pc",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(
            !svg.contains("CPU per checkout"),
            "no CPU measured, no bars"
        );
    }

    #[test]
    fn cold_and_warm_runs_get_their_own_lines_and_cpu_bars() {
        let mut cold = run("saga", Workload::Distinct, 1.0);
        cold.warmup_s = 5;
        cold.cpu = vec![ComponentCpu {
            component: "kafka".into(),
            cpu_s: 1.0,
            ms_per_checkout: 0.5,
        }];
        let mut warm = run("saga", Workload::Distinct, 1.0);
        warm.cpu = vec![ComponentCpu {
            component: "order-*".into(),
            cpu_s: 1.0,
            ms_per_checkout: 0.25,
        }];
        let svg = svg_of(&[cold, warm], "cpu");
        for text in [
            "saga after 5 s",
            "saga after 25 s",
            "CPU per checkout by component",
            "kafka",
            "order-*",
            "saga distinct after 5 s: 0.50 ms",
            "saga distinct after 25 s: 0.25 ms",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.6000000000000001), "0.6");
        assert_eq!(number(250.0), "250");
        assert_eq!(number(0.126), "0.13");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn empty_input_still_draws_both_columns_of_empty_panels() {
        let svg = svg_of(&[], "empty");
        assert!(svg.starts_with("<svg"));
        for workload in ["distinct", "random"] {
            for panel in [
                "throughput",
                "p99 latency per second",
                "latency distribution",
            ] {
                let caption = format!("{workload}: {panel}");
                assert!(svg.contains(&caption), "{caption} missing");
            }
        }
    }
}
