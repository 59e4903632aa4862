//! Work split into the fixed partitions, each held by one process at a time
//! through a lease in the store. Every process of a group takes a fair share
//! and gives partitions back when more join, so replicas can be added and
//! removed while the server runs. The room writers hold rooms this way, the
//! pushers users.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use myelin_store::{Fence, LeaseSession, LeaseStore};
use myelin_types::{PARTITION_COUNT, Partition};
use tokio::sync::Notify;

use crate::Shutdown;

/// How often ownership is reviewed.
const TICK: Duration = Duration::from_secs(2);
/// A process that stops heartbeating counts as gone after this long.
const HEARTBEAT_TTL: Duration = Duration::from_secs(10);

/// What a group does with the partitions it holds.
#[async_trait]
pub trait PartitionWork: Send + Sync + 'static {
    /// What serving one partition keeps.
    type Held: Send + Sync;

    /// Starts serving a partition whose lease was just taken with `fence`.
    async fn start(self: Arc<Self>, partition: u16, fence: Fence) -> anyhow::Result<Self::Held>;

    /// Winds a partition down before its lease is given back: once this
    /// returns, nothing of it is in progress.
    async fn stop(&self, partition: u16, held: &Self::Held);

    /// Lets go of a partition after its lease was given back, or lost.
    fn forget(&self, partition: u16, held: Self::Held);
}

/// One group's leases, as one process holds them.
pub struct PartitionLeases {
    group: &'static str,
    /// Leases of this group live in their own key range.
    key_base: i64,
    owned: AtomicUsize,
    review: Notify,
}

/// Each process's fair share: the partitions divided by the live
/// processes, rounded up.
fn fair_share(live: usize) -> usize {
    usize::from(PARTITION_COUNT).div_ceil(live.max(1))
}

impl PartitionLeases {
    pub fn new(group: &'static str, key_base: i64) -> PartitionLeases {
        PartitionLeases {
            group,
            key_base,
            owned: AtomicUsize::new(0),
            review: Notify::new(),
        }
    }

    /// How many partitions this process serves now (for `/ready`).
    pub fn owned(&self) -> usize {
        self.owned.load(Ordering::SeqCst)
    }

    /// Reviews ownership at once rather than at the next tick: a write was
    /// fenced off, so a lease has probably passed on.
    pub fn review_now(&self) {
        self.review.notify_one();
    }

    fn lease_key(&self, partition: u16) -> i64 {
        self.key_base + i64::from(partition)
    }

    /// Holds a fair share of the partitions for `work` until `shutdown`,
    /// then gives every one back.
    pub async fn hold<W: PartitionWork>(
        &self,
        store: &dyn LeaseStore,
        work: Arc<W>,
        mut shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let instance = format!("{}-{}", std::process::id(), myelin_types::now_millis());
        // Processes start looking at different partitions, so they rarely collide.
        let offset = usize::from(Partition::of_room(&instance).0);
        let mut session: Option<Box<dyn LeaseSession>> = None;
        let mut owned: BTreeMap<u16, W::Held> = BTreeMap::new();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = tick.tick() => {}
                () = self.review.notified() => {}
            }
            let alive = match &session {
                Some(current) => current.check().await.is_ok(),
                None => false,
            };
            if !alive {
                if session.is_some() {
                    tracing::warn!(
                        group = self.group,
                        "lost the lease session; giving up every partition"
                    );
                }
                for (partition, held) in std::mem::take(&mut owned) {
                    work.forget(partition, held);
                }
                self.owned.store(0, Ordering::SeqCst);
                session = match store.lease_session().await {
                    Ok(new) => Some(new),
                    Err(error) => {
                        tracing::warn!(%error, group = self.group, "cannot open a lease session");
                        continue;
                    }
                };
            }
            let Some(session) = session.as_deref() else {
                continue;
            };
            let live = match store.heartbeat(self.group, &instance, HEARTBEAT_TTL).await {
                Ok(live) => live,
                Err(error) => {
                    tracing::warn!(%error, group = self.group, "heartbeat failed; keeping the current partitions");
                    continue;
                }
            };
            let target = fair_share(live);
            while owned.len() > target {
                let Some((partition, held)) = owned.pop_last() else {
                    break;
                };
                self.give_back(session, work.as_ref(), partition, held)
                    .await;
            }
            for step in 0..usize::from(PARTITION_COUNT) {
                if owned.len() >= target {
                    break;
                }
                let partition = ((offset + step) % usize::from(PARTITION_COUNT)) as u16;
                if owned.contains_key(&partition) {
                    continue;
                }
                match session.try_acquire(self.lease_key(partition)).await {
                    Ok(Some(fence)) => match Arc::clone(&work).start(partition, fence).await {
                        Ok(held) => {
                            owned.insert(partition, held);
                        }
                        Err(error) => {
                            tracing::warn!(%error, partition, group = self.group, "cannot serve a partition");
                            let _ = session.release(self.lease_key(partition)).await;
                        }
                    },
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, group = self.group, "lease request failed");
                        break;
                    }
                }
            }
            self.owned.store(owned.len(), Ordering::SeqCst);
        }
        if let Some(session) = session.as_deref() {
            while let Some((partition, held)) = owned.pop_last() {
                self.give_back(session, work.as_ref(), partition, held)
                    .await;
            }
        }
        let _ = store.leave_group(self.group, &instance).await;
        self.owned.store(0, Ordering::SeqCst);
        Ok(())
    }

    async fn give_back<W: PartitionWork>(
        &self,
        session: &dyn LeaseSession,
        work: &W,
        partition: u16,
        held: W::Held,
    ) {
        work.stop(partition, &held).await;
        if let Err(error) = session.release(self.lease_key(partition)).await {
            tracing::warn!(%error, partition, group = self.group, "cannot release a partition lease");
        }
        work.forget(partition, held);
        tracing::debug!(partition, group = self.group, "gave back partition");
    }
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn shares_cover_every_partition() {
        assert_eq!(fair_share(0), 64);
        assert_eq!(fair_share(1), 64);
        assert_eq!(fair_share(2), 32);
        assert_eq!(fair_share(3), 22);
        assert!(fair_share(3) * 3 >= 64);
        assert_eq!(fair_share(100), 1);
    }
}
