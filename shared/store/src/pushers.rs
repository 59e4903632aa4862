//! Pushers: where a user's notifications are delivered, and how far each
//! has come. The push actions the writer stored with each event are the
//! log delivery reads; a pusher's position in it is kept here, so delivery
//! resumes where it stopped whichever process takes it over.

use async_trait::async_trait;
use myelin_types::StreamPosition;

use crate::{StoreResult, StoredEvent};

/// A pusher as its client set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pusher {
    pub user_id: String,
    /// `http` (the only kind delivered) or another kind a client named.
    pub kind: String,
    pub app_id: String,
    pub pushkey: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// The `data` object as JSON text (`url`, `format`, ...).
    pub data: String,
    /// The device that set it; the pusher goes with the device.
    pub device_id: Option<String>,
    pub created_ts: i64,
}

/// A pusher with how far its delivery has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherProgress {
    pub pusher: Pusher,
    pub delivered_upto: StreamPosition,
}

/// An event that notifies the pusher's user and that they have not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDue {
    pub event: StoredEvent,
    pub highlight: bool,
    pub sound: Option<String>,
}

#[async_trait]
pub trait PusherStore: Send + Sync {
    /// Adds the pusher, or replaces the user's pusher with the same app ID
    /// and pushkey, keeping how far it has delivered. A new pusher delivers
    /// what comes after `from`. Without `append`, other users' pushers with
    /// the same app ID and pushkey are removed.
    async fn set_pusher(
        &self,
        pusher: Pusher,
        append: bool,
        from: StreamPosition,
    ) -> StoreResult<()>;

    /// Removes the user's pusher; `false` when there was none.
    async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> StoreResult<bool>;

    async fn pushers_of_user(&self, user_id: &str) -> StoreResult<Vec<Pusher>>;

    /// The `http` pushers of users in these partitions.
    async fn http_pushers(&self, partitions: &[u16]) -> StoreResult<Vec<PusherProgress>>;

    /// Unread notifying events of the user above `after` and at or below
    /// `upto`, oldest first, at most `limit`.
    async fn pushes_due(
        &self,
        user_id: &str,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<PushDue>>;

    /// Records that the pusher has delivered up to `position`; `false` when
    /// the pusher is gone.
    async fn advance_pusher(
        &self,
        user_id: &str,
        app_id: &str,
        pushkey: &str,
        position: StreamPosition,
    ) -> StoreResult<bool>;
}
