//! Pid files, signals, and the CPU times of `/proc/PID/stat`.
//!
//! Every component runs in its own process group (pgid = its pid), so one `killpg` also reaches
//! what it forked (nginx workers, a Redis rewrite child) and a Ctrl-C in the launcher's terminal
//! never reaches the components behind the supervisor's back. Every component also runs with
//! its data dir as working directory, which lets us tell our own processes from unrelated ones
//! that reused a stale pid: see [`owned_by`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::{Error, Result};

/// `USER_HZ`: the unit of the CPU times in `/proc/PID/stat` (100 on every Linux ABI).
pub const TICKS_PER_S: u64 = 100;

/// The fields of `/proc/PID/stat` we read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime: CPU time of the process itself (all threads), in ticks.
    pub own_ticks: u64,
    /// cutime + cstime: CPU time of its reaped children, in ticks.
    pub children_ticks: u64,
}

/// Parses one `/proc/PID/stat` line. The command name is parenthesised and may hold spaces
/// or parentheses, so fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    // Fields after the name, from field 3 (state) on: ppid is field 4, utime..cstime 14..17.
    let rest: Vec<&str> = line.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        own_ticks: field(14)? + field(15)?,
        children_ticks: field(16)? + field(17)?,
    })
}

/// Writes `pid` atomically (rename), so readers never see a half-written file.
pub fn write_pid(path: &Path, pid: u32) -> Result<()> {
    crate::files::write_atomic(path, format!("{pid}\n"))
}

pub fn read_pid(path: &Path) -> Option<u32> {
    let pid = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    valid(pid).then_some(pid)
}

/// Pids 0 and 1 (and negative ones) mean "my group", "init" or "everyone" to kill(2): never ours.
fn valid(pid: u32) -> bool {
    pid > 1 && pid <= i32::MAX as u32
}

pub fn remove_pid(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// True while a process with this pid runs. A zombie does not: it only waits to be reaped.
pub fn alive(pid: u32) -> bool {
    exists(pid) && !is_zombie(pid)
}

/// True until the pid is reaped. Stricter than [`alive`]: a killed multi-threaded process (a
/// JVM) shows as a zombie leader while its other threads still hold its sockets.
pub fn exists(pid: u32) -> bool {
    valid(pid) && !matches!(kill(to_pid(pid), None), Err(Errno::ESRCH))
}

/// Sends `signal` to one process. A process that is already gone is not an error.
pub fn signal(pid: u32, signal: Signal) -> Result<()> {
    send(pid, signal, kill::<Signal>)
}

/// Sends `signal` to the process group led by `pid`; a group that is gone is not an error.
pub fn signal_group(pid: u32, signal: Signal) -> Result<()> {
    send(pid, signal, killpg::<Signal>)
}

/// Delivers `signal` to `pid` through `kill(2)` or `killpg(2)`, skipping pids that are never
/// ours and treating "no such process" as done.
fn send(pid: u32, signal: Signal, deliver: fn(Pid, Signal) -> nix::Result<()>) -> Result<()> {
    if !valid(pid) {
        return Ok(());
    }
    match deliver(to_pid(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::Signal { pid, source: e }),
    }
}

/// The working directory of `pid`, if it can be read.
pub fn cwd(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Whether `pid` is alive and runs inside `root` (its cwd is under it). Redis rewrites its
/// command line, so the cwd is the one mark all our components share.
pub fn owned_by(pid: u32, root: &Path) -> bool {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    alive(pid) && cwd(pid).is_some_and(|dir| dir.starts_with(&root))
}

/// Polls until `pid` is gone or `timeout` passes; true if it is gone.
pub async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// SIGTERM, then SIGKILL to the whole group once `grace` has passed.
pub async fn terminate(pid: u32, grace: Duration) -> Result<()> {
    signal(pid, Signal::SIGTERM)?;
    if !wait_gone(pid, grace).await {
        signal_group(pid, Signal::SIGKILL)?;
        signal(pid, Signal::SIGKILL)?;
        wait_gone(pid, Duration::from_secs(5)).await;
    }
    Ok(())
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns the soft limit now
/// in force. Children inherit it: the gateway holds two descriptors per proxied request and
/// Redis one per client, and the usual soft default of 1024 caps both far below a benchmark.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(pid as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A name with spaces and a ")" in it; utime 7, stime 3, cutime 20, cstime 2.
        let line = "4242 (nginx: a) b) S 17 4242 4242 0 -1 4194368 100 0 0 0 7 3 20 2 20 0 1 0 \
                    1000 2000 300 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 17,
                own_ticks: 10,
                children_ticks: 22
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
    }
}
