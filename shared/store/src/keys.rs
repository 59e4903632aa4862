//! End-to-end encryption keys: each device's identity keys, its one-time
//! keys (each handed out once) and its fallback keys.

use std::collections::BTreeMap;

use async_trait::async_trait;
use myelin_types::StreamPosition;

use crate::StoreResult;

/// A device's identity keys as it signed them (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeysRecord {
    pub user_id: String,
    pub device_id: String,
    pub key_json: String,
}

/// A one-time or fallback key as uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedKey {
    /// The part of the key ID before the colon (`signed_curve25519`).
    pub algorithm: String,
    /// The whole key ID (`signed_curve25519:AAAAHg`).
    pub key_id: String,
    /// Canonical JSON, so equal keys compare equal as text.
    pub key_json: String,
}

/// What a device asks a claim for: one key of `algorithm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    pub user_id: String,
    pub device_id: String,
    pub algorithm: String,
}

/// A key handed out by a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKey {
    pub user_id: String,
    pub device_id: String,
    pub key_id: String,
    pub key_json: String,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores (or replaces) the device's identity keys; a change is also a
    /// change of its user's device list. Whether they changed.
    async fn set_device_keys(&self, record: DeviceKeysRecord) -> StoreResult<bool>;

    /// The identity keys of the user's devices, of those named when
    /// `device_ids` is not empty, by device ID.
    async fn device_keys(
        &self,
        user_id: &str,
        device_ids: &[String],
    ) -> StoreResult<Vec<DeviceKeysRecord>>;

    /// Adds one-time keys and replaces the fallback key of each algorithm
    /// given, all or nothing. A one-time key ID stored already is kept
    /// once when its JSON is the same, and refused with
    /// `StoreError::Conflict` when it differs.
    async fn add_keys(
        &self,
        user_id: &str,
        device_id: &str,
        one_time: &[UploadedKey],
        fallback: &[UploadedKey],
    ) -> StoreResult<()>;

    /// The device's unclaimed one-time keys, counted per algorithm.
    async fn one_time_key_counts(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> StoreResult<BTreeMap<String, u64>>;

    /// The algorithms of the device's fallback keys not handed out yet.
    async fn unused_fallback_algorithms(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> StoreResult<Vec<String>>;

    /// One key per claim: a one-time key, removed as it is handed out so no
    /// two claimers ever get the same one, else the fallback key, marked
    /// used. Claims for devices with neither are left out.
    async fn claim_keys(&self, claims: &[KeyClaim]) -> StoreResult<Vec<ClaimedKey>>;
}

/// The device-list stream: which users' devices or keys changed. Deleting
/// a device writes to it too (see `DeviceStore`).
#[async_trait]
pub trait DeviceListStore: Send + Sync {
    /// The users whose device list changed in `(after, upto]`, each once,
    /// at most `limit`.
    async fn device_list_changes(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<String>>;

    /// The changes in `(after, upto]` one by one, oldest first, at most
    /// `limit`.
    async fn device_list_entries(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<DeviceListEntry>>;

    /// The position of the user's latest change other than to their
    /// cross-signing keys below `before` (anywhere when `None`): what an
    /// `m.device_list_update` cites as `prev_id`, and `/user/devices`
    /// gives as `stream_id`.
    async fn device_list_chain_position(
        &self,
        user_id: &str,
        before: Option<StreamPosition>,
    ) -> StoreResult<Option<StreamPosition>>;

    /// The highest position below which every change has committed.
    async fn max_device_list_position(&self) -> StoreResult<StreamPosition>;

    /// Notes that another server's user's devices or keys changed (it said
    /// so), so local users sharing a room learn to ask again.
    async fn note_remote_device_list_change(&self, user_id: &str) -> StoreResult<()>;

    /// The kept device lists of those of `user_ids` that have one.
    async fn remote_device_lists(&self, user_ids: &[String]) -> StoreResult<Vec<RemoteDeviceList>>;

    /// Keeps a list fetched whole from the user's server, unless a list
    /// at or past its position in that server's stream is kept (a fetch
    /// that crossed an update applied meanwhile must not undo it), or the
    /// user shares no room with a user of this server (an account here):
    /// nothing would tell us of their changes. Whether it was kept.
    async fn keep_remote_device_list(&self, list: &RemoteDeviceList) -> StoreResult<bool>;

    /// Replaces the kept list with `list` only if it still stands at
    /// `prev_stream_id`: an update applied to a list nobody replaced in
    /// between. Whether it was replaced.
    async fn advance_remote_device_list(
        &self,
        list: &RemoteDeviceList,
        prev_stream_id: i64,
    ) -> StoreResult<bool>;

    /// Drops a kept list (an update showed it is behind).
    async fn forget_remote_device_list(&self, user_id: &str) -> StoreResult<()>;

    /// Whether the user is joined to a room a user of this server (an
    /// account here) is joined to.
    async fn shares_room_with_local_user(&self, user_id: &str) -> StoreResult<bool>;
}

/// One change of the device-list stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceListEntry {
    pub position: StreamPosition,
    pub user_id: String,
    pub subject: DeviceListSubject,
}

/// What a device-list change is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceListSubject {
    /// One device: its keys, name or deletion.
    Device(String),
    /// The user's cross-signing keys.
    SigningKeys,
    /// Any of the user's devices (an account closed, a change written
    /// before changes named their subject, another server's user).
    Everything,
}

impl DeviceListSubject {
    /// The subject of a change written with this device ID and flag.
    pub fn from_columns(device_id: Option<String>, signing_keys: bool) -> Self {
        match (device_id, signing_keys) {
            (Some(device_id), _) => DeviceListSubject::Device(device_id),
            (None, true) => DeviceListSubject::SigningKeys,
            (None, false) => DeviceListSubject::Everything,
        }
    }

    /// The columns this subject is written as.
    pub fn columns(&self) -> (Option<&str>, bool) {
        match self {
            DeviceListSubject::Device(device_id) => (Some(device_id), false),
            DeviceListSubject::SigningKeys => (None, true),
            DeviceListSubject::Everything => (None, false),
        }
    }
}

/// Another server's user's device list as kept here: the JSON the
/// federation layer writes, at `stream_id` in their server's device-list
/// stream. A membership change that leaves the user sharing no room with
/// a user of this server drops it, in the same transaction: while nothing
/// is shared their server stops telling us of changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDeviceList {
    pub user_id: String,
    pub stream_id: i64,
    pub list_json: String,
}

/// A signature uploaded for someone's key: `target_key_id` is a device ID
/// or a cross-signing key's public key; `signer_key_id` the whole key ID
/// of the signing key (`ed25519:...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySignature {
    pub target_user_id: String,
    pub target_key_id: String,
    pub signer_user_id: String,
    pub signer_key_id: String,
    pub signature: String,
}

/// Cross-signing keys and the signatures uploaded for keys.
#[async_trait]
pub trait CrossSigningStore: Send + Sync {
    /// Stores the given keys (`master`, `self_signing`, `user_signing`),
    /// replacing those of the same type, as a change of the user's device
    /// list.
    async fn set_cross_signing_keys(
        &self,
        user_id: &str,
        keys: &[(String, String)],
    ) -> StoreResult<()>;

    /// The user's cross-signing keys, by type.
    async fn cross_signing_keys(&self, user_id: &str) -> StoreResult<BTreeMap<String, String>>;

    /// Adds signatures (replacing one by the same key of the same target),
    /// as a change of each target user's device list.
    async fn add_key_signatures(&self, signatures: &[KeySignature]) -> StoreResult<()>;

    /// The signatures uploaded for the user's keys.
    async fn key_signatures(&self, target_user_id: &str) -> StoreResult<Vec<KeySignature>>;
}
