//! The room partitions this writer owns. Each partition is a lease in the
//! store, so exactly one writer owns it at a time; every writer takes a fair
//! share and gives partitions back when more writers join, so replicas can
//! be added and removed while the server runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use myelin_bus::messages::{self, RoomInputRefused, RoomInputReply, WIRE_VERSION};
use myelin_bus::subjects;
use myelin_process::Shutdown;
use myelin_store::{Fence, LeaseSession};
use myelin_types::{PARTITION_COUNT, Partition};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

use crate::EventPersister;

const GROUP: &str = "event-persisters";
/// How often ownership is reviewed.
const TICK: Duration = Duration::from_secs(2);
/// A writer that stops heartbeating counts as gone after this long.
const HEARTBEAT_TTL: Duration = Duration::from_secs(10);
/// Partition leases live in their own key range ("my" + partition).
const LEASE_KEY_BASE: i64 = 0x6d79_0000;

struct Owned {
    serving: JoinHandle<()>,
    /// Set when the partition is being given away: requests still arriving
    /// are answered "send again" instead of being handled or dropped.
    draining: Arc<AtomicBool>,
    /// Held for reading by every request in progress; taken for writing
    /// before the lease is given back, so the next owner never overlaps.
    in_flight: Arc<RwLock<()>>,
}

/// How long a given-away partition keeps answering "send again".
const RESEND_GRACE: Duration = Duration::from_millis(500);

async fn answer_resend(request: myelin_bus::Request) {
    let reply = RoomInputReply {
        v: WIRE_VERSION,
        outcome: Err(RoomInputRefused {
            status: 503,
            errcode: messages::RESEND.to_owned(),
            error: "This room's writer is changing; send again".to_owned(),
        }),
    };
    let _ = request.respond(messages::encode(&reply)).await;
}

fn lease_key(partition: u16) -> i64 {
    LEASE_KEY_BASE + i64::from(partition)
}

/// Each writer's fair share: the partitions divided by the live writers, rounded up.
fn fair_share(live_writers: usize) -> usize {
    let writers = live_writers.max(1);
    usize::from(PARTITION_COUNT).div_ceil(writers)
}

impl EventPersister {
    pub(crate) async fn manage_partitions(
        self: Arc<Self>,
        mut shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let instance = format!("{}-{}", std::process::id(), myelin_types::now_millis());
        // Writers start looking at different partitions, so they rarely collide.
        let offset = (Partition::of_room(&instance).0) as usize;
        let mut session: Option<Box<dyn LeaseSession>> = None;
        let mut owned: BTreeMap<u16, Owned> = BTreeMap::new();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = tick.tick() => {}
                () = self.fenced.notified() => {}
            }
            let alive = match &session {
                Some(current) => current.check().await.is_ok(),
                None => false,
            };
            if !alive {
                if session.is_some() {
                    tracing::warn!("lost the lease session; giving up every partition");
                }
                for (_, partition) in std::mem::take(&mut owned) {
                    partition.serving.abort();
                }
                session = match self.store.lease_session().await {
                    Ok(new) => Some(new),
                    Err(error) => {
                        tracing::warn!(%error, "cannot open a lease session");
                        self.owned_partitions.store(0, Ordering::SeqCst);
                        continue;
                    }
                };
            }
            let Some(session) = session.as_deref() else {
                continue;
            };
            let live = match self.store.heartbeat(GROUP, &instance, HEARTBEAT_TTL).await {
                Ok(live) => live,
                Err(error) => {
                    tracing::warn!(%error, "heartbeat failed; keeping the current partitions");
                    continue;
                }
            };
            let target = fair_share(live);
            while owned.len() > target {
                let Some((partition, state)) = owned.pop_last() else {
                    break;
                };
                self.give_back(session, partition, state).await;
            }
            for step in 0..usize::from(PARTITION_COUNT) {
                if owned.len() >= target {
                    break;
                }
                let partition = ((offset + step) % usize::from(PARTITION_COUNT)) as u16;
                if owned.contains_key(&partition) {
                    continue;
                }
                match session.try_acquire(lease_key(partition)).await {
                    Ok(Some(fence)) => match self.start_serving(partition, fence).await {
                        Ok(state) => {
                            owned.insert(partition, state);
                        }
                        Err(error) => {
                            tracing::warn!(%error, partition, "cannot serve a partition");
                            let _ = session.release(lease_key(partition)).await;
                        }
                    },
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "lease request failed");
                        break;
                    }
                }
            }
            self.owned_partitions.store(owned.len(), Ordering::SeqCst);
        }
        if let Some(session) = session.as_deref() {
            while let Some((partition, state)) = owned.pop_last() {
                self.give_back(session, partition, state).await;
            }
        }
        let _ = self.store.leave_group(GROUP, &instance).await;
        self.owned_partitions.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Serves a partition whose lease (with `fence`) this writer just took;
    /// every write carries the fence, so it fails rather than forks the room
    /// if the lease has passed on meanwhile.
    async fn start_serving(
        self: &Arc<Self>,
        partition: u16,
        fence: Fence,
    ) -> anyhow::Result<Owned> {
        // Another writer may have written these rooms since we last did.
        self.heads.forget_partition(Partition(partition));
        let mut requests = self
            .bus
            .serve(
                &subjects::room_input(Partition(partition)),
                subjects::EVENT_PERSISTERS,
            )
            .await?;
        let in_flight = Arc::new(RwLock::new(()));
        let draining = Arc::new(AtomicBool::new(false));
        let (guard_source, draining_flag) = (Arc::clone(&in_flight), Arc::clone(&draining));
        let persister = Arc::clone(self);
        let serving = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if draining_flag.load(Ordering::SeqCst) {
                    tokio::spawn(answer_resend(request));
                    continue;
                }
                let guard = Arc::clone(&guard_source).read_owned().await;
                if draining_flag.load(Ordering::SeqCst) {
                    tokio::spawn(answer_resend(request));
                    continue;
                }
                let persister = Arc::clone(&persister);
                tokio::spawn(async move {
                    persister.answer(request, fence).await;
                    drop(guard);
                });
            }
        });
        tracing::debug!(partition, "serving partition");
        Ok(Owned {
            serving,
            draining,
            in_flight,
        })
    }

    async fn give_back(&self, session: &dyn LeaseSession, partition: u16, state: Owned) {
        state.draining.store(true, Ordering::SeqCst);
        let all_done = state.in_flight.write().await;
        if let Err(error) = session.release(lease_key(partition)).await {
            tracing::warn!(%error, partition, "cannot release a partition lease");
        }
        drop(all_done);
        // Stay subscribed a moment, so requests already on their way to us
        // get "send again" rather than silence, then stop listening.
        tokio::spawn(async move {
            tokio::time::sleep(RESEND_GRACE).await;
            state.serving.abort();
        });
        tracing::debug!(partition, "gave back partition");
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
