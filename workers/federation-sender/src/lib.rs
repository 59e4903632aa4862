#![doc = include_str!("../README.md")]
//!
//! Invariant: an event leaves a destination's queue only once the
//! destination accepted the transaction that carried it, and a transaction
//! keeps its ID until then, so a crash at any point repeats a transaction
//! the destination recognises rather than losing or reordering events.

mod delivery;
mod edus;
mod fanout;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use myelin_bus::Bus;
use myelin_config::{Config, DestinationRetryPolicy};
use myelin_federation::FederationClient;
use myelin_process::partitions::{PartitionLeases, PartitionWork};
use myelin_process::{Deps, Role, Shutdown};
use myelin_store::{EduStream, Fence, Store};
use myelin_types::StreamPosition;
use tokio::sync::{Notify, RwLock};

pub struct FederationSender {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    config: Arc<Config>,
    client: Arc<FederationClient>,
    retry_policy: DestinationRetryPolicy,
    leases: PartitionLeases,
    /// The destination partitions held now, each with its fence and how
    /// far its queueing has read the log.
    held: Mutex<BTreeMap<u16, HeldPartition>>,
    /// Held for reading by a pass; taken for writing before a partition is
    /// given back, so the next holder never overlaps a pass.
    pass: RwLock<()>,
    /// Something may be owed: an event was persisted, a partition taken.
    wake: Notify,
    /// Destinations with a transaction being sent by this process.
    sending: Mutex<HashMap<String, bool>>,
    /// Destinations waiting after failures, until when (ms).
    waiting: Mutex<HashMap<String, i64>>,
    /// The servers joined in each state snapshot read lately (a snapshot
    /// never changes, so neither does its answer).
    servers_at: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
    /// Streams whose window could not all be queued, until when they wait.
    streams_held_off: Mutex<HashMap<EduStream, std::time::Instant>>,
    transactions: prometheus::IntCounterVec,
}

#[derive(Clone, Copy)]
struct HeldPartition {
    fence: Fence,
    cursor: StreamPosition,
    /// The cursor as last written to the store.
    stored: StreamPosition,
    stored_at: std::time::Instant,
    /// How far the device-list and receipts streams were told to this
    /// partition's destinations (as the store holds them: this process
    /// moves them).
    device_list_cursor: StreamPosition,
    receipt_cursor: StreamPosition,
}

impl HeldPartition {
    fn edu_cursor(&self, stream: EduStream) -> StreamPosition {
        match stream {
            EduStream::DeviceLists => self.device_list_cursor,
            EduStream::Receipts => self.receipt_cursor,
        }
    }

    fn edu_cursor_mut(&mut self, stream: EduStream) -> &mut StreamPosition {
        match stream {
            EduStream::DeviceLists => &mut self.device_list_cursor,
            EduStream::Receipts => &mut self.receipt_cursor,
        }
    }
}

pub fn role(deps: &Deps) -> Arc<FederationSender> {
    Arc::new(FederationSender {
        store: Arc::clone(&deps.store),
        bus: Arc::clone(&deps.bus),
        config: Arc::clone(&deps.config),
        client: Arc::clone(&deps.federation),
        retry_policy: deps.config.destination_retry_policy(),
        // Sender leases live in their own key range ("fs" + partition).
        leases: PartitionLeases::new("federation-senders", 0x6673_0000),
        held: Mutex::new(BTreeMap::new()),
        pass: RwLock::new(()),
        wake: Notify::new(),
        sending: Mutex::new(HashMap::new()),
        waiting: Mutex::new(HashMap::new()),
        servers_at: Mutex::new(HashMap::new()),
        streams_held_off: Mutex::new(HashMap::new()),
        transactions: myelin_process::labelled_counter(
            &deps.registry,
            "myelin_federation_transactions_total",
            "Transactions sent to other servers, by outcome (sent, failed).",
            &["outcome"],
        ),
    })
}

impl FederationSender {
    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, HeldPartition>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl PartitionWork for FederationSender {
    type Held = ();

    async fn start(self: Arc<Self>, partition: u16, fence: Fence) -> anyhow::Result<()> {
        let cursor = self.store.outbox_cursor(partition).await?;
        let device_list_cursor = self
            .store
            .edu_cursor(partition, EduStream::DeviceLists)
            .await?;
        let receipt_cursor = self
            .store
            .edu_cursor(partition, EduStream::Receipts)
            .await?;
        self.held().insert(
            partition,
            HeldPartition {
                fence,
                cursor,
                stored: cursor,
                stored_at: std::time::Instant::now(),
                device_list_cursor,
                receipt_cursor,
            },
        );
        // What the last holder left queued goes out now.
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
impl Role for FederationSender {
    fn name(&self) -> &'static str {
        "federation-sender"
    }

    async fn run(self: Arc<Self>, shutdown: Shutdown) -> anyhow::Result<()> {
        let bells = tokio::spawn(Arc::clone(&self).listen_for_bells().await?);
        let sending = tokio::spawn(Arc::clone(&self).send_loop(shutdown.clone()));
        let result = self
            .leases
            .hold(self.store.as_ref(), Arc::clone(&self), shutdown)
            .await;
        bells.abort();
        sending.abort();
        result
    }

    async fn ready(&self) -> Result<(), String> {
        match self.leases.owned() {
            0 => Err("holds no destination partition yet".to_owned()),
            _ => Ok(()),
        }
    }
}
