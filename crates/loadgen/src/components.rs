//! What each component of a running stack costs: CPU time and resident memory, read from
//! `/proc` ([`crate::procfs`]) for the pids in the stack's pid files.
//!
//! Components are reported in groups: the replicas of a service are summed as `order-*`,
//! `stock-*`, `payment-*`; `gateway`, `kafka` and the three Redis (`order-db`, ...) are their
//! own group. Groups keep the stack's start order.

use serde::{Deserialize, Serialize};
use stack::Stack;

use crate::procfs::Snapshot;

/// The group `component` is reported under.
pub fn group(component: &str) -> String {
    match component.rsplit_once('-') {
        Some((service, n)) if n.parse::<u32>().is_ok() => format!("{service}-*"),
        _ => component.to_owned(),
    }
}

/// `value` of each component's process tree, summed per group.
fn per_group<T>(stack: &Stack, value: impl Fn(u32) -> T) -> Vec<(String, T)>
where
    T: Copy + Default + std::ops::Add<Output = T>,
{
    let mut out: Vec<(String, T)> = Vec::new();
    for name in stack.components() {
        let v = stack.pid(&name).map_or_else(T::default, &value);
        let g = group(&name);
        match out.iter_mut().find(|(n, _)| *n == g) {
            Some((_, sum)) => *sum = *sum + v,
            None => out.push((g, v)),
        }
    }
    out
}

/// CPU seconds each group has used so far.
pub fn cpu_seconds(stack: &Stack) -> Vec<(String, f64)> {
    let snap = Snapshot::take();
    per_group(stack, |pid| snap.tree_cpu_s(pid))
}

/// Resident memory of each group now, in bytes.
pub fn rss_bytes(stack: &Stack) -> Vec<(String, u64)> {
    let snap = Snapshot::take();
    per_group(stack, |pid| snap.tree_rss(pid))
}

/// One group's CPU over a measured run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentCpu {
    pub component: String,
    /// CPU seconds used during the run.
    pub cpu_s: f64,
    /// Milliseconds of CPU per checkout answered during the run.
    pub ms_per_checkout: f64,
}

/// The CPU each group used between two samples, per checkout. A component restarted in
/// between (new pid, counters from zero) counts from zero, never negative.
pub fn cpu_cost(
    before: &[(String, f64)],
    after: &[(String, f64)],
    checkouts: u64,
) -> Vec<ComponentCpu> {
    after
        .iter()
        .map(|(component, end)| {
            let start = before
                .iter()
                .find(|(n, _)| n == component)
                .map_or(0.0, |(_, s)| *s);
            let cpu_s = if end >= &start { end - start } else { *end };
            ComponentCpu {
                component: component.clone(),
                cpu_s,
                ms_per_checkout: if checkouts > 0 {
                    cpu_s * 1000.0 / checkouts as f64
                } else {
                    0.0
                },
            }
        })
        .collect()
}

/// CPU milliseconds per checkout of all groups together.
pub fn total_ms(cpu: &[ComponentCpu]) -> f64 {
    cpu.iter().map(|c| c.ms_per_checkout).sum()
}

/// CPU milliseconds per checkout of one group; 0 if the run did not measure it.
pub fn ms_of(cpu: &[ComponentCpu], component: &str) -> f64 {
    cpu.iter()
        .find(|c| c.component == component)
        .map_or(0.0, |c| c.ms_per_checkout)
}

/// The groups measured by some runs, in order of first appearance.
pub fn names<'a>(runs: impl IntoIterator<Item = &'a [ComponentCpu]>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for c in runs.into_iter().flatten() {
        if !names.contains(&c.component) {
            names.push(c.component.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_grouped_and_the_rest_is_not() {
        assert_eq!(group("order-1"), "order-*");
        assert_eq!(group("payment-12"), "payment-*");
        assert_eq!(group("order-db"), "order-db");
        assert_eq!(group("kafka"), "kafka");
        assert_eq!(group("gateway"), "gateway");
    }

    #[test]
    fn cost_is_the_difference_per_checkout() {
        let s = |v: &[(&str, f64)]| -> Vec<(String, f64)> {
            v.iter().map(|(n, x)| (n.to_string(), *x)).collect()
        };
        let before = s(&[("kafka", 10.0), ("gateway", 2.0), ("order-*", 50.0)]);
        // order-* restarted: its counter began again at zero.
        let after = s(&[("kafka", 12.0), ("gateway", 2.5), ("order-*", 1.0)]);
        let cost = cpu_cost(&before, &after, 1000);
        let ms: Vec<(&str, f64)> = cost
            .iter()
            .map(|c| (c.component.as_str(), c.ms_per_checkout))
            .collect();
        assert_eq!(ms, vec![("kafka", 2.0), ("gateway", 0.5), ("order-*", 1.0)]);
        assert!(
            cpu_cost(&before, &after, 0)
                .iter()
                .all(|c| c.ms_per_checkout == 0.0)
        );
    }
}
