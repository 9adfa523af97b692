//! Typed service settings, read once from the environment and validated at start-up: a
//! value out of range stops the service with a message naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::protocol::Protocol;

/// Everything a service needs to run. Every field has a default that works for a local
/// single-replica stack, so a bare `cargo run -p stock` is useful during development.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `HTTP_ADDR`: where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// `REDIS_URL`: the service's own Redis.
    pub redis_url: String,
    /// `KAFKA_BROKERS`: bootstrap servers.
    pub kafka_brokers: String,
    /// `REPLICA_ID`: this replica's name (`order-1`, a pod name `order-0`, ...). The trailing
    /// number picks the order replica's reply partition, so it must be stable across restarts.
    pub replica_id: String,
    /// `CHECKOUT_PROTOCOL`: `saga` (default) or `2pc`.
    pub protocol: Protocol,
    /// `KAFKA_PARTITIONS`: partitions of every topic created at start-up (default 2). At least
    /// the replicas of any service: each order replica owns a reply partition, and a
    /// participant replica without a partition idles. No more: the broker's cost is per
    /// partition batch, so on two cores 16 partitions cost about 40% more CPU per checkout than
    /// 2 (docs/benchmark.md).
    pub partitions: i32,
    /// `KAFKA_REPLICATION`: replication factor of the topics created at start-up.
    pub replication: i32,
    /// `TOPIC_PREFIX`: lets several stacks share one broker (tests).
    pub topic_prefix: String,
    /// `KAFKA_LINGER_MS`: producer batching delay; small, because checkout latency is the product.
    pub linger_ms: u32,
    /// `KAFKA_FETCH_WAIT_MS` (default 10) and `KAFKA_FETCH_MIN_BYTES` (4096): how long the
    /// broker may hold a fetch to fill it. Fewer, fuller fetches cost the broker far less CPU
    /// per message; under load 4 KiB fill in a few milliseconds, so the wait mostly shows at
    /// idle (an idle broker answering three consumers every 3 ms used a third of a core).
    pub fetch_wait_ms: u32,
    pub fetch_min_bytes: u32,
    /// `CHECKOUT_TIMEOUT_MS`: how long a checkout request waits for its transaction before it
    /// answers 503; the transaction itself goes on and recovery finishes it.
    pub checkout_timeout: Duration,
    /// `STEP_RETRY_MS`: how long the coordinator waits for a participant before it sends the
    /// (idempotent) command again.
    pub step_retry: Duration,
    /// `LEASE_MS`: how long a coordinator owns a transaction without renewing its lease.
    pub lease: Duration,
    /// `STATE_RETENTION_S`: how long the records of a finished checkout live (the order's
    /// transaction record, the participants' step records). A participant applies no try
    /// older than half of it, so it must leave room for a lease and a resend after that.
    pub state_retention: Duration,
    /// `MAX_INFLIGHT_CHECKOUTS`: checkouts one order replica drives at once; beyond it,
    /// checkout answers 503 at once.
    pub max_inflight_checkouts: usize,
    /// `ADMIN_TOKEN`: when set, `batch_init` requires `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings through `get`, so tests can supply their own environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let text = |k: &str, default: &str| get(k).unwrap_or_else(|| default.to_string());
        let number = |k: &str, default: u64| -> Result<u64> {
            match get(k) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| {
                    Error::Config(format!("{k} must be a non-negative integer, got {v:?}"))
                }),
            }
        };
        let within = |k: &str, default: u64, min: u64, max: u64| -> Result<u64> {
            let v = number(k, default)?;
            if v < min || v > max {
                return Err(Error::Config(format!(
                    "{k} must be between {min} and {max}, got {v}"
                )));
            }
            Ok(v)
        };
        let millis = |k: &str, default: u64, min: u64| -> Result<Duration> {
            within(k, default, min, 3_600_000).map(Duration::from_millis)
        };
        let http_addr = text("HTTP_ADDR", "127.0.0.1:8080");
        let protocol = text("CHECKOUT_PROTOCOL", "saga");
        let settings = Settings {
            http_addr: http_addr.parse().map_err(|_| {
                Error::Config(format!("HTTP_ADDR is not a socket address: {http_addr:?}"))
            })?,
            redis_url: text("REDIS_URL", "redis://127.0.0.1:6379"),
            kafka_brokers: text("KAFKA_BROKERS", "127.0.0.1:9092"),
            replica_id: text("REPLICA_ID", "replica-1"),
            protocol: Protocol::parse(&protocol).ok_or_else(|| {
                Error::Config(format!(
                    "CHECKOUT_PROTOCOL must be saga or 2pc, got {protocol:?}"
                ))
            })?,
            partitions: within("KAFKA_PARTITIONS", 2, 1, 1024)? as i32,
            replication: within("KAFKA_REPLICATION", 1, 1, 16)? as i32,
            topic_prefix: text("TOPIC_PREFIX", ""),
            linger_ms: within("KAFKA_LINGER_MS", 2, 0, 1000)? as u32,
            fetch_wait_ms: within("KAFKA_FETCH_WAIT_MS", 10, 0, 10_000)? as u32,
            fetch_min_bytes: within("KAFKA_FETCH_MIN_BYTES", 4096, 1, 1 << 20)? as u32,
            checkout_timeout: millis("CHECKOUT_TIMEOUT_MS", 10_000, 100)?,
            step_retry: millis("STEP_RETRY_MS", 1_500, 50)?,
            lease: millis("LEASE_MS", 4_000, 500)?,
            state_retention: Duration::from_secs(within("STATE_RETENTION_S", 600, 1, 30 * 86_400)?),
            max_inflight_checkouts: within("MAX_INFLIGHT_CHECKOUTS", 512, 1, 1_000_000)? as usize,
            admin_token: get("ADMIN_TOKEN").filter(|t| !t.is_empty()),
        };
        let least = 2 * (settings.lease + settings.step_retry);
        if settings.state_retention < least {
            return Err(Error::Config(format!(
                "STATE_RETENTION_S must be at least {}s: twice a lease and a resend (LEASE_MS, STEP_RETRY_MS), so that no stale copy of a command outlives its record",
                least.as_secs_f64().ceil()
            )));
        }
        Ok(settings)
    }

    /// The number at the end of the replica id (`order-2` → 2, `order-0` → 0), or 0.
    pub fn replica_ordinal(&self) -> u32 {
        let digits: String = self
            .replica_id
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_valid() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.protocol, Protocol::Saga);
        assert_eq!(s.partitions, 2);
    }

    #[test]
    fn protocol_and_ordinal_are_parsed() {
        let s = settings(&[("CHECKOUT_PROTOCOL", "2PC"), ("REPLICA_ID", "order-12")]).unwrap();
        assert_eq!(s.protocol, Protocol::TwoPc);
        assert_eq!(s.replica_ordinal(), 12);
        assert_eq!(
            settings(&[("REPLICA_ID", "order")])
                .unwrap()
                .replica_ordinal(),
            0
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(settings(&[("CHECKOUT_PROTOCOL", "3pc")]).is_err());
        assert!(settings(&[("HTTP_ADDR", "nowhere")]).is_err());
        assert!(settings(&[("KAFKA_PARTITIONS", "-1")]).is_err());
        assert!(settings(&[("KAFKA_PARTITIONS", "0")]).is_err());
        assert!(settings(&[("LEASE_MS", "10")]).is_err());
        assert!(settings(&[("STATE_RETENTION_S", "5")]).is_err());
        assert!(settings(&[("MAX_INFLIGHT_CHECKOUTS", "0")]).is_err());
    }

    #[test]
    fn retention_and_admin_token_are_read() {
        let s = settings(&[("STATE_RETENTION_S", "20"), ("ADMIN_TOKEN", "t")]).unwrap();
        assert_eq!(s.state_retention, Duration::from_secs(20));
        assert_eq!(s.admin_token.as_deref(), Some("t"));
        assert_eq!(settings(&[("ADMIN_TOKEN", "")]).unwrap().admin_token, None);
    }
}
