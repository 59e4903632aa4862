//! End-to-end encryption keys: `POST /keys/upload`, `/keys/query` and
//! `/keys/claim`. Other servers' users are answered from the device lists
//! kept here where one is (see `remote_devices`), else asked of their
//! servers, all at once; a server that does not answer in time is named in
//! `failures`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use myelin_bus::topics::{self, DeviceListChanged};
use myelin_federation::FederationError;
use myelin_federation::user_keys::{
    Asker, MAX_DEVICES_PER_REQUEST, claim_user_keys, devices_asked, user_keys,
};
use myelin_http::{MatrixError, RequestContext};
use myelin_room::content_text;
use myelin_store::{DeviceKeysRecord, KeyClaim, StoreError, UploadedKey};
use myelin_types::SyncToken;
use ruma::api::client::keys::{claim_keys, get_key_changes, get_keys, upload_keys};
use ruma::api::federation::keys::{
    claim_keys as federation_claim_keys, get_keys as federation_get_keys,
};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::serde::Raw;
use ruma::{OneTimeKeyAlgorithm, OwnedOneTimeKeyId, OwnedServerName, OwnedUserId, UInt};
use serde_json::{Value, json};

use crate::ClientApi;
use crate::signed_json::{MAX_KEY_BYTES, parse_object, signature, text, verifies};

/// Most keys taken by one upload: far above what a client sends, low
/// enough to bound the work.
const MAX_KEYS_PER_UPLOAD: usize = 1000;
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

/// What `failures` says of a server that could not be asked.
pub(super) fn failure(error: &FederationError) -> Value {
    json!({"status": 503, "message": error.to_string()})
}

/// How long a query or claim waits for other servers (`timeout`, 10 s by
/// default as in Synapse), at most a minute.
fn remote_wait(timeout: Option<std::time::Duration>) -> std::time::Duration {
    timeout
        .unwrap_or(std::time::Duration::from_secs(10))
        .min(std::time::Duration::from_secs(60))
}

/// Servers one query or claim asks at the same time.
const SERVERS_AT_ONCE: usize = 20;

/// Asks each server, [`SERVERS_AT_ONCE`] at a time, each at most `wait`.
async fn ask_servers<T, F, Fut>(
    servers: BTreeMap<OwnedServerName, T>,
    wait: std::time::Duration,
    ask: F,
) -> Vec<(OwnedServerName, Result<Fut::Output, FederationError>)>
where
    F: Fn(OwnedServerName, T) -> Fut,
    Fut: std::future::Future,
{
    use futures::StreamExt;
    let asks = servers.into_iter().map(|(server, asked)| {
        let answer = tokio::time::timeout(wait, ask(server.clone(), asked));
        async move {
            let answer = answer
                .await
                .map_err(|_| FederationError::Unreachable(format!("no answer within {wait:?}")));
            (server, answer)
        }
    });
    futures::stream::iter(asks)
        .buffer_unordered(SERVERS_AT_ONCE)
        .collect()
        .await
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

pub(crate) async fn query(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_keys::v3::Request,
) -> Result<get_keys::v3::Response, MatrixError> {
    let me = context.user()?.user_id.clone();
    if devices_asked(&request.device_keys) > MAX_DEVICES_PER_REQUEST {
        return Err(MatrixError::too_large("Too many users or devices asked"));
    }
    let (local, remote) = split_by_server(&api, request.device_keys);
    let mut response = get_keys::v3::Response::new();
    let keys = user_keys(api.store.as_ref(), &local, Asker::User(me.as_str())).await?;
    response.device_keys = keys.device_keys;
    response.master_keys = keys.master_keys;
    response.self_signing_keys = keys.self_signing_keys;
    response.user_signing_keys = keys.user_signing_keys;
    let wait = remote_wait(request.timeout);
    let remote =
        super::remote_devices::answer_known_users(&api, remote, wait, &mut response).await?;
    let answers = ask_servers(remote, wait, |server, asked| {
        let api = Arc::clone(&api);
        async move {
            api.federation
                .send(&server, federation_get_keys::v1::Request::new(asked))
                .await
        }
    })
    .await;
    for (server, answer) in answers {
        match answer.and_then(|answer| answer) {
            Ok(answer) => {
                // Only what the server may speak for: its own users.
                let own = |user_id: &OwnedUserId| user_id.server_name() == server;
                response
                    .device_keys
                    .extend(answer.device_keys.into_iter().filter(|(user, _)| own(user)));
                response
                    .master_keys
                    .extend(answer.master_keys.into_iter().filter(|(user, _)| own(user)));
                response.self_signing_keys.extend(
                    answer
                        .self_signing_keys
                        .into_iter()
                        .filter(|(user, _)| own(user)),
                );
            }
            Err(error) => {
                response
                    .failures
                    .insert(server.to_string(), failure(&error));
            }
        }
    }
    Ok(response)
}

/// This server's users, and the others grouped by their server.
fn split_by_server<T>(
    api: &ClientApi,
    asked: BTreeMap<OwnedUserId, T>,
) -> (
    BTreeMap<OwnedUserId, T>,
    BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>>,
) {
    let mut local = BTreeMap::new();
    let mut remote: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> = BTreeMap::new();
    for (user_id, wanted) in asked {
        if is_local(api, &user_id) {
            local.insert(user_id, wanted);
        } else {
            remote
                .entry(user_id.server_name().to_owned())
                .or_default()
                .insert(user_id, wanted);
        }
    }
    (local, remote)
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
    let (local, remote) = split_by_server(&api, request.one_time_keys);
    let mut claims = Vec::new();
    for (user_id, devices) in &local {
        for (device_id, algorithm) in devices {
            claims.push(KeyClaim {
                user_id: user_id.to_string(),
                device_id: device_id.to_string(),
                algorithm: algorithm.as_str().to_owned(),
            });
        }
    }
    let mut one_time_keys = claim_user_keys(api.store.as_ref(), &claims).await?;
    let mut failures = BTreeMap::new();
    let answers = ask_servers(remote, remote_wait(request.timeout), |server, asked| {
        let api = Arc::clone(&api);
        async move {
            api.federation
                .send(&server, federation_claim_keys::v1::Request::new(asked))
                .await
        }
    })
    .await;
    for (server, answer) in answers {
        match answer.and_then(|answer| answer) {
            Ok(answer) => one_time_keys.extend(
                answer
                    .one_time_keys
                    .into_iter()
                    .filter(|(user, _)| user.server_name() == server),
            ),
            Err(error) => {
                failures.insert(server.to_string(), failure(&error));
            }
        }
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
