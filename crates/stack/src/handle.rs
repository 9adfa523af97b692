//! [`Stack`]: the handle tests and the CLI hold on a running stack.
//!
//! [`Stack::start`] spawns `stack supervise` with a piped stdin and waits until every component
//! is healthy. The handle owns the pipe's write end: when the handle is dropped or the process
//! exits, the pipe closes and the supervisor stops the stack. [`Stack::attach`] opens a stack
//! some other process runs (the `make up` one) and never stops it by being dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::task::JoinSet;

use crate::component::{self, Component, Kind, Service};
use crate::config::{PortLayout, StackConfig};
use crate::health::Probe;
use crate::supervisor::State;
use crate::{Error, Result, binaries, files, locks, procs};

/// How long [`Stack::start`] waits: a cold start resolves Kafka with Maven first.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A running stack.
pub struct Stack {
    state: State,
    components: Vec<Component>,
    /// Present when this process launched the supervisor.
    supervisor: Mutex<Option<Launched>>,
}

/// A supervisor this process spawned.
struct Launched {
    child: Child,
    /// The write end of its stdin (not for detached ones): closing it stops the stack.
    stdin: Option<ChildStdin>,
}

/// One line of `stack status`.
#[derive(Clone, Debug)]
pub struct ComponentStatus {
    pub name: String,
    pub pid: Option<u32>,
    pub port: u16,
    pub health: Probe,
}

impl Stack {
    /// Starts a stack and returns once every component is healthy (at most [`START_TIMEOUT`]).
    /// Builds missing binaries with cargo first (see [`crate::binaries`]). The stack lives
    /// until [`Stack::stop`], until the handle is dropped, or until this process exits.
    pub async fn start(config: StackConfig) -> Result<Stack> {
        Stack::launch(config, false).await
    }

    /// Starts a stack that outlives this process (`stack up`): the supervisor runs in a
    /// session of its own and only `stack down` (SIGTERM) stops it.
    pub async fn start_detached(config: StackConfig) -> Result<Stack> {
        Stack::launch(config, true).await
    }

    async fn launch(config: StackConfig, detach: bool) -> Result<Stack> {
        config.validate()?;
        if locks::root_in_use(&config) {
            return Err(Error::AlreadyRunning(config.root.clone()));
        }
        let stack_bin = binaries::ensure(&config)?;
        files::create_dir(&config.logs_dir())?;
        let launch_file = config.root.join("launch.json");
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        files::write(&launch_file, json)?;
        let _ = std::fs::remove_file(config.state_file());

        let log_path = config.log_file("supervisor");
        let (log, log_err) = files::append_log(&log_path)?;
        let mut cmd = Command::new(&stack_bin);
        cmd.arg("supervise")
            .arg("--config")
            .arg(&launch_file)
            .current_dir(&config.root)
            .stdout(log)
            .stderr(log_err);
        if detach {
            // The supervisor calls setsid() itself (a group leader could not).
            cmd.arg("--detach").stdin(Stdio::null());
        } else {
            // Own group: a Ctrl-C meant for the test runner reaches the supervisor only as EOF.
            cmd.arg("--watch-stdin")
                .stdin(Stdio::piped())
                .process_group(0);
        }
        let mut child = cmd.spawn().map_err(|e| Error::Spawn {
            name: "supervisor".into(),
            source: e,
        })?;
        let stdin = child.stdin.take();
        let supervisor_pid = child.id();
        let mut supervisor = Some(Launched { child, stdin });

        let started = Instant::now();
        let state = loop {
            if let Some(state) =
                read_state(&config.root).filter(|s| s.supervisor_pid == supervisor_pid)
            {
                break state;
            }
            check_supervisor(&mut supervisor, &log_path)?;
            if started.elapsed() > START_TIMEOUT {
                let detail = "supervisor published no state".into();
                return Err(Error::Unhealthy {
                    waited: started.elapsed(),
                    detail,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stack = Stack::from_state(state, supervisor);
        let remaining = START_TIMEOUT.saturating_sub(started.elapsed());
        tokio::select! {
            healthy = stack.wait_healthy(remaining) => healthy?,
            crash_loop = stack.crash_loop() => return Err(crash_loop),
        }
        Ok(stack)
    }

    /// Opens the stack whose supervisor runs in `root` (e.g. `.stack` of `make up`).
    pub fn attach(root: &Path) -> Result<Stack> {
        let state = read_state(root)
            .filter(|s| procs::alive(s.supervisor_pid))
            .ok_or_else(|| Error::NotRunning(root.to_path_buf()))?;
        Ok(Stack::from_state(state, None))
    }

    fn from_state(state: State, supervisor: Option<Launched>) -> Stack {
        let components = component::all(&state.config, &state.ports());
        Stack {
            state,
            components,
            supervisor: Mutex::new(supervisor),
        }
    }

    /// The resolved config (ports fixed).
    pub fn config(&self) -> &StackConfig {
        &self.state.config
    }

    pub fn ports(&self) -> PortLayout {
        self.state.ports()
    }

    pub fn supervisor_pid(&self) -> u32 {
        self.state.supervisor_pid
    }

    /// Base URL of the gateway, e.g. `http://127.0.0.1:8000` (no trailing slash).
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports().gateway)
    }

    /// Base URL of one replica, bypassing the gateway, e.g. `service_url("order-1")`.
    pub fn service_url(&self, replica: &str) -> Option<String> {
        self.component(replica)
            .filter(|c| matches!(c.kind, Kind::Service(_)))
            .map(|c| format!("http://127.0.0.1:{}", c.port))
    }

    /// `redis://` URL of a service's own Redis: `redis_url("order")` or `redis_url("order-db")`.
    pub fn redis_url(&self, service: &str) -> Option<String> {
        let service: Service = service
            .strip_suffix("-db")
            .unwrap_or(service)
            .parse()
            .ok()?;
        Some(format!(
            "redis://127.0.0.1:{}",
            service.db_port(&self.ports())
        ))
    }

    /// Component names in start order.
    pub fn components(&self) -> Vec<String> {
        self.components.iter().map(|c| c.name.clone()).collect()
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.state.config.log_file(name)
    }

    /// The component's current pid, from its pid file.
    pub fn pid(&self, name: &str) -> Option<u32> {
        procs::read_pid(&self.state.config.pid_file(name))
    }

    /// SIGKILLs the component (its whole process group) and returns the pid it had; the
    /// watchdog then starts it again with a new pid.
    pub fn kill(&self, name: &str) -> Result<u32> {
        self.known(name)?;
        let pid = self
            .pid(name)
            .ok_or_else(|| Error::NotRunning(self.state.config.pid_file(name)))?;
        procs::signal_group(pid, Signal::SIGKILL)?;
        procs::signal(pid, Signal::SIGKILL)?;
        Ok(pid)
    }

    /// Waits until `name` runs with a pid other than `old_pid` and is healthy; returns the pid.
    pub async fn wait_restarted(&self, name: &str, old_pid: u32, timeout: Duration) -> Result<u32> {
        let c = self.known(name)?;
        let started = Instant::now();
        loop {
            let pid = self.pid(name).filter(|p| *p != old_pid && procs::alive(*p));
            let probe = match pid {
                Some(_) => c.probe().await,
                None => Err(format!("no new pid yet (old {old_pid})")),
            };
            match (pid, probe) {
                (Some(pid), Ok(())) => return Ok(pid),
                (_, Err(why)) if started.elapsed() > timeout => {
                    return Err(Error::Unhealthy {
                        waited: started.elapsed(),
                        detail: format!("{name}: {why}"),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Every component's pid and health, probed concurrently, in start order.
    pub async fn status(&self) -> Vec<ComponentStatus> {
        status_of(&self.state.config, &self.components).await
    }

    /// Waits until every component is healthy; fails early if our supervisor died. The error
    /// names the sick components with the end of their logs, so a CI failure explains itself.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let sick: Vec<(String, String)> = self
                .status()
                .await
                .into_iter()
                .filter_map(|s| s.health.err().map(|why| (s.name, why)))
                .collect();
            if sick.is_empty() {
                return Ok(());
            }
            check_supervisor(
                &mut self.supervisor.lock().expect("not poisoned"),
                &self.log_path("supervisor"),
            )?;
            if started.elapsed() > timeout {
                let detail = sick
                    .iter()
                    .map(|(name, why)| {
                        let log = self.log_path(name);
                        format!(
                            "{name}: {why}; end of {}:\n{}",
                            log.display(),
                            tail(&log, 8)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(Error::Unhealthy {
                    waited: started.elapsed(),
                    detail,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resolves once the supervisor reports a component that crash-loops while starting.
    async fn crash_loop(&self) -> Error {
        let path = self
            .state
            .config
            .root
            .join(crate::supervisor::CRASH_LOOP_FILE);
        loop {
            let report = std::fs::read(&path).ok().and_then(|json| {
                serde_json::from_slice::<crate::supervisor::CrashLoopReport>(&json).ok()
            });
            if let Some(report) = report {
                let log = self.log_path(&report.component);
                return Error::CrashLoop {
                    tail: tail(&log, 20),
                    report: Box::new(report),
                    log,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the stack and waits until every process is gone. For a launched stack: close the
    /// supervisor's stdin; for an attached one: SIGTERM its supervisor (as `stack down`).
    pub async fn stop(self) -> Result<()> {
        let launched = self.supervisor.lock().expect("not poisoned").take();
        match launched {
            Some(Launched {
                mut child,
                stdin: Some(stdin),
            }) => {
                drop(stdin);
                let pid = child.id();
                let done = procs::wait_gone(pid, crate::STOP_TIMEOUT).await;
                let _ = child.try_wait();
                if !done {
                    crate::force_down(&self.state.config);
                }
                Ok(())
            }
            _ => crate::down(&self.state.config).await.map(|_| ()),
        }
    }

    fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    fn known(&self, name: &str) -> Result<&Component> {
        self.component(name)
            .ok_or_else(|| Error::UnknownComponent(name.into()))
    }
}

/// Probes `components` concurrently; pids from the pid files of `cfg`.
pub async fn status_of(cfg: &StackConfig, components: &[Component]) -> Vec<ComponentStatus> {
    let mut probes = JoinSet::new();
    for (i, c) in components.iter().enumerate() {
        let c = c.clone();
        probes.spawn(async move { (i, c.probe().await) });
    }
    let mut health: Vec<Probe> = vec![Err("not probed".into()); components.len()];
    while let Some(Ok((i, probe))) = probes.join_next().await {
        health[i] = probe;
    }
    components
        .iter()
        .zip(health)
        .map(|(c, health)| ComponentStatus {
            name: c.name.clone(),
            pid: procs::read_pid(&cfg.pid_file(&c.name)).filter(|p| procs::alive(*p)),
            port: c.port,
            health,
        })
        .collect()
}

/// The state the supervisor of `root` published, if any (it may have died since).
pub fn read_state(root: &Path) -> Option<State> {
    let bytes = std::fs::read(root.join(crate::config::STATE_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Errors out (with the end of its log) if the supervisor we launched has exited.
fn check_supervisor(supervisor: &mut Option<Launched>, log: &Path) -> Result<()> {
    let Some(Launched { child, .. }) = supervisor.as_mut() else {
        return Ok(());
    };
    match child.try_wait() {
        Ok(Some(status)) => Err(Error::SupervisorExited {
            status: status.to_string(),
            log: log.to_path_buf(),
            tail: tail(log, 30),
        }),
        _ => Ok(()),
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
