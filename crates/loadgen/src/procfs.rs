//! What the stack's processes cost, read from `/proc` (Linux): CPU time and resident memory
//! per component, summed over the component's process and its descendants (nginx's workers,
//! a Redis AOF-rewrite child).
//!
//! A component's root pid comes from its pid file (`ROOT/pids/NAME.pid`); descendants are
//! found by scanning `/proc/*/stat` for their parent pid. CPU time counts `utime + stime` of
//! every live process of the tree plus `cutime + cstime` (children it has reaped), so a
//! child that exits between two samples is still counted once. `/proc` reports it in clock
//! ticks of `USER_HZ`, which is 100 on every Linux ABI.

use std::collections::HashMap;

pub use stack::procs::{Stat, TICKS_PER_S, parse_stat};

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds (user + system) this process has used so far.
pub fn self_cpu_seconds() -> Option<f64> {
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some(stat.own_ticks as f64 / TICKS_PER_S as f64)
}

/// `VmRSS` of `/proc/PID/status`, in bytes.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One scan of every process: pid → stat.
pub struct Snapshot {
    stats: HashMap<u32, Stat>,
}

impl Snapshot {
    pub fn take() -> Self {
        let stats = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, read_stat(pid)?)))
            .collect();
        Snapshot { stats }
    }

    /// `root` and all its descendants that are alive in this snapshot.
    pub fn tree(&self, root: u32) -> Vec<u32> {
        if !self.stats.contains_key(&root) {
            return Vec::new();
        }
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (&pid, s) in &self.stats {
            children.entry(s.ppid).or_default().push(pid);
        }
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            if let Some(kids) = children.get(&parent) {
                out.extend(kids.iter().copied().filter(|k| *k != parent));
            }
            i += 1;
        }
        out
    }

    /// CPU seconds used so far by the tree under `root` (reaped children included).
    pub fn tree_cpu_s(&self, root: u32) -> f64 {
        let ticks: u64 = self
            .tree(root)
            .iter()
            .filter_map(|pid| self.stats.get(pid))
            .map(|s| s.own_ticks + s.children_ticks)
            .sum();
        ticks as f64 / TICKS_PER_S as f64
    }

    /// Resident memory of the tree under `root`, in bytes. Pages a forked child still shares
    /// with its parent count twice, as they do in `ps`.
    pub fn tree_rss(&self, root: u32) -> u64 {
        self.tree(root)
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|s| parse_rss(&s))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tredis-server\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t5\n";
        assert_eq!(parse_rss(status), Some(1234 * 1024));
        assert_eq!(parse_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn the_tree_holds_children_and_grandchildren() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let tree = loop {
            let tree = Snapshot::take().tree(me);
            if tree.len() >= 3 || std::time::Instant::now() > deadline {
                break tree;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        for pid in Snapshot::take().tree(child.id()).into_iter().rev() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let _ = child.wait();
        assert_eq!(tree[0], me);
        assert!(tree.contains(&child.id()), "{tree:?}");
        assert!(tree.len() >= 3, "sh and its sleep under us: {tree:?}");
        assert!(Snapshot::take().tree_rss(me) > 0);
    }
}
