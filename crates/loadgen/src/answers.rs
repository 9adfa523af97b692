//! What the clients were told: per order, the checkout answers the run received. The verifier
//! holds the system to them (a 2xx means paid, a 4xx means not paid).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::client::Class;
use crate::run::Sample;

/// The strongest answer one order got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Never checked out.
    Untouched,
    /// Only 5xx or transport errors: the outcome is unknown, either state is allowed.
    Unknown,
    /// Only 4xx: the order must not be paid.
    Refused,
    /// At least one 2xx: the order must be paid.
    Paid,
}

/// Order ids by answer, sorted; `refused_after_paid` lists orders that were refused by a
/// checkout sent after an earlier checkout of the same order had been answered 2xx.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    pub paid: Vec<u32>,
    pub refused: Vec<u32>,
    pub unknown: Vec<u32>,
    pub refused_after_paid: Vec<u32>,
}

#[derive(Default)]
struct Seen {
    first_paid_done_us: Option<u64>,
    last_refused_start_us: Option<u64>,
    unknown: bool,
}

impl Answers {
    pub fn from_samples<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut seen: HashMap<u32, Seen> = HashMap::new();
        for s in samples {
            let e = seen.entry(s.order).or_default();
            match s.class {
                Class::Ok => {
                    let done = s.done_us();
                    e.first_paid_done_us = Some(e.first_paid_done_us.map_or(done, |d| d.min(done)));
                }
                Class::Refused => {
                    e.last_refused_start_us = Some(
                        e.last_refused_start_us
                            .map_or(s.start_us, |t| t.max(s.start_us)),
                    );
                }
                Class::Unavailable | Class::ServerError | Class::Transport | Class::Timeout => {
                    e.unknown = true
                }
            }
        }
        let mut a = Answers::default();
        for (order, e) in seen {
            match (e.first_paid_done_us, e.last_refused_start_us) {
                (Some(paid), refused) => {
                    a.paid.push(order);
                    if refused.is_some_and(|r| r > paid) {
                        a.refused_after_paid.push(order);
                    }
                }
                (None, Some(_)) => a.refused.push(order),
                (None, None) if e.unknown => a.unknown.push(order),
                (None, None) => {}
            }
        }
        for v in [
            &mut a.paid,
            &mut a.refused,
            &mut a.unknown,
            &mut a.refused_after_paid,
        ] {
            v.sort_unstable();
        }
        a
    }

    /// The answer of each order `0..orders`; ids beyond are ignored.
    pub fn per_order(&self, orders: u32) -> Vec<Answer> {
        let mut out = vec![Answer::Untouched; orders as usize];
        for (ids, answer) in [
            (&self.unknown, Answer::Unknown),
            (&self.refused, Answer::Refused),
            (&self.paid, Answer::Paid),
        ] {
            for &id in ids {
                if let Some(slot) = out.get_mut(id as usize) {
                    *slot = answer;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(order: u32, class: Class, start_us: u64, latency_us: u64) -> Sample {
        Sample {
            order,
            class,
            start_us,
            latency_us,
        }
    }

    #[test]
    fn strongest_answer_wins() {
        let samples = [
            s(1, Class::Ok, 0, 10),
            s(1, Class::Ok, 20, 10),
            s(2, Class::Refused, 0, 10),
            s(3, Class::Transport, 0, 10),
            s(3, Class::Refused, 20, 10),
            s(4, Class::ServerError, 0, 10),
            s(5, Class::Refused, 0, 10),
            s(5, Class::Ok, 20, 10),
        ];
        let a = Answers::from_samples(&samples);
        assert_eq!(a.paid, vec![1, 5]);
        assert_eq!(a.refused, vec![2, 3]);
        assert_eq!(a.unknown, vec![4]);
        // Order 5 was refused before it was paid: allowed.
        assert!(a.refused_after_paid.is_empty());
        use Answer::*;
        assert_eq!(
            a.per_order(7),
            vec![Untouched, Paid, Refused, Refused, Unknown, Paid, Untouched]
        );
    }

    #[test]
    fn refusal_sent_after_a_2xx_arrived_is_flagged() {
        // Overlapping requests may legitimately disagree; a later one may not.
        let overlapping = [s(9, Class::Ok, 0, 100), s(9, Class::Refused, 50, 100)];
        assert!(
            Answers::from_samples(&overlapping)
                .refused_after_paid
                .is_empty()
        );
        let later = [s(9, Class::Ok, 0, 100), s(9, Class::Refused, 101, 5)];
        assert_eq!(Answers::from_samples(&later).refused_after_paid, vec![9]);
    }

    #[test]
    fn out_of_range_ids_are_ignored_by_per_order() {
        let a = Answers::from_samples(&[s(10, Class::Ok, 0, 1)]);
        assert_eq!(a.per_order(2), vec![Answer::Untouched; 2]);
    }
}
