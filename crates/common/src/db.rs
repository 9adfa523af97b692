//! Redis connections and retries.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, Result};

/// Connects to the service's Redis, retrying until it answers or `give_up` elapses.
///
/// The connection manager multiplexes every task of the service over one connection (so
/// concurrent commands pipeline for free) and reconnects by itself after Redis restarts.
pub async fn connect(url: &str, give_up: Duration) -> Result<ConnectionManager> {
    let client =
        redis::Client::open(url).map_err(|e| Error::Config(format!("REDIS_URL {url:?}: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        // Large enough for a 100 000-record batch_init pipeline.
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_millis(500));
    let deadline = tokio::time::Instant::now() + give_up;
    loop {
        match client
            .get_connection_manager_with_config(config.clone())
            .await
        {
            Ok(conn) => return Ok(conn),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "redis not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// True when Redis answers PING.
pub async fn is_ready(conn: &ConnectionManager) -> bool {
    let mut conn = conn.clone();
    let ping = redis::cmd("PING");
    let answer = tokio::time::timeout(
        Duration::from_secs(1),
        ping.query_async::<String>(&mut conn),
    )
    .await;
    matches!(answer, Ok(Ok(_)))
}

/// How long a participant retries a command while its Redis is away before it parks it (logs
/// it and moves on). Nothing is lost by parking a try or a cancel: the coordinator sends it
/// again until it is answered, so a partition never stalls behind one. A commit, which is not
/// answered, is never parked (see [`Ledger::apply`](crate::ledger::Ledger::apply)).
pub const COMMAND_PATIENCE: Duration = Duration::from_secs(5);

/// How long a read waits for its Redis to come back (a restart takes well under a second)
/// before the request answers 503.
pub const READ_PATIENCE: Duration = Duration::from_secs(3);

/// Runs `op` until it succeeds or fails with something other than a transient failure
/// ([`Error::is_transient`]), waiting a little longer between tries, for at most `budget`.
///
/// Used where giving up would be wrong (a participant must apply a command it received) or
/// costly (a request should ride out a Redis restart rather than fail at once).
pub async fn retry<T, F, Fut>(budget: Duration, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut backoff = Duration::from_millis(20);
    loop {
        match op().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() + backoff < deadline => {
                tracing::debug!(error = %e, "transient failure; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Decodes `items` sent as Redis sends a script's reply (an array of bulk strings): for tests
/// of reply decoders.
pub fn decode_reply<T: redis::FromRedisValue>(items: &[&str]) -> Result<T, redis::ParsingError> {
    T::from_redis_value(redis::Value::Array(
        items
            .iter()
            .map(|s| redis::Value::BulkString(s.as_bytes().to_vec()))
            .collect(),
    ))
}

/// `0..n` in consecutive ranges of at most `size`: the pipelines of a `batch_init`.
pub fn chunks(n: u64, size: u64) -> impl Iterator<Item = std::ops::Range<u64>> {
    (0..n.div_ceil(size)).map(move |c| c * size..((c + 1) * size).min(n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_cover_the_range_exactly() {
        let ranges: Vec<_> = super::chunks(25, 10).collect();
        assert_eq!(ranges, vec![0..10, 10..20, 20..25]);
        assert_eq!(super::chunks(0, 10).count(), 0);
    }
}
