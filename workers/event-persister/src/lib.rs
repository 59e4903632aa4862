#![doc = include_str!("../README.md")]
//!
//! Invariant: only this role writes events, and only one request per room is
//! in progress at a time, so the cached head is the stored head.

mod backfill;
mod batch;
mod head;
mod input;
mod partition;
mod persist;
mod push;
mod redactions;
mod remote;
mod snapshots;
mod sweep;
mod wide;

use std::sync::Arc;

use async_trait::async_trait;
use myelin_bus::Bus;
use myelin_process::{Deps, Role, Shutdown};
use myelin_room::ServerKey;
use myelin_store::Store;

pub use head::RoomHeads;

pub struct EventPersister {
    event_store: Arc<dyn myelin_store::EventStore>,
    store: Arc<dyn Store>,
    /// The room partitions this writer holds.
    leases: myelin_process::partitions::PartitionLeases,
    bus: Arc<dyn Bus>,
    server_key: Arc<ServerKey>,
    heads: RoomHeads,
    /// Parsed push rules of the users this writer judges events for.
    rulesets: push::RulesetCache,
}

pub fn role(deps: &Deps) -> Arc<EventPersister> {
    Arc::new(EventPersister {
        event_store: deps.store.clone(),
        store: Arc::clone(&deps.store),
        leases: partition::leases(),
        bus: Arc::clone(&deps.bus),
        server_key: Arc::clone(&deps.server_key),
        heads: RoomHeads::default(),
        rulesets: push::RulesetCache::default(),
    })
}

#[async_trait]
impl Role for EventPersister {
    fn name(&self) -> &'static str {
        "event-persister"
    }

    async fn run(self: Arc<Self>, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut changes = myelin_bus::topics::ACCOUNT_DATA
            .subscribe(self.bus.as_ref())
            .await?;
        let forgetter = Arc::clone(&self);
        // Rules changed by their user are read again at the next event.
        let forget_changed_rules = tokio::spawn(async move {
            while let Some(change) = changes.next().await {
                forgetter.rulesets.forget(&change.user_id);
            }
        });
        let sweeper = Arc::clone(&self);
        let sweep_shutdown = shutdown.clone();
        let sweep = tokio::spawn(async move {
            sweep::sweep_push_actions_hourly(sweeper.store.as_ref(), sweep_shutdown).await;
        });
        let result = self
            .leases
            .hold(self.store.as_ref(), Arc::clone(&self), shutdown)
            .await;
        forget_changed_rules.abort();
        sweep.abort();
        result
    }

    async fn ready(&self) -> Result<(), String> {
        match self.leases.owned() {
            0 => Err("owns no room partition yet".to_owned()),
            _ => Ok(()),
        }
    }
}
