//! The live console at `/console/`: what a person opens first. One page (HTML, CSS and JS,
//! hand-written and embedded in the binary, so it works offline) polls `/console/api/state`
//! every second and draws it.
//!
//! Everything it shows comes from the order Redis, so every replica's console shows every
//! replica's transactions, and memory stays bounded:
//!
//! - throughput, latency percentiles and outcomes: `stats:{slot}`, one hash per 5 seconds
//!   (outcome counts and a latency histogram of the checkouts whose answer was decided then)
//!   that expires after 10 minutes; the page shows 5 minutes;
//! - the transactions in flight: `txs:active`; the recent ones: `txs:recent`, the last 200
//!   finished. Each replica counts both in memory and adds them once a second
//!   ([`Tally`](crate::checkout::tally::Tally)), so they may lag a second;
//! - each transaction's timeline: its record `tx:{id}`, where the scripts note the time of
//!   every state (`t:{state}`) and the coordinator each participant's answer to each phase
//!   and how long it took (`a:{participant}:{phase}`), at no extra round trip.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::{Json, Router};
use common::Result;
use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::checkout::log::{ACTIVE, RECENT, STATS_BUCKET_S, stats_key, tx_key};
use crate::checkout::tally::{BUCKETS, LATENCY_BOUNDS_MS};
/// 5 minutes of 5-second buckets.
const WINDOW: u64 = 60;
/// The summary tiles cover the last minute.
const SUMMARY: usize = 12;
const SHOWN_ACTIVE: isize = 8;
const SHOWN_RECENT: isize = 40;

const INDEX: &str = include_str!("index.html");
const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// What the console reads: the transaction log's Redis, and who is serving.
#[derive(Clone)]
pub struct Source {
    pub redis: ConnectionManager,
    pub replica: String,
    pub protocol: &'static str,
}

/// The console's routes; they need nothing of the service but their [`Source`], so they fit
/// any router's state.
pub fn routes<S: Clone + Send + Sync + 'static>(source: Source) -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .route("/console/api/state", get(state))
        .with_state(source)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[derive(Serialize)]
struct Snapshot {
    now_ms: u64,
    replica: String,
    protocol: &'static str,
    bucket_s: u64,
    /// Oldest first; the last one is still filling.
    series: Vec<Point>,
    last_minute: Point,
    /// Over the whole window.
    outcomes: BTreeMap<String, u64>,
    in_flight: u64,
    active: Vec<Tx>,
    recent: Vec<Tx>,
}

#[derive(Serialize, Default)]
struct Point {
    /// Start of the bucket (ms since the epoch).
    t: u64,
    count: u64,
    committed: u64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

#[derive(Serialize, Default, Debug, PartialEq)]
struct Tx {
    id: String,
    order: String,
    protocol: String,
    state: String,
    owner: String,
    started: u64,
    code: Option<String>,
    detail: Option<String>,
    /// State → when it was entered (ms since the epoch).
    times: BTreeMap<String, u64>,
    steps: Vec<StepNote>,
}

#[derive(Serialize, Debug, PartialEq)]
struct StepNote {
    participant: String,
    phase: String,
    result: String,
    ms: u64,
}

async fn state(State(source): State<Source>) -> Result<Json<Snapshot>> {
    let mut redis = source.redis.clone();
    let now = common::protocol::now_ms();
    let slot = now / (STATS_BUCKET_S * 1000);
    let first = slot + 1 - WINDOW;
    let (in_flight, active_ids, recent_ids): (u64, Vec<String>, Vec<String>) = redis::pipe()
        .zcard(ACTIVE)
        .zrange(ACTIVE, 0, SHOWN_ACTIVE - 1)
        .lrange(RECENT, 0, SHOWN_RECENT - 1)
        .query_async(&mut redis)
        .await?;
    let mut stats = redis::pipe();
    for s in first..=slot {
        stats.hgetall(stats_key(s));
    }
    let buckets: Vec<HashMap<String, u64>> = stats.query_async(&mut redis).await?;
    let mut records = redis::pipe();
    for id in active_ids.iter().chain(&recent_ids) {
        records.hgetall(tx_key(id));
    }
    let mut records: Vec<HashMap<String, String>> = if active_ids.len() + recent_ids.len() > 0 {
        records.query_async(&mut redis).await?
    } else {
        Vec::new()
    };
    let recent_records = records.split_off(active_ids.len().min(records.len()));
    let txs = |ids: &[String], records: Vec<HashMap<String, String>>| -> Vec<Tx> {
        ids.iter()
            .zip(records)
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(id, fields)| tx_of(id, fields))
            .collect()
    };
    let mut outcomes = BTreeMap::new();
    let mut histograms = Vec::with_capacity(buckets.len());
    for bucket in &buckets {
        let mut histogram = [0u64; BUCKETS];
        for (field, n) in bucket {
            if let Some(outcome) = field.strip_prefix("o:") {
                *outcomes.entry(outcome.to_string()).or_insert(0) += n;
            } else if let Some(i) = field
                .strip_prefix("h:")
                .and_then(|i| i.parse::<usize>().ok())
                && (1..=BUCKETS).contains(&i)
            {
                histogram[i - 1] += n;
            }
        }
        histograms.push(histogram);
    }
    let series = (first..=slot)
        .zip(&buckets)
        .zip(&histograms)
        .map(|((s, bucket), histogram)| {
            point(
                s * STATS_BUCKET_S * 1000,
                histogram,
                bucket.get("o:committed").copied().unwrap_or(0),
            )
        })
        .collect::<Vec<_>>();
    let mut minute = [0u64; BUCKETS];
    for histogram in histograms.iter().rev().take(SUMMARY) {
        for (total, n) in minute.iter_mut().zip(histogram) {
            *total += n;
        }
    }
    let committed = series.iter().rev().take(SUMMARY).map(|p| p.committed).sum();
    Ok(Json(Snapshot {
        now_ms: now,
        replica: source.replica.clone(),
        protocol: source.protocol,
        bucket_s: STATS_BUCKET_S,
        last_minute: point(now, &minute, committed),
        series,
        outcomes,
        in_flight,
        active: txs(&active_ids, records),
        recent: txs(&recent_ids, recent_records),
    }))
}

fn point(t: u64, histogram: &[u64; BUCKETS], committed: u64) -> Point {
    Point {
        t,
        count: histogram.iter().sum(),
        committed,
        p50: percentile(histogram, 0.5),
        p95: percentile(histogram, 0.95),
        p99: percentile(histogram, 0.99),
    }
}

/// The `q` quantile (ms) of a latency histogram, interpolated within its bucket; the open
/// last bucket answers its lower bound.
fn percentile(histogram: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().sum();
    let rank = q * total as f64;
    let mut seen = 0;
    for (i, &n) in histogram.iter().enumerate() {
        if n > 0 && (seen + n) as f64 >= rank {
            let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] } as f64;
            let upper = LATENCY_BOUNDS_MS.get(i).map_or(lower, |&b| b as f64);
            return Some(lower + (upper - lower) * (rank - seen as f64) / n as f64);
        }
        seen += n;
    }
    None
}

/// A transaction record's fields as the console shows them.
fn tx_of(id: &str, fields: HashMap<String, String>) -> Tx {
    let mut tx = Tx {
        id: id.to_string(),
        ..Tx::default()
    };
    for (field, value) in fields {
        match field.as_str() {
            "order" => tx.order = value,
            "protocol" => tx.protocol = value,
            "state" => tx.state = value,
            "owner" => tx.owner = value,
            "started" => tx.started = value.parse().unwrap_or(0),
            "code" => tx.code = Some(value),
            "detail" => tx.detail = Some(value),
            _ => {
                if let Some(state) = field.strip_prefix("t:") {
                    tx.times
                        .insert(state.to_string(), value.parse().unwrap_or(0));
                } else if let Some(step) = field.strip_prefix("a:") {
                    let (participant, phase) = step.split_once(':').unwrap_or((step, ""));
                    let (result, ms) = value.split_once(' ').unwrap_or((&value, "0"));
                    tx.steps.push(StepNote {
                        participant: participant.to_string(),
                        phase: phase.to_string(),
                        result: result.to_string(),
                        ms: ms.parse().unwrap_or(0),
                    });
                }
            }
        }
    }
    let order = |phase: &str| ["try", "commit", "cancel"].iter().position(|p| *p == phase);
    tx.steps
        .sort_by(|a, b| (order(&a.phase), &a.participant).cmp(&(order(&b.phase), &b.participant)));
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_within_buckets() {
        let mut histogram = [0u64; BUCKETS];
        assert_eq!(percentile(&histogram, 0.5), None);
        histogram[4] = 10; // 10..20 ms
        assert_eq!(percentile(&histogram, 0.5), Some(15.0));
        histogram[13] = 10; // slower than 10 s
        assert_eq!(percentile(&histogram, 0.99), Some(10_000.0));
        assert_eq!(percentile(&histogram, 0.25), Some(15.0));
    }

    #[test]
    fn records_become_timelines() {
        let fields: HashMap<String, String> = [
            ("order", "o1"),
            ("state", "committed"),
            ("started", "100"),
            ("t:trying", "100"),
            ("t:committing", "118"),
            ("a:stock:commit", "done 3"),
            ("a:payment:try", "done 12"),
            ("a:stock:try", "done 17"),
            ("i:item", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let tx = tx_of("t1", fields);
        assert_eq!(tx.order, "o1");
        assert_eq!(tx.times["committing"], 118);
        let steps: Vec<_> = tx
            .steps
            .iter()
            .map(|s| format!("{}:{}:{}:{}", s.participant, s.phase, s.result, s.ms))
            .collect();
        assert_eq!(
            steps,
            [
                "payment:try:done:12",
                "stock:try:done:17",
                "stock:commit:done:3"
            ]
        );
    }
}
