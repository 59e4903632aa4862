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

    /// How far a partition has told other servers of a stream of local
    /// users' changes.
    async fn edu_cursor(&self, partition: u16, stream: EduStream) -> StoreResult<StreamPosition>;

    /// Moves a partition's cursor of `stream` up to `upto`, refused with
    /// `StoreError::Fenced` once the partition's lease moved on.
    async fn advance_edu_cursor(
        &self,
        partition: u16,
        fence: Fence,
        stream: EduStream,
        upto: StreamPosition,
    ) -> StoreResult<()>;

    /// Gives `holder` the turn to process `origin`'s inbound transactions
    /// until `expires_at` (ms): [`InboundTurn::Busy`] when another holder
    /// has it and it has not lapsed by `now`. The holder claiming again
    /// renews it. A turn taken tells the answer kept for the origin's
    /// transaction `txn_id`, if it was answered in the [`ANSWERS_KEPT_MS`]
    /// before `now`.
    async fn claim_inbound_turn(
        &self,
        origin: &str,
        holder: &str,
        txn_id: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<InboundTurn>;

    /// Gives the turn back, if `holder` still has it, keeping the answer
    /// to the transaction processed, if any, for [`ANSWERS_KEPT_MS`]; the
    /// origin's answers older than that are forgotten.
    async fn release_inbound_turn(
        &self,
        origin: &str,
        holder: &str,
        answered: Option<&AnsweredTransaction>,
    ) -> StoreResult<()>;
}

/// The streams of local users' changes that the senders read from cursors
/// of their own, so that a change made while no sender ran is still sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EduStream {
    DeviceLists,
    Receipts,
}

impl EduStream {
    /// The `federation_cursors` column that holds the stream's cursors.
    pub fn cursor_column(self) -> &'static str {
        match self {
            EduStream::DeviceLists => "device_list_position",
            EduStream::Receipts => "receipt_position",
        }
    }
}

/// How long the answer to an inbound transaction is kept for a retry.
pub const ANSWERS_KEPT_MS: i64 = 24 * 60 * 60 * 1000;

/// What claiming an origin's inbound turn found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundTurn {
    /// Another holder has it.
    Busy,
    /// The turn is the claimant's, with the answer (JSON) kept for the
    /// transaction, if it was answered before.
    Taken(Option<String>),
}

/// An inbound transaction's ID and the answer it got (as JSON), at `answered_at` (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredTransaction {
    pub txn_id: String,
    pub answer: String,
    pub answered_at: i64,
}
