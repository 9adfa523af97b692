//! The gateway: `deploy/nginx/nginx.conf.template` rendered with this stack's ports and paths.
//!
//! The template is compiled into the binary, so the runner works from any directory. nginx
//! runs as root without its system paths, so every path it writes (pid, temp dirs) is absolute
//! under `data/gateway/`, and errors go to stderr, i.e. `logs/gateway.log`.

use std::path::{Path, PathBuf};

use crate::config::{PortLayout, StackConfig};
use crate::{Result, files};

pub const TEMPLATE: &str = include_str!("../../../deploy/nginx/nginx.conf.template");

/// The `server` lines of one upstream. `max_fails=0`: never mark a replica down. On loopback a
/// dead replica refuses a connection at once and nginx retries the next, so skipping it buys
/// nothing, while marking it down (per worker, for `fail_timeout`) keeps a restarted replica
/// out of rotation and, with the other one killed next, left no live upstream at all.
fn servers(base: u16, replicas: u32) -> String {
    (1..=replicas)
        .map(|i| format!("        server 127.0.0.1:{} max_fails=0;", base as u32 + i))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Most connections one worker handles (clients and upstreams together).
const MAX_WORKER_CONNECTIONS: u64 = 16_384;

/// The config for `nofile` descriptors per process (see [`crate::procs::raise_nofile_limit`]).
pub fn render(prefix: &Path, ports: &PortLayout, replicas: u32, nofile: u64) -> String {
    let worker_connections = (nofile / 2).clamp(512, MAX_WORKER_CONNECTIONS);
    TEMPLATE
        .replace("{{PREFIX}}", &prefix.display().to_string())
        .replace("{{NOFILE}}", &nofile.to_string())
        .replace("{{WORKER_CONNECTIONS}}", &worker_connections.to_string())
        .replace("{{GATEWAY_PORT}}", &ports.gateway.to_string())
        .replace("{{ORDER_SERVERS}}", &servers(ports.order_base, replicas))
        .replace("{{STOCK_SERVERS}}", &servers(ports.stock_base, replicas))
        .replace(
            "{{PAYMENT_SERVERS}}",
            &servers(ports.payment_base, replicas),
        )
}

/// Writes the config for `nofile` descriptors per process; returns the prefix dir and config path.
pub fn prepare(cfg: &StackConfig, ports: &PortLayout, nofile: u64) -> Result<(PathBuf, PathBuf)> {
    let prefix = files::absolute_dir(&cfg.data_dir().join("gateway"))?;
    let conf = prefix.join("nginx.conf");
    let text = render(&prefix, ports, cfg.replicas, nofile);
    files::write(&conf, text)?;
    Ok((prefix, conf))
}

/// The nginx binary: Debian puts it in /usr/sbin, which a non-login PATH may lack.
pub fn binary() -> Option<PathBuf> {
    crate::install::find_program("nginx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_every_placeholder() {
        let conf = render(Path::new("/p"), &PortLayout::default(), 2, 65_536);
        assert!(!conf.contains("{{"), "unfilled placeholder in:\n{conf}");
        assert!(conf.contains("worker_rlimit_nofile 65536;"));
        assert!(conf.contains("worker_connections 16384;"));
        assert!(conf.contains("listen 127.0.0.1:8000"));
        assert!(conf.contains("server 127.0.0.1:8101 "));
        assert!(conf.contains("server 127.0.0.1:8102 "));
        assert!(conf.contains("server 127.0.0.1:8302 "));
        assert!(!conf.contains("8103"));
        assert!(conf.contains("pid /p/nginx.pid;"));
    }
}
