//! What this server says about its own users' encryption keys: device
//! keys with their display names and kept signatures, cross-signing keys,
//! and one-time key claims. The same answers go to its own clients and to
//! other servers; only the user-signing key is for its owner alone.

use std::collections::BTreeMap;

use myelin_store::{ClaimedKey, KeyClaim, KeySignature, Store, StoreError};
use ruma::encryption::{CrossSigningKey, DeviceKeys, OneTimeKey};
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId};
use serde_json::{Value, json};

/// The usages of cross-signing keys, as the store keeps them.
pub const MASTER: &str = "master";
pub const SELF_SIGNING: &str = "self_signing";
pub const USER_SIGNING: &str = "user_signing";

/// Devices one query or claim may name: far above what a client or server
/// sends, low enough to bound the work.
pub const MAX_DEVICES_PER_REQUEST: usize = 10_000;

/// How many devices a key query names; a user with none listed (all of
/// them) counts once.
pub fn devices_asked(asked: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>) -> usize {
    asked.values().map(|devices| devices.len().max(1)).sum()
}

/// The keys of the users asked about.
#[derive(Debug, Default)]
pub struct UserKeys {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<DeviceKeys>>>,
    pub master_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub self_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub user_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
}

/// One-time keys claimed, by user and device.
pub type ClaimedKeys =
    BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>>>;

/// Adds kept signatures to a key's JSON, under `signatures`.
fn merge_signatures<'a>(key: &mut Value, signatures: impl Iterator<Item = &'a KeySignature>) {
    for kept in signatures {
        if !key["signatures"].is_object() {
            key["signatures"] = json!({});
        }
        if !key["signatures"][&kept.signer_user_id].is_object() {
            key["signatures"][&kept.signer_user_id] = json!({});
        }
        key["signatures"][&kept.signer_user_id][&kept.signer_key_id] = json!(kept.signature);
    }
}

fn raw_json<T>(value: &Value) -> Result<Raw<T>, StoreError> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn stored_json(json: &str) -> Result<Value, StoreError> {
    serde_json::from_str(json).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// Who asks for keys.
#[derive(Debug, Clone, Copy)]
pub enum Asker<'a> {
    /// A user of this server: they see their own user-signing key, the
    /// signatures they made of others, and device names.
    User(&'a str),
    /// Another server: it sees device names only when `names`
    /// (`allow_device_name_lookup_over_federation`).
    Server { names: bool },
}

impl Asker<'static> {
    /// Another server, shown device names only if `config` says so.
    pub fn server(config: &myelin_config::Config) -> Self {
        Asker::Server {
            names: config.allow_device_name_lookup_over_federation,
        }
    }
}

/// The keys of `asked` (each user's listed devices, or all when none is
/// listed); every user must be of this server. Everyone sees the
/// signatures the owner made; see [`Asker`] for the rest.
pub async fn user_keys(
    store: &dyn Store,
    asked: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    asker: Asker<'_>,
) -> Result<UserKeys, StoreError> {
    let (asking_user, names_shown) = match asker {
        Asker::User(user) => (Some(user), true),
        Asker::Server { names } => (None, names),
    };
    let mut answer = UserKeys::default();
    for (user_id, device_ids) in asked {
        let user = user_id.as_str();
        let signatures: Vec<KeySignature> = store
            .key_signatures(user)
            .await?
            .into_iter()
            .filter(|kept| {
                kept.signer_user_id == user || Some(kept.signer_user_id.as_str()) == asking_user
            })
            .collect();
        let signed_for = |key_id: &str| {
            let key_id = key_id.to_owned();
            signatures
                .iter()
                .filter(move |kept| kept.target_key_id == key_id)
        };
        let wanted: Vec<String> = device_ids.iter().map(ToString::to_string).collect();
        let records = store.device_keys(user, &wanted).await?;
        let names: BTreeMap<String, Option<String>> = if records.is_empty() {
            BTreeMap::new()
        } else {
            store
                .devices(user)
                .await?
                .into_iter()
                .map(|device| (device.device_id, device.display_name))
                .collect()
        };
        let mut by_device = BTreeMap::new();
        for record in records {
            // Keys outlive nothing: a device gone takes its keys with it.
            let Some(name) = names.get(&record.device_id) else {
                continue;
            };
            let mut keys = stored_json(&record.key_json)?;
            merge_signatures(&mut keys, signed_for(&record.device_id));
            if let Some(name) = name.as_ref().filter(|_| names_shown) {
                keys["unsigned"] = json!({ "device_display_name": name });
            }
            by_device.insert(
                OwnedDeviceId::from(record.device_id.as_str()),
                raw_json(&keys)?,
            );
        }
        if !by_device.is_empty() {
            answer.device_keys.insert(user_id.clone(), by_device);
        }
        for (usage, key_json) in store.cross_signing_keys(user).await? {
            let mut key = stored_json(&key_json)?;
            let public_key = key["keys"]
                .as_object()
                .and_then(|keys| keys.values().next())
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            merge_signatures(&mut key, signed_for(&public_key));
            let kept = match usage.as_str() {
                MASTER => &mut answer.master_keys,
                SELF_SIGNING => &mut answer.self_signing_keys,
                USER_SIGNING if Some(user) == asking_user => &mut answer.user_signing_keys,
                _ => continue,
            };
            kept.insert(user_id.clone(), raw_json(&key)?);
        }
    }
    Ok(answer)
}

/// Claims one key of each asked device (a one-time key, else the fallback
/// key); devices without any are left out.
pub async fn claim_user_keys(
    store: &dyn Store,
    claims: &[KeyClaim],
) -> Result<ClaimedKeys, StoreError> {
    let mut claimed: ClaimedKeys = BTreeMap::new();
    for ClaimedKey {
        user_id,
        device_id,
        key_id,
        key_json,
    } in store.claim_keys(claims).await?
    {
        let (Ok(user_id), Ok(key_id)) = (
            OwnedUserId::try_from(user_id),
            OwnedOneTimeKeyId::try_from(key_id),
        ) else {
            continue;
        };
        let key = serde_json::value::RawValue::from_string(key_json)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        claimed
            .entry(user_id)
            .or_default()
            .entry(OwnedDeviceId::from(device_id.as_str()))
            .or_default()
            .insert(key_id, Raw::from_json(key));
    }
    Ok(claimed)
}
