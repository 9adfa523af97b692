//! SVG plots of time series (the soak's and the outage's): a grid of panels over one time
//! axis, each a few lines, drawn with [`crate::plot::panel`].

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

pub use crate::plot::Line;
use crate::plot::{integer_label, max_or, number, panel};

/// One panel of a series plot.
pub struct Panel {
    pub caption: String,
    pub unit: String,
    pub lines: Vec<Line>,
}

/// The `i`-th line colour.
pub fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// A line named `name` through `points` (missing values, NaN, left out), coloured as the
/// `i`-th.
pub fn line(name: &str, i: usize, points: Vec<(f64, f64)>) -> Line {
    Line {
        name: name.to_owned(),
        color: color(i),
        points: points.into_iter().filter(|p| p.1.is_finite()).collect(),
    }
}

/// Draws `panels` in a grid of `columns`, all over the same time axis (`time_unit`, e.g.
/// "s" or "min"), each panel 330 px high, to `path`.
pub fn write(path: &Path, panels: &[Panel], columns: usize, time_unit: &str) -> Result<()> {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let root = SVGBackend::new(path, (1200, 330 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow!("drawing the plot: {e}"))?;
    let t_max = max_or(
        panels
            .iter()
            .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0))),
        1.0,
    );
    let time_label = |x: &f64| integer_label(*x).map_or_else(String::new, |t| t.to_string());
    for (area, p) in root.split_evenly((rows, columns)).iter().zip(panels) {
        let y_max = max_or(
            p.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)),
            1.0,
        ) * 1.15;
        panel(
            area,
            &p.caption,
            (0.0, t_max),
            0.0..y_max,
            (&format!("time ({time_unit})"), &p.unit),
            (&time_label, &|y: &f64| number(*y)),
            &p.lines,
        )?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_panel_and_line_is_drawn() {
        let path = std::env::temp_dir().join(format!("loadgen-series-{}.svg", std::process::id()));
        let panels = [
            Panel {
                caption: "Redis used_memory".into(),
                unit: "MiB".into(),
                lines: vec![
                    line("order-db", 0, vec![(0.0, 1.0), (1.0, 2.0)]),
                    line("stock-db", 1, vec![(0.0, 3.0), (1.0, f64::NAN)]),
                ],
            },
            Panel {
                caption: "throughput".into(),
                unit: "checkouts/s".into(),
                lines: vec![line("checkouts", 0, vec![(0.0, 2000.0), (1.0, 2100.0)])],
            },
            Panel {
                caption: "empty panel".into(),
                unit: "x".into(),
                lines: vec![],
            },
        ];
        write(&path, &panels, 2, "min").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        for text in [
            "Redis used_memory",
            "order-db",
            "stock-db",
            "throughput",
            "empty panel",
            "time (min)",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
