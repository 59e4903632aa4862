//! Key documents (`/_matrix/key/v2/server`): ours, signed, and other
//! servers', checked before any key in them is trusted.

use std::collections::BTreeMap;

use myelin_config::Config;
use myelin_room::ServerKey;
use myelin_store::{ServerKeyDocument, ServerVerifyKey};
use ruma::serde::Base64;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::{Value, json};

/// However long a document says it is valid, keys are trusted at most this
/// far past the time it was fetched (the spec's cap for room versions 5+).
pub const MAX_KEY_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The most keys, current and old, a document may list.
const MAX_KEYS_PER_DOCUMENT: usize = 32;

/// This server's key document, valid for `key_refresh_interval`, signed.
pub fn own_key_document(key: &ServerKey, config: &Config, now: i64) -> Value {
    let old_verify_keys: serde_json::Map<String, Value> = config
        .old_signing_keys
        .iter()
        .map(|(id, old)| {
            (
                id.clone(),
                json!({"key": old.key, "expired_ts": old.expired_ts}),
            )
        })
        .collect();
    let valid_until_ts = now.saturating_add(config.key_refresh_interval_ms() as i64);
    let document = json!({
        "server_name": key.server_name,
        "valid_until_ts": valid_until_ts,
        "verify_keys": {key.key_id.clone(): {"key": key.public_key}},
        "old_verify_keys": old_verify_keys,
    });
    sign(key, document)
}

/// Adds this server's signature to a JSON object (a notary countersigns
/// the documents it passes on).
pub fn sign(key: &ServerKey, document: Value) -> Value {
    let Ok(mut object) = serde_json::from_value::<CanonicalJsonObject>(document.clone()) else {
        return document;
    };
    match key.sign_json(&mut object) {
        Ok(()) => serde_json::to_value(object).unwrap_or(document),
        Err(error) => {
            tracing::error!(%error, "cannot sign a key document");
            document
        }
    }
}

/// Whether `object` carries a good signature of `entity` by one of `keys`
/// (`ed25519:<id>` to unpadded base64). Other entities' signatures are
/// left out of the check, not required.
pub fn signed_by(
    object: &CanonicalJsonObject,
    entity: &str,
    keys: &BTreeMap<String, String>,
) -> bool {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return false;
    };
    let Some(CanonicalJsonValue::Object(own)) = signatures.get(entity) else {
        return false;
    };
    let key_set: BTreeMap<String, Base64> = keys
        .iter()
        .filter_map(|(id, key)| Some((id.clone(), Base64::parse(key).ok()?)))
        .collect();
    // At least one signature must be by a key we hold.
    if !own.keys().any(|id| key_set.contains_key(id)) {
        return false;
    }
    let mut only_entity = object.clone();
    only_entity.insert(
        "signatures".to_owned(),
        CanonicalJsonValue::Object(CanonicalJsonObject::from([(
            entity.to_owned(),
            CanonicalJsonValue::Object(own.clone()),
        )])),
    );
    let map = BTreeMap::from([(entity.to_owned(), key_set)]);
    ruma::signatures::verify_json(&map, &only_entity).is_ok()
}

/// Why another server's key document was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadKeyDocument(pub String);

impl std::fmt::Display for BadKeyDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a key document fetched for `server_name`: it names that server,
/// lists at most a few keys, carries a good signature by a current key it
/// lists (and no bad one by any), and is still valid. Validity is capped at
/// [`MAX_KEY_VALIDITY_MS`] past `now`; an old key is valid until it expired
/// and never past `now`.
pub fn check_key_document(
    server_name: &str,
    document: &Value,
    now: i64,
) -> Result<ServerKeyDocument, BadKeyDocument> {
    let bad = |why: &str| BadKeyDocument(format!("key document of {server_name}: {why}"));
    let object: CanonicalJsonObject =
        serde_json::from_value(document.clone()).map_err(|_| bad("not canonical JSON"))?;
    if document.get("server_name").and_then(Value::as_str) != Some(server_name) {
        return Err(bad("names another server"));
    }
    let valid_until_ts = document
        .get("valid_until_ts")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("no valid_until_ts"))?;
    if valid_until_ts <= now {
        return Err(bad("expired"));
    }
    let valid_until_ts = valid_until_ts.min(now.saturating_add(MAX_KEY_VALIDITY_MS));
    let current = keys_in(document.get("verify_keys"));
    if current.is_empty() {
        return Err(bad("no verify_keys"));
    }
    let listed = current.len()
        + document
            .get("old_verify_keys")
            .and_then(Value::as_object)
            .map_or(0, serde_json::Map::len);
    if listed > MAX_KEYS_PER_DOCUMENT {
        return Err(bad("lists too many keys"));
    }
    if !signed_by(&object, server_name, &current) {
        return Err(bad("not signed by a key it lists"));
    }
    let mut keys: Vec<ServerVerifyKey> = current
        .into_iter()
        .map(|(key_id, public_key)| ServerVerifyKey {
            key_id,
            public_key,
            valid_until_ts,
            expired_ts: None,
        })
        .collect();
    if let Some(Value::Object(old)) = document.get("old_verify_keys") {
        for (key_id, entry) in old {
            let (Some(public_key), Some(expired_ts)) = (
                entry.get("key").and_then(Value::as_str),
                entry.get("expired_ts").and_then(Value::as_i64),
            ) else {
                continue;
            };
            if keys.iter().any(|key| &key.key_id == key_id) {
                continue;
            }
            keys.push(ServerVerifyKey {
                key_id: key_id.clone(),
                public_key: public_key.to_owned(),
                valid_until_ts: expired_ts.min(now),
                expired_ts: Some(expired_ts),
            });
        }
    }
    Ok(ServerKeyDocument {
        server_name: server_name.to_owned(),
        document: document.to_string(),
        valid_until_ts,
        fetched_ts: now,
        keys,
    })
}

/// `{"ed25519:x": {"key": "..."}}` as key ID to key.
fn keys_in(section: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(section)) = section else {
        return BTreeMap::new();
    };
    section
        .iter()
        .filter(|(key_id, _)| key_id.starts_with("ed25519:"))
        .filter_map(|(key_id, entry)| {
            Some((key_id.clone(), entry.get("key")?.as_str()?.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_config::SigningKeyFile;

    fn key(server_name: &str, seed: u8, version: &str) -> ServerKey {
        let file = SigningKeyFile {
            version: version.to_owned(),
            seed: [seed; 32],
        };
        ServerKey::from_file(server_name, &file).expect("key")
    }

    fn config() -> Config {
        serde_yaml::from_str(
            "server_name: a.test\nkey_refresh_interval: 1h\nold_signing_keys:\n  \
             ed25519:old:\n    key: l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ\n    expired_ts: 100\n",
        )
        .expect("config")
    }

    #[test]
    fn our_document_is_signed_and_checks_as_a_remote_one() {
        let key = key("a.test", 7, "v1");
        let document = own_key_document(&key, &config(), 1_000);
        assert_eq!(document["valid_until_ts"], 1_000 + 3_600_000);
        assert_eq!(document["verify_keys"]["ed25519:v1"]["key"], key.public_key);
        assert_eq!(
            document["old_verify_keys"]["ed25519:old"]["expired_ts"],
            100
        );

        let checked = check_key_document("a.test", &document, 2_000).expect("valid");
        assert_eq!(checked.valid_until_ts, 1_000 + 3_600_000);
        assert_eq!(checked.keys.len(), 2);
        assert_eq!(checked.keys[0].public_key, key.public_key);
        assert_eq!(checked.keys[1].expired_ts, Some(100));
    }

    #[test]
    fn forged_stale_or_misnamed_documents_are_refused() {
        let key = key("a.test", 7, "v1");
        let document = own_key_document(&key, &config(), 1_000);
        assert!(check_key_document("b.test", &document, 2_000).is_err());
        assert!(check_key_document("a.test", &document, 1_000 + 3_600_000).is_err());

        let mut tampered = document.clone();
        tampered["valid_until_ts"] = json!(9_999_999_999_i64);
        assert!(check_key_document("a.test", &tampered, 2_000).is_err());

        // Signed by a key the document does not list.
        let impostor = key_with_listed_key_of_another();
        assert!(check_key_document("a.test", &impostor, 2_000).is_err());
    }

    fn key_with_listed_key_of_another() -> Value {
        let real = key("a.test", 7, "v1");
        let forger = key("a.test", 8, "v1");
        let document = json!({
            "server_name": "a.test",
            "valid_until_ts": 10_000_000,
            "verify_keys": {"ed25519:v1": {"key": real.public_key}},
        });
        sign(&forger, document)
    }

    #[test]
    fn documents_listing_many_keys_are_refused() {
        let key = key("a.test", 7, "v1");
        let old: serde_json::Map<String, Value> = (0..40)
            .map(|n| {
                (
                    format!("ed25519:old{n}"),
                    json!({"key": key.public_key, "expired_ts": 1}),
                )
            })
            .collect();
        let document = sign(
            &key,
            json!({
                "server_name": "a.test",
                "valid_until_ts": 10_000_000,
                "verify_keys": {key.key_id.clone(): {"key": key.public_key}},
                "old_verify_keys": old,
            }),
        );
        assert!(check_key_document("a.test", &document, 2_000).is_err());
    }

    #[test]
    fn validity_is_capped_at_a_week() {
        let key = key("a.test", 7, "v1");
        let long: Config =
            serde_yaml::from_str("server_name: a.test\nkey_refresh_interval: 30d\n").expect("yaml");
        let document = own_key_document(&key, &long, 0);
        let checked = check_key_document("a.test", &document, 0).expect("valid");
        assert_eq!(checked.valid_until_ts, MAX_KEY_VALIDITY_MS);
    }

    #[test]
    fn signatures_are_checked_per_entity() {
        let a = key("a.test", 7, "v1");
        let notary = key("n.test", 9, "n1");
        let document = own_key_document(&a, &config(), 1_000);
        let countersigned = sign(&notary, document);
        let object: CanonicalJsonObject = serde_json::from_value(countersigned).expect("object");
        let keys_of = |k: &ServerKey| BTreeMap::from([(k.key_id.clone(), k.public_key.clone())]);
        assert!(signed_by(&object, "a.test", &keys_of(&a)));
        assert!(signed_by(&object, "n.test", &keys_of(&notary)));
        assert!(!signed_by(&object, "n.test", &keys_of(&a)));
        assert!(!signed_by(&object, "x.test", &keys_of(&a)));
    }
}
