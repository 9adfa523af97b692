//! How each component's process is started: command line, environment, working dir, log.
//!
//! [`Launcher::prepare`] does the one-time work (find programs, resolve Kafka, format its
//! storage, render nginx.conf); [`Launcher::spawn`] is then cheap, so the watchdog can restart
//! a component within milliseconds of its death.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::component::{Component, Kind, Service};
use crate::config::{self, PortLayout, StackConfig};
use crate::{Error, Result, files, install, kafka, nginx, procs, prometheus};

pub struct Launcher {
    cfg: StackConfig,
    ports: PortLayout,
    redis_server: PathBuf,
    nginx: PathBuf,
    java: PathBuf,
    kafka_classpath: String,
    kafka_props: PathBuf,
    kafka_log4j: PathBuf,
    nginx_prefix: PathBuf,
    nginx_conf: PathBuf,
    /// The `prometheus` binary and its config, with `MONITORING=1`.
    prometheus: Option<(PathBuf, PathBuf)>,
}

impl Launcher {
    /// Installs what is missing and writes every generated file.
    pub fn prepare(cfg: &StackConfig, ports: &PortLayout) -> Result<Self> {
        install::ensure(cfg)?;
        let need = |program: &str| {
            install::find_program(program)
                .ok_or_else(|| Error::Prerequisite(format!("{program} not found after install")))
        };
        let redis_server = need("redis-server")?;
        let nginx = nginx::binary().ok_or_else(|| Error::Prerequisite("nginx not found".into()))?;
        let java = need("java")?;
        if cfg.services {
            for s in Service::ALL {
                let bin = cfg.bin_dir.join(s.as_str());
                if !bin.is_file() {
                    return Err(Error::Prerequisite(format!(
                        "service binary {} missing",
                        bin.display()
                    )));
                }
            }
        }
        let kafka_classpath = kafka::classpath(cfg)?;
        let (kafka_props, kafka_log4j) = kafka::prepare(cfg, ports, &kafka_classpath)?;
        // Every component inherits the raised limit (nginx's workers, Redis's clients).
        let nofile = procs::raise_nofile_limit();
        let (nginx_prefix, nginx_conf) = nginx::prepare(cfg, ports, nofile)?;
        let prometheus = if cfg.monitoring {
            Some((need("prometheus")?, prometheus::prepare(cfg, ports)?))
        } else {
            None
        };
        Ok(Launcher {
            cfg: cfg.clone(),
            ports: *ports,
            redis_server,
            nginx,
            java,
            kafka_classpath,
            kafka_props,
            kafka_log4j,
            nginx_prefix,
            nginx_conf,
            prometheus,
        })
    }

    /// Starts `c` in its own process group, cwd = its data dir, output appended to its log.
    pub fn spawn(&self, c: &Component) -> Result<Child> {
        let data = self.cfg.data_dir().join(&c.name);
        files::create_dir(&data)?;
        let (log, log_err) = files::append_log(&self.cfg.log_file(&c.name))?;
        let mut cmd = self.command(c, &data);
        cmd.current_dir(&data)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn().map_err(|e| Error::Spawn {
            name: c.name.clone(),
            source: e,
        })
    }

    /// Bookkeeping after `c`'s process exited with `status` (None: unknown).
    pub fn exited(&self, c: &Component, status: Option<std::process::ExitStatus>) {
        if c.kind == Kind::Kafka {
            kafka::adopt_cds_archive(&self.cfg, status);
        }
    }

    fn command(&self, c: &Component, data: &std::path::Path) -> Command {
        match c.kind {
            Kind::Redis(_) => {
                let mut cmd = Command::new(&self.redis_server);
                cmd.args(["--bind", "127.0.0.1", "--port", &c.port.to_string()])
                    .arg("--dir")
                    .arg(data)
                    // Durability contract: a 2xx is sent only after its write is on disk, so
                    // every write is fsynced (everysec could lose the last second on a crash).
                    .args(["--appendonly", "yes", "--appendfsync", "always"])
                    // Bounded state: a write beyond maxmemory is refused (the service answers
                    // 503), never answered by evicting data. The AOF is rewritten once it has
                    // doubled since the last rewrite (and is at least 64 MB), so on disk it
                    // stays within about twice the live data.
                    .args(["--maxmemory", &self.cfg.redis_maxmemory])
                    .args(["--maxmemory-policy", "noeviction"])
                    .args(["--auto-aof-rewrite-percentage", "100"])
                    .args(["--auto-aof-rewrite-min-size", "64mb"])
                    // Per-command latency histograms cost about 2.5 % of a Redis's CPU
                    // (`perf`: hdr_record_values); nothing reads them. The AOF rewrite writes
                    // its RDB preamble uncompressed: LZF was a tenth of the order Redis's CPU
                    // under load, for a base file that is rewritten every minute or so.
                    .args(["--latency-tracking", "no", "--rdbcompression", "no"])
                    .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
                    .args(["--logfile", "", "--always-show-logo", "no"]);
                cmd
            }
            Kind::Kafka => {
                let mut cmd = Command::new(&self.java);
                cmd.arg(kafka::HEAP)
                    .args(kafka::gc_flag(&self.cfg.kafka_jvm_opts))
                    .arg("-Djava.awt.headless=true")
                    .args(kafka::JIT)
                    .args(&self.cfg.kafka_jvm_opts)
                    .arg(kafka::cds_args(&self.cfg))
                    .arg(format!(
                        "-Dlog4j2.configurationFile={}",
                        self.kafka_log4j.display()
                    ))
                    .args(["-cp", &self.kafka_classpath, kafka::MAIN_CLASS])
                    .arg(&self.kafka_props);
                cmd
            }
            Kind::Service(service) => {
                let db_port = service.db_port(&self.ports);
                let mut cmd = Command::new(self.cfg.bin_dir.join(service.as_str()));
                cmd.env("HTTP_ADDR", format!("127.0.0.1:{}", c.port))
                    .env("REDIS_URL", format!("redis://127.0.0.1:{db_port}"))
                    .env("KAFKA_BROKERS", format!("127.0.0.1:{}", self.ports.kafka))
                    .env("REPLICA_ID", &c.name)
                    .env("CHECKOUT_PROTOCOL", self.cfg.protocol.as_str())
                    .env("RUST_LOG", &self.cfg.rust_log)
                    .env("TOKIO_WORKER_THREADS", self.cfg.service_threads.to_string());
                cmd.env("KAFKA_PARTITIONS", self.cfg.partitions().to_string());
                let knobs = self.cfg.service_knobs.iter();
                cmd.envs(
                    knobs
                        .filter(|(k, _)| config::knob_applies(k, service))
                        .map(|(k, v)| (k, v)),
                );
                cmd.envs(self.cfg.service_env.iter().map(|(k, v)| (k, v)));
                cmd
            }
            Kind::Gateway => {
                let mut cmd = Command::new(&self.nginx);
                cmd.arg("-p")
                    .arg(&self.nginx_prefix)
                    .arg("-c")
                    .arg(&self.nginx_conf)
                    .args(["-e", "stderr", "-g", "daemon off;"]);
                cmd
            }
            Kind::Prometheus => {
                // Only a monitored stack has this component, and then prepare found both.
                let (program, conf) = self.prometheus.as_ref().expect("monitoring prepared");
                let mut cmd = Command::new(program);
                cmd.args(prometheus::args(conf, data, c.port));
                cmd
            }
        }
    }
}
