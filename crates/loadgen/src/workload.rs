//! Which order each checkout targets.
//!
//! * `distinct`: every checkout a new order, ids `0`, `1`, ... from one shared cursor, never
//!   repeated; the run ends early when the orders run out. Warm-up and run share the cursor.
//! * `random`: the course's mix, ids drawn uniformly with replacement, so later draws hit
//!   orders that are already paid (these answer 2xx and charge nothing).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Distinct,
    Random,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Distinct => "distinct",
            Workload::Random => "random",
        })
    }
}

/// The id stream of one workload over `orders` orders, shared by all workers.
#[derive(Clone, Debug)]
pub struct Ids {
    workload: Workload,
    orders: u32,
    seed: u64,
    cursor: Arc<AtomicU64>,
    /// Distinguishes the random streams of successive phases (warm-up, run).
    phase: Arc<AtomicU64>,
}

impl Ids {
    pub fn new(workload: Workload, orders: u32, seed: u64) -> Self {
        Self {
            workload,
            orders,
            seed,
            cursor: Arc::new(AtomicU64::new(0)),
            phase: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts a new phase: workers created after this draw fresh random streams.
    pub fn next_phase(&self) {
        self.phase.fetch_add(1, Ordering::Relaxed);
    }

    /// The picker one worker uses.
    pub fn picker(&self, worker: usize) -> Picker {
        match self.workload {
            Workload::Distinct => Picker::Distinct {
                cursor: Arc::clone(&self.cursor),
                orders: self.orders,
            },
            Workload::Random => {
                let phase = self.phase.load(Ordering::Relaxed);
                // Spread (seed, phase, worker) over the seed space; StdRng mixes it further.
                let seed = self
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(phase << 32)
                    .wrapping_add(worker as u64);
                Picker::Random {
                    rng: Box::new(StdRng::seed_from_u64(seed)),
                    orders: self.orders,
                }
            }
        }
    }
}

#[derive(Debug)]
pub enum Picker {
    Distinct { cursor: Arc<AtomicU64>, orders: u32 },
    Random { rng: Box<StdRng>, orders: u32 },
}

impl Picker {
    /// The next order id, or `None` once a distinct workload has used every order.
    pub fn next_id(&mut self) -> Option<u32> {
        match self {
            Picker::Distinct { cursor, orders } => {
                let id = cursor.fetch_add(1, Ordering::Relaxed);
                (id < u64::from(*orders)).then_some(id as u32)
            }
            Picker::Random { rng, orders } => (*orders > 0).then(|| rng.random_range(0..*orders)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn distinct_ids_never_repeat_across_workers_and_run_out() {
        let ids = Ids::new(Workload::Distinct, 100, 1);
        let mut a = ids.picker(0);
        let mut b = ids.picker(1);
        let mut seen = HashSet::new();
        loop {
            let x = a.next_id();
            let y = b.next_id();
            for id in [x, y].into_iter().flatten() {
                assert!(seen.insert(id), "{id} handed out twice");
            }
            if x.is_none() && y.is_none() {
                break;
            }
        }
        assert_eq!(seen, (0..100).collect());
        assert_eq!(a.next_id(), None);
    }

    #[test]
    fn distinct_cursor_is_shared_across_phases() {
        let ids = Ids::new(Workload::Distinct, 10, 1);
        assert_eq!(ids.picker(0).next_id(), Some(0));
        ids.next_phase();
        assert_eq!(ids.picker(0).next_id(), Some(1));
    }

    #[test]
    fn random_ids_stay_in_range_repeat_and_cover() {
        let ids = Ids::new(Workload::Random, 50, 7);
        let mut p = ids.picker(0);
        let drawn: Vec<u32> = (0..5000).map(|_| p.next_id().unwrap()).collect();
        assert!(drawn.iter().all(|&id| id < 50));
        let distinct: HashSet<_> = drawn.iter().collect();
        assert_eq!(distinct.len(), 50, "5000 uniform draws cover 50 ids");
    }

    #[test]
    fn random_streams_are_reproducible_and_differ_per_worker() {
        let draw = |ids: &Ids, w| {
            let mut p = ids.picker(w);
            (0..20).map(|_| p.next_id().unwrap()).collect::<Vec<_>>()
        };
        let ids = Ids::new(Workload::Random, 1_000_000, 42);
        assert_eq!(
            draw(&ids, 0),
            draw(&Ids::new(Workload::Random, 1_000_000, 42), 0)
        );
        assert_ne!(draw(&ids, 0), draw(&ids, 1));
        let before = draw(&ids, 0);
        ids.next_phase();
        assert_ne!(before, draw(&ids, 0));
    }

    #[test]
    fn empty_population_yields_nothing() {
        assert_eq!(Ids::new(Workload::Random, 0, 1).picker(0).next_id(), None);
        assert_eq!(Ids::new(Workload::Distinct, 0, 1).picker(0).next_id(), None);
    }
}
