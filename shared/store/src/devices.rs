//! Devices and the access tokens bound to them.

use async_trait::async_trait;

use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub user_id: String,
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// Who an access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user_id: String,
    pub device_id: String,
    pub is_admin: bool,
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Creates the device if it is new (keeping an existing one's name) and
    /// adds the token to it, in one transaction.
    async fn add_device_token(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        access_token: &str,
    ) -> StoreResult<()>;

    /// The owner of a live token of a user who is not deactivated.
    async fn token_owner(&self, access_token: &str) -> StoreResult<Option<TokenOwner>>;

    async fn devices(&self, user_id: &str) -> StoreResult<Vec<Device>>;

    async fn device(&self, user_id: &str, device_id: &str) -> StoreResult<Option<Device>>;

    /// `NotFound` when the device does not exist.
    async fn rename_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> StoreResult<()>;

    /// Deletes the devices with everything of theirs (tokens, keys, inbox,
    /// pushers) in one transaction, as a change of the user's device list;
    /// unknown IDs are ignored.
    async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> StoreResult<()>;

    /// Deletes one token; its device and the device's other tokens stay.
    async fn delete_token(&self, access_token: &str) -> StoreResult<()>;

    /// Deletes every device of the user except `keep`, as
    /// [`DeviceStore::delete_devices`] does (`/logout/all`, password change).
    async fn delete_other_devices(&self, user_id: &str, keep: Option<&str>) -> StoreResult<()>;
}
