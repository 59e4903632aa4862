//! The presence stream: each user's presence as last set, each change at a
//! new position of its own counter.

use async_trait::async_trait;
use myelin_types::StreamPosition;

use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRecord {
    pub user_id: String,
    /// `online`, `unavailable` or `offline`.
    pub state: String,
    pub status_msg: Option<String>,
    /// When the user was last active (ms since the epoch).
    pub last_active_ts: i64,
    pub position: StreamPosition,
}

/// A change of presence; `status_msg: None` keeps the message set before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUpdate {
    pub user_id: String,
    pub state: String,
    pub status_msg: Option<Option<String>>,
    pub last_active_ts: i64,
}

#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Records the change and returns the position it took.
    async fn set_presence(&self, update: PresenceUpdate) -> StoreResult<StreamPosition>;

    async fn presence(&self, user_id: &str) -> StoreResult<Option<PresenceRecord>>;

    /// These users' presence last changed in `(since, upto]` (all up to
    /// `upto` when `since` is `None`).
    async fn presence_changes(
        &self,
        user_ids: &[String],
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<PresenceRecord>>;

    /// The highest position below which every change has committed.
    async fn max_presence_position(&self) -> StoreResult<StreamPosition>;
}
