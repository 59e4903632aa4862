//! Signed JSON as end-to-end encryption uses it: canonical objects, their
//! ed25519 signatures, and the public key a cross-signing key carries.

use myelin_http::MatrixError;
use ruma::SigningKeyAlgorithm;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::serde::Base64;
use ruma::serde::base64::Standard;
use ruma::signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes};

/// Most bytes of one key object a client sends.
pub(crate) const MAX_KEY_BYTES: usize = 16 * 1024;

/// The JSON as a canonical object, or a clear error naming `what`.
pub(crate) fn parse_object(what: &str, json: &str) -> Result<CanonicalJsonObject, MatrixError> {
    if json.len() > MAX_KEY_BYTES {
        return Err(MatrixError::too_large(format!("{what} is too large")));
    }
    match serde_json::from_str(json) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err(MatrixError::bad_json(format!("{what} must be an object"))),
        Err(error) => Err(MatrixError::bad_json(format!(
            "{what} is not canonical JSON: {error}"
        ))),
    }
}

/// A string field of the object.
pub(crate) fn text<'a>(object: &'a CanonicalJsonObject, field: &str) -> Option<&'a str> {
    match object.get(field) {
        Some(CanonicalJsonValue::String(value)) => Some(value),
        _ => None,
    }
}

/// The signature of `user_id`'s key `key_id` on the object, if any.
pub(crate) fn signature<'a>(
    object: &'a CanonicalJsonObject,
    user_id: &str,
    key_id: &str,
) -> Option<&'a str> {
    let Some(CanonicalJsonValue::Object(by_user)) = object.get("signatures") else {
        return None;
    };
    let Some(CanonicalJsonValue::Object(by_key)) = by_user.get(user_id) else {
        return None;
    };
    match by_key.get(key_id) {
        Some(CanonicalJsonValue::String(signature)) => Some(signature),
        _ => None,
    }
}

/// Every `(key ID, signature)` of `user_id` on the object.
pub(crate) fn signatures_by(object: &CanonicalJsonObject, user_id: &str) -> Vec<(String, String)> {
    let Some(CanonicalJsonValue::Object(by_user)) = object.get("signatures") else {
        return Vec::new();
    };
    let Some(CanonicalJsonValue::Object(by_key)) = by_user.get(user_id) else {
        return Vec::new();
    };
    by_key
        .iter()
        .filter_map(|(key_id, value)| match value {
            CanonicalJsonValue::String(signature) => Some((key_id.clone(), signature.clone())),
            _ => None,
        })
        .collect()
}

/// Whether `signature` (unpadded base64) is the ed25519 signature of the
/// object's signing form by `public_key` (unpadded base64).
pub(crate) fn verifies(object: &CanonicalJsonObject, public_key: &str, signature: &str) -> bool {
    let decode = |value: &str| Base64::<Standard>::parse(value).map(Base64::into_inner);
    let (Ok(key), Ok(signature), Ok(signed)) = (
        decode(public_key),
        decode(signature),
        to_canonical_json_string_for_signing(object),
    ) else {
        return false;
    };
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        &key,
        &signature,
        signed.as_bytes(),
    )
    .is_ok()
}

/// The one ed25519 key of a cross-signing key object: `(key ID, public
/// key)`, the key ID being `ed25519:` and the public key.
pub(crate) fn cross_signing_public_key(object: &CanonicalJsonObject) -> Option<(String, String)> {
    let Some(CanonicalJsonValue::Object(keys)) = object.get("keys") else {
        return None;
    };
    let mut ed25519 = keys.iter().filter(|(id, _)| id.starts_with("ed25519:"));
    let (key_id, CanonicalJsonValue::String(public_key)) = ed25519.next()? else {
        return None;
    };
    if ed25519.next().is_some() || keys.len() != 1 {
        return None;
    }
    Some((key_id.clone(), public_key.clone()))
}

/// The object without what signatures do not cover, for comparing two
/// uploads of the same key.
pub(crate) fn signed_part(object: &CanonicalJsonObject) -> String {
    let mut object = object.clone();
    object.remove("signatures");
    object.remove("unsigned");
    CanonicalJsonValue::Object(object).to_string()
}
