//! Finishes the transactions whose coordinator vanished.
//!
//! Once at start-up, a replica takes back every unfinished transaction owned by an earlier
//! incarnation of itself (that process is certainly dead: there is one process per replica
//! id). Then, every second, any replica takes over transactions whose lease expired; the
//! claim is one atomic Redis step, so two replicas never drive the same transaction.
//!
//! A replica claims only what it can drive: nothing while the broker is away, and no more
//! than its recovery drivers (a pool of their own, a quarter of the admission bound) are free
//! for, so it never holds leases it cannot use. New checkouts never take those drivers, and
//! recovery never takes theirs: see [`super::Coordinator::try_recovery_permit`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Coordinator;

/// At most this many transactions are looked at per pass.
const BATCH: isize = 256;

pub async fn run(coordinator: Arc<Coordinator>, shutdown: CancellationToken) {
    let own_prefix = format!("{}/", coordinator.settings().replica_id);
    let mut startup = true;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        // Until the first pass has run, earlier incarnations' transactions are stolen at once.
        let steal = if startup { own_prefix.as_str() } else { "" };
        if pass(&coordinator, startup, steal).await {
            startup = false;
        }
    }
}

/// One pass; false if it could not look (Redis or the broker away).
async fn pass(coordinator: &Arc<Coordinator>, all: bool, steal_prefix: &str) -> bool {
    if !coordinator.broker_is_up() {
        return false;
    }
    let ids = match coordinator.log().active(all, BATCH).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "recovery pass skipped");
            return false;
        }
    };
    if !all {
        metrics::gauge!(common::metrics::EXPIRED_LEASES).set(ids.len() as f64);
    }
    for id in ids {
        if coordinator.is_driving(&id) {
            continue;
        }
        let Some(permit) = coordinator.try_recovery_permit() else {
            tracing::debug!("no free driver; recovery resumes next pass");
            break;
        };
        if let Err(e) = coordinator.recover(&id, steal_prefix, permit).await {
            tracing::warn!(error = %e, tx = %id, "recovery of transaction failed; will retry");
        }
    }
    true
}
