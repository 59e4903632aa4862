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

/// Presence that lapsed with time (`PresenceStore::lapse_presence`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LapsedPresence {
    pub user_id: String,
    /// `unavailable` or `offline`.
    pub state: String,
    pub position: StreamPosition,
}

/// The moments before which presence lapses (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapseCutoffs {
    /// `online` users last active before this become `unavailable`.
    pub idle_before: i64,
    /// Users neither syncing nor active since this become `offline`.
    pub gone_before: i64,
}

/// Most users one call of `lapse_presence` changes; the next call goes on.
pub const MAX_LAPSED_AT_ONCE: usize = 1000;

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

    /// Notes that these users' syncs were running at `now_ms`. Nobody sees
    /// this, so it takes no position; it keeps them from going offline.
    async fn note_presence_syncs(&self, user_ids: &[String], now_ms: i64) -> StoreResult<()>;

    /// Lets presence lapse as `cutoffs` say, each change at a new position
    /// (at most `MAX_LAPSED_AT_ONCE`). Safe to run on several processes at
    /// once: each change is made once.
    async fn lapse_presence(&self, cutoffs: LapseCutoffs) -> StoreResult<Vec<LapsedPresence>>;

    /// The highest position below which every change has committed.
    async fn max_presence_position(&self) -> StoreResult<StreamPosition>;
}
