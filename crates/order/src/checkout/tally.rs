//! The console's figures, counted in memory and written to the order Redis once a second.
//!
//! The console shows every replica's checkouts (outcomes and latencies per 5 seconds in
//! `stats:{slot}`, the last finished transactions in `txs:recent`), so the figures live in
//! Redis. They used to be written by the transition script of every checkout: five more
//! commands per checkout in the order Redis and its AOF. Each replica now counts in memory
//! and adds its counts in one pipeline per second, so the cost no longer grows with the load.
//! The price: the console lags up to a second behind (it polls every second anyway), and a
//! replica that dies loses its last second of figures, which are for people to watch, not
//! part of any guarantee (the transaction records are written as before).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::log::{RECENT, STATS_BUCKET_S, stats_key};

/// Upper bounds (ms) of the latency buckets `h:1`..`h:13` of `stats:{slot}`; `h:14` counts
/// the slower ones.
pub const LATENCY_BOUNDS_MS: [u64; 13] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
/// Latency buckets, the slower-than-all one included.
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;
/// How many finished transactions `txs:recent` keeps.
pub const RECENT_KEPT: usize = 200;
/// How long a `stats:{slot}` hash lives (the console shows 5 minutes).
const STATS_TTL_S: i64 = 600;
/// How often the counts are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Counts of one 5-second slot not written yet.
#[derive(Default, Debug, PartialEq)]
struct Slot {
    outcomes: BTreeMap<&'static str, u64>,
    histogram: [u64; BUCKETS],
}

#[derive(Default, Debug)]
struct Pending {
    slots: BTreeMap<u64, Slot>,
    /// Finished transaction ids, oldest first, at most [`RECENT_KEPT`].
    recent: VecDeque<String>,
}

/// What this replica counted since the last write.
#[derive(Default)]
pub struct Tally(Mutex<Pending>);

impl Tally {
    /// A checkout's answer was decided (`outcome`: `committed` or the abort's code), `took_ms`
    /// after it began, at `now_ms` (both on the order Redis's clock).
    pub fn decided(&self, outcome: &'static str, took_ms: u64, now_ms: u64) {
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|&bound| took_ms <= bound)
            .unwrap_or(BUCKETS - 1);
        let mut pending = self.0.lock().expect("lock poisoned");
        let slot = pending
            .slots
            .entry(now_ms / (STATS_BUCKET_S * 1000))
            .or_default();
        *slot.outcomes.entry(outcome).or_insert(0) += 1;
        slot.histogram[bucket] += 1;
    }

    /// Transaction `id` is final.
    pub fn finished(&self, id: &str) {
        let mut pending = self.0.lock().expect("lock poisoned");
        if pending.recent.len() == RECENT_KEPT {
            pending.recent.pop_front();
        }
        pending.recent.push_back(id.to_string());
    }

    /// The commands that add what was counted since the last call, or `None` if nothing was.
    fn take(&self) -> Option<redis::Pipeline> {
        let Pending { slots, recent } = std::mem::take(&mut *self.0.lock().expect("lock poisoned"));
        if slots.is_empty() && recent.is_empty() {
            return None;
        }
        let mut pipe = redis::pipe();
        for (slot, counts) in slots {
            let key = stats_key(slot);
            for (outcome, n) in counts.outcomes {
                pipe.hincr(&key, format!("o:{outcome}"), n).ignore();
            }
            for (i, n) in counts.histogram.iter().enumerate().filter(|(_, n)| **n > 0) {
                pipe.hincr(&key, format!("h:{}", i + 1), *n).ignore();
            }
            pipe.expire(&key, STATS_TTL_S).ignore();
        }
        if !recent.is_empty() {
            // LPUSH puts each id at the head in turn: oldest first in, newest first out.
            pipe.lpush(RECENT, Vec::from(recent)).ignore();
            pipe.ltrim(RECENT, 0, RECENT_KEPT as isize - 1).ignore();
        }
        Some(pipe)
    }

    /// Writes what was counted since the last write. On a Redis error the counts are dropped
    /// (they are figures to watch; retrying could count them twice).
    pub async fn flush(&self, redis: &ConnectionManager) {
        let Some(pipe) = self.take() else { return };
        let mut conn = redis.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %e, "console figures not written");
        }
    }

    /// Writes the counts every second until `shutdown`, and once more then.
    pub async fn run(self: Arc<Self>, redis: ConnectionManager, shutdown: CancellationToken) {
        common::periodic::every(FLUSH_EVERY, &shutdown, || self.flush(&redis)).await;
        self.flush(&redis).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(tally: &Tally) -> std::sync::MutexGuard<'_, Pending> {
        tally.0.lock().unwrap()
    }

    #[test]
    fn counts_each_answer_in_its_slot_and_latency_bucket() {
        let tally = Tally::default();
        tally.decided("committed", 1, 10_000);
        tally.decided("committed", 7, 14_999);
        tally.decided("insufficient_credit", 20_000, 15_000);
        let pending = pending(&tally);
        let first = &pending.slots[&2];
        assert_eq!(first.outcomes[&"committed"], 2);
        assert_eq!(first.histogram[0], 1, "1 ms is in the first bucket");
        assert_eq!(first.histogram[3], 1, "7 ms is in the 10 ms bucket");
        let second = &pending.slots[&3];
        assert_eq!(second.outcomes[&"insufficient_credit"], 1);
        assert_eq!(second.histogram[BUCKETS - 1], 1, "beyond every bound");
    }

    #[test]
    fn keeps_only_the_latest_finished_ids() {
        let tally = Tally::default();
        for i in 0..RECENT_KEPT + 5 {
            tally.finished(&i.to_string());
        }
        let pending = pending(&tally);
        assert_eq!(pending.recent.len(), RECENT_KEPT);
        assert_eq!(pending.recent.front().map(String::as_str), Some("5"));
        assert_eq!(pending.recent.back().map(String::as_str), Some("204"));
    }

    #[test]
    fn taking_empties_it() {
        let tally = Tally::default();
        assert!(tally.take().is_none(), "nothing counted, nothing to write");
        tally.decided("committed", 3, 0);
        tally.finished("a");
        assert!(tally.take().is_some());
        assert!(tally.take().is_none(), "written once only");
    }
}
