//! The consistency verdict: read every order, item and user back through the public API and
//! check conservation and the answers the clients got (DESIGN.md §2).
//!
//! Reading is I/O ([`read_state`]); judging is a pure function ([`check`]) of the population,
//! the state read and the answers, so it is unit-tested on small hand-made data sets.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::answers::{Answer, Answers};
use crate::client::{Api, Item, Order, User};
use crate::populate::Population;

/// Everything read back; `None` where an entity could not be read (unknown or failing).
#[derive(Clone, Debug, Default)]
pub struct State {
    pub orders: Vec<Option<Order>>,
    pub items: Vec<Option<Item>>,
    pub users: Vec<Option<User>>,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// 0 means consistent.
    pub violations: u64,
    /// Violations by kind.
    pub kinds: BTreeMap<String, u64>,
    /// The first few violations, spelled out.
    pub examples: Vec<String>,
    pub paid_orders: u64,
    pub stock_sold: i64,
    pub credit_charged: i64,
    /// Seconds spent reading the state back.
    pub read_s: f64,
}

const EXAMPLES: usize = 20;

impl Verdict {
    pub fn consistent(&self) -> bool {
        self.violations == 0
    }

    fn flag(&mut self, kind: &str, detail: impl FnOnce() -> String) {
        self.violations += 1;
        *self.kinds.entry(kind.to_owned()).or_default() += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(format!("{kind}: {}", detail()));
        }
    }
}

/// Reads all `0..n` orders, items and users with `concurrency` requests in flight.
pub async fn read_state(api: &Api, p: &Population, concurrency: usize) -> State {
    async fn all<T, F, Fut>(n: u32, concurrency: usize, what: &str, get: F) -> Vec<Option<T>>
    where
        F: Fn(u32) -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let mut failures = 0u64;
        let out: Vec<Option<T>> = futures::stream::iter(0..n)
            .map(get)
            .buffered(concurrency.max(1))
            .map(|r| {
                r.unwrap_or_else(|e| {
                    failures += 1;
                    if failures <= 3 {
                        eprintln!("  reading {what}: {e:#}");
                    }
                    None
                })
            })
            .collect()
            .await;
        if failures > 3 {
            eprintln!("  reading {what}: {failures} reads failed in all");
        }
        out
    }
    State {
        orders: all(p.orders, concurrency, "orders", |i| api.find_order(i)).await,
        items: all(p.items, concurrency, "items", |i| api.find_item(i)).await,
        users: all(p.users, concurrency, "users", |i| api.find_user(i)).await,
    }
}

/// Reads the state back and judges it.
pub async fn verify(
    api: &Api,
    p: &Population,
    answers: Option<&Answers>,
    concurrency: usize,
) -> Verdict {
    let t = Instant::now();
    let state = read_state(api, p, concurrency).await;
    let read_s = t.elapsed().as_secs_f64();
    Verdict {
        read_s,
        ..check(p, &state, answers)
    }
}

fn index(id: &str, n: u32) -> Option<usize> {
    id.parse::<u32>()
        .ok()
        .filter(|&i| i < n)
        .map(|i| i as usize)
}

/// Judges a state. With `answers`, they must be complete (every checkout sent against this
/// population), so a paid order nobody checked out is a violation too.
pub fn check(p: &Population, state: &State, answers: Option<&Answers>) -> Verdict {
    let mut v = Verdict::default();
    let told = answers.map(|a| a.per_order(p.orders));
    let mut sold = vec![0i128; p.items as usize];
    let mut charged = vec![0i128; p.users as usize];

    for (i, order) in state.orders.iter().enumerate() {
        let Some(o) = order else {
            v.flag("order_unreadable", || format!("order {i}"));
            continue;
        };
        let answer = told.as_ref().map_or(Answer::Unknown, |t| t[i]);
        match (answer, o.paid) {
            (Answer::Paid, false) => v.flag("acknowledged_but_not_paid", || {
                format!("order {i} got a 2xx checkout but is not paid")
            }),
            (Answer::Refused, true) => v.flag("refused_but_paid", || {
                format!("order {i} got only 4xx checkouts but is paid")
            }),
            (Answer::Untouched, true) => v.flag("paid_without_checkout", || {
                format!("order {i} is paid but was never checked out")
            }),
            _ => {}
        }
        if o.total_cost < 0 {
            v.flag("negative_total_cost", || {
                format!("order {i}: {}", o.total_cost)
            });
        }
        if !o.paid {
            continue;
        }
        v.paid_orders += 1;
        for (item, qty) in &o.items {
            match index(item, p.items) {
                Some(_) if *qty < 0 => {
                    v.flag("negative_quantity", || format!("order {i}: {item} x {qty}"))
                }
                Some(it) => sold[it] += i128::from(*qty),
                None => v.flag("unknown_item_in_order", || {
                    format!("order {i}: item {item}")
                }),
            }
        }
        match index(&o.user_id, p.users) {
            Some(u) => charged[u] += i128::from(o.total_cost),
            None => v.flag("unknown_user_in_order", || {
                format!("order {i}: user {}", o.user_id)
            }),
        }
    }

    let stock = |item: &Option<Item>| item.as_ref().map(|it| it.stock);
    ITEMS.judge(&mut v, p.stock, state.items.iter().map(stock), &sold);
    let credit = |user: &Option<User>| user.as_ref().map(|u| u.credit);
    USERS.judge(&mut v, p.credit, state.users.iter().map(credit), &charged);

    for &o in answers.map_or(&[][..], |a| &a.refused_after_paid) {
        v.flag("refused_after_paid", || {
            format!("order {o} was refused by a checkout sent after it had been paid")
        });
    }

    v.stock_sold = clamp(sold.iter().sum());
    v.credit_charged = clamp(charged.iter().sum());
    v
}

/// One kind of account, as the violations name it: items and their stock, users and their
/// credit.
struct Accounts {
    noun: &'static str,
    balance: &'static str,
    /// What paid orders took, in a mismatch's words.
    paid: &'static str,
}

const ITEMS: Accounts = Accounts {
    noun: "item",
    balance: "stock",
    paid: "sold in paid orders",
};

const USERS: Accounts = Accounts {
    noun: "user",
    balance: "credit",
    paid: "owed by paid orders",
};

impl Accounts {
    /// Flags every account that could not be read, is negative, or lost anything but what
    /// paid orders took (`paid[i]`) from its starting balance `start`.
    fn judge(
        &self,
        v: &mut Verdict,
        start: i64,
        balances: impl Iterator<Item = Option<i64>>,
        paid: &[i128],
    ) {
        let Accounts { noun, balance, .. } = self;
        for (i, now) in balances.enumerate() {
            let Some(now) = now else {
                v.flag(&format!("{noun}_unreadable"), || format!("{noun} {i}"));
                continue;
            };
            if now < 0 {
                v.flag(&format!("negative_{balance}"), || {
                    format!("{noun} {i}: {now}")
                });
            }
            let taken = i128::from(start) - i128::from(now);
            if taken != paid[i] {
                v.flag(&format!("{balance}_mismatch"), || {
                    format!(
                        "{noun} {i}: {taken} taken from {balance}, {} {}",
                        paid[i], self.paid
                    )
                });
            }
        }
    }
}

fn clamp(x: i128) -> i64 {
    x.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
