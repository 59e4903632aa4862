//! User accounts and profiles.

use async_trait::async_trait;

use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub user_id: String,
    /// PHC string (argon2id), or a bcrypt hash imported from Synapse.
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub created_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// What offering a shared-secret registration nonce for use found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// Not offered before: it is now recorded as used.
    Fresh,
    /// Offered before (whether that attempt succeeded or not).
    AlreadyUsed,
    /// The limit of unexpired used nonces is reached; nothing recorded.
    TooMany,
}

/// A profile change: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub displayname: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates the user; `Conflict` when the ID is taken (also by a
    /// deactivated user, whose ID is never reused).
    async fn create_user(&self, new_user: NewUser) -> StoreResult<()>;

    async fn user(&self, user_id: &str) -> StoreResult<Option<UserRecord>>;

    /// `NotFound` when the user does not exist.
    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()>;

    /// `NotFound` when the user does not exist.
    async fn set_admin(&self, user_id: &str, is_admin: bool) -> StoreResult<()>;

    /// Marks the user deactivated, clears the password and profile, and
    /// deletes every device and access token, in one transaction.
    async fn deactivate_user(&self, user_id: &str) -> StoreResult<()>;

    /// `NotFound` when the user does not exist.
    async fn update_profile(&self, user_id: &str, update: ProfileUpdate) -> StoreResult<()>;

    /// Records `nonce` as used until `expires_ts`, in one transaction that
    /// first forgets the nonces expired at `now`. Of concurrent offers of
    /// one nonce, exactly one is `Fresh`. At most about `max_live` nonces
    /// are kept: past that, `TooMany`.
    async fn use_registration_nonce(
        &self,
        nonce: &str,
        expires_ts: i64,
        now: i64,
        max_live: u32,
    ) -> StoreResult<NonceUse>;
}
