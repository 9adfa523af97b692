//! Crash points for fault tests: a test arms one by creating a file named after it in
//! `FAILPOINTS_DIR`; the next process to pass that point removes the file and aborts on the
//! spot, as if SIGKILLed there. Without `FAILPOINTS_DIR` (production) this does nothing.

use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("FAILPOINTS_DIR").map(PathBuf::from))
        .as_ref()
}

/// Crashes the process here if the test armed `name`.
pub fn hit(name: &str) {
    let Some(dir) = dir() else { return };
    let armed = dir.join(name);
    if std::fs::remove_file(&armed).is_ok() {
        tracing::error!(failpoint = name, "failpoint armed: crashing now");
        std::process::abort();
    }
}
