//! The programs a stack runs that this workspace builds: `stack` (the supervisor) and the
//! services. Tests of other crates call [`crate::Stack::start`] without knowing whether the
//! release binaries exist or are current, so [`ensure`] always runs `cargo build --release`
//! for them: a test never runs a stale build, and cargo takes a second when nothing changed.

use std::path::PathBuf;
use std::process::Command;

use crate::component::Service;
use crate::config::StackConfig;
use crate::{Error, Result};

/// Returns the `stack` binary to run, after building the release binaries of this workspace.
/// Binaries elsewhere (`bin_dir` outside the workspace's `target/release`) must exist already.
pub fn ensure(cfg: &StackConfig) -> Result<PathBuf> {
    let stack_bin = cfg
        .stack_bin
        .clone()
        .unwrap_or_else(|| cfg.bin_dir.join("stack"));
    let services = Service::ALL.map(Service::as_str);
    if cfg.bin_dir == cfg.workspace.join("target/release") {
        build(cfg, &services)?;
    }
    let needed: &[&str] = if cfg.services { &services } else { &[] };
    let missing: Vec<_> = needed
        .iter()
        .map(|s| cfg.bin_dir.join(s))
        .chain([stack_bin.clone()])
        .filter(|bin| !bin.is_file())
        .map(|bin| bin.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Prerequisite(format!(
            "missing {}; build them first",
            missing.join(", ")
        )));
    }
    Ok(stack_bin)
}

/// `cargo build --release --workspace --all-targets`: the very build `make build` runs and
/// `cargo test --release --workspace` makes, so after either this is a no-op (any other set
/// of packages or targets resolves features differently and builds a second variant of
/// dependencies, minutes on a small machine). Under `cargo test`, `CARGO` names the running
/// cargo, whose build lock is free while the tests run, so this cannot deadlock.
fn build(cfg: &StackConfig, services: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&cfg.workspace)
        .args(["build", "--release", "--workspace", "--all-targets"]);
    let status = cmd
        .status()
        .map_err(|e| Error::Prerequisite(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(Error::Prerequisite(format!(
            "cargo build --release of stack, {} failed",
            services.join(", ")
        )));
    }
    Ok(())
}
