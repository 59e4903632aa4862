//! Room aliases of this server.

use async_trait::async_trait;

use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRecord {
    pub alias: String,
    pub room_id: String,
    pub creator: String,
}

#[async_trait]
pub trait AliasStore: Send + Sync {
    /// `Conflict` when the alias is taken.
    async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> StoreResult<()>;

    async fn alias(&self, alias: &str) -> StoreResult<Option<AliasRecord>>;

    /// `NotFound` when the alias does not exist.
    async fn delete_alias(&self, alias: &str) -> StoreResult<()>;

    async fn room_aliases(&self, room_id: &str) -> StoreResult<Vec<String>>;
}
