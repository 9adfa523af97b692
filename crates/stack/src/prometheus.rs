//! The local Prometheus of `MONITORING=1`: Debian's `prometheus`, with a config generated from
//! the stack's port layout (one static target per service replica, scraped every 5 s) and the
//! alert rules of `deploy/prometheus/alerts.yml`, compiled into the binary like the nginx
//! template. Its data lives in `data/prometheus/`, kept for a day at most.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::component::Service;
use crate::config::{PortLayout, StackConfig};
use crate::{Result, files};

pub const ALERTS: &str = include_str!("../../../deploy/prometheus/alerts.yml");

/// `prometheus.yml` (JSON is YAML): every replica of every service as a target of job
/// `webshop`, labelled with its service, and the alert rules at `rules`.
pub fn config(ports: &PortLayout, replicas: u32, rules: &Path) -> String {
    let targets: Vec<_> = Service::ALL
        .into_iter()
        .map(|s| {
            let targets: Vec<_> = s
                .replicas(ports, replicas)
                .map(|c| format!("127.0.0.1:{}", c.port))
                .collect();
            json!({"targets": targets, "labels": {"service": s.as_str()}})
        })
        .collect();
    let config = json!({
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [rules],
        "scrape_configs": [{
            "job_name": "webshop",
            "metrics_path": "/metrics",
            // The services label their own series with `service`; the target label fills in.
            "honor_labels": true,
            "static_configs": targets,
        }],
    });
    serde_json::to_string_pretty(&config).expect("config serializes")
}

/// Writes the config and the rules into `data/prometheus/`; returns the config's path.
pub fn prepare(cfg: &StackConfig, ports: &PortLayout) -> Result<PathBuf> {
    let home = files::absolute_dir(&cfg.data_dir().join("prometheus"))?;
    let rules = home.join("alerts.yml");
    files::write(&rules, ALERTS)?;
    let conf = home.join("prometheus.yml");
    files::write(&conf, config(ports, cfg.replicas, &rules))?;
    Ok(conf)
}

/// Command-line arguments: config, storage under `data` (bounded to a day), listen address.
pub fn args(conf: &Path, data: &Path, port: u16) -> Vec<String> {
    vec![
        format!("--config.file={}", conf.display()),
        format!("--storage.tsdb.path={}", data.join("tsdb").display()),
        "--storage.tsdb.retention.time=1d".into(),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_target_per_replica_with_its_service() {
        let conf = config(&PortLayout::default(), 2, Path::new("/r/alerts.yml"));
        let conf: serde_json::Value = serde_json::from_str(&conf).unwrap();
        let job = &conf["scrape_configs"][0];
        assert_eq!(conf["global"]["scrape_interval"], "5s");
        assert_eq!(conf["rule_files"][0], "/r/alerts.yml");
        assert_eq!(job["static_configs"][0]["labels"]["service"], "order");
        assert_eq!(
            job["static_configs"][2]["targets"],
            json!(["127.0.0.1:8301", "127.0.0.1:8302"])
        );
    }
}
