//! Sync filters uploaded by clients.

use async_trait::async_trait;

use crate::StoreResult;

#[async_trait]
pub trait FilterStore: Send + Sync {
    /// Stores the filter JSON and returns its new ID (unique per user).
    async fn create_filter(&self, user_id: &str, filter_json: &str) -> StoreResult<String>;

    async fn filter(&self, user_id: &str, filter_id: &str) -> StoreResult<Option<String>>;
}
