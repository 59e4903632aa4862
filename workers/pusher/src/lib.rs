#![doc = include_str!("../README.md")]
//!
//! Invariant: a pusher's stored position moves only past notifications its
//! gateway accepted (or that it rejected for good), so what a pusher owes is
//! always in the store.

mod delivery;
mod gateway;
mod notification;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use myelin_bus::Bus;
use myelin_config::Config;
use myelin_http::outbound::AddressPolicy;
use myelin_process::partitions::{PartitionLeases, PartitionWork};
use myelin_process::{Deps, Role, Shutdown};
use myelin_store::{Fence, Store};
use tokio::sync::{Notify, RwLock};

use delivery::Backoffs;
use gateway::Gateways;

pub struct PusherRole {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    config: Arc<Config>,
    gateways: Option<Gateways>,
    leases: PartitionLeases,
    /// The user partitions this process delivers for now.
    held: Mutex<BTreeSet<u16>>,
    /// Held for reading by a delivery pass; taken for writing before a
    /// partition is given back, so the next holder never overlaps a pass.
    pass: RwLock<()>,
    /// Something may be owed: an event was persisted, a pusher changed.
    wake: Notify,
    /// No pusher was found in the held partitions: passes rest until this
    /// time or until a pusher changes, so a server without pushers pays
    /// one query per backstop period rather than one per event.
    idle_until: Mutex<Option<std::time::Instant>>,
    /// Users who read something since the last pass: their badge changed.
    read_since: Mutex<HashSet<String>>,
    backoffs: Mutex<Backoffs>,
    deliveries: prometheus::IntCounterVec,
}

pub fn role(deps: &Deps) -> Arc<PusherRole> {
    let policy = AddressPolicy::new(
        deps.config.ip_range_blacklist.as_deref(),
        &deps.config.ip_range_whitelist,
    );
    let gateways = match Gateways::new(policy) {
        Ok(gateways) => Some(gateways),
        Err(error) => {
            tracing::error!(%error, "cannot build the push gateway client; nothing will be pushed");
            None
        }
    };
    Arc::new(PusherRole {
        store: Arc::clone(&deps.store),
        bus: Arc::clone(&deps.bus),
        config: Arc::clone(&deps.config),
        gateways,
        // Pusher leases live in their own key range ("pu" + partition).
        leases: PartitionLeases::new("pushers", 0x7075_0000),
        held: Mutex::new(BTreeSet::new()),
        pass: RwLock::new(()),
        wake: Notify::new(),
        idle_until: Mutex::new(None),
        read_since: Mutex::new(HashSet::new()),
        backoffs: Mutex::new(HashMap::new()),
        deliveries: myelin_process::labelled_counter(
            &deps.registry,
            "myelin_push_deliveries_total",
            "Notifications sent to push gateways, by outcome (sent, failed, rejected, badge).",
            &["outcome"],
        ),
    })
}

impl PusherRole {
    fn stop_resting(&self) {
        *self
            .idle_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeSet<u16>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl PartitionWork for PusherRole {
    type Held = ();

    async fn start(self: Arc<Self>, partition: u16, _fence: Fence) -> anyhow::Result<()> {
        self.held().insert(partition);
        // What the last holder left owed is delivered now.
        self.stop_resting();
        self.wake.notify_one();
        Ok(())
    }

    async fn stop(&self, partition: u16, _held: &()) {
        self.held().remove(&partition);
        // A pass under way finishes first; the next one skips the partition.
        drop(self.pass.write().await);
    }

    fn forget(&self, partition: u16, _held: ()) {
        self.held().remove(&partition);
    }
}

#[async_trait]
impl Role for PusherRole {
    fn name(&self) -> &'static str {
        "pusher"
    }

    async fn run(self: Arc<Self>, shutdown: Shutdown) -> anyhow::Result<()> {
        let bells = tokio::spawn(Arc::clone(&self).listen_for_bells().await?);
        let delivering = tokio::spawn(Arc::clone(&self).deliver(shutdown.clone()));
        let result = self
            .leases
            .hold(self.store.as_ref(), Arc::clone(&self), shutdown)
            .await;
        bells.abort();
        delivering.abort();
        result
    }

    async fn ready(&self) -> Result<(), String> {
        match self.leases.owned() {
            0 => Err("holds no user partition yet".to_owned()),
            _ => Ok(()),
        }
    }
}
