//! What a stack is made of: where it keeps its state, how many replicas, which ports.
//!
//! The config is plain data (serde) because the launcher hands it to the `stack supervise`
//! process as a JSON file; the supervisor then writes the *resolved* config (ports chosen)
//! to `ROOT/stack.json`, which is what `status`, `down` and [`crate::Stack::attach`] read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::component::Service;
use crate::{Error, Result};

/// Service settings that `make up` passes from its own environment to the services, when set
/// (unset: the services' own defaults apply), and the one service each is for (None: all).
pub const SERVICE_KNOBS: [(&str, Option<Service>); 4] = [
    // Seconds a finished checkout's records live (services' default: 600).
    ("STATE_RETENTION_S", None),
    // Checkouts one order replica runs at once before it answers 503 (default: 512).
    ("MAX_INFLIGHT_CHECKOUTS", Some(Service::Order)),
    // Bearer token `batch_init` requires (default: none, open).
    ("ADMIN_TOKEN", None),
    // Where traces go over OTLP (default: nowhere).
    ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
];

/// Whether the knob `key` of [`SERVICE_KNOBS`] is for `service`.
pub fn knob_applies(key: &str, service: Service) -> bool {
    SERVICE_KNOBS
        .iter()
        .any(|(k, only)| *k == key && only.is_none_or(|s| s == service))
}

/// `maxmemory` of each Redis unless `REDIS_MAXMEMORY` says otherwise.
pub const DEFAULT_REDIS_MAXMEMORY: &str = "1gb";

fn default_redis_maxmemory() -> String {
    DEFAULT_REDIS_MAXMEMORY.into()
}

/// Tokio worker threads of each service process unless `SERVICE_THREADS` says otherwise.
///
/// One: the whole stack (three Redis, the broker, nginx, the services) shares the machine's
/// cores, and each service spends its time waiting on Redis and Kafka. A second worker only
/// adds wake-ups and hand-overs between threads: on 2 cores, one worker cut the services' CPU
/// per checkout by about 15 % and raised throughput by 5-10 % (`make bench`, docs/benchmark.md).
pub const DEFAULT_SERVICE_THREADS: u32 = 1;

fn default_service_threads() -> u32 {
    DEFAULT_SERVICE_THREADS
}

/// The longest warm-up of a fresh broker unless `KAFKA_WARMUP_S` says otherwise: it ends
/// sooner, as soon as the broker's JIT falls quiet.
pub const DEFAULT_KAFKA_WARMUP_S: u32 = 30;
/// Well within the launcher's start timeout (`handle::START_TIMEOUT`, 300 s).
pub const MAX_KAFKA_WARMUP_S: u32 = 120;

/// The checkout protocol the services run; passed to them as `CHECKOUT_PROTOCOL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Saga,
    #[serde(rename = "2pc")]
    TwoPc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Saga => "saga",
            Protocol::TwoPc => "2pc",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "saga" => Ok(Protocol::Saga),
            "2pc" => Ok(Protocol::TwoPc),
            other => Err(Error::Config(format!(
                "CHECKOUT_PROTOCOL must be saga or 2pc, got {other:?}"
            ))),
        }
    }
}

/// Every port a stack listens on. Replica `i` (1-based) of a service listens on `base + i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortLayout {
    pub gateway: u16,
    pub order_db: u16,
    pub stock_db: u16,
    pub payment_db: u16,
    pub kafka: u16,
    pub kafka_controller: u16,
    pub order_base: u16,
    pub stock_base: u16,
    pub payment_base: u16,
    /// The local Prometheus of `MONITORING=1`.
    #[serde(default = "default_prometheus_port")]
    pub prometheus: u16,
}

fn default_prometheus_port() -> u16 {
    9090
}

impl Default for PortLayout {
    /// The layout of `make up` (DESIGN.md section 3).
    fn default() -> Self {
        PortLayout {
            gateway: 8000,
            order_db: 6380,
            stock_db: 6381,
            payment_db: 6382,
            kafka: 9092,
            kafka_controller: 9093,
            order_base: 8100,
            stock_base: 8200,
            payment_base: 8300,
            prometheus: default_prometheus_port(),
        }
    }
}

/// Where a running supervisor publishes its resolved config, relative to the root.
pub const STATE_FILE: &str = "stack.json";

/// Test stacks take one block of [`SLOT_WIDTH`] ports from `SLOT_FIRST_PORT` on. The blocks sit
/// below Linux's ephemeral range (32768+), so outgoing connections never steal them.
pub const SLOT_FIRST_PORT: u16 = 20_000;
pub const SLOT_WIDTH: u16 = 100;
pub const SLOT_COUNT: u16 = 120;
/// Replicas per service that fit in one slot (30 ports per service, index 0 unused).
pub const SLOT_MAX_REPLICAS: u32 = 29;

impl PortLayout {
    /// The layout of test slot `slot`: gateway at +0, Redis at +1..+3, Kafka at +4/+5,
    /// Prometheus at +6, order replicas at +11.., stock at +41.., payment at +71...
    pub fn slot(slot: u16) -> Self {
        let b = SLOT_FIRST_PORT + slot * SLOT_WIDTH;
        PortLayout {
            gateway: b,
            order_db: b + 1,
            stock_db: b + 2,
            payment_db: b + 3,
            kafka: b + 4,
            kafka_controller: b + 5,
            order_base: b + 10,
            stock_base: b + 40,
            payment_base: b + 70,
            prometheus: b + 6,
        }
    }
}

/// How the supervisor gets its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ports {
    /// Exactly these (the `make up` stack).
    Fixed(PortLayout),
    /// The first free test slot (see [`PortLayout::slot`]); the supervisor holds a lock file
    /// for the slot while it lives, so concurrent test binaries never share ports.
    Auto,
}

/// Everything needed to run one stack. Build it with [`StackConfig::from_env`] (the `make up`
/// stack) or [`StackConfig::for_tests`], then adjust fields.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StackConfig {
    /// State dir: `pids/`, `logs/`, `data/`, `stack.json` live under it (`.stack` for `make up`).
    pub root: PathBuf,
    /// Workspace root: holds `tools/kafka/pom.xml` and `target/`.
    pub workspace: PathBuf,
    /// Where the service binaries (`order`, `stock`, `payment`) and `stack` are.
    pub bin_dir: PathBuf,
    /// Replicas of each service.
    pub replicas: u32,
    pub protocol: Protocol,
    pub ports: Ports,
    /// Run the services (false: only Redis, Kafka and the gateway, for testing the runner).
    pub services: bool,
    /// Also run a Prometheus that scrapes every service replica (`MONITORING=1`).
    #[serde(default)]
    pub monitoring: bool,
    /// `KAFKA_PARTITIONS` for the services; by default [`StackConfig::partitions`].
    pub kafka_partitions: Option<u32>,
    /// `RUST_LOG` for the services.
    pub rust_log: String,
    /// Extra environment for every service (tests use it for tuning knobs); applied last.
    pub service_env: Vec<(String, String)>,
    /// The [`SERVICE_KNOBS`] set in the environment of `make up`, each for its services.
    #[serde(default)]
    pub service_knobs: Vec<(String, String)>,
    /// `maxmemory` of each Redis in Redis's units (`1gb`, `512mb`); writes beyond it are
    /// refused (`noeviction`), never silently evicted.
    #[serde(default = "default_redis_maxmemory")]
    pub redis_maxmemory: String,
    /// `KAFKA_JVM_OPTS`: extra JVM flags for the broker (whitespace-separated), after the
    /// defaults so that they win. Tests' stacks have none.
    #[serde(default)]
    pub kafka_jvm_opts: Vec<String>,
    /// `SERVICE_THREADS`: tokio worker threads of each service process (passed to them as
    /// `TOKIO_WORKER_THREADS`); see [`DEFAULT_SERVICE_THREADS`].
    #[serde(default = "default_service_threads")]
    pub service_threads: u32,
    /// `KAFKA_WARMUP_S`: at most this many seconds of warm-up traffic on a fresh broker before
    /// the services start (see [`crate::warmup`]); 0: none. `make up` warms up by default;
    /// tests' stacks do not (their many starts would each pay it, and they measure no speed).
    #[serde(default)]
    pub kafka_warmup_s: u32,
    /// The `stack` binary that runs the supervisor; default `bin_dir/stack`. The stack crate's
    /// own tests point it at `CARGO_BIN_EXE_stack`.
    #[serde(default)]
    pub stack_bin: Option<PathBuf>,
    /// Delete `data/` when the supervisor exits (test stacks); logs are kept for post-mortems.
    pub ephemeral: bool,
}

impl StackConfig {
    /// Partitions of every topic: as set, else one per replica, so that every replica has a
    /// partition and no more: each partition is a batch of its own in every request, and one
    /// partition cost 4–10 % less CPU per checkout than two (docs/benchmark.md, fourth pass).
    /// A stack started again with more replicas grows the topics it finds
    /// (`common::bus::Bus::ensure_topics`).
    pub fn partitions(&self) -> u32 {
        self.kafka_partitions.unwrap_or(self.replicas).max(1)
    }

    /// The workspace this crate was compiled in; tests and `make` run from it.
    pub fn default_workspace() -> PathBuf {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        here.ancestors().nth(2).unwrap_or(here).to_path_buf()
    }

    /// The `make up` stack: `.stack/` in the workspace, fixed ports, knobs from the environment
    /// (`REPLICAS`, `CHECKOUT_PROTOCOL`, `GATEWAY_PORT`, `KAFKA_PARTITIONS`, `RUST_LOG`,
    /// `REDIS_MAXMEMORY`, `KAFKA_JVM_OPTS`, `SERVICE_THREADS`, `KAFKA_WARMUP_S`, and the
    /// [`SERVICE_KNOBS`]).
    pub fn from_env() -> Result<Self> {
        let workspace = Self::default_workspace();
        let mut ports = PortLayout::default();
        if let Some(port) = env_parse::<u16>("GATEWAY_PORT")? {
            ports.gateway = port;
        }
        let protocol = match std::env::var("CHECKOUT_PROTOCOL") {
            Ok(p) if !p.trim().is_empty() => p.parse()?,
            _ => Protocol::default(),
        };
        let cfg = StackConfig {
            root: workspace.join(".stack"),
            bin_dir: workspace.join("target/release"),
            workspace,
            replicas: env_parse("REPLICAS")?.unwrap_or(1),
            protocol,
            ports: Ports::Fixed(ports),
            services: true,
            monitoring: env_flag("MONITORING")?,
            kafka_partitions: env_parse("KAFKA_PARTITIONS")?,
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            service_env: Vec::new(),
            service_knobs: SERVICE_KNOBS
                .iter()
                .filter_map(|(key, _)| Some((key.to_string(), env_text(key)?)))
                .collect(),
            redis_maxmemory: env_text("REDIS_MAXMEMORY").unwrap_or_else(default_redis_maxmemory),
            kafka_jvm_opts: env_text("KAFKA_JVM_OPTS")
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            service_threads: env_parse("SERVICE_THREADS")?.unwrap_or(DEFAULT_SERVICE_THREADS),
            kafka_warmup_s: env_parse("KAFKA_WARMUP_S")?.unwrap_or(DEFAULT_KAFKA_WARMUP_S),
            stack_bin: None,
            ephemeral: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// A private stack for tests: root `target/stack-tests/NAME-PID` (`-2`, `-3`.. appended on
    /// later calls in the same process, so several stacks of one test binary never share a
    /// root), ports from a free slot, one replica, saga, data deleted when the stack stops.
    pub fn for_tests(name: &str) -> Self {
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let workspace = Self::default_workspace();
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = match call {
            0 => format!("{name}-{}", std::process::id()),
            n => format!("{name}-{}-{}", std::process::id(), n + 1),
        };
        StackConfig {
            root: workspace.join("target/stack-tests").join(dir),
            bin_dir: workspace.join("target/release"),
            workspace,
            replicas: 1,
            protocol: Protocol::Saga,
            ports: Ports::Auto,
            services: true,
            monitoring: false,
            kafka_partitions: None,
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            service_env: Vec::new(),
            service_knobs: Vec::new(),
            redis_maxmemory: default_redis_maxmemory(),
            kafka_jvm_opts: Vec::new(),
            service_threads: DEFAULT_SERVICE_THREADS,
            kafka_warmup_s: 0,
            stack_bin: None,
            ephemeral: true,
        }
    }

    pub fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Only Redis, Kafka and the gateway (the gateway then answers 502 for service routes).
    pub fn without_services(mut self) -> Self {
        self.services = false;
        self
    }

    /// Run the services too (the default of both constructors).
    pub fn with_services(mut self) -> Self {
        self.services = true;
        self
    }

    /// Also run the local Prometheus (as `MONITORING=1` does for `make up`).
    pub fn with_monitoring(mut self) -> Self {
        self.monitoring = true;
        self
    }

    pub fn with_service_env(mut self, key: &str, value: &str) -> Self {
        self.service_env.push((key.into(), value.into()));
        self
    }

    pub fn validate(&self) -> Result<()> {
        let max = match self.ports {
            Ports::Auto => SLOT_MAX_REPLICAS,
            Ports::Fixed(_) => 99,
        };
        if self.replicas == 0 || self.replicas > max {
            return Err(Error::Config(format!(
                "REPLICAS must be within 1..={max}, got {}",
                self.replicas
            )));
        }
        if self.service_threads == 0 || self.service_threads > 64 {
            return Err(Error::Config(format!(
                "SERVICE_THREADS must be within 1..=64, got {}",
                self.service_threads
            )));
        }
        if self.kafka_warmup_s > MAX_KAFKA_WARMUP_S {
            return Err(Error::Config(format!(
                "KAFKA_WARMUP_S must be within 0..={MAX_KAFKA_WARMUP_S}, got {}",
                self.kafka_warmup_s
            )));
        }
        let memory = self.redis_maxmemory.to_ascii_lowercase();
        let digits = memory.trim_end_matches(['b', 'k', 'm', 'g']);
        let unit = &memory[digits.len()..];
        let units = ["", "b", "k", "kb", "m", "mb", "g", "gb"];
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !units.contains(&unit)
        {
            return Err(Error::Config(format!(
                "REDIS_MAXMEMORY must be a size such as 1gb or 512mb, got {:?}",
                self.redis_maxmemory
            )));
        }
        Ok(())
    }

    pub fn pids_dir(&self) -> PathBuf {
        self.root.join("pids")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.pids_dir().join(format!("{name}.pid"))
    }
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }
    /// The resolved config the running supervisor wrote.
    pub fn state_file(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }
    /// Cached Kafka classpath, shared by every stack of this workspace.
    pub fn kafka_classpath_file(&self) -> PathBuf {
        self.workspace.join("target/kafka.classpath")
    }
    /// Class-data-sharing archive of the broker's JVM (see [`crate::kafka::cds_args`]).
    pub fn kafka_cds_archive(&self) -> PathBuf {
        self.workspace.join("target/kafka.jsa")
    }
    pub fn kafka_pom(&self) -> PathBuf {
        self.workspace.join("tools/kafka/pom.xml")
    }
}

/// The trimmed value of `key`, if set and not blank.
fn env_text(key: &str) -> Option<String> {
    let value = std::env::var(key).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// A boolean knob: unset, empty, `0`, `false`, `no` or `off` are false; `1`, `true`, `yes`, `on`
/// are true; anything else is an error.
fn env_flag(key: &str) -> Result<bool> {
    match env_text(key).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(Error::Config(format!(
            "{key} must be 1 or 0, got {other:?}"
        ))),
    }
}

fn env_parse<T: std::str::FromStr>(key: &str) -> Result<Option<T>> {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::Config(format!("{key}={v:?} is not a valid value"))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_do_not_overlap_and_stay_below_ephemeral_ports() {
        let last = PortLayout::slot(SLOT_COUNT - 1);
        assert!(last.payment_base as u32 + SLOT_MAX_REPLICAS < 32_768);
        let a = PortLayout::slot(0);
        assert!((a.payment_base as u32 + SLOT_MAX_REPLICAS) < PortLayout::slot(1).gateway as u32);
    }

    #[test]
    fn protocol_round_trips() {
        assert_eq!("2pc".parse::<Protocol>().unwrap(), Protocol::TwoPc);
        assert_eq!(" SAGA ".parse::<Protocol>().unwrap(), Protocol::Saga);
        // Exactly what the services accept: trimmed, any case, `saga` or `2pc`.
        for bad in ["3pc", "twopc", "", "sagas"] {
            let err = bad.parse::<Protocol>().unwrap_err().to_string();
            assert!(err.contains("saga or 2pc"), "{err}");
        }
        let json = serde_json::to_string(&Protocol::TwoPc).unwrap();
        assert_eq!(json, "\"2pc\"");
    }

    #[test]
    fn knobs_reach_their_services() {
        assert!(knob_applies("STATE_RETENTION_S", Service::Payment));
        assert!(knob_applies("MAX_INFLIGHT_CHECKOUTS", Service::Order));
        assert!(!knob_applies("MAX_INFLIGHT_CHECKOUTS", Service::Stock));
        assert!(!knob_applies("HTTP_ADDR", Service::Order));
    }

    #[test]
    fn redis_maxmemory_is_a_size() {
        let mut c = StackConfig::for_tests("m");
        for good in ["1gb", "512MB", "1073741824", "100k"] {
            c.redis_maxmemory = good.into();
            c.validate().unwrap();
        }
        for bad in ["", "gb", "1tb", "1.5gb", "-1"] {
            c.redis_maxmemory = bad.into();
            assert!(c.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn service_threads_are_bounded() {
        let mut c = StackConfig::for_tests("t");
        for good in [1, 2, 64] {
            c.service_threads = good;
            c.validate().unwrap();
        }
        for bad in [0, 65] {
            c.service_threads = bad;
            assert!(c.validate().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_broker_warm_up_is_bounded_and_tests_skip_it() {
        let mut c = StackConfig::for_tests("w");
        assert_eq!(c.kafka_warmup_s, 0);
        for good in [0, 30, MAX_KAFKA_WARMUP_S] {
            c.kafka_warmup_s = good;
            c.validate().unwrap();
        }
        c.kafka_warmup_s = MAX_KAFKA_WARMUP_S + 1;
        assert!(c.validate().is_err());
    }

    #[test]
    fn for_tests_is_private() {
        let c = StackConfig::for_tests("x");
        let d = StackConfig::for_tests("x");
        let pid = std::process::id().to_string();
        assert_ne!(c.root, d.root);
        for root in [&c.root, &d.root] {
            let dir = root.file_name().unwrap().to_str().unwrap();
            assert!(dir.starts_with(&format!("x-{pid}")), "{dir}");
        }
        assert_eq!(c.ports, Ports::Auto);
        c.validate().unwrap();
    }
}
