//! Typing notices. Synchrotrons keep them in memory, fed by the bus; the
//! store holds the live ones so a synchrotron that starts can learn them.

use async_trait::async_trait;

use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypingNotice {
    pub room_id: String,
    pub user_id: String,
    /// When it ends by itself, in milliseconds since the epoch.
    pub until_ms: i64,
}

#[async_trait]
pub trait TypingStore: Send + Sync {
    /// Starts or extends a notice; `until_ms: None` ends it.
    async fn set_typing(
        &self,
        room_id: &str,
        user_id: &str,
        until_ms: Option<i64>,
    ) -> StoreResult<()>;

    /// The notices still running at `now_ms`; ended ones are purged.
    async fn typing_now(&self, now_ms: i64) -> StoreResult<Vec<TypingNotice>>;
}
