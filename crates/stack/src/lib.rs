//! The local stack runner: runs the whole webshop on one machine without containers, for
//! `make up` and for the integration tests of every crate.
//!
//! Parts:
//! - [`config`] — [`StackConfig`] (root dir, replicas, protocol, [`PortLayout`]) and its
//!   defaults for `make up` ([`StackConfig::from_env`]) and tests ([`StackConfig::for_tests`]).
//! - [`component`] — the components (`order-db`.., `kafka`, `order-1`.., `gateway`), their
//!   start stages and health probes; [`health`]: the probes themselves (raw Redis, Kafka and
//!   HTTP requests).
//! - [`launch`] — how each process is started; [`kafka`], [`nginx`], [`prometheus`]: their
//!   generated configs; [`install`]: Debian packages and the Kafka jars (Maven), installed
//!   when missing.
//! - [`supervisor`] — the `stack supervise` process: starts stages in order, restarts any
//!   component that dies (the watchdog), stops everything in reverse order.
//! - [`Stack`] ([`handle`]): launches a supervisor and talks to a running stack: URLs, pids,
//!   `kill`, `wait_healthy`, `stop`. [`locks`] keeps stacks apart (root dir, port slot);
//!   [`files`] writes what they share on disk.
//!
//! Layout of a root (`.stack/` for `make up`, `target/stack-tests/NAME-PID/` for tests):
//! `pids/NAME.pid`, `logs/NAME.log` (appended; `logs/supervisor.log` tells what the watchdog
//! did), `data/NAME/` (each process's working dir: Redis AOF, Kafka log dirs, nginx.conf),
//! `stack.json` (the running supervisor's pid and resolved config), `supervisor.lock`.
//!
//! Ports of `make up`: gateway `GATEWAY_PORT` (8000), Redis 6380/6381/6382 (order, stock,
//! payment), Kafka 9092 (controller 9093), replica `i` of order/stock/payment on 8100+i,
//! 8200+i, 8300+i, Prometheus (`MONITORING=1`) 9090. Test stacks ([`Ports::Auto`]) take a free block of 100 ports from 20000
//! on ([`PortLayout::slot`]), locked for the supervisor's lifetime, so any number of stacks
//! (tests, benchmarks, `make up`) run side by side.
//!
//! Tests share one stack per test binary through a static. The stack lives in its own
//! supervisor process, not in a test's runtime, and stops when the test process exits:
//!
//! ```no_run
//! use std::time::Duration;
//! use stack::{Stack, StackConfig};
//! use tokio::sync::OnceCell;
//!
//! async fn stack() -> &'static Stack {
//!     static STACK: OnceCell<Stack> = OnceCell::const_new();
//!     STACK
//!         .get_or_init(|| async {
//!             let config = StackConfig::for_tests("my-suite").with_replicas(2);
//!             Stack::start(config).await.expect("stack starts")
//!         })
//!         .await
//! }
//!
//! # async fn a_test() -> stack::Result<()> {
//! let stack = stack().await;
//! let create = format!("{}/stock/item/create/5", stack.gateway_url());
//! let stock_redis = stack.redis_url("stock"); // read a service's own Redis directly
//! let old = stack.kill("stock-db")?; // SIGKILL; the watchdog restarts it
//! let new = stack.wait_restarted("stock-db", old, Duration::from_secs(10)).await?;
//! stack.wait_healthy(Duration::from_secs(60)).await?;
//! # let _ = (create, stock_redis, new); Ok(()) }
//! ```

pub mod binaries;
pub mod component;
pub mod config;
pub mod files;
pub mod handle;
pub mod health;
pub mod install;
pub mod kafka;
pub mod launch;
pub mod locks;
pub mod nginx;
pub mod procs;
pub mod prometheus;
pub mod supervisor;
pub mod warmup;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

pub use config::{PortLayout, Ports, Protocol, StackConfig};
pub use handle::{ComponentStatus, Stack};
pub use supervisor::CrashLoopReport;

/// How long a supervisor may take to stop everything (Kafka's controlled shutdown included)
/// before `down` kills what is left.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("prerequisite: {0}")]
    Prerequisite(String),
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot signal pid {pid}: {source}")]
    Signal { pid: u32, source: nix::errno::Errno },
    #[error("a stack is already running in {0}")]
    AlreadyRunning(PathBuf),
    #[error("no stack is running in {0}")]
    NotRunning(PathBuf),
    #[error("ports already in use: {0:?} (another stack, or `make down` first)")]
    PortsBusy(Vec<u16>),
    #[error("no free port slot for a test stack")]
    NoFreeSlot,
    #[error("unknown component {0:?}")]
    UnknownComponent(String),
    #[error("not healthy after {waited:.1?}: {detail}")]
    Unhealthy { waited: Duration, detail: String },
    #[error("crash loop while starting: {report}; last lines of {log}:\n{tail}")]
    CrashLoop {
        report: Box<supervisor::CrashLoopReport>,
        log: PathBuf,
        tail: String,
    },
    #[error("the supervisor exited ({status}); last lines of {log}:\n{tail}")]
    SupervisorExited {
        status: String,
        log: PathBuf,
        tail: String,
    },
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stops the stack in `cfg.root`, keeping its data: SIGTERM to its supervisor, which stops the
/// components gracefully; after [`STOP_TIMEOUT`] SIGKILL for whatever is left. Without a
/// supervisor, leftover components are stopped directly. Returns false if nothing ran.
pub async fn down(cfg: &StackConfig) -> Result<bool> {
    match running_supervisor(&cfg.root) {
        Some(pid) => {
            procs::signal(pid, Signal::SIGTERM)?;
            if !procs::wait_gone(pid, STOP_TIMEOUT).await {
                force_down(cfg);
            }
            Ok(true)
        }
        None => {
            let mut any = false;
            for name in pid_file_names(cfg) {
                let path = cfg.pid_file(&name);
                if let Some(pid) = procs::read_pid(&path).filter(|p| procs::owned_by(*p, &cfg.root))
                {
                    any = true;
                    procs::terminate(pid, Duration::from_secs(10)).await?;
                    procs::signal_group(pid, Signal::SIGKILL)?;
                }
                procs::remove_pid(&path);
            }
            let _ = std::fs::remove_file(cfg.state_file());
            Ok(any)
        }
    }
}

/// SIGKILLs the supervisor of `cfg.root` and every component with a pid file there.
pub fn force_down(cfg: &StackConfig) {
    if let Some(pid) = running_supervisor(&cfg.root) {
        let _ = procs::signal(pid, Signal::SIGKILL);
    }
    supervisor::kill_leftovers(cfg);
    let _ = std::fs::remove_file(cfg.state_file());
}

/// The pid of the live supervisor of `root` (checked to run there, not a reused pid).
pub fn running_supervisor(root: &Path) -> Option<u32> {
    handle::read_state(root)
        .map(|s| s.supervisor_pid)
        .filter(|pid| procs::owned_by(*pid, root))
}

fn pid_file_names(cfg: &StackConfig) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cfg.pids_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".pid")
                .map(String::from)
        })
        .collect()
}
