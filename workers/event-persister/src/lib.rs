#![doc = include_str!("../README.md")]
//!
//! Invariant: only this role writes events, and only one request per room is
//! in progress at a time, so the room DAG stays linear and the cached head is
//! the stored head.

mod head;
mod input;
mod persist;

use std::sync::Arc;

use async_trait::async_trait;
use myelin_bus::{Bus, subjects};
use myelin_process::{Deps, Role, Shutdown};
use myelin_room::ServerKey;
use myelin_store::EventStore;

pub use head::RoomHeads;

pub struct EventPersister {
    event_store: Arc<dyn EventStore>,
    bus: Arc<dyn Bus>,
    server_key: Arc<ServerKey>,
    heads: RoomHeads,
}

pub fn role(deps: &Deps) -> Arc<EventPersister> {
    Arc::new(EventPersister {
        event_store: deps.store.clone(),
        bus: Arc::clone(&deps.bus),
        server_key: Arc::clone(&deps.server_key),
        heads: RoomHeads::default(),
    })
}

#[async_trait]
impl Role for EventPersister {
    fn name(&self) -> &'static str {
        "event-persister"
    }

    async fn run(self: Arc<Self>, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let mut requests = self
            .bus
            .serve(subjects::ALL_ROOM_INPUT, subjects::EVENT_PERSISTERS)
            .await?;
        loop {
            tokio::select! {
                () = shutdown.wait() => return Ok(()),
                request = requests.next() => {
                    let Some(request) = request else {
                        anyhow::bail!("the bus closed the room input subscription");
                    };
                    let persister = Arc::clone(&self);
                    tokio::spawn(async move { persister.answer(request).await });
                }
            }
        }
    }
}
