//! End-to-end encryption keys: `POST /keys/upload`, `/keys/query` and
//! `/keys/claim`. Local users only for now; other servers' users are
//! answered in `failures` until federation reaches them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use myelin_bus::topics::{self, DeviceListChanged};
use myelin_http::{MatrixError, RequestContext};
use myelin_room::content_text;
use myelin_store::{ClaimedKey, DeviceKeysRecord, KeyClaim, KeySignature, StoreError, UploadedKey};
use myelin_types::SyncToken;
use ruma::api::client::keys::{claim_keys, get_key_changes, get_keys, upload_keys};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::serde::Raw;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, UInt};
use serde_json::{Value, json};

use crate::ClientApi;
use crate::handlers::cross_signing::{MASTER, SELF_SIGNING, USER_SIGNING};
use crate::signed_json::{MAX_KEY_BYTES, parse_object, signature, text, verifies};

/// Most keys taken by one upload, and devices asked for by one query or
/// claim: far above what a client sends, low enough to bound the work.
const MAX_KEYS_PER_UPLOAD: usize = 1000;
const MAX_DEVICES_PER_REQUEST: usize = 10_000;
/// Most device-list changes, and most events of the log, one
/// `/keys/changes` reads.
const MAX_CHANGES: usize = 10_000;
const MAX_EVENTS_SCANNED: usize = 10_000;
/// The algorithm every client uploads one-time keys for; counted even at 0.
const SIGNED_CURVE25519: &str = "signed_curve25519";

/// A one-time or fallback key as canonical JSON text.
fn canonical(what: &str, json: &str) -> Result<String, MatrixError> {
    if json.len() > MAX_KEY_BYTES {
        return Err(MatrixError::too_large(format!("{what} is too large")));
    }
    serde_json::from_str::<CanonicalJsonValue>(json)
        .map(|value| value.to_string())
        .map_err(|error| MatrixError::bad_json(format!("{what} is not canonical JSON: {error}")))
}

/// The device's identity keys, checked: its own user and device, and a
/// valid signature by its own ed25519 key. Kept without `unsigned`.
fn checked_device_keys(
    raw: &str,
    user_id: &str,
    device_id: &str,
) -> Result<CanonicalJsonObject, MatrixError> {
    let mut keys = parse_object("device_keys", raw)?;
    keys.remove("unsigned");
    let (Some(owner), Some(device)) = (text(&keys, "user_id"), text(&keys, "device_id")) else {
        return Err(MatrixError::bad_json(
            "device_keys.user_id and device_id must be strings",
        ));
    };
    if owner != user_id || device != device_id {
        return Err(MatrixError::invalid_param(
            "device_keys must be for your own user and device",
        ));
    }
    let key_id = format!("ed25519:{device_id}");
    let public_key = match keys.get("keys") {
        Some(CanonicalJsonValue::Object(map)) => match map.get(&key_id) {
            Some(CanonicalJsonValue::String(key)) => key.clone(),
            _ => {
                return Err(MatrixError::invalid_param(format!(
                    "device_keys.keys has no {key_id}"
                )));
            }
        },
        _ => return Err(MatrixError::bad_json("device_keys.keys must be an object")),
    };
    let Some(signature) = signature(&keys, user_id, &key_id) else {
        return Err(MatrixError::invalid_param(format!(
            "device_keys carry no signature by {key_id} of your user"
        )));
    };
    if !verifies(&keys, &public_key, signature) {
        return Err(MatrixError::invalid_param(
            "device_keys are not signed by the device's own ed25519 key",
        ));
    }
    Ok(keys)
}

/// One-time or fallback keys as the store takes them.
fn uploaded_keys(
    what: &str,
    keys: &BTreeMap<OwnedOneTimeKeyId, Raw<ruma::encryption::OneTimeKey>>,
) -> Result<Vec<UploadedKey>, MatrixError> {
    keys.iter()
        .map(|(key_id, key)| {
            Ok(UploadedKey {
                algorithm: key_id.algorithm().as_str().to_owned(),
                key_id: key_id.to_string(),
                key_json: canonical(what, key.json().get())?,
            })
        })
        .collect()
}

impl ClientApi {
    /// Rings the device-list bell: the store already holds the change, so
    /// the long-polls of everyone who shares a room with the user wake.
    pub(crate) async fn device_list_changed(&self, user_id: &str) {
        let change = DeviceListChanged {
            user_id: user_id.to_owned(),
        };
        if let Err(error) = topics::DEVICE_LISTS
            .announce(self.bus.as_ref(), &change)
            .await
        {
            tracing::warn!(%error, "cannot announce a device-list change");
        }
    }
}

fn is_local(api: &ClientApi, user_id: &ruma::UserId) -> bool {
    user_id.server_name().as_str() == api.server_name
}

/// Other servers' users cannot be reached until federation does.
fn unreachable(failures: &mut BTreeMap<String, Value>, user_id: &ruma::UserId) {
    failures.insert(
        user_id.server_name().to_string(),
        json!({"errcode": "M_UNRECOGNIZED", "error": "This server does not federate yet"}),
    );
}

pub(crate) async fn upload(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: upload_keys::v3::Request,
) -> Result<upload_keys::v3::Response, MatrixError> {
    let user = context.user()?;
    if request.one_time_keys.len() + request.fallback_keys.len() > MAX_KEYS_PER_UPLOAD {
        return Err(MatrixError::too_large(format!(
            "At most {MAX_KEYS_PER_UPLOAD} keys per upload"
        )));
    }
    let device_keys = request
        .device_keys
        .as_ref()
        .map(|raw| checked_device_keys(raw.json().get(), &user.user_id, &user.device_id))
        .transpose()?;
    let one_time = uploaded_keys("A one-time key", &request.one_time_keys)?;
    let fallback = uploaded_keys("A fallback key", &request.fallback_keys)?;
    if let Some(keys) = device_keys {
        let changed = api
            .store
            .set_device_keys(DeviceKeysRecord {
                user_id: user.user_id.clone(),
                device_id: user.device_id.clone(),
                key_json: CanonicalJsonValue::Object(keys).to_string(),
            })
            .await?;
        if changed {
            api.device_list_changed(&user.user_id).await;
        }
    }
    if !one_time.is_empty() || !fallback.is_empty() {
        match api
            .store
            .add_keys(&user.user_id, &user.device_id, &one_time, &fallback)
            .await
        {
            Err(StoreError::Conflict(message)) => return Err(MatrixError::invalid_param(message)),
            other => other?,
        }
    }
    let mut counts: BTreeMap<OneTimeKeyAlgorithm, UInt> =
        BTreeMap::from([(OneTimeKeyAlgorithm::from(SIGNED_CURVE25519), UInt::MIN)]);
    for (algorithm, count) in api
        .store
        .one_time_key_counts(&user.user_id, &user.device_id)
        .await?
    {
        counts.insert(
            OneTimeKeyAlgorithm::from(algorithm.as_str()),
            UInt::try_from(count).unwrap_or(UInt::MAX),
        );
    }
    Ok(upload_keys::v3::Response::new(counts))
}

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

fn raw_json<T>(value: &Value) -> Result<Raw<T>, MatrixError> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|error| MatrixError::internal(error.to_string()))
}

fn stored_json(json: &str) -> Result<Value, MatrixError> {
    serde_json::from_str(json).map_err(|error| MatrixError::internal(error.to_string()))
}

pub(crate) async fn query(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_keys::v3::Request,
) -> Result<get_keys::v3::Response, MatrixError> {
    let me = context.user()?.user_id.clone();
    let asked: usize = request
        .device_keys
        .values()
        .map(|devices| devices.len().max(1))
        .sum();
    if asked > MAX_DEVICES_PER_REQUEST {
        return Err(MatrixError::too_large("Too many users or devices asked"));
    }
    let mut response = get_keys::v3::Response::new();
    for (user_id, device_ids) in &request.device_keys {
        if !is_local(&api, user_id) {
            unreachable(&mut response.failures, user_id);
            continue;
        }
        let user = user_id.as_str();
        // Signatures by the key's owner, and those the asker made: a
        // user-signing signature of someone else is the signer's business.
        let signatures: Vec<KeySignature> = api
            .store
            .key_signatures(user)
            .await?
            .into_iter()
            .filter(|kept| kept.signer_user_id == user || kept.signer_user_id == me)
            .collect();
        let signed_for = |key_id: &str| {
            let key_id = key_id.to_owned();
            signatures
                .iter()
                .filter(move |kept| kept.target_key_id == key_id)
        };
        let wanted: Vec<String> = device_ids.iter().map(ToString::to_string).collect();
        let records = api.store.device_keys(user, &wanted).await?;
        let names: BTreeMap<String, Option<String>> = if records.is_empty() {
            BTreeMap::new()
        } else {
            api.store
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
            if let Some(name) = name {
                keys["unsigned"] = json!({ "device_display_name": name });
            }
            by_device.insert(
                OwnedDeviceId::from(record.device_id.as_str()),
                raw_json(&keys)?,
            );
        }
        if !by_device.is_empty() {
            response.device_keys.insert(user_id.clone(), by_device);
        }
        for (usage, key_json) in api.store.cross_signing_keys(user).await? {
            let mut key = stored_json(&key_json)?;
            let public_key = key["keys"]
                .as_object()
                .and_then(|keys| keys.values().next())
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            merge_signatures(&mut key, signed_for(&public_key));
            match usage.as_str() {
                MASTER => {
                    response
                        .master_keys
                        .insert(user_id.clone(), raw_json(&key)?);
                }
                SELF_SIGNING => {
                    response
                        .self_signing_keys
                        .insert(user_id.clone(), raw_json(&key)?);
                }
                USER_SIGNING if user == me => {
                    response
                        .user_signing_keys
                        .insert(user_id.clone(), raw_json(&key)?);
                }
                _ => {}
            }
        }
    }
    Ok(response)
}

pub(crate) async fn claim(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: claim_keys::v3::Request,
) -> Result<claim_keys::v3::Response, MatrixError> {
    context.user()?;
    let asked: usize = request.one_time_keys.values().map(BTreeMap::len).sum();
    if asked > MAX_DEVICES_PER_REQUEST {
        return Err(MatrixError::too_large("Too many devices asked"));
    }
    let mut failures = BTreeMap::new();
    let mut claims = Vec::new();
    for (user_id, devices) in &request.one_time_keys {
        if !is_local(&api, user_id) {
            unreachable(&mut failures, user_id);
            continue;
        }
        for (device_id, algorithm) in devices {
            claims.push(KeyClaim {
                user_id: user_id.to_string(),
                device_id: device_id.to_string(),
                algorithm: algorithm.as_str().to_owned(),
            });
        }
    }
    let mut one_time_keys: BTreeMap<_, claim_keys::v3::OneTimeKeys> = BTreeMap::new();
    for ClaimedKey {
        user_id,
        device_id,
        key_id,
        key_json,
    } in api.store.claim_keys(&claims).await?
    {
        let (Ok(user_id), Ok(key_id)) = (
            ruma::OwnedUserId::try_from(user_id),
            OwnedOneTimeKeyId::try_from(key_id),
        ) else {
            continue;
        };
        let key = serde_json::value::RawValue::from_string(key_json)
            .map_err(|error| MatrixError::internal(error.to_string()))?;
        one_time_keys
            .entry(user_id)
            .or_default()
            .entry(OwnedDeviceId::from(device_id.as_str()))
            .or_default()
            .insert(key_id, Raw::from_json(key));
    }
    let mut response = claim_keys::v3::Response::new(one_time_keys);
    response.failures = failures;
    Ok(response)
}

/// `GET /keys/changes`: between two sync tokens, the users who share a
/// room with the caller whose devices changed or who came to share one
/// (`changed`), and those who share none any more (`left`).
pub(crate) async fn changes(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_key_changes::v3::Request,
) -> Result<get_key_changes::v3::Response, MatrixError> {
    let user = context.user()?;
    let token = |text: &str| {
        text.parse::<SyncToken>()
            .map_err(|_| MatrixError::invalid_param(format!("Invalid token {text:?}")))
    };
    let (from, to) = (token(&request.from)?, token(&request.to)?);
    let me = user.user_id.as_str();
    let mut my_rooms = HashSet::new();
    let mut sharing: HashSet<String> = HashSet::from([me.to_owned()]);
    for membership in api.store.memberships_of_user(me).await? {
        if membership.membership == "join" {
            for member in api.store.room_memberships(&membership.room_id).await? {
                if member.membership == "join" || member.membership == "invite" {
                    sharing.insert(member.user_id);
                }
            }
            my_rooms.insert(membership.room_id);
        }
    }
    let mut changed = BTreeSet::new();
    let mut left = BTreeSet::new();
    if from.device_lists < to.device_lists {
        for changed_user in api
            .store
            .device_list_changes(from.device_lists, to.device_lists, MAX_CHANGES)
            .await?
        {
            if sharing.contains(&changed_user) {
                changed.insert(changed_user);
            }
        }
    }
    // Memberships that changed in between, in the caller's rooms then or now.
    if from.events < to.events {
        for event in api
            .store
            .events_after(from.events, to.events, MAX_EVENTS_SCANNED)
            .await?
        {
            let (Some(member), Some(membership)) = (
                event
                    .state_key
                    .as_deref()
                    .filter(|_| event.event_type == "m.room.member"),
                content_text(&event.pdu_json, "membership"),
            ) else {
                continue;
            };
            let gone = membership == "leave" || membership == "ban";
            if member == me && gone {
                // A room the caller left: its members, unless still shared.
                for other in api.store.room_memberships(&event.room_id).await? {
                    if other.membership == "join" && !sharing.contains(&other.user_id) {
                        left.insert(other.user_id);
                    }
                }
            } else if !my_rooms.contains(&event.room_id) {
                continue;
            } else if member == me && membership == "join" {
                changed.extend(sharing.iter().filter(|other| *other != me).cloned());
            } else if membership == "join" {
                changed.insert(member.to_owned());
            } else if gone && !sharing.contains(member) {
                left.insert(member.to_owned());
            }
        }
    }
    let to_ids = |users: BTreeSet<String>| -> Vec<ruma::OwnedUserId> {
        users
            .into_iter()
            .filter_map(|user| ruma::OwnedUserId::try_from(user).ok())
            .collect()
    };
    Ok(get_key_changes::v3::Response::new(
        to_ids(changed),
        to_ids(left),
    ))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use ruma::serde::Base64;
    use ruma::signatures::to_canonical_json_string_for_signing;

    use super::*;

    fn signed_keys(key: &SigningKey, user: &str, device: &str) -> Value {
        let public =
            Base64::<ruma::serde::base64::Standard>::new(key.verifying_key().to_bytes().to_vec());
        let mut keys = json!({
            "user_id": user,
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{device}"): "Y3VydmU",
                format!("ed25519:{device}"): public.encode(),
            },
        });
        let object: CanonicalJsonObject = serde_json::from_value(keys.clone()).unwrap();
        let signed = to_canonical_json_string_for_signing(&object).unwrap();
        let signature = Base64::<ruma::serde::base64::Standard>::new(
            key.sign(signed.as_bytes()).to_bytes().to_vec(),
        );
        keys["signatures"] = json!({ user: { format!("ed25519:{device}"): signature.encode() } });
        keys
    }

    #[test]
    fn device_keys_must_be_the_callers_and_self_signed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut good = signed_keys(&key, "@a:hs", "DEV");
        good["unsigned"] = json!({"device_display_name": "laptop"});
        let kept = checked_device_keys(&good.to_string(), "@a:hs", "DEV").expect("good keys");
        assert!(!kept.contains_key("unsigned"), "unsigned is not kept");

        let refused = |json: &Value, user: &str, device: &str| {
            checked_device_keys(&json.to_string(), user, device)
                .expect_err("refused")
                .errcode
        };
        assert_eq!(refused(&good, "@b:hs", "DEV"), "M_INVALID_PARAM");
        assert_eq!(refused(&good, "@a:hs", "OTHER"), "M_INVALID_PARAM");
        let mut tampered = good.clone();
        tampered["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
        assert_eq!(refused(&tampered, "@a:hs", "DEV"), "M_INVALID_PARAM");
        let other_key = SigningKey::from_bytes(&[8; 32]);
        let mut forged = signed_keys(&other_key, "@a:hs", "DEV");
        forged["keys"] = good["keys"].clone();
        assert_eq!(refused(&forged, "@a:hs", "DEV"), "M_INVALID_PARAM");
        let mut unsigned = good.clone();
        unsigned.as_object_mut().unwrap().remove("signatures");
        assert_eq!(refused(&unsigned, "@a:hs", "DEV"), "M_INVALID_PARAM");
        assert_eq!(refused(&json!([1]), "@a:hs", "DEV"), "M_BAD_JSON");
        assert_eq!(
            refused(&json!({"user_id": 1}), "@a:hs", "DEV"),
            "M_BAD_JSON"
        );
        let float = json!({"user_id": "@a:hs", "x": 1.5});
        assert_eq!(refused(&float, "@a:hs", "DEV"), "M_BAD_JSON");
    }
}
