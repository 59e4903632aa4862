//! Building a new PDU: fields for the room version, content hash, signature,
//! and the event ID (and, in v12, the room ID) from the reference hash.

use ruma::CanonicalJsonObject;
use ruma::room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion};
use serde_json::{Map, Value, json};

use crate::{Pdu, RoomVersion, ServerKey};

/// Matrix's limit on a whole PDU, signatures included.
const MAX_PDU_BYTES: usize = 65_536;

/// The largest depth canonical JSON can carry; a room whose graph reached
/// it (another server may claim any depth) goes on at it.
pub const MAX_DEPTH: i64 = (1 << 53) - 1;

/// The depth of an event on top of events as deep as `max_depth`.
pub fn next_depth(max_depth: i64) -> i64 {
    max_depth.saturating_add(1).min(MAX_DEPTH)
}

/// Matrix's limit on a PDU's `sender`, `room_id`, `type` and `state_key`.
pub const MAX_KEY_BYTES: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("event is larger than {MAX_PDU_BYTES} bytes")]
    TooLarge,
    /// One of the keys the spec limits on its own (names the key).
    #[error("event `{0}` is longer than {MAX_KEY_BYTES} bytes")]
    KeyTooLarge(&'static str),
    /// Content that canonical JSON cannot carry (floats, huge integers).
    #[error("event is not canonical JSON: {0}")]
    NotCanonical(String),
    #[error("cannot sign event: {0}")]
    Signing(String),
}

/// An event referenced by `prev_events` or `auth_events`. Versions 1 and 2
/// carry the referenced event's reference hash beside its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub event_id: String,
    pub reference_hash: Option<String>,
}

pub struct PduInput<'a> {
    pub version: &'a RoomVersion,
    /// `None` only for the create event of a version that derives the room ID.
    pub room_id: Option<&'a str>,
    pub sender: &'a str,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub content: Value,
    pub redacts: Option<&'a str>,
    pub prev_events: &'a [EventRef],
    pub auth_events: &'a [EventRef],
    pub depth: i64,
    pub origin_server_ts: i64,
}

#[derive(Debug, Clone)]
pub struct BuiltPdu {
    pub event_id: String,
    pub room_id: String,
    /// Canonical JSON of the signed PDU.
    pub json: String,
    pub pdu: Pdu,
}

fn references(version: &RoomVersion, refs: &[EventRef]) -> Value {
    match version.rules.events_reference_format {
        EventsReferenceFormatVersion::V1 => Value::Array(
            refs.iter()
                .map(|r| json!([r.event_id, {"sha256": r.reference_hash.clone().unwrap_or_default()}]))
                .collect(),
        ),
        _ => Value::Array(refs.iter().map(|r| Value::String(r.event_id.clone())).collect()),
    }
}

/// The ID an event of `server_name` carries in its own `event_id` field,
/// in room versions whose IDs are not reference hashes (1 and 2); `None`
/// in the others.
pub fn explicit_event_id(version: &RoomVersion, server_name: &str) -> Option<String> {
    (version.rules.event_id_format == EventIdFormatVersion::V1)
        .then(|| format!("${}:{server_name}", random_event_localpart()))
}

fn random_event_localpart() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(18)
        .map(char::from)
        .collect()
}

/// Refuses the first of the size-limited keys that is over its limit.
fn check_key_sizes(input: &PduInput<'_>) -> Result<(), BuildError> {
    let keys = [
        ("sender", Some(input.sender)),
        ("room_id", input.room_id),
        ("type", Some(input.event_type)),
        ("state_key", input.state_key),
    ];
    match keys
        .into_iter()
        .find(|(_, value)| value.is_some_and(|value| value.len() > MAX_KEY_BYTES))
    {
        Some((name, _)) => Err(BuildError::KeyTooLarge(name)),
        None => Ok(()),
    }
}

/// The fields of a new PDU, before hashes, signatures and (in versions 1
/// and 2) its event ID.
pub(crate) fn unsigned_pdu(input: PduInput<'_>) -> Result<Map<String, Value>, BuildError> {
    check_key_sizes(&input)?;
    let version = input.version;
    let mut object = Map::new();
    let mut content = input.content;
    if let Some(redacts) = input.redacts {
        // Version 11 moved `redacts` into the content.
        if version.rules.redaction.keep_room_redaction_redacts {
            if let Value::Object(fields) = &mut content {
                fields.insert("redacts".to_owned(), Value::String(redacts.to_owned()));
            }
        } else {
            object.insert("redacts".to_owned(), Value::String(redacts.to_owned()));
        }
    }
    object.insert(
        "type".to_owned(),
        Value::String(input.event_type.to_owned()),
    );
    object.insert("sender".to_owned(), Value::String(input.sender.to_owned()));
    object.insert("content".to_owned(), content);
    object.insert("origin_server_ts".to_owned(), json!(input.origin_server_ts));
    object.insert("depth".to_owned(), json!(input.depth));
    object.insert(
        "prev_events".to_owned(),
        references(version, input.prev_events),
    );
    object.insert(
        "auth_events".to_owned(),
        references(version, input.auth_events),
    );
    if let Some(room_id) = input.room_id {
        object.insert("room_id".to_owned(), Value::String(room_id.to_owned()));
    }
    if let Some(state_key) = input.state_key {
        object.insert("state_key".to_owned(), Value::String(state_key.to_owned()));
    }
    Ok(object)
}

pub fn build_pdu(key: &ServerKey, input: PduInput<'_>) -> Result<BuiltPdu, BuildError> {
    let version = input.version;
    let room_id_given = input.room_id.map(str::to_owned);
    let mut object = unsigned_pdu(input)?;
    let explicit_event_id = explicit_event_id(version, &key.server_name);
    if let Some(event_id) = &explicit_event_id {
        object.insert("event_id".to_owned(), Value::String(event_id.clone()));
    }

    let mut canonical: CanonicalJsonObject = ruma::canonical_json::try_from_json_map(object)
        .map_err(|error| BuildError::NotCanonical(error.to_string()))?;
    ruma::signatures::hash_and_sign_event(
        &key.server_name,
        key.key_pair(),
        &mut canonical,
        &version.rules.redaction,
    )
    .map_err(|error| match error {
        ruma::signatures::JsonError::PduTooLarge => BuildError::TooLarge,
        other => BuildError::Signing(other.to_string()),
    })?;
    let event_id = match explicit_event_id {
        Some(event_id) => event_id,
        None => {
            let hash = ruma::signatures::reference_hash(&canonical, &version.rules)
                .map_err(|error| BuildError::Signing(error.to_string()))?;
            format!("${hash}")
        }
    };
    let room_id = match room_id_given {
        Some(room_id) => room_id,
        None => format!("!{}", &event_id[1..]),
    };
    let json = serde_json::to_string(&canonical)
        .map_err(|error| BuildError::Signing(error.to_string()))?;
    if json.len() > MAX_PDU_BYTES {
        return Err(BuildError::TooLarge);
    }
    let as_json: Map<String, Value> =
        serde_json::from_str(&json).map_err(|error| BuildError::Signing(error.to_string()))?;
    let pdu = Pdu::from_object(&event_id, &as_json)
        .map_err(|error| BuildError::NotCanonical(error.to_string()))?;
    Ok(BuiltPdu {
        event_id,
        room_id,
        json,
        pdu,
    })
}

/// The reference hash of a stored PDU, for `prev_events` in versions 1 and 2.
pub fn reference_hash_of(version: &RoomVersion, pdu_json: &str) -> Option<String> {
    let object: CanonicalJsonObject = serde_json::from_str(pdu_json).ok()?;
    ruma::signatures::reference_hash(&object, &version.rules).ok()
}
