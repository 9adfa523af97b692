//! Background loops that run on a fixed period until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `task` at once and then every `period` until `shutdown`. A run that overruns delays
/// the next one instead of bunching the missed ones up; a run in progress is not cut short.
pub async fn every<F, Fut>(period: Duration, shutdown: &CancellationToken, mut task: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while shutdown.run_until_cancelled(tick.tick()).await.is_some() {
        task().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_every_period_until_shutdown() {
        let shutdown = CancellationToken::new();
        let (ran, mut runs) = tokio::sync::mpsc::unbounded_channel();
        let looping = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                every(Duration::from_millis(50), &shutdown, || {
                    let _ = ran.send(tokio::time::Instant::now());
                    async {}
                })
                .await
            })
        };
        let mut times = Vec::new();
        for _ in 0..3 {
            let run = tokio::time::timeout(Duration::from_secs(5), runs.recv()).await;
            times.push(run.expect("a run within 5 s").expect("the loop is running"));
        }
        // Tokio counts a tick as missed only once it is over 5 ms late; a tick less late than
        // that keeps the schedule, so the next run may come up to 5 ms closer than the period
        // (seen on a busy machine). Bunched-up runs would come at once.
        assert!(
            times
                .windows(2)
                .all(|w| w[1] - w[0] >= Duration::from_millis(40)),
            "runs closer than the period: {times:?}"
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), looping)
            .await
            .expect("the loop ends on shutdown")
            .unwrap();
    }
}
