//! Server-side key backup: versions of a user's backup and the room keys
//! in each, encrypted by the client (the server never reads them).

use async_trait::async_trait;

use crate::StoreResult;

/// A backup version as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    /// JSON.
    pub auth_data: String,
    /// Moves whenever the keys in the version change.
    pub etag: i64,
    /// Keys in the version.
    pub count: u64,
}

/// One backed-up room key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupKey {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    /// JSON, opaque to the server.
    pub session_data: String,
}

impl BackupKey {
    /// Whether this key should replace `kept`, by the spec's rule: a
    /// verified key beats an unverified one, then the lower first message
    /// index, then the lower forwarded count.
    pub fn replaces(&self, kept: &BackupKey) -> bool {
        if self.is_verified != kept.is_verified {
            return self.is_verified;
        }
        if self.first_message_index != kept.first_message_index {
            return self.first_message_index < kept.first_message_index;
        }
        self.forwarded_count < kept.forwarded_count
    }
}

/// Which keys of a version a read or delete is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupScope<'a> {
    All,
    Room(&'a str),
    Session(&'a str, &'a str),
}

#[async_trait]
pub trait KeyBackupStore: Send + Sync {
    /// Creates the user's next version, which becomes the current one.
    async fn create_backup_version(
        &self,
        user_id: &str,
        algorithm: &str,
        auth_data: &str,
    ) -> StoreResult<i64>;

    /// The version asked for, or the current one with `None`; deleted
    /// versions are not found.
    async fn backup_version(
        &self,
        user_id: &str,
        version: Option<i64>,
    ) -> StoreResult<Option<BackupVersion>>;

    /// Replaces the version's `auth_data`; whether it was found.
    async fn update_backup_version(
        &self,
        user_id: &str,
        version: i64,
        auth_data: &str,
    ) -> StoreResult<bool>;

    /// Deletes the version and its keys; whether it was found.
    async fn delete_backup_version(&self, user_id: &str, version: i64) -> StoreResult<bool>;

    /// Keeps each key unless the one kept for its session wins over it
    /// (see [`BackupKey::replaces`]); the version's etag moves if anything
    /// changed. The caller checks the version is current.
    async fn put_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        keys: Vec<BackupKey>,
    ) -> StoreResult<()>;

    /// The version's keys in the scope, by room and session.
    async fn backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: BackupScope<'_>,
    ) -> StoreResult<Vec<BackupKey>>;

    /// Deletes the version's keys in the scope; the etag moves.
    async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: BackupScope<'_>,
    ) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verified: bool, index: i64, forwarded: i64) -> BackupKey {
        BackupKey {
            room_id: "!r:hs".to_owned(),
            session_id: "s".to_owned(),
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified: verified,
            session_data: "{}".to_owned(),
        }
    }

    #[test]
    fn the_better_key_wins() {
        assert!(key(true, 9, 9).replaces(&key(false, 0, 0)));
        assert!(!key(false, 0, 0).replaces(&key(true, 9, 9)));
        assert!(key(false, 1, 9).replaces(&key(false, 2, 0)));
        assert!(!key(false, 2, 0).replaces(&key(false, 1, 9)));
        assert!(key(true, 1, 0).replaces(&key(true, 1, 1)));
        assert!(
            !key(true, 1, 1).replaces(&key(true, 1, 1)),
            "a tie keeps what is kept"
        );
    }
}
