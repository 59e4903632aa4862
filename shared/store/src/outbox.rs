//! Outbound federation: each destination's queue of this server's events,
//! the transaction in flight to it, and how its retries stand.

use async_trait::async_trait;
use myelin_types::StreamPosition;

use crate::{Fence, StoreResult};

/// One event to send to one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPdu {
    pub destination: String,
    pub event_id: String,
}

/// One EDU to send to one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEdu {
    pub destination: String,
    /// The destination's partition (`Partition::of_server`).
    pub partition: u16,
    /// `{"edu_type": ..., "content": ...}`.
    pub edu_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEdu {
    pub seq: i64,
    pub edu_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Order within the queue.
    pub seq: i64,
    pub event_id: String,
}

/// What a destination is sent next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxBatch {
    /// Set when a transaction was begun and not yet accepted: the batch is
    /// exactly what it carried, to be sent again under this ID.
    pub txn_id: Option<String>,
    pub entries: Vec<OutboxEntry>,
    pub edus: Vec<OutboxEdu>,
}

/// How a destination's retries stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRetry {
    pub destination: String,
    /// Failures in a row.
    pub failures: i64,
    /// Not before this time (ms), when set.
    pub retry_at: Option<i64>,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// The log position each partition has queued up to.
    async fn outbox_cursor(&self, partition: u16) -> StoreResult<StreamPosition>;

    /// Queues `pdus` (each destination in `partition`) and moves the
    /// partition's cursor to `upto`, in one transaction, refused with
    /// `StoreError::Fenced` once the partition's lease moved on.
    async fn enqueue_pdus(
        &self,
        partition: u16,
        fence: Fence,
        upto: StreamPosition,
        pdus: Vec<QueuedPdu>,
    ) -> StoreResult<()>;

    /// Destinations of these partitions with events or EDUs queued.
    async fn queued_destinations(&self, partitions: &[u16]) -> StoreResult<Vec<String>>;

    /// Queues EDUs; a lease is not needed, as nothing reads the log for them.
    async fn enqueue_edus(&self, edus: Vec<QueuedEdu>) -> StoreResult<()>;

    /// The transaction in flight to `destination`, or its oldest
    /// `pdu_limit` entries and `edu_limit` EDUs.
    async fn outbox_batch(
        &self,
        destination: &str,
        pdu_limit: usize,
        edu_limit: usize,
    ) -> StoreResult<OutboxBatch>;

    /// Records that the entries up to `pdu_upto` (by seq; `None` for none)
    /// and the EDUs `edu_seqs` go out as `txn_id`.
    async fn begin_transaction(
        &self,
        destination: &str,
        txn_id: &str,
        pdu_upto: Option<i64>,
        edu_seqs: &[i64],
    ) -> StoreResult<()>;

    /// The destination accepted transaction `txn_id`: its entries leave
    /// the queue and retries start over. Nothing happens when another
    /// transaction is in flight by now (a sender that lost its partition).
    async fn end_transaction(&self, destination: &str, txn_id: &str) -> StoreResult<()>;

    /// Records a failure (`retry_at` set) or clears the count (`None`).
    async fn set_destination_retry(
        &self,
        destination: &str,
        failures: i64,
        retry_at: Option<i64>,
    ) -> StoreResult<()>;

    async fn destination_retry(&self, destination: &str) -> StoreResult<Option<DestinationRetry>>;

    /// The device-list position a partition has told other servers of.
    async fn device_list_cursor(&self, partition: u16) -> StoreResult<StreamPosition>;

    /// Moves a partition's device-list cursor up to `upto`, refused with
    /// `StoreError::Fenced` once the partition's lease moved on.
    async fn advance_device_list_cursor(
        &self,
        partition: u16,
        fence: Fence,
        upto: StreamPosition,
    ) -> StoreResult<()>;

    /// Gives `holder` the turn to process `origin`'s inbound transactions
    /// until `expires_at` (ms): `false` when another holder has it and it
    /// has not lapsed by `now`. The holder claiming again renews it.
    async fn claim_inbound_turn(
        &self,
        origin: &str,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<bool>;

    /// Gives the turn back, if `holder` still has it.
    async fn release_inbound_turn(&self, origin: &str, holder: &str) -> StoreResult<()>;
}
