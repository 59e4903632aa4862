//! Push actions stay a month for `/notifications`; after that the ones
//! their user has read are swept, so the table does not grow with every
//! event for ever. Unread ones stay: they are what the counts count.

use std::future::Future;
use std::time::Duration;

use myelin_process::Shutdown;
use myelin_store::{Store, StoreResult};
use myelin_types::{StreamPosition, now_millis};

/// How long read push actions are kept (as Synapse keeps them).
const KEEP_MS: i64 = 30 * 24 * 60 * 60 * 1000;
const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);
/// Rows removed per statement, so no transaction holds the writer long.
const BATCH: usize = 1000;
/// Batches per sweep: the next sweep goes on.
const MAX_BATCHES: usize = 100;

/// Sweeps every hour, the first time at a random moment of the first one,
/// so replicas started together do not sweep together.
pub(crate) async fn sweep_push_actions_hourly(store: &dyn Store, mut shutdown: Shutdown) {
    let mut wait = Duration::from_secs(60 + rand::random::<u64>() % SWEEP_EVERY.as_secs());
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match sweep_push_actions(store, now_millis()).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "swept read push actions"),
            Err(error) => tracing::warn!(%error, "cannot sweep push actions"),
        }
        wait = SWEEP_EVERY;
    }
}

/// Removes the read push actions of events sent over a month before `now`.
pub(crate) async fn sweep_push_actions(store: &dyn Store, now: i64) -> StoreResult<u64> {
    let max = store.max_position().await?;
    let first_at_or_after = |position: StreamPosition| async move {
        let first = store.events_after(position.before(), max, 1).await?;
        Ok(first
            .into_iter()
            .next()
            .map(|event| (event.position, event.origin_server_ts)))
    };
    let upto = newest_sent_before(first_at_or_after, max, now - KEEP_MS).await?;
    let mut removed = 0;
    if upto <= StreamPosition::ZERO {
        return Ok(removed);
    }
    for _ in 0..MAX_BATCHES {
        let batch = store.prune_read_push_actions(upto, BATCH).await?;
        removed += batch;
        if batch < BATCH as u64 {
            break;
        }
    }
    Ok(removed)
}

/// The newest position in `(0, max]` whose event was sent before
/// `before_ts` (zero when none), by bisecting the log: positions grow with
/// time, so about 40 lookups whatever its length. `first_at_or_after`
/// gives the first event at or above a position, with when it was sent.
async fn newest_sent_before<F, Fut>(
    first_at_or_after: F,
    max: StreamPosition,
    before_ts: i64,
) -> StoreResult<StreamPosition>
where
    F: Fn(StreamPosition) -> Fut,
    Fut: Future<Output = StoreResult<Option<(StreamPosition, i64)>>>,
{
    // Invariant: `old` is zero or an event sent before `before_ts`; no
    // event at or above `new` was.
    let (mut old, mut new) = (StreamPosition::ZERO.0, max.0.saturating_add(1));
    while new - old > 1 {
        let middle = old + (new - old) / 2;
        match first_at_or_after(StreamPosition(middle)).await? {
            Some((position, ts)) if position.0 < new && ts < before_ts => old = position.0,
            _ => new = middle,
        }
    }
    Ok(StreamPosition(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bisects a log of (position, sent at) pairs.
    async fn bisect(log: &[(i64, i64)], before_ts: i64) -> i64 {
        let max = StreamPosition(log.last().map_or(0, |(position, _)| *position));
        let lookup = |at: StreamPosition| async move {
            Ok(log
                .iter()
                .find(|(position, _)| *position >= at.0)
                .map(|(position, ts)| (StreamPosition(*position), *ts)))
        };
        newest_sent_before(lookup, max, before_ts).await.unwrap().0
    }

    #[tokio::test]
    async fn finds_the_newest_event_sent_before_a_moment() {
        let log: Vec<(i64, i64)> = (1..=1000).map(|n| (n * 3, n * 10)).collect();
        assert_eq!(bisect(&log, 5).await, 0, "nothing that old");
        assert_eq!(bisect(&log, 11).await, 3);
        assert_eq!(bisect(&log, 5_000).await, 1497);
        assert_eq!(bisect(&log, 5_001).await, 1500);
        assert_eq!(bisect(&log, i64::MAX).await, 3000);
        assert_eq!(bisect(&[], 100).await, 0);
        // Gaps in the positions change nothing.
        let gappy = [(1, 1), (2, 2), (50, 3), (51, 4), (400, 5)];
        assert_eq!(bisect(&gappy, 4).await, 50);
        assert_eq!(bisect(&gappy, 6).await, 400);
    }
}
