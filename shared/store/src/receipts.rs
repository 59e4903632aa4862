//! The receipts stream: the last event each user has read in a room, per
//! receipt type and thread, each change at a new position of its own counter.

use async_trait::async_trait;
use myelin_types::StreamPosition;

use crate::StoreResult;

/// A user's receipt as it is now. `thread_id` is `None` for an unthreaded
/// receipt; `"main"` names the main timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub room_id: String,
    pub receipt_type: String,
    pub user_id: String,
    pub thread_id: Option<String>,
    pub event_id: String,
    pub ts: i64,
    pub position: StreamPosition,
}

/// What a user sends: the position is the store's to assign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReceipt {
    pub room_id: String,
    pub receipt_type: String,
    pub user_id: String,
    pub thread_id: Option<String>,
    pub event_id: String,
    pub ts: i64,
}

#[async_trait]
pub trait ReceiptStore: Send + Sync {
    /// Replaces the user's receipt of this type and thread in the room and
    /// returns the position it took.
    async fn set_receipt(&self, receipt: NewReceipt) -> StoreResult<StreamPosition>;

    /// Receipts in these rooms last changed in `(since, upto]` (all current
    /// ones up to `upto` when `since` is `None`), oldest change first.
    async fn receipt_changes(
        &self,
        room_ids: &[String],
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<Receipt>>;

    /// Receipts of every room last changed in `(after, upto]`, oldest
    /// change first, at most `limit`.
    async fn receipts_between(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<Receipt>>;

    /// The highest position below which every change has committed.
    async fn max_receipt_position(&self) -> StoreResult<StreamPosition>;
}
