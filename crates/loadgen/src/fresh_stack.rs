//! A fresh local stack for one measurement, through the `stack` crate's library API.
//!
//! The stack gets its own state dir (`.bench/stack`, wiped before each start and deleted
//! after) and its own ports (a free test slot, unless `GATEWAY_PORT` asks for the `make up`
//! layout), so a benchmark never touches `make up`'s stack. Knobs come from the environment as
//! for `make up` (`REPLICAS`, `KAFKA_PARTITIONS`), except the protocol, which the benchmark
//! sets. Services log at `warn` unless `RUST_LOG` says otherwise:
//! per-request logging would cost CPU the services share with everything else.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use stack::{Ports, Protocol, Stack, StackConfig};

pub struct FreshStack {
    stack: Stack,
    gateway: String,
}

/// Builds the service and `stack` binaries, so the benchmark never measures stale ones
/// (`make bench` itself only builds the load generator). A no-op when they are up to date.
pub fn build_binaries() -> Result<()> {
    let workspace = StackConfig::default_workspace();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "-p",
            "order",
            "-p",
            "stock",
            "-p",
            "payment",
        ])
        .args(["-p", "stack"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the services failed: {status}");
    }
    Ok(())
}

impl FreshStack {
    /// Starts a stack running `protocol`, with `env` added to the services' environment, and
    /// returns once every component is healthy.
    pub async fn start(protocol: &str, out: &Path, env: &[(&str, String)]) -> Result<Self> {
        let protocol: Protocol = protocol.parse()?;
        let mut cfg = StackConfig::from_env()?.with_protocol(protocol);
        for (key, value) in env {
            cfg = cfg.with_service_env(key, value);
        }
        cfg.root = std::path::absolute(out.join("stack"))?;
        cfg.ephemeral = true;
        if std::env::var_os("GATEWAY_PORT").is_none() {
            // A free test slot: the benchmark never collides with `make up` or a test's stack.
            cfg.ports = Ports::Auto;
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cfg.rust_log = "warn".into();
        }
        // Left over from an interrupted run: its supervisor is gone, its data is stale.
        let data = cfg.data_dir();
        if data.exists() && stack::running_supervisor(&cfg.root).is_none() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("removing {}", data.display()))?;
        }
        let t = std::time::Instant::now();
        let stack = Stack::start(cfg)
            .await
            .with_context(|| format!("starting a {} stack", protocol.as_str()))?;
        let gateway = stack.gateway_url();
        eprintln!(
            "  stack up at {gateway} in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Ok(Self { stack, gateway })
    }

    pub fn gateway_url(&self) -> &str {
        &self.gateway
    }

    /// The running stack: pids, Redis URLs, its root dir.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    pub async fn stop(self) -> Result<()> {
        self.stack.stop().await.context("stopping the stack")
    }
}

/// Ctrl-C during a measurement: stop the stack and skip the remaining runs.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Runs `work` against a fresh stack and stops the stack whatever happens, Ctrl-C included.
pub async fn with_fresh_stack<T>(
    stack: FreshStack,
    work: impl AsyncFnOnce(&FreshStack) -> Result<T>,
) -> Result<T> {
    let outcome = tokio::select! {
        r = work(&stack) => r,
        _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
    };
    let stopped = stack.stop().await;
    let value = outcome?;
    stopped?;
    Ok(value)
}
