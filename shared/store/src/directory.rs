//! The room directory (rooms published on `/publicRooms`) and the user
//! directory search.

use async_trait::async_trait;

use crate::StoreResult;

/// One local user found by a user directory search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Who a user directory search may find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryScope {
    /// Users sharing a joined room with the searcher, and users joined to a
    /// public room (join rule `public` or history `world_readable`).
    SharedAndPublicRooms,
    /// Every active local user (`user_directory.search_all_users`).
    AllUsers,
}

#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Publishes the room in the directory, or takes it out; idempotent.
    async fn set_room_published(&self, room_id: &str, published: bool) -> StoreResult<()>;

    async fn room_published(&self, room_id: &str) -> StoreResult<bool>;

    /// Published room IDs above `after` in byte order, at most `limit`.
    async fn published_rooms(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>>;

    async fn published_room_count(&self) -> StoreResult<u64>;

    /// Active local users whose user ID or display name contains `term`
    /// (compared lowercased; `term` is lowercased by the caller), within
    /// `scope` of `searcher`, in user ID order, at most `limit`.
    async fn search_users(
        &self,
        searcher: &str,
        term: &str,
        scope: DirectoryScope,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryUser>>;
}
