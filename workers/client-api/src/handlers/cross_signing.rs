//! Cross-signing: `POST /keys/device_signing/upload` (the user's master,
//! self-signing and user-signing keys) and `POST /keys/signatures/upload`
//! (signatures of one's own devices and master key, and of other users'
//! master keys). Every key and signature is checked before it is kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_store::KeySignature;
use ruma::api::client::keys::{upload_signatures, upload_signing_keys};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::{Value, json};

use crate::ClientApi;
use crate::signed_json::{
    cross_signing_public_key, parse_object, signature, signatures_by, signed_part, text, verifies,
};

use myelin_federation::user_keys::{MASTER, SELF_SIGNING, USER_SIGNING};
/// Most keys one signatures upload may sign.
const MAX_SIGNED_KEYS: usize = 1000;

/// A cross-signing key of `usage`, checked: the caller's, for that usage,
/// with exactly one ed25519 key.
fn checked_key(
    raw: &str,
    user_id: &str,
    usage: &str,
) -> Result<(CanonicalJsonObject, String, String), MatrixError> {
    let what = format!("The {usage} key");
    let mut key = parse_object(&what, raw)?;
    key.remove("unsigned");
    if text(&key, "user_id") != Some(user_id) {
        return Err(MatrixError::invalid_param(format!(
            "{what} must be for your own user"
        )));
    }
    let Some(CanonicalJsonValue::Array(usages)) = key.get("usage") else {
        return Err(MatrixError::bad_json(format!("{what} has no usage list")));
    };
    if !usages.contains(&CanonicalJsonValue::String(usage.to_owned())) {
        return Err(MatrixError::invalid_param(format!(
            "{what} must have the usage {usage}"
        )));
    }
    let Some((key_id, public_key)) = cross_signing_public_key(&key) else {
        return Err(MatrixError::invalid_param(format!(
            "{what} must hold exactly one ed25519 key"
        )));
    };
    if key_id != format!("ed25519:{public_key}") {
        return Err(MatrixError::invalid_param(format!(
            "{what}'s key ID must name its public key"
        )));
    }
    Ok((key, key_id, public_key))
}

/// The key must carry a valid signature by the master key.
fn signed_by_master(
    key: &CanonicalJsonObject,
    user_id: &str,
    master: &(String, String),
    usage: &str,
) -> Result<(), MatrixError> {
    let (master_id, master_public) = master;
    match signature(key, user_id, master_id) {
        Some(signed) if verifies(key, master_public, signed) => Ok(()),
        _ => Err(MatrixError::invalid_param(format!(
            "The {usage} key is not signed by the master key"
        ))),
    }
}

pub(crate) async fn upload_signing_keys(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: upload_signing_keys::v3::Request,
) -> Result<upload_signing_keys::v3::Response, MatrixError> {
    let user = context.user()?;
    let me = user.user_id.as_str();
    let stored = api.store.cross_signing_keys(me).await?;
    let master = request
        .master_key
        .as_ref()
        .map(|raw| checked_key(raw.json().get(), me, MASTER))
        .transpose()?;
    let master_key = match (&master, stored.get(MASTER)) {
        (Some((_, key_id, public_key)), _) => (key_id.clone(), public_key.clone()),
        (None, Some(stored)) => parse_object("The stored master key", stored)
            .ok()
            .and_then(|key| cross_signing_public_key(&key))
            .ok_or_else(|| MatrixError::internal("The stored master key is unreadable"))?,
        (None, None) => {
            return Err(MatrixError::missing_param(
                "A master key is needed before the other keys",
            ));
        }
    };
    let mut uploads = Vec::new();
    if let Some((key, _, _)) = master {
        uploads.push((MASTER.to_owned(), key));
    }
    for (usage, raw) in [
        (SELF_SIGNING, &request.self_signing_key),
        (USER_SIGNING, &request.user_signing_key),
    ] {
        if let Some(raw) = raw {
            let (key, _, _) = checked_key(raw.json().get(), me, usage)?;
            signed_by_master(&key, me, &master_key, usage)?;
            uploads.push((usage.to_owned(), key));
        }
    }
    // A first upload needs no password, as a new account has nothing to
    // protect; replacing keys does (the same keys again do not).
    let replaces = uploads.iter().any(|(usage, key)| {
        stored.get(usage).is_some_and(|old| {
            parse_object("The stored key", old)
                .map_or(true, |old| signed_part(&old) != signed_part(key))
        })
    });
    if replaces {
        api.require_password_auth(me, request.auth.as_ref()).await?;
    }
    let keys: Vec<(String, String)> = uploads
        .into_iter()
        .map(|(usage, key)| (usage, CanonicalJsonValue::Object(key).to_string()))
        .collect();
    if !keys.is_empty() {
        api.store.set_cross_signing_keys(me, &keys).await?;
        api.device_list_changed(me).await;
    }
    Ok(upload_signing_keys::v3::Response::new())
}

/// The public key of the user's stored cross-signing key of `usage`.
async fn stored_public_key(
    api: &ClientApi,
    user_id: &str,
    usage: &str,
) -> Result<Option<(String, String)>, MatrixError> {
    Ok(api
        .store
        .cross_signing_keys(user_id)
        .await?
        .get(usage)
        .and_then(|json| parse_object("A stored key", json).ok())
        .and_then(|key| cross_signing_public_key(&key)))
}

/// Why a signed key was refused.
fn invalid(error: impl Into<String>) -> Value {
    json!({"errcode": "M_INVALID_SIGNATURE", "error": error.into()})
}

/// The signatures of the caller that a signed key carries and that check
/// out, each as it will be kept.
async fn accepted_signatures(
    api: &ClientApi,
    me: &str,
    target_user: &str,
    target_key_id: &str,
    signed: &CanonicalJsonObject,
) -> Result<Result<Vec<KeySignature>, Value>, MatrixError> {
    let keep = |signer_key_id: &str, signature: &str| KeySignature {
        target_user_id: target_user.to_owned(),
        target_key_id: target_key_id.to_owned(),
        signer_user_id: me.to_owned(),
        signer_key_id: signer_key_id.to_owned(),
        signature: signature.to_owned(),
    };
    let own_master = stored_public_key(api, me, MASTER).await?;
    // Another user's master key, signed by the caller's user-signing key.
    if target_user != me {
        let Some((_, target_public)) = stored_public_key(api, target_user, MASTER).await? else {
            return Ok(Err(invalid("That user has no master key")));
        };
        if target_key_id != target_public {
            return Ok(Err(invalid("Only a user's master key can be signed")));
        }
        let Some((signer_id, signer_public)) = stored_public_key(api, me, USER_SIGNING).await?
        else {
            return Ok(Err(invalid("You have no user-signing key")));
        };
        return Ok(match signature(signed, me, &signer_id) {
            Some(value) if verifies(signed, &signer_public, value) => {
                Ok(vec![keep(&signer_id, value)])
            }
            _ => Err(invalid("Not signed by your user-signing key")),
        });
    }
    // The caller's own master key, signed by their devices.
    if let Some((_, master_public)) = &own_master
        && target_key_id == master_public
    {
        let mut accepted = Vec::new();
        for (key_id, value) in signatures_by(signed, me) {
            let Some(device_id) = key_id.strip_prefix("ed25519:") else {
                continue;
            };
            let devices = api.store.device_keys(me, &[device_id.to_owned()]).await?;
            let device_public = devices
                .first()
                .and_then(|record| parse_object("Stored device keys", &record.key_json).ok())
                .and_then(|keys| match keys.get("keys") {
                    Some(CanonicalJsonValue::Object(map)) => match map.get(&key_id) {
                        Some(CanonicalJsonValue::String(key)) => Some(key.clone()),
                        _ => None,
                    },
                    _ => None,
                });
            if let Some(device_public) = device_public
                && verifies(signed, &device_public, &value)
            {
                accepted.push(keep(&key_id, &value));
            }
        }
        return Ok(if accepted.is_empty() {
            Err(invalid("Not signed by one of your devices"))
        } else {
            Ok(accepted)
        });
    }
    // One of the caller's devices, signed by their self-signing key; what
    // is signed must be the device's keys as they are published.
    let published = api
        .store
        .device_keys(me, &[target_key_id.to_owned()])
        .await?;
    let Some(published) = published
        .first()
        .and_then(|record| parse_object("Stored device keys", &record.key_json).ok())
    else {
        return Ok(Err(invalid("No such device or key")));
    };
    if signed_part(&published) != signed_part(signed) {
        return Ok(Err(invalid("These are not the device's published keys")));
    }
    let Some((signer_id, signer_public)) = stored_public_key(api, me, SELF_SIGNING).await? else {
        return Ok(Err(invalid("You have no self-signing key")));
    };
    Ok(match signature(signed, me, &signer_id) {
        Some(value) if verifies(signed, &signer_public, value) => Ok(vec![keep(&signer_id, value)]),
        _ => Err(invalid("Not signed by your self-signing key")),
    })
}

/// `POST /keys/signatures/upload`, answered with JSON: ruma's failure type
/// cannot be built outside ruma.
pub(crate) async fn upload_signatures(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: upload_signatures::v3::Request,
) -> Result<Value, MatrixError> {
    let user = context.user()?;
    let me = user.user_id.as_str();
    let count: usize = request
        .signed_keys
        .values()
        .map(|keys| keys.iter().count())
        .sum();
    if count > MAX_SIGNED_KEYS {
        return Err(MatrixError::too_large(format!(
            "At most {MAX_SIGNED_KEYS} keys per upload"
        )));
    }
    let mut failures: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut accepted = Vec::new();
    for (target_user, keys) in &request.signed_keys {
        for (key_id, raw) in keys.iter() {
            let outcome = match parse_object("A signed key", raw.get()) {
                Ok(signed) => {
                    accepted_signatures(&api, me, target_user.as_str(), key_id, &signed).await?
                }
                Err(error) => Err(json!({"errcode": error.errcode, "error": error.error})),
            };
            match outcome {
                Ok(signatures) => accepted.extend(signatures),
                Err(failure) => {
                    failures
                        .entry(target_user.to_string())
                        .or_default()
                        .insert(key_id.to_owned(), failure);
                }
            }
        }
    }
    if !accepted.is_empty() {
        api.store.add_key_signatures(&accepted).await?;
        let mut targets: Vec<&str> = accepted
            .iter()
            .map(|signature| signature.target_user_id.as_str())
            .collect();
        targets.dedup();
        for target in targets {
            api.device_list_changed(target).await;
        }
    }
    Ok(json!({ "failures": failures }))
}
