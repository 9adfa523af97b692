//! Finishes the transactions whose coordinator vanished.
//!
//! Once at start-up, a replica takes back every unfinished transaction owned by an earlier
//! incarnation of itself (that process is certainly dead: there is one process per replica
//! id). Then, every second, any replica takes over transactions whose lease expired; the
//! claim is one atomic Redis step, so two replicas never drive the same transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Coordinator;

const BATCH: isize = 1000;

pub async fn run(coordinator: Arc<Coordinator>, shutdown: CancellationToken) {
    let own_prefix = format!("{}/", coordinator.settings().replica_id);
    pass(&coordinator, true, &own_prefix).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => pass(&coordinator, false, "").await,
        }
    }
}

async fn pass(coordinator: &Arc<Coordinator>, startup: bool, steal_prefix: &str) {
    let ids = match coordinator.store().active(startup, BATCH).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "recovery pass skipped");
            return;
        }
    };
    for id in ids {
        if coordinator.is_driving(&id) {
            continue;
        }
        if let Err(e) = coordinator.recover(&id, steal_prefix).await {
            tracing::warn!(error = %e, tx = %id, "recovery of transaction failed; will retry");
        }
    }
}
