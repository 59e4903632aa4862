//! Push actions and the counts built on them. The event-persister writes
//! one row per user an event notifies, in the transaction that persists the
//! event, so counts never lag behind the timeline; a user's read receipts
//! (public or private) mark everything up to them as read.

use async_trait::async_trait;
use myelin_types::StreamPosition;

use crate::{StoreResult, StoredEvent};

/// The thread of an event outside any thread, as receipts name it.
pub const MAIN_THREAD: &str = "main";

/// An event notifies this user (the push rules said `notify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAction {
    pub user_id: String,
    pub highlight: bool,
    /// The thread root for an event in a thread; `None` for the main timeline.
    pub thread_id: Option<String>,
    /// The sound the rules asked for, if any.
    pub sound: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreadCounts {
    pub notifications: u64,
    pub highlights: u64,
}

/// A room's unread counts for one user: the main timeline's and each
/// thread's (by root event ID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomUnread {
    pub main: UnreadCounts,
    pub threads: Vec<(String, UnreadCounts)>,
}

impl RoomUnread {
    /// Everything together, for clients that do not ask per thread.
    pub fn total(&self) -> UnreadCounts {
        self.threads
            .iter()
            .fold(self.main, |sum, (_, counts)| UnreadCounts {
                notifications: sum.notifications + counts.notifications,
                highlights: sum.highlights + counts.highlights,
            })
    }
}

/// One entry of `GET /notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub event: StoredEvent,
    pub highlight: bool,
    /// A read receipt of the user covers it.
    pub read: bool,
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Notifying events above the user's latest read receipt in the room:
    /// per thread, above the later of the unthreaded receipt and the
    /// thread's own.
    async fn unread_counts(&self, user_id: &str, room_id: &str) -> StoreResult<RoomUnread>;

    /// The user's notifications below `before` (newest first), at most
    /// `limit`, only highlights when asked.
    async fn notifications(
        &self,
        user_id: &str,
        before: Option<StreamPosition>,
        limit: usize,
        only_highlight: bool,
    ) -> StoreResult<Vec<NotificationRecord>>;

    /// How many rooms the user is joined to hold unread notifications for
    /// them: the badge a push gateway shows.
    async fn unread_rooms(&self, user_id: &str) -> StoreResult<u64>;

    /// Removes push actions at or below `upto` that a read receipt of
    /// their user covers (they count no more), oldest first, at most
    /// `limit`; returns how many went.
    async fn prune_read_push_actions(&self, upto: StreamPosition, limit: usize)
    -> StoreResult<u64>;
}
