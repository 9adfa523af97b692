//! Is a quantity still growing? The soak's verdict on memory and disk.
//!
//! Over the second half of the run (by then the retention window has passed and state
//! should have reached its plateau), fit a least-squares line through the samples and compare
//! its slope with the mean: a quantity grows when it gains more than `threshold_pct` percent
//! of its mean per minute. A sawtooth (an AOF that is rewritten, a Kafka segment that is
//! deleted) fits a flat line; a leak that adds a little each interval does not.

use serde::{Deserialize, Serialize};

/// The least-squares slope of `y` over `x`; `None` with fewer than two distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

/// The verdict on one quantity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Growth {
    pub name: String,
    /// Units (bytes) per minute over the second half.
    pub slope_per_min: f64,
    /// Mean over the second half.
    pub mean: f64,
    /// `slope_per_min` as a percentage of `mean`.
    pub pct_per_min: f64,
    pub growing: bool,
}

/// Judges `series` (seconds since the start, value) over its second half: the samples at or
/// after half the time of the last one. `None` when that half holds fewer than three samples.
pub fn judge(name: &str, series: &[(f64, f64)], threshold_pct: f64) -> Option<Growth> {
    let end = series.last()?.0;
    let half: Vec<(f64, f64)> = series
        .iter()
        .filter(|p| p.0 >= end / 2.0)
        .map(|&(t, y)| (t / 60.0, y))
        .collect();
    if half.len() < 3 {
        return None;
    }
    let slope_per_min = slope(&half)?;
    let mean = half.iter().map(|p| p.1).sum::<f64>() / half.len() as f64;
    let pct_per_min = if mean > 0.0 {
        slope_per_min / mean * 100.0
    } else if slope_per_min > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    Some(Growth {
        name: name.to_owned(),
        slope_per_min,
        mean,
        pct_per_min,
        growing: pct_per_min > threshold_pct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=60)
            .map(|i| f64::from(i) * 10.0)
            .map(|t| (t, f(t)))
            .collect()
    }

    #[test]
    fn slope_of_a_line_is_exact() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|x| (f64::from(x), 3.0 * f64::from(x) + 7.0))
            .collect();
        assert!((slope(&pts).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn flat_after_a_ramp_is_not_growth() {
        // Climbs for the first 5 minutes (the retention window), then stays at 100 MB.
        let g = judge("redis", &series(|t| 1e8 * (t / 300.0).min(1.0)), 1.0).unwrap();
        assert!(!g.growing, "{g:?}");
        assert!(g.slope_per_min.abs() < 1e-6);
        assert!((g.mean - 1e8).abs() < 1.0);
    }

    #[test]
    fn steady_growth_is_caught_and_sized() {
        // 100 MB plus 2 MB a minute: about 1.6 % of the second half's mean per minute.
        let g = judge("aof", &series(|t| 1e8 + 2e6 * t / 60.0), 1.0).unwrap();
        assert!(g.growing, "{g:?}");
        assert!((g.slope_per_min - 2e6).abs() < 1.0);
        let mean = 1e8 + 2e6 * 7.5;
        assert!((g.pct_per_min - 2e6 / mean * 100.0).abs() < 1e-9);
        // The same growth under a looser threshold passes.
        assert!(
            !judge("aof", &series(|t| 1e8 + 2e6 * t / 60.0), 2.0)
                .unwrap()
                .growing
        );
    }

    #[test]
    fn a_sawtooth_with_a_flat_trend_is_not_growth() {
        // Grows 10 % within each minute, then drops back (an AOF rewrite).
        let g = judge(
            "aof",
            &series(|t| 1e8 * (1.0 + 0.1 * (t % 60.0) / 60.0)),
            1.0,
        )
        .unwrap();
        assert!(!g.growing, "{g:?}");
    }

    #[test]
    fn growth_from_zero_counts_and_too_short_series_are_not_judged() {
        let from_zero = [
            (0.0, 0.0),
            (10.0, 0.0),
            (20.0, 0.0),
            (30.0, 5.0),
            (40.0, 10.0),
        ];
        let g = judge("kafka", &from_zero, 1.0).unwrap();
        assert!(g.growing, "{g:?}");
        assert!(!judge("kafka", &series(|_| 0.0), 1.0).unwrap().growing);
        assert_eq!(
            judge("x", &[(0.0, 1.0), (10.0, 1.0), (20.0, 1.0)], 1.0),
            None
        );
        assert_eq!(judge("x", &[], 1.0), None);
    }
}
