//! The Kafka broker: jars from Maven Central, a generated KRaft config, storage formatted once.
//!
//! One JVM is broker and controller at once (KRaft, no ZooKeeper). Maven resolves
//! `tools/kafka/pom.xml` into a classpath file once (`target/kafka.classpath`, jars cached in
//! `~/.m2`); later starts reuse it, so a warm `make up` never touches the network.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{PortLayout, StackConfig};
use crate::{Error, Result, files};

/// Main class of the broker.
pub const MAIN_CLASS: &str = "kafka.Kafka";
/// Heap of the broker: enough for a benchmark, small enough for a 2-core CI box.
pub const HEAP: &str = "-Xmx512m";

/// The broker's JIT: inline less, compile sooner. A fresh broker's C2 compiler spent about
/// 8 s of CPU in the first half minute of a benchmark (as much as the request threads),
/// compiling Kafka's deeply nested Scala and lambda code, so the first half minute after
/// `make up` (when users run their first benchmark) cost far more per checkout than later.
/// - Inlining less (hot methods up to 50 bytes of bytecode instead of 325, 4 levels deep
///   instead of 15) cut the broker's CPU per checkout over that first half minute by about a
///   third (0.27 → 0.19 ms, two runs each) and cost about 3 % once warm (0.129 → 0.133 ms).
/// - Compiling at a quarter of the usual invocation counts (`CompileThresholdScaling`) moves
///   that work to the first seconds of load. Over cold runs (seconds 5–25 of load, saga, ten
///   interleaved pairs) the broker's CPU per checkout fell by a fifth (0.68 → 0.54 ms on
///   average) and the whole stack's by a tenth (1.84 → 1.65 ms); warm, the broker's share did
///   not move (four pairs). The broker compiles more while it starts, so a stack takes about
///   0.5 s longer to come up. A tenth of the counts was no better than a quarter.
///
/// `KAFKA_JVM_OPTS` comes after these and wins.
pub const JIT: [&str; 3] = [
    "-XX:FreqInlineSize=50",
    "-XX:MaxInlineLevel=4",
    "-XX:CompileThresholdScaling=0.25",
];

/// The broker's collector: G1, unless `KAFKA_JVM_OPTS` chooses one (`-XX:+Use...GC`); the
/// JVM refuses to start with two.
pub fn gc_flag(extra: &[String]) -> Option<&'static str> {
    let chosen = extra
        .iter()
        .any(|o| o.starts_with("-XX:+Use") && o.ends_with("GC"));
    (!chosen).then_some("-XX:+UseG1GC")
}

/// The classpath, resolved by Maven if the cached file is missing or names a jar that is gone.
pub fn classpath(cfg: &StackConfig) -> Result<String> {
    let file = cfg.kafka_classpath_file();
    if let Some(cp) = cached_classpath(&file) {
        return Ok(cp);
    }
    let pom = cfg.kafka_pom();
    // Maven writes the file itself; resolve to a private name and rename, so two stacks
    // starting at once never read a half-written classpath.
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    if let Some(dir) = file.parent() {
        files::create_dir(dir)?;
    }
    let out = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(&pom)
        .arg("dependency:build-classpath")
        .arg(format!("-Dmdep.outputFile={}", tmp.display()))
        .output()
        .map_err(|e| Error::Prerequisite(format!("cannot run mvn: {e}")))?;
    if !out.status.success() {
        return Err(Error::Prerequisite(format!(
            "mvn could not resolve {}: {}{}",
            pom.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::rename(&tmp, &file).map_err(|e| Error::io(&file, e))?;
    // An archive of the old classpath's classes would only be rejected by the JVM.
    let _ = std::fs::remove_file(cfg.kafka_cds_archive());
    cached_classpath(&file)
        .ok_or_else(|| Error::Prerequisite(format!("{} names missing jars", file.display())))
}

fn cached_classpath(file: &Path) -> Option<String> {
    let cp = std::fs::read_to_string(file).ok()?.trim().to_string();
    let complete = !cp.is_empty() && cp.split(':').all(|jar| Path::new(jar).is_file());
    complete.then_some(cp)
}

/// JVM flags for class data sharing (AppCDS). Loading Kafka's classes is most of the broker's
/// start-up, and a start is on the critical path of every restart after a crash; a
/// dynamic archive halves it (measured here: 4.3 s to 2.1 s). The archive does not exist
/// before the first broker stops cleanly: that run dumps its classes at exit into a file of
/// its own, which [`adopt_cds_archive`] renames into place.
pub fn cds_args(cfg: &StackConfig) -> String {
    let archive = cfg.kafka_cds_archive();
    if archive.is_file() {
        format!("-XX:SharedArchiveFile={}", archive.display())
    } else {
        format!(
            "-XX:ArchiveClassesAtExit={}",
            pending_cds_archive(cfg).display()
        )
    }
}

fn pending_cds_archive(cfg: &StackConfig) -> PathBuf {
    cfg.kafka_cds_archive()
        .with_extension(format!("jsa.{}", std::process::id()))
}

/// After the broker exited: keep the archive it dumped if it exited cleanly (0, or 143 after
/// SIGTERM); a killed JVM may have left half a file.
pub fn adopt_cds_archive(cfg: &StackConfig, status: Option<std::process::ExitStatus>) {
    let pending = pending_cds_archive(cfg);
    if !pending.exists() {
        return;
    }
    let clean = status
        .and_then(|s| s.code())
        .is_some_and(|c| c == 0 || c == 143);
    if clean {
        let _ = std::fs::rename(&pending, cfg.kafka_cds_archive());
    } else {
        let _ = std::fs::remove_file(&pending);
    }
}

/// `server.properties` for a single-node KRaft cluster on loopback.
pub fn server_properties(ports: &PortLayout, log_dir: &Path) -> String {
    format!(
        "# Generated by the stack runner; edits are overwritten on every start.
node.id=1
process.roles=broker,controller
listeners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.voters=1@127.0.0.1:{controller}
log.dirs={log_dir}
num.partitions=16
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=16
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=16
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Bounded disk (see docs/deployment.md): records live 1 hour, longer than any
# step record in the services' Redis (STATE_RETENTION_S), so no command is redelivered after
# its step record is gone. Retention deletes whole closed segments, hence small segments,
# checked often. Committed offsets outlive the records: a group that lost its offsets
# would restart from the earliest record and replay everything still in the log.
log.retention.ms=3600000
log.segment.bytes=16777216
# Checked every 10 s and removed 5 s after: with Kafka's defaults (5 min, 60 s) a segment
# lingers minutes past its retention, which on a 20 s STATE_RETENTION_S is most of the disk.
log.retention.check.interval.ms=10000
file.delete.delay.ms=5000
offsets.retention.minutes=1440
# A restarted (SIGKILLed) node waits for its previous broker session to expire before it is
# unfenced; with the default 9 s session that is most of a restart. Loopback heartbeats are
# cheap, so a short session brings Kafka back within seconds.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
",
        broker = ports.kafka,
        controller = ports.kafka_controller,
        log_dir = log_dir.display(),
    )
}

/// log4j2 config: everything to stdout, which the supervisor appends to `logs/kafka.log`. No
/// log4j shutdown hook: Kafka logs its own shutdown, and a hook racing it printed warnings.
pub const LOG4J2_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
    <Logger name="kafka.server.metadata" level="WARN"/>
    <Logger name="org.apache.kafka.storage" level="WARN"/>
    <!-- One line per partition and state change (thousands per restart) drowns the rest. -->
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller.ReplicationControlManager" level="WARN"/>
    <Logger name="org.apache.kafka.controller.PartitionChangeBuilder" level="WARN"/>
    <Logger name="org.apache.kafka.coordinator.common.runtime.CoordinatorRuntime" level="WARN"/>
    <Logger name="kafka.cluster.Partition" level="WARN"/>
    <Logger name="kafka.log.LogManager" level="WARN"/>
    <Logger name="org.apache.kafka.server.purgatory" level="WARN"/>
    <Logger name="kafka.server.ClientQuotaManager$ThrottledChannelReaper" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
  </Loggers>
</Configuration>
"#;

/// Files Kafka needs before its first start, written into `data/kafka/`; returns the paths of
/// `server.properties` and `log4j2.xml`. Formats the log dir once (a fresh cluster id).
pub fn prepare(
    cfg: &StackConfig,
    ports: &PortLayout,
    classpath: &str,
) -> Result<(PathBuf, PathBuf)> {
    let home = cfg.data_dir().join("kafka");
    let log_dir = home.join("log");
    files::create_dir(&log_dir)?;
    let props = home.join("server.properties");
    files::write(&props, server_properties(ports, &log_dir))?;
    let log4j = home.join("log4j2.xml");
    files::write(&log4j, LOG4J2_XML)?;
    if !log_dir.join("meta.properties").exists() {
        let out = Command::new("java")
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .args(["-cp", classpath, "kafka.tools.StorageTool", "format", "-t"])
            .arg(cluster_id())
            .arg("-c")
            .arg(&props)
            .current_dir(&home)
            .output()
            .map_err(|e| Error::Prerequisite(format!("cannot run java: {e}")))?;
        if !out.status.success() {
            return Err(Error::Prerequisite(format!(
                "formatting Kafka storage failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok((props, log4j))
}

/// A Kafka cluster id: 16 random bytes in unpadded URL-safe base64, as `kafka-storage
/// random-uuid` prints. Like Kafka's own `Uuid.randomUuid`, never one that starts with '-':
/// the storage tool would read it as an option.
pub fn cluster_id() -> String {
    loop {
        let id = base64url(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_chosen_in_the_options_replaces_g1() {
        let opts = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(gc_flag(&[]), Some("-XX:+UseG1GC"));
        assert_eq!(
            gc_flag(&opts(&["-XX:TieredStopAtLevel=1"])),
            Some("-XX:+UseG1GC")
        );
        assert_eq!(gc_flag(&opts(&["-Xss1m", "-XX:+UseSerialGC"])), None);
        assert_eq!(gc_flag(&opts(&["-XX:+UseParallelGC"])), None);
    }

    #[test]
    fn base64url_matches_the_rfc_vectors() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        for _ in 0..1000 {
            let id = cluster_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn properties_use_the_layout() {
        let p = server_properties(&PortLayout::default(), Path::new("/x/log"));
        assert!(p.contains("listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"));
        assert!(p.contains("controller.quorum.voters=1@127.0.0.1:9093"));
        assert!(p.contains("log.dirs=/x/log"));
        // Retention bounds the disk, and offsets outlive the records they point into.
        assert!(p.contains("log.retention.ms=3600000\n"));
        assert!(p.contains("offsets.retention.minutes=1440\n"));
    }
}
