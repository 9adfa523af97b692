//! The supervisor: one process per stack that starts every component in dependency order,
//! restarts any that dies (the watchdog), and stops them all in reverse order on SIGTERM,
//! SIGINT or, when launched by [`crate::Stack::start`], when its stdin closes.
//!
//! It is a process of its own, not a task in the caller's runtime, because tests share one
//! stack across many tokio runtimes, and so that a test binary that exits (even by a panic or
//! SIGKILL) closes the pipe and takes its stack with it: no orphans after `cargo test`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::component::{self, Component};
use crate::config::{PortLayout, Ports, StackConfig};
use crate::launch::Launcher;
use crate::{Error, Result, files, locks, procs};

/// What a running supervisor publishes in `ROOT/stack.json`: its pid and the resolved config.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub supervisor_pid: u32,
    pub config: StackConfig,
}

impl State {
    pub fn ports(&self) -> PortLayout {
        match self.config.ports {
            Ports::Fixed(layout) => layout,
            Ports::Auto => unreachable!("a published state always has fixed ports"),
        }
    }
}

/// A restart after a crash that came this soon after the start is delayed (backoff), so a
/// component that cannot start does not spin; anything that ran longer restarts at once.
const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Stays below the contract's 2 s restart bound.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Quick crashes in a row, while the stack starts, after which the launcher gives up at once
/// instead of waiting out its start timeout (a service that cannot start, say).
const CRASH_LOOP_COUNT: u32 = 5;
/// Written while starting when a component crash-loops: one [`CrashLoopReport`] (JSON).
pub const CRASH_LOOP_FILE: &str = "crash-loop";

/// What the supervisor tells its launcher about a component that cannot start.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrashLoopReport {
    pub component: String,
    /// How its last run ended, e.g. `exit status: 1`.
    pub last_exit: String,
    /// Quick exits in a row.
    pub exits: u32,
    /// From its first launch to the report: how fast the launcher gave up. Measured from the
    /// component's own start, not the stack's, since earlier stages (Kafka) may take long.
    pub after: Duration,
}

impl std::fmt::Display for CrashLoopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited {} times in {:.1?} (last: {})",
            self.component, self.exits, self.after, self.last_exit
        )
    }
}

/// What every watchdog shares.
struct Ctx {
    cfg: StackConfig,
    launcher: Launcher,
    /// True until every stage was started: crash loops are reported only then.
    starting: AtomicBool,
}

/// Runs the stack until asked to stop. `watch_stdin`: also stop when stdin reaches EOF.
pub async fn run(cfg: StackConfig, watch_stdin: bool) -> Result<()> {
    cfg.validate()?;
    for dir in [cfg.pids_dir(), cfg.logs_dir(), cfg.data_dir()] {
        files::create_dir(&dir)?;
    }
    let Some(_root_lock) = locks::try_lock(&locks::root_lock_path(&cfg))? else {
        return Err(Error::AlreadyRunning(cfg.root.clone()));
    };
    kill_leftovers(&cfg);
    let (ports, _slot_lock) = locks::resolve_ports(&cfg)?;
    let _ = std::fs::remove_file(cfg.root.join(CRASH_LOOP_FILE));
    let ctx = Arc::new(Ctx {
        launcher: Launcher::prepare(&cfg, &ports)?,
        cfg: cfg.clone(),
        starting: AtomicBool::new(true),
    });
    let state = State {
        supervisor_pid: std::process::id(),
        config: StackConfig {
            ports: Ports::Fixed(ports),
            ..cfg.clone()
        },
    };
    write_state(&cfg, &state)?;
    info!(root = %cfg.root.display(), ?ports, "supervisor {} up", state.supervisor_pid);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    listen_for_stop(stop_tx, watch_stdin)?;

    let mut running = Vec::new();
    for stage in component::stages(&cfg, &ports) {
        if *stop_rx.borrow() {
            break;
        }
        let (stage_tx, stage_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for c in &stage {
            tasks.spawn(watchdog(ctx.clone(), c.clone(), stage_rx.clone()));
        }
        running.push((stage.clone(), stage_tx, tasks));
        tokio::select! {
            _ = wait_stage(&stage) => {}
            _ = stop_rx.wait_for(|stop| *stop) => {}
        }
        let broker_stage = stage.iter().any(|c| c.kind == component::Kind::Kafka);
        if broker_stage && cfg.services && cfg.kafka_warmup_s > 0 {
            tokio::select! {
                _ = crate::warmup::warm_broker(&cfg, &ports) => {}
                _ = stop_rx.wait_for(|stop| *stop) => {}
            }
        }
    }
    ctx.starting.store(false, Ordering::Relaxed);
    if !*stop_rx.borrow() {
        info!("all components started");
    }
    let _ = stop_rx.wait_for(|stop| *stop).await;

    info!("stopping");
    for (stage, stage_tx, mut tasks) in running.into_iter().rev() {
        let names: Vec<_> = stage.iter().map(|c| c.name.as_str()).collect();
        info!("stopping {}", names.join(" "));
        let _ = stage_tx.send(true);
        while tasks.join_next().await.is_some() {}
    }
    let _ = std::fs::remove_file(cfg.state_file());
    if cfg.ephemeral {
        let _ = std::fs::remove_dir_all(cfg.data_dir());
    }
    info!("stopped");
    Ok(())
}

/// Waits until every component of a stage answers its probe, or its start timeout passes
/// (then later stages start anyway: the watchdog keeps trying, and the caller's
/// `wait_healthy` reports what never came up).
async fn wait_stage(stage: &[Component]) {
    for c in stage {
        let started = Instant::now();
        loop {
            match c.probe().await {
                Ok(()) => {
                    info!("{} healthy after {:?}", c.name, started.elapsed());
                    break;
                }
                Err(why) if started.elapsed() > c.start_timeout() => {
                    warn!(
                        "{} still not healthy ({why}); starting the next stage anyway",
                        c.name
                    );
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Keeps one component running until `stop` turns true, then stops it gracefully.
async fn watchdog(ctx: Arc<Ctx>, c: Component, mut stop: watch::Receiver<bool>) {
    let launcher = &ctx.launcher;
    let pid_file = ctx.cfg.pid_file(&c.name);
    let mut backoff = BACKOFF_MIN;
    let mut quick_crashes = 0;
    let mut died_at: Option<Instant> = None;
    let first_launch = Instant::now();
    while !*stop.borrow() {
        let started = Instant::now();
        let mut child = match launcher.spawn(&c) {
            Ok(child) => child,
            Err(e) => {
                error!("cannot start {}: {e}", c.name);
                backoff = pause(&mut stop, backoff).await;
                continue;
            }
        };
        let Some(pid) = child.id() else { continue };
        if let Err(e) = procs::write_pid(&pid_file, pid) {
            error!("{e}");
        }
        info!("{} started, pid {pid}", c.name);
        if let Some(died) = died_at.take() {
            tokio::spawn(report_recovery(c.clone(), died, stop.clone()));
        }
        let exited = tokio::select! {
            status = child.wait() => Some(status),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        match exited {
            Some(status) => {
                launcher.exited(&c, status.as_ref().ok().copied());
                let status = status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                warn!("{} (pid {pid}) exited: {status}; restarting", c.name);
                died_at = Some(Instant::now());
                // Whatever it forked (nginx workers) would hold its port against the restart.
                let _ = procs::signal_group(pid, Signal::SIGKILL);
                if started.elapsed() < CRASH_LOOP_WINDOW {
                    quick_crashes += 1;
                    if quick_crashes == CRASH_LOOP_COUNT && ctx.starting.load(Ordering::Relaxed) {
                        report_crash_loop(
                            &ctx.cfg,
                            CrashLoopReport {
                                component: c.name.clone(),
                                last_exit: status.clone(),
                                exits: quick_crashes,
                                after: first_launch.elapsed(),
                            },
                        );
                    }
                    backoff = pause(&mut stop, backoff).await;
                } else {
                    quick_crashes = 0;
                    backoff = BACKOFF_MIN;
                }
            }
            None => {
                if let Err(e) = procs::terminate(pid, c.stop_grace()).await {
                    error!("stopping {}: {e}", c.name);
                }
                let status = child.wait().await.ok();
                launcher.exited(&c, status);
                let _ = procs::signal_group(pid, Signal::SIGKILL);
                info!("{} (pid {pid}) stopped", c.name);
            }
        }
    }
    procs::remove_pid(&pid_file);
}

/// Logs how long after its death a restarted component answered its probe again: the number
/// that fault tests and the contract's "back within seconds" care about.
async fn report_recovery(c: Component, died: Instant, stop: watch::Receiver<bool>) {
    while !*stop.borrow() && died.elapsed() < c.start_timeout() {
        if c.probe().await.is_ok() {
            return info!(
                "{} healthy again {:.2?} after it died",
                c.name,
                died.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report_crash_loop(cfg: &StackConfig, report: CrashLoopReport) {
    error!("crash loop while the stack starts: {report}");
    let path = cfg.root.join(CRASH_LOOP_FILE);
    let json = serde_json::to_vec(&report).expect("a report serializes");
    // Written whole and renamed, so the launcher never reads half a report; with several
    // replicas crash-looping, the last one to give up is the one reported.
    if let Err(e) = files::write_atomic(&path, json) {
        error!("{e}");
    }
}

/// Sleeps `backoff` unless asked to stop; returns the next, doubled backoff.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: Duration) -> Duration {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
    (backoff * 2).min(BACKOFF_MAX)
}

/// Stop on SIGTERM or SIGINT, and on EOF of stdin when the launcher holds its other end.
fn listen_for_stop(stop: watch::Sender<bool>, watch_stdin: bool) -> Result<()> {
    let stop = Arc::new(stop);
    let io = |e: std::io::Error| Error::io(std::path::Path::new("signal handler"), e);
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    // A closed terminal must not take the stack down; the launcher's pipe or `down` does.
    let mut hup = signal(SignalKind::hangup()).map_err(io)?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break info!("SIGTERM"),
                _ = int.recv() => break info!("SIGINT"),
                _ = hup.recv() => info!("SIGHUP ignored"),
            }
        }
        let _ = on_signal.send(true);
    });
    if watch_stdin {
        // A plain thread: reading stdin blocks, and the runtime must not wait for it at exit.
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            info!("stdin closed");
            let _ = stop.send(true);
        });
    }
    Ok(())
}

fn write_state(cfg: &StackConfig, state: &State) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    files::write_atomic(&cfg.state_file(), json)
}

/// Kills components a previous supervisor of this root left behind (it was SIGKILLed, say),
/// and waits until they are gone, so their ports and data dirs are free again. Only
/// processes running inside this root are touched.
pub fn kill_leftovers(cfg: &StackConfig) {
    let Ok(entries) = std::fs::read_dir(cfg.pids_dir()) else {
        return;
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if let Some(pid) = procs::read_pid(&path).filter(|pid| procs::owned_by(*pid, &cfg.root)) {
            warn!("killing leftover {} (pid {pid})", path.display());
            let _ = procs::signal_group(pid, Signal::SIGKILL);
            let _ = procs::signal(pid, Signal::SIGKILL);
            killed.push(pid);
        }
        procs::remove_pid(&path);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    // Their parent is gone, so init reaps them; only then are their ports surely free.
    while killed.iter().any(|pid| procs::exists(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
