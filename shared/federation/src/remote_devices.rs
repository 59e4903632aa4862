//! Other servers' users' device lists, kept here while they share a room
//! with a user of this server, so a key query for them is answered even
//! when their server is down, and without asking it each time.
//!
//! A list is fetched whole from the user's server (`/user/devices`) and
//! then moved on by its `m.device_list_update`s: each names the user's
//! previous update (`prev_id`), a position in that server's device-list
//! stream. An update whose previous ones are all at or before the kept
//! position is applied to the kept list: the list already holds them, and
//! nothing of the user's came between them and it. (Synapse gives its
//! whole stream's position in `/user/devices`, so a user's previous update
//! is often before it.) Any other update shows one was missed, and the
//! list is fetched whole again.

use std::collections::BTreeMap;

use myelin_store::{RemoteDeviceList, Store, StoreError, StoreResult};
use ruma::api::federation::device::get_devices;
use ruma::api::federation::transactions::edu::{DeviceListUpdateContent, SigningKeyUpdateContent};
use ruma::encryption::{CrossSigningKey, DeviceKeys};
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{FederationClient, FederationError};

/// The most devices kept for one user: far above what a person uses.
pub const MAX_KEPT_DEVICES: usize = 1000;
/// The most JSON kept for one user's list; a larger one is not kept (and
/// queries for that user go to their server).
pub const MAX_KEPT_LIST_BYTES: usize = 1 << 20;

/// One user's devices and cross-signing keys, as kept in the store.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeviceList {
    #[serde(default)]
    pub devices: BTreeMap<OwnedDeviceId, KeptDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<Raw<CrossSigningKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signing_key: Option<Raw<CrossSigningKey>>,
}

/// A device: an update may name one before its keys are uploaded.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeptDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Raw<DeviceKeys>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// What became of an `m.device_list_update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// It followed the kept list, which now includes it.
    Applied,
    /// The kept list is already at or past it (a retried transaction).
    Seen,
    /// No list is kept, or one was missed: fetch the list whole.
    Behind,
}

/// Whether a key's JSON names `user_id` (and `device_id`, for a device).
fn names(key: &Value, user_id: &UserId, device_id: Option<&str>) -> bool {
    key["user_id"].as_str() == Some(user_id.as_str())
        && device_id.is_none_or(|device_id| key["device_id"].as_str() == Some(device_id))
}

fn checked_keys<T>(raw: &Raw<T>, user_id: &UserId, device_id: Option<&str>) -> Result<(), String> {
    let key: Value = raw
        .deserialize_as()
        .map_err(|error| format!("unreadable key: {error}"))?;
    if names(&key, user_id, device_id) {
        Ok(())
    } else {
        Err(format!("a key not of {user_id} {device_id:?}"))
    }
}

impl DeviceList {
    /// The list another server gave for `user_id`, checked: only its own
    /// user, each key naming the user (and device) it is listed under.
    pub fn from_answer(
        user_id: &UserId,
        answer: get_devices::v1::Response,
    ) -> Result<(i64, Self), String> {
        if answer.user_id != user_id {
            return Err("the answer is about another user".to_owned());
        }
        if answer.devices.len() > MAX_KEPT_DEVICES {
            return Err(format!("more than {MAX_KEPT_DEVICES} devices"));
        }
        let mut list = DeviceList::default();
        for device in answer.devices {
            checked_keys(&device.keys, user_id, Some(device.device_id.as_str()))?;
            list.devices.insert(
                device.device_id,
                KeptDevice {
                    keys: Some(device.keys),
                    display_name: device.device_display_name,
                },
            );
        }
        for key in [&answer.master_key, &answer.self_signing_key]
            .into_iter()
            .flatten()
        {
            checked_keys(key, user_id, None)?;
        }
        list.master_key = answer.master_key;
        list.self_signing_key = answer.self_signing_key;
        let stream_id = i64::try_from(u64::from(answer.stream_id)).unwrap_or(i64::MAX);
        Ok((stream_id, list))
    }

    /// Applies one device's change; `Err` when it does not check out.
    fn apply(&mut self, update: &DeviceListUpdateContent) -> Result<(), String> {
        if update.deleted == Some(true) {
            self.devices.remove(&update.device_id);
            return Ok(());
        }
        if let Some(keys) = &update.keys {
            checked_keys(keys, &update.user_id, Some(update.device_id.as_str()))?;
        }
        if !self.devices.contains_key(&update.device_id) && self.devices.len() >= MAX_KEPT_DEVICES {
            return Err(format!("more than {MAX_KEPT_DEVICES} devices"));
        }
        let device = self.devices.entry(update.device_id.clone()).or_default();
        if update.keys.is_some() {
            device.keys.clone_from(&update.keys);
        }
        if update.device_display_name.is_some() {
            device.display_name.clone_from(&update.device_display_name);
        }
        Ok(())
    }

    /// The list as the store keeps it, if it is not too large.
    fn kept(&self, user_id: &UserId, stream_id: i64) -> Option<RemoteDeviceList> {
        let list_json = serde_json::to_string(self).ok()?;
        (list_json.len() <= MAX_KEPT_LIST_BYTES).then(|| RemoteDeviceList {
            user_id: user_id.to_string(),
            stream_id,
            list_json,
        })
    }

    fn read(kept: &RemoteDeviceList) -> StoreResult<Self> {
        serde_json::from_str(&kept.list_json)
            .map_err(|error| StoreError::Corrupt(error.to_string()))
    }

    /// The keys of the devices asked (every one when none is named), each
    /// with its display name under `unsigned` as a key query answers.
    pub fn device_keys(&self, asked: &[OwnedDeviceId]) -> BTreeMap<OwnedDeviceId, Raw<DeviceKeys>> {
        self.devices
            .iter()
            .filter(|(device_id, _)| asked.is_empty() || asked.contains(device_id))
            .filter_map(|(device_id, device)| {
                let keys = device.keys.as_ref()?;
                let Some(name) = &device.display_name else {
                    return Some((device_id.clone(), keys.clone()));
                };
                let mut json: Value = keys.deserialize_as().ok()?;
                if !json["unsigned"].is_object() {
                    json["unsigned"] = Value::Object(Default::default());
                }
                json["unsigned"]["device_display_name"] = Value::String(name.clone());
                let raw = serde_json::value::to_raw_value(&json).ok()?;
                Some((device_id.clone(), Raw::from_json(raw)))
            })
            .collect()
    }
}

/// Users whose kept lists are read from the store at once.
const LISTS_READ_AT_ONCE: usize = 100;

/// The kept lists of `user_ids`, by user, read until about `max_bytes` of
/// them are held: the users past that are left out, as if none was kept.
pub async fn kept_lists(
    store: &dyn Store,
    user_ids: &[String],
    max_bytes: usize,
) -> StoreResult<BTreeMap<String, DeviceList>> {
    let mut lists = BTreeMap::new();
    let mut held = 0;
    for some in user_ids.chunks(LISTS_READ_AT_ONCE) {
        if held >= max_bytes {
            break;
        }
        for kept in store.remote_device_lists(some).await? {
            held += kept.list_json.len();
            lists.insert(kept.user_id.clone(), DeviceList::read(&kept)?);
        }
    }
    Ok(lists)
}

async fn kept_list(store: &dyn Store, user_id: &String) -> StoreResult<Option<RemoteDeviceList>> {
    Ok(store
        .remote_device_lists(std::slice::from_ref(user_id))
        .await?
        .pop())
}

/// Why a list could not be fetched.
#[derive(Debug)]
pub enum ResyncError {
    Federation(FederationError),
    /// The answer did not check out.
    Refused(String),
    Store(StoreError),
}

impl std::fmt::Display for ResyncError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Federation(error) => write!(formatter, "{error}"),
            Self::Refused(why) => write!(formatter, "a device list refused: {why}"),
            Self::Store(error) => write!(formatter, "{error}"),
        }
    }
}

/// Fetches `user_id`'s list whole from their server and keeps it (when
/// they share a room with a user here); the list either way.
pub async fn resync(
    client: &FederationClient,
    store: &dyn Store,
    user_id: &UserId,
) -> Result<DeviceList, ResyncError> {
    let answer = client
        .send(
            user_id.server_name(),
            get_devices::v1::Request::new(user_id.to_owned()),
        )
        .await
        .map_err(ResyncError::Federation)?;
    let (stream_id, list) =
        DeviceList::from_answer(user_id, answer).map_err(ResyncError::Refused)?;
    if let Some(kept) = list.kept(user_id, stream_id) {
        store
            .keep_remote_device_list(&kept)
            .await
            .map_err(ResyncError::Store)?;
    }
    Ok(list)
}

/// Applies an `m.device_list_update` to the kept list if it follows on
/// from it; on [`UpdateOutcome::Behind`] the kept list is dropped, so
/// nothing answers from it until it is fetched again.
pub async fn apply_update(
    store: &dyn Store,
    update: &DeviceListUpdateContent,
) -> StoreResult<UpdateOutcome> {
    let user_id = update.user_id.to_string();
    let stream_id = i64::try_from(u64::from(update.stream_id)).unwrap_or(i64::MAX);
    let Some(kept) = kept_list(store, &user_id).await? else {
        return Ok(UpdateOutcome::Behind);
    };
    if stream_id <= kept.stream_id {
        return Ok(UpdateOutcome::Seen);
    }
    let follows = !update.prev_id.is_empty()
        && update
            .prev_id
            .iter()
            .all(|prev| i64::try_from(u64::from(*prev)).is_ok_and(|prev| prev <= kept.stream_id));
    let mut list = DeviceList::read(&kept)?;
    let applied = follows && list.apply(update).is_ok();
    if applied
        && let Some(next) = list.kept(&update.user_id, stream_id)
        && store
            .advance_remote_device_list(&next, kept.stream_id)
            .await?
    {
        return Ok(UpdateOutcome::Applied);
    }
    store.forget_remote_device_list(&user_id).await?;
    Ok(UpdateOutcome::Behind)
}

/// Applies an `m.signing_key_update` to the kept list, if one is kept;
/// whether it was. A key that does not name the user drops the list.
pub async fn apply_signing_keys(
    store: &dyn Store,
    update: &SigningKeyUpdateContent,
) -> StoreResult<bool> {
    let user_id = update.user_id.to_string();
    let Some(kept) = kept_list(store, &user_id).await? else {
        return Ok(false);
    };
    let mut list = DeviceList::read(&kept)?;
    let checked = [&update.master_key, &update.self_signing_key]
        .into_iter()
        .flatten()
        .all(|key| checked_keys(key, &update.user_id, None).is_ok());
    if checked {
        if update.master_key.is_some() {
            list.master_key.clone_from(&update.master_key);
        }
        if update.self_signing_key.is_some() {
            list.self_signing_key.clone_from(&update.self_signing_key);
        }
        if let Some(next) = list.kept(&update.user_id, kept.stream_id)
            && store
                .advance_remote_device_list(&next, kept.stream_id)
                .await?
        {
            return Ok(true);
        }
    }
    store.forget_remote_device_list(&user_id).await?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{owned_device_id, owned_user_id};
    use serde_json::json;

    fn raw<T>(value: Value) -> Raw<T> {
        Raw::from_json(serde_json::value::to_raw_value(&value).expect("raw"))
    }

    fn answer(user: &str, devices: &[(&str, &str)]) -> get_devices::v1::Response {
        let mut answer = get_devices::v1::Response::new(
            UserId::parse(user).expect("user"),
            ruma::UInt::from(7u32),
        );
        answer.devices = devices
            .iter()
            .map(|(device, keys_of)| {
                get_devices::v1::UserDevice::new(
                    (*device).into(),
                    raw(json!({"user_id": keys_of, "device_id": device, "keys": {}})),
                )
            })
            .collect();
        answer
    }

    #[test]
    fn an_answer_must_be_about_the_user_asked() {
        let alice = owned_user_id!("@alice:remote");
        let (stream_id, list) =
            DeviceList::from_answer(&alice, answer("@alice:remote", &[("A", "@alice:remote")]))
                .expect("checks out");
        assert_eq!(stream_id, 7);
        assert_eq!(list.devices.len(), 1);
        assert!(DeviceList::from_answer(&alice, answer("@bob:remote", &[])).is_err());
        assert!(
            DeviceList::from_answer(&alice, answer("@alice:remote", &[("A", "@bob:remote")]))
                .is_err(),
            "keys of another user listed as Alice's"
        );
    }

    #[test]
    fn updates_add_replace_and_delete_devices() {
        let alice = owned_user_id!("@alice:remote");
        let mut list = DeviceList::default();
        let mut update = DeviceListUpdateContent::new(
            alice.clone(),
            owned_device_id!("A"),
            ruma::UInt::from(1u32),
        );
        update.keys = Some(raw(json!({"user_id": "@alice:remote", "device_id": "A"})));
        update.device_display_name = Some("phone".to_owned());
        list.apply(&update).expect("a new device");
        let keys = list.device_keys(&[]);
        let shown: Value = keys[&owned_device_id!("A")].deserialize_as().expect("json");
        assert_eq!(shown["unsigned"]["device_display_name"], "phone");

        update.keys = Some(raw(json!({"user_id": "@alice:remote", "device_id": "B"})));
        assert!(list.apply(&update).is_err(), "keys of another device");

        update.keys = None;
        update.deleted = Some(true);
        list.apply(&update).expect("a deletion");
        assert!(list.devices.is_empty());
    }
}
