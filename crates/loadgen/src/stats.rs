//! Summary statistics of one run: counts, throughput, latency percentiles (HdrHistogram, 3
//! significant digits) and a per-second time series.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::Class;
use crate::run::{Record, Sample};

/// The figures the benchmark quotes for one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub elapsed_s: f64,
    /// Completed requests per second of wall time.
    pub throughput: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub ok_2xx: u64,
    pub refused_4xx: u64,
    /// 503 included.
    pub server_5xx: u64,
    /// No HTTP answer: connection errors and client timeouts.
    pub transport: u64,
}

impl Summary {
    /// Anything but a 2xx: in the benchmark every checkout should succeed.
    pub fn errors(&self) -> u64 {
        self.refused_4xx + self.server_5xx + self.transport
    }
}

/// One second of the run, by completion time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the run started.
    pub t: u32,
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over this bucket (the last one may be shorter than a second).
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A point of the latency distribution: percentile (0..=100) and latency.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    pub percentile: f64,
    pub ms: f64,
}

/// Percentiles drawn in the plot and stored in the JSON.
pub const CURVE: [f64; 9] = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0];

/// An empty, auto-resizing latency histogram (microseconds), so any latency fits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

/// Records one latency; recording resizes the histogram (`saturating_record` would not).
pub fn record(h: &mut Histogram<u64>, latency_us: u64) {
    let v = latency_us.max(1);
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

pub fn histogram<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Histogram<u64> {
    let mut h = new_histogram();
    for s in samples {
        record(&mut h, s.latency_us);
    }
    h
}

/// The quantile `q` (0..=1) in milliseconds; 0 for an empty histogram.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        ms(h.value_at_quantile(q))
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn summarize(record: &Record) -> Summary {
    let h = histogram(&record.samples);
    let count = |c: Class| record.samples.iter().filter(|s| s.class == c).count() as u64;
    let elapsed_s = record.elapsed_s();
    let requests = record.samples.len() as u64;
    let empty = h.is_empty();
    let q = |q: f64| quantile_ms(&h, q);
    Summary {
        requests,
        elapsed_s,
        throughput: if elapsed_s > 0.0 {
            requests as f64 / elapsed_s
        } else {
            0.0
        },
        mean_ms: if empty { 0.0 } else { h.mean() / 1000.0 },
        p50_ms: q(0.50),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: if empty { 0.0 } else { ms(h.max()) },
        ok_2xx: count(Class::Ok),
        refused_4xx: count(Class::Refused),
        server_5xx: count(Class::ServerError) + count(Class::Unavailable),
        transport: count(Class::Transport) + count(Class::Timeout),
    }
}

pub fn per_second(record: &Record) -> Vec<Second> {
    let rel = |s: &Sample| s.done_us().saturating_sub(record.start_us);
    let span_us = record.end_us.saturating_sub(record.start_us);
    // Whole seconds only: the few requests still in flight at the deadline land in the last
    // one, instead of making a sliver of a bucket with a meaningless rate.
    let buckets = (span_us / 1_000_000).max(1) as usize;
    let mut by_second: Vec<Vec<&Sample>> = vec![Vec::new(); buckets];
    for s in &record.samples {
        let b = ((rel(s) / 1_000_000) as usize).min(buckets - 1);
        by_second[b].push(s);
    }
    by_second
        .iter()
        .enumerate()
        .map(|(t, samples)| {
            let h = histogram(samples.iter().copied());
            let width_us = if buckets == 1 {
                span_us.min(1_000_000)
            } else {
                1_000_000
            };
            let requests = samples.len() as u64;
            let q = |q: f64| quantile_ms(&h, q);
            Second {
                t: t as u32,
                requests,
                errors: samples.iter().filter(|s| s.class != Class::Ok).count() as u64,
                throughput: if width_us > 0 {
                    requests as f64 * 1e6 / width_us as f64
                } else {
                    0.0
                },
                p50_ms: q(0.50),
                p99_ms: q(0.99),
            }
        })
        .collect()
}

pub fn curve(record: &Record) -> Vec<Quantile> {
    let h = histogram(&record.samples);
    CURVE
        .iter()
        .map(|&p| Quantile {
            percentile: p,
            ms: quantile_ms(&h, p / 100.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(start_us: u64, latency_us: u64, class: Class) -> Sample {
        Sample {
            order: 0,
            class,
            start_us,
            latency_us,
        }
    }

    /// 1..=1000 ms latencies, one request started every millisecond from t = 10 s.
    fn uniform() -> Record {
        let samples: Vec<_> = (1..=1000u64)
            .map(|i| sample(10_000_000 + i * 1000, i * 1000, Class::Ok))
            .collect();
        Record {
            start_us: 10_000_000,
            end_us: samples.iter().map(Sample::done_us).max().unwrap(),
            samples,
            exhausted: false,
            cpu_s: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let s = summarize(&uniform());
        assert_eq!(s.requests, 1000);
        assert!(close(s.p50_ms, 500.0), "{}", s.p50_ms);
        assert!(close(s.p95_ms, 950.0), "{}", s.p95_ms);
        assert!(close(s.p99_ms, 990.0), "{}", s.p99_ms);
        assert!(close(s.max_ms, 1000.0), "{}", s.max_ms);
        assert!(close(s.mean_ms, 500.5), "{}", s.mean_ms);
        // The last request finishes at 10 s + 1 s + 1 s.
        assert!(close(s.elapsed_s, 2.0));
        assert!(close(s.throughput, 500.0));
        assert_eq!(s.errors(), 0);
    }

    #[test]
    fn classes_are_counted() {
        let mut r = uniform();
        r.samples[0].class = Class::Refused;
        r.samples[1].class = Class::ServerError;
        r.samples[2].class = Class::ServerError;
        r.samples[3].class = Class::Transport;
        r.samples[4].class = Class::Unavailable;
        r.samples[5].class = Class::Timeout;
        let s = summarize(&r);
        assert_eq!(
            (s.ok_2xx, s.refused_4xx, s.server_5xx, s.transport),
            (994, 1, 3, 2)
        );
        assert_eq!(s.errors(), 6);
    }

    #[test]
    fn empty_run_is_all_zero() {
        let s = summarize(&Record::default());
        assert_eq!(s, Summary::default());
        assert_eq!(per_second(&Record::default()).len(), 1);
        assert!(curve(&Record::default()).iter().all(|q| q.ms == 0.0));
    }

    #[test]
    fn per_second_buckets_by_completion_time() {
        let start = 5_000_000;
        let samples = vec![
            sample(start, 200_000, Class::Ok),
            sample(start + 100_000, 800_000, Class::Ok),
            sample(start + 900_000, 200_000, Class::Refused),
            sample(start + 2_200_000, 300_000, Class::Ok),
        ];
        let r = Record {
            start_us: start,
            end_us: start + 2_500_000,
            samples,
            exhausted: false,
            cpu_s: None,
        };
        let series = per_second(&r);
        assert_eq!(series.len(), 2);
        assert_eq!((series[0].requests, series[0].errors), (2, 0));
        assert_eq!((series[1].requests, series[1].errors), (2, 1));
        assert!(close(series[0].throughput, 2.0));
        assert!(close(series[1].throughput, 2.0));
        assert!(close(series[0].p99_ms, 800.0), "{}", series[0].p99_ms);

        // A run shorter than a second is one bucket, as long as the run.
        let short = Record {
            end_us: start + 500_000,
            samples: r.samples[..1].to_vec(),
            ..r.clone()
        };
        let series = per_second(&short);
        assert_eq!(series.len(), 1);
        assert!(close(series[0].throughput, 2.0));
    }

    #[test]
    fn curve_is_monotonic_and_ends_at_max() {
        let c = curve(&uniform());
        assert_eq!(c.len(), CURVE.len());
        assert!(c.windows(2).all(|w| w[0].ms <= w[1].ms));
        assert!(close(c.last().unwrap().ms, 1000.0));
    }
}
