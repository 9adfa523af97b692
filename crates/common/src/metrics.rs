//! Every metric the services export, named in one place, and the Prometheus recorder that
//! serves them on `GET /metrics`.
//!
//! Names follow Prometheus conventions: `_total` counters, `_seconds` histograms in base
//! units, a few low-cardinality labels. Dashboards and alert rules in `deploy/` use exactly
//! these names; `docs/observability.md` lists them with their labels.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

/// `{service, route, method, status}`: every HTTP request a service answered.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// `{service, route, method}`.
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
/// `{protocol, outcome}`: outcome is `committed`, a refusal code (`out_of_stock`, ...),
/// `unavailable`, `overloaded` or `timeout`.
pub const CHECKOUTS: &str = "checkouts_total";
/// `{protocol}`: from the request to its answer.
pub const CHECKOUT_DURATION: &str = "checkout_duration_seconds";
/// Transaction drivers running on this replica.
pub const CHECKOUTS_IN_FLIGHT: &str = "checkout_transactions_in_flight";
/// `{participant, phase}`: commands sent again because the participant was silent.
pub const STEP_RESENDS: &str = "checkout_step_resends_total";
/// `{participant}`: tries asked again because the participant answered busy.
pub const BUSY_RETRIES: &str = "checkout_busy_retries_total";
/// Transactions this replica took over from a coordinator whose lease expired.
pub const RECOVERY_CLAIMS: &str = "checkout_recovery_claims_total";
/// Unfinished transactions with an expired lease that the last recovery pass saw.
pub const EXPIRED_LEASES: &str = "checkout_transactions_expired_leases";
/// `{participant, phase, result}`: result is `done`, `refused`, `busy`, `expired`, `parked`,
/// or `duplicate` (a repeated command, answered from its step record).
pub const PARTICIPANT_STEPS: &str = "participant_steps_total";
/// `{participant}`: applying one command, Redis retries included.
pub const PARTICIPANT_DURATION: &str = "participant_command_duration_seconds";
/// `{topic}`: until the broker acknowledged a message (`acks=all`).
pub const KAFKA_PRODUCE_DURATION: &str = "kafka_produce_duration_seconds";
/// `{topic, partition}`: messages behind the end of the partition, from librdkafka's
/// statistics.
pub const KAFKA_CONSUMER_LAG: &str = "kafka_consumer_lag";
/// `{script}`: one Lua script call, round trip included.
pub const REDIS_SCRIPT_DURATION: &str = "redis_script_duration_seconds";
/// Redis failures of any command (connection, timeout, out of memory, script error).
pub const REDIS_ERRORS: &str = "redis_errors_total";
/// The service's own Redis, from `INFO memory` every few seconds.
pub const REDIS_USED_MEMORY: &str = "redis_used_memory_bytes";
pub const REDIS_MAX_MEMORY: &str = "redis_maxmemory_bytes";

/// Buckets for everything we time: 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static SERVICE: OnceLock<&'static str> = OnceLock::new();

/// Names the service in the `service` label of the HTTP metrics and installs the recorder.
pub fn init(service: &'static str) {
    let _ = SERVICE.set(service);
    install();
}

/// The service's name, as given to [`init`].
pub fn service() -> &'static str {
    SERVICE.get().copied().unwrap_or("unknown")
}

/// Installs the process's recorder (once; later calls return the same handle) and describes
/// every metric.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the buckets are not empty")
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle());
        describe();
        handle
    })
}

/// The exposition of every metric, in Prometheus text format.
pub fn render() -> String {
    install().render()
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, Unit::Count, "HTTP requests answered");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request duration");
    describe_counter!(CHECKOUTS, Unit::Count, "Checkouts answered, by outcome");
    describe_histogram!(
        CHECKOUT_DURATION,
        Unit::Seconds,
        "Checkout duration, request to answer"
    );
    describe_gauge!(
        CHECKOUTS_IN_FLIGHT,
        Unit::Count,
        "Checkout transactions driven by this replica now"
    );
    describe_counter!(
        STEP_RESENDS,
        Unit::Count,
        "Commands sent again to a silent participant"
    );
    describe_counter!(
        BUSY_RETRIES,
        Unit::Count,
        "Tries asked again after a busy answer"
    );
    describe_counter!(
        RECOVERY_CLAIMS,
        Unit::Count,
        "Transactions taken over from a vanished coordinator"
    );
    describe_gauge!(
        EXPIRED_LEASES,
        Unit::Count,
        "Unfinished transactions with an expired lease at the last recovery pass"
    );
    describe_counter!(
        PARTICIPANT_STEPS,
        Unit::Count,
        "Checkout steps a participant answered, by result"
    );
    describe_histogram!(
        PARTICIPANT_DURATION,
        Unit::Seconds,
        "Time to apply one checkout command"
    );
    describe_histogram!(
        KAFKA_PRODUCE_DURATION,
        Unit::Seconds,
        "Time until the broker acknowledged a message"
    );
    describe_gauge!(
        KAFKA_CONSUMER_LAG,
        Unit::Count,
        "Messages between the consumer's position and the end of the partition"
    );
    describe_histogram!(
        REDIS_SCRIPT_DURATION,
        Unit::Seconds,
        "Lua script round trip"
    );
    describe_counter!(REDIS_ERRORS, Unit::Count, "Failed Redis commands");
    describe_gauge!(
        REDIS_USED_MEMORY,
        Unit::Bytes,
        "Memory the service's Redis uses"
    );
    describe_gauge!(
        REDIS_MAX_MEMORY,
        Unit::Bytes,
        "The service's Redis maxmemory (0: none)"
    );
}

/// Until `shutdown`: every 5 s, drains the histograms' sample buffers (so memory stays flat
/// between scrapes) and reads the memory of the service's Redis.
pub fn spawn_upkeep(redis: ConnectionManager, shutdown: CancellationToken) {
    tokio::spawn(async move {
        crate::periodic::every(Duration::from_secs(5), &shutdown, || {
            install().run_upkeep();
            read_redis_memory(redis.clone())
        })
        .await
    });
}

/// Sets the Redis memory gauges from `INFO memory`, waiting at most 2 s for it.
async fn read_redis_memory(mut conn: ConnectionManager) {
    let mut info = redis::cmd("INFO");
    info.arg("memory");
    match tokio::time::timeout(
        Duration::from_secs(2),
        info.query_async::<String>(&mut conn),
    )
    .await
    {
        Ok(Ok(info)) => {
            let (used, max) = memory_of(&info);
            metrics::gauge!(REDIS_USED_MEMORY).set(used);
            metrics::gauge!(REDIS_MAX_MEMORY).set(max);
        }
        Ok(Err(e)) => {
            metrics::counter!(REDIS_ERRORS).increment(1);
            tracing::debug!(error = %e, "INFO memory failed");
        }
        Err(_) => tracing::debug!("INFO memory timed out"),
    }
}

/// `used_memory` and `maxmemory` from the text of `INFO memory`.
fn memory_of(info: &str) -> (f64, f64) {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field("used_memory"), field("maxmemory"))
}

/// Runs one Lua script call, timing it under `script` in a span of its own (debug level: a
/// detail of a trace, made only when logs or an OTLP export want it; see `telemetry`).
pub async fn script<T, F>(script: &'static str, call: F) -> T
where
    F: Future<Output = T>,
{
    let started = std::time::Instant::now();
    let span = tracing::debug_span!("redis", script);
    let answer = tracing::Instrument::instrument(call, span).await;
    metrics::histogram!(REDIS_SCRIPT_DURATION, "script" => script).record(started.elapsed());
    answer
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_fields_are_read_from_info() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1K\r\nmaxmemory:2048\r\n";
        assert_eq!(super::memory_of(info), (1024.0, 2048.0));
        assert_eq!(super::memory_of(""), (0.0, 0.0));
    }
}
