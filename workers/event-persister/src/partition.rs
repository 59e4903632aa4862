//! The room partitions this writer owns. Each partition is a lease in the
//! store (`myelin_process::partitions`), so exactly one writer owns it at a
//! time; every writer takes a fair share and gives partitions back when more
//! writers join, so replicas can be added and removed while the server runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use myelin_bus::messages::{self, RoomInputRefused, RoomInputReply, WIRE_VERSION};
use myelin_bus::subjects;
use myelin_process::partitions::{PartitionLeases, PartitionWork};
use myelin_store::Fence;
use myelin_types::Partition;
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

use crate::EventPersister;

/// The writers' lease group.
pub(crate) fn leases() -> PartitionLeases {
    // Partition leases live in their own key range ("my" + partition).
    PartitionLeases::new("event-persisters", 0x6d79_0000)
}

pub struct Owned {
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

#[async_trait]
impl PartitionWork for EventPersister {
    type Held = Owned;

    /// Serves a partition whose lease (with `fence`) this writer just took;
    /// every write carries the fence, so it fails rather than forks the room
    /// if the lease has passed on meanwhile.
    async fn start(self: Arc<Self>, partition: u16, fence: Fence) -> anyhow::Result<Owned> {
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
        let persister = Arc::clone(&self);
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

    async fn stop(&self, _partition: u16, state: &Owned) {
        state.draining.store(true, Ordering::SeqCst);
        // Every request that got in has finished; later ones see `draining`.
        drop(state.in_flight.write().await);
    }

    fn forget(&self, partition: u16, state: Owned) {
        state.draining.store(true, Ordering::SeqCst);
        // Stay subscribed a moment, so requests already on their way to us
        // get "send again" rather than silence, then stop listening.
        tokio::spawn(async move {
            tokio::time::sleep(RESEND_GRACE).await;
            state.serving.abort();
        });
        tracing::debug!(partition, "stopped serving partition");
    }
}
