//! Prerequisites: the Debian packages the stack and its tests run and the Kafka jars.
//! Everything is checked first and installed only when missing, so a warm start costs a few
//! `stat` calls and CI on a fresh Debian 12 machine installs what it needs.
//!
//! The packages, all installed whatever the configuration (tests need every one of them):
//! `redis-server`, `nginx-light`, `openjdk-17-jre-headless` and `maven` (Kafka) run the stack;
//! `prometheus` runs the local Prometheus of `MONITORING=1`, and its `promtool` checks the
//! alert rules (`make deploy-check`); `chromium` drives the console in headless tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::StackConfig;
use crate::{Error, Result};

/// A program the stack runs and the Debian package that brings it.
struct Requirement {
    program: &'static str,
    package: &'static str,
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        program: "redis-server",
        package: "redis-server",
    },
    Requirement {
        program: "nginx",
        package: "nginx-light",
    },
    Requirement {
        program: "java",
        package: "openjdk-17-jre-headless",
    },
    Requirement {
        program: "mvn",
        package: "maven",
    },
    Requirement {
        program: "prometheus",
        package: "prometheus",
    },
    Requirement {
        program: "promtool",
        package: "prometheus",
    },
    Requirement {
        program: "chromium",
        package: "chromium",
    },
];

/// Finds `name` on PATH or in the sbin dirs (Debian's nginx lives in /usr/sbin, which the PATH
/// of a non-root or non-login shell may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Debian packages still missing, each once.
pub fn missing_packages() -> Vec<&'static str> {
    let mut missing: Vec<_> = REQUIREMENTS
        .iter()
        .filter(|r| find_program(r.program).is_none())
        .map(|r| r.package)
        .collect();
    missing.dedup();
    missing
}

/// Installs missing packages with apt-get (one `apt-get update` first) and resolves the Kafka
/// classpath. Returns a line per action taken, for the caller to print.
pub fn ensure(cfg: &StackConfig) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let missing = missing_packages();
    if !missing.is_empty() {
        apt(&["update", "-q"])?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        apt(&args)?;
        done.push(format!("installed {}", missing.join(" ")));
    }
    let had_classpath = cfg.kafka_classpath_file().exists();
    crate::kafka::classpath(cfg)?;
    if !had_classpath {
        done.push(format!(
            "resolved Kafka into {}",
            cfg.kafka_classpath_file().display()
        ));
    }
    Ok(done)
}

fn apt(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        // Stacks that start at once (parallel test binaries) wait for each other's install.
        .args(["-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        // Debian starts a package's system service on install; we run our own instances and
        // want no system Redis or nginx holding ports. invoke-rc.d starts nothing in runlevel 1.
        .env("RUNLEVEL", "1")
        .status()
        .map_err(|e| Error::Prerequisite(format!("cannot run apt-get: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Prerequisite(format!(
            "apt-get {} failed: {status}",
            args.join(" ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_but_not_nonsense() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-here").is_none());
    }
}
