//! File helpers whose errors name the path: what every generated config, pid file, state file
//! and log of a stack is written with.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{Error, Result};

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Creates `dir` and returns its absolute path (for configs that a process reads from
/// another working directory).
pub fn absolute_dir(dir: &Path) -> Result<PathBuf> {
    create_dir(dir)?;
    dir.canonicalize().map_err(|e| Error::io(dir, e))
}

pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(path, e))
}

/// Writes through a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write(&tmp, contents)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Stdout and stderr for a child process, both appending to the log at `path`.
pub fn append_log(path: &Path) -> Result<(Stdio, Stdio)> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let err = log.try_clone().map_err(|e| Error::io(path, e))?;
    Ok((Stdio::from(log), Stdio::from(err)))
}
