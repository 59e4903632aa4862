//! Content reports kept for admins, and OpenID tokens for other servers.

use async_trait::async_trait;

use crate::StoreResult;

/// A report about a room, or about one of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    pub room_id: String,
    /// Set when an event is reported, unset for the room as a whole.
    pub event_id: Option<String>,
    pub reporter: String,
    pub reason: Option<String>,
    pub score: Option<i64>,
    pub received_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    pub report_id: i64,
    pub report: NewReport,
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Keeps the report and returns its ID (increasing).
    async fn add_report(&self, report: NewReport) -> StoreResult<i64>;

    /// Reports below `before` (all when `None`), newest first, at most `limit`.
    async fn reports(&self, before: Option<i64>, limit: usize) -> StoreResult<Vec<ReportRecord>>;

    /// Keeps an OpenID token until `expires_ts`, and drops tokens expired
    /// at `now`.
    async fn add_openid_token(
        &self,
        token: &str,
        user_id: &str,
        expires_ts: i64,
        now: i64,
    ) -> StoreResult<()>;

    /// The user an OpenID token was given to, while it has not expired at `now`.
    async fn openid_token_owner(&self, token: &str, now: i64) -> StoreResult<Option<String>>;
}
