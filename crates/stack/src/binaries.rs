//! The programs a stack runs that this workspace builds: `stack` (the supervisor) and the
//! services. Tests of other crates call [`crate::Stack::start`] without knowing whether a
//! release build exists, so missing binaries are built here with cargo; `make test` builds
//! everything first, which makes this a no-op there.

use std::path::PathBuf;
use std::process::Command;

use crate::component::SERVICES;
use crate::config::StackConfig;
use crate::{Error, Result};

/// Returns the `stack` binary to run, after building whatever is missing.
pub fn ensure(cfg: &StackConfig) -> Result<PathBuf> {
    let stack_bin = cfg
        .stack_bin
        .clone()
        .unwrap_or_else(|| cfg.bin_dir.join("stack"));
    let mut missing = Vec::new();
    if !stack_bin.is_file() {
        if cfg.stack_bin.is_some() {
            return Err(Error::Prerequisite(format!(
                "{} missing",
                stack_bin.display()
            )));
        }
        missing.push("stack");
    }
    if cfg.services {
        missing.extend(SERVICES.iter().filter(|s| !cfg.bin_dir.join(s).is_file()));
    }
    if missing.is_empty() {
        return Ok(stack_bin);
    }
    if cfg.bin_dir != cfg.workspace.join("target/release") {
        return Err(Error::Prerequisite(format!(
            "{} lacks {}; build them first",
            cfg.bin_dir.display(),
            missing.join(", ")
        )));
    }
    // Under `cargo test` CARGO names the running cargo; its build lock is free while tests run.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&cfg.workspace).args(["build", "--release"]);
    for package in &missing {
        cmd.args(["-p", package]);
    }
    let status = cmd
        .status()
        .map_err(|e| Error::Prerequisite(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(Error::Prerequisite(format!(
            "cargo build of {} failed",
            missing.join(", ")
        )));
    }
    Ok(stack_bin)
}
