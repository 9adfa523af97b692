//! Advisory locks that keep stacks apart: one supervisor per root dir, one test stack per port
//! slot. Locks are `flock`s held by the supervisor process, so the kernel drops them when it
//! dies, however it dies: no stale lock ever needs cleaning.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::config::{PortLayout, Ports, SLOT_COUNT, StackConfig};
use crate::{Error, Result, component, health};

/// A held lock; dropping it releases the lock.
pub type Lock = Flock<File>;

/// Takes the lock at `path` without waiting; `None` if someone else holds it.
pub fn try_lock(path: &Path) -> Result<Option<Lock>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(path, std::io::Error::from(e))),
    }
}

/// The lock a running supervisor holds on its root.
pub fn root_lock_path(cfg: &StackConfig) -> PathBuf {
    cfg.root.join("supervisor.lock")
}

/// Whether a supervisor holds this root (the lock is only tested, not kept).
pub fn root_in_use(cfg: &StackConfig) -> bool {
    let path = root_lock_path(cfg);
    path.exists() && matches!(try_lock(&path), Ok(None))
}

/// Every port the stack of `cfg` would listen on with `layout`.
fn ports_of(cfg: &StackConfig, layout: &PortLayout) -> Vec<u16> {
    let mut ports: Vec<u16> = component::all(cfg, layout).iter().map(|c| c.port).collect();
    ports.push(layout.kafka_controller);
    ports
}

/// The ports of `layout` that something already listens on.
pub fn busy_ports(cfg: &StackConfig, layout: &PortLayout) -> Vec<u16> {
    ports_of(cfg, layout)
        .into_iter()
        .filter(|p| !health::port_free(*p))
        .collect()
}

/// Chooses the port layout. `Fixed` ports must be free; `Auto` takes the first slot whose lock
/// is free and whose ports are all free, starting at a slot derived from the pid so concurrent
/// test binaries rarely race for the same one. The returned lock must be kept while running.
pub fn resolve_ports(cfg: &StackConfig) -> Result<(PortLayout, Option<Lock>)> {
    match cfg.ports {
        Ports::Fixed(layout) => {
            // A process that just died may hold its sockets a moment longer; a port that stays
            // busy for seconds belongs to someone else.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            loop {
                let busy = busy_ports(cfg, &layout);
                if busy.is_empty() {
                    return Ok((layout, None));
                }
                if std::time::Instant::now() > deadline {
                    return Err(Error::PortsBusy(busy));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Ports::Auto => {
            let dir = std::env::temp_dir().join("webshop-stack-slots");
            crate::files::create_dir(&dir)?;
            let start = (std::process::id() % SLOT_COUNT as u32) as u16;
            for i in 0..SLOT_COUNT {
                let slot = (start + i) % SLOT_COUNT;
                let Some(lock) = try_lock(&dir.join(format!("slot-{slot}.lock")))? else {
                    continue;
                };
                let layout = PortLayout::slot(slot);
                if busy_ports(cfg, &layout).is_empty() {
                    return Ok((layout, Some(lock)));
                }
            }
            Err(Error::NoFreeSlot)
        }
    }
}
