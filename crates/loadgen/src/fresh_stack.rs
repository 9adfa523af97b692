//! A fresh local stack for one measurement, through the `stack` crate's library API.
//!
//! The stack gets its own state dir (`.bench/stack`, wiped before each start and deleted
//! after) and its own ports (a free test slot, unless `GATEWAY_PORT` asks for the `make up`
//! layout), so a benchmark never touches `make up`'s stack. Knobs come from the environment as
//! for `make up` (`REPLICAS`, `KAFKA_PARTITIONS`), except the protocol, which the benchmark
//! sets. Services log at `warn` unless `RUST_LOG` says otherwise:
//! per-request logging would cost CPU the services share with everything else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use stack::{Ports, Protocol, Stack, StackConfig};

use crate::answers::Answers;
use crate::client::Api;
use crate::populate::Population;
use crate::verify::{Verdict, verify};

/// What every command on fresh stacks (`bench`, `soak`, `outage`) takes: where its outputs
/// go, whether to build first, and how to verify afterwards.
#[derive(Clone, Debug, clap::Args)]
pub struct Harness {
    /// Output folder (and, while a stack runs, its state dir `OUT/stack`).
    #[arg(long, default_value = ".bench")]
    pub out: PathBuf,
    /// Do not build the services first (by default `cargo build --release` makes sure the
    /// stack runs the current code).
    #[arg(long)]
    pub no_build: bool,
    /// Skip the consistency check (the read-back of every order, item and user).
    #[arg(long)]
    pub no_verify: bool,
    /// Reads in flight while verifying.
    #[arg(long, default_value_t = 256)]
    pub verify_concurrency: usize,
}

impl Harness {
    /// Creates the output folder and, when `build` and not `--no-build`, builds the services.
    pub fn prepare(&self, build: bool) -> Result<()> {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        if build && !self.no_build {
            build_binaries()?;
        }
        Ok(())
    }

    /// Verifies against `answers` (`None` with `--no-verify`); first waits `settle` if some
    /// outcomes are unknown, since those checkouts may still be finishing.
    pub async fn verify(
        &self,
        api: &Api,
        population: &Population,
        answers: &Answers,
        settle: Duration,
    ) -> Option<Verdict> {
        if self.no_verify {
            return None;
        }
        if !answers.unknown.is_empty() {
            eprintln!(
                "  {} checkouts got no definite answer: waiting {} s before reading back",
                answers.unknown.len(),
                settle.as_secs()
            );
            tokio::time::sleep(settle).await;
        }
        let v = verify(api, population, Some(answers), self.verify_concurrency).await;
        eprintln!(
            "  verified in {:.1} s: {} paid orders, {} violations",
            v.read_s, v.paid_orders, v.violations
        );
        Some(v)
    }
}

pub struct FreshStack {
    stack: Stack,
    gateway: String,
}

/// Builds the service and `stack` binaries, so the benchmark never measures stale ones. The
/// same build as `make build` (every package and target, so features resolve once and no
/// dependency is built twice): a no-op when they are up to date.
pub fn build_binaries() -> Result<()> {
    build_in(&StackConfig::default_workspace())
}

/// `make build`'s build in the checkout at `workspace` (`loadgen compare` builds another one).
pub fn build_in(workspace: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "--workspace", "--all-targets"])
        .status()
        .with_context(|| format!("running cargo build in {}", workspace.display()))?;
    if !status.success() {
        bail!("cargo build in {} failed: {status}", workspace.display());
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
