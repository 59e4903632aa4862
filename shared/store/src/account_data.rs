//! The account-data stream: per-user JSON a client keeps on the server,
//! global or for one room, each change at a new position of its own counter.

use async_trait::async_trait;
use myelin_types::StreamPosition;

use crate::StoreResult;

/// One entry as it is now; `room_id` is `None` for global data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDataEntry {
    pub room_id: Option<String>,
    pub data_type: String,
    /// The content, as JSON text.
    pub content: String,
    pub position: StreamPosition,
}

#[async_trait]
pub trait AccountDataStore: Send + Sync {
    /// Replaces one entry and returns the position it took. The position
    /// becomes visible to [`AccountDataStore::max_account_data_position`]
    /// only when every lower one has committed.
    async fn set_account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
        content_json: &str,
    ) -> StoreResult<StreamPosition>;

    async fn account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
    ) -> StoreResult<Option<String>>;

    /// The user's entries last changed in `(since, upto]` (all up to
    /// `upto` when `since` is `None`), oldest change first.
    async fn account_data_changes(
        &self,
        user_id: &str,
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<AccountDataEntry>>;

    /// The highest position below which every change has committed.
    async fn max_account_data_position(&self) -> StoreResult<StreamPosition>;
}
