//! The checks every PDU from another server passes before its room's writer
//! sees it, in the spec's order up to the authorization rules: well-formed
//! for its room version, signed by the servers that must sign it, and its
//! content hash; an event whose content does not match its hash is kept
//! redacted, as the spec asks.

use std::collections::BTreeMap;

use myelin_room::{Pdu, RoomVersion};
use ruma::serde::Base64;
use ruma::signatures::Verified;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, ServerName};
use serde_json::value::RawValue;

use crate::KeyRing;

/// Matrix's limit on a whole PDU.
pub const MAX_PDU_BYTES: usize = 65_536;
/// The most auth events one PDU may cite, as Synapse allows; the most
/// `prev_events` is the room crate's, which the sending side keeps to.
const MAX_AUTH_EVENTS: usize = 10;

/// A PDU that passed the checks.
#[derive(Debug, Clone)]
pub struct CheckedPdu {
    pub event_id: String,
    pub room_id: String,
    /// Canonical JSON, `unsigned` removed, redacted when its hash failed.
    pub json: String,
    pub pdu: Pdu,
    /// The content did not match the hash; `json` holds the redacted event.
    pub redacted: bool,
}

/// Why a PDU was refused, for the answer to its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PduRejected(pub String);

impl std::fmt::Display for PduRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn rejected(why: impl Into<String>) -> PduRejected {
    PduRejected(why.into())
}

/// The event ID a PDU has in its room version: its own field in versions 1
/// and 2, its reference hash after.
pub fn event_id_of(
    version: &RoomVersion,
    object: &CanonicalJsonObject,
) -> Result<String, PduRejected> {
    if version.rules.event_id_format == ruma::room_version_rules::EventIdFormatVersion::V1 {
        return match object.get("event_id") {
            Some(CanonicalJsonValue::String(event_id)) => Ok(event_id.clone()),
            _ => Err(rejected("the event has no `event_id`")),
        };
    }
    let hash = ruma::signatures::reference_hash(object, &version.rules)
        .map_err(|error| rejected(format!("cannot hash the event: {error}")))?;
    Ok(format!("${hash}"))
}

/// Reads a PDU of a room of `version`: at most [`MAX_PDU_BYTES`], canonical
/// JSON, `unsigned` dropped.
pub fn parse_pdu(raw: &RawValue) -> Result<CanonicalJsonObject, PduRejected> {
    if raw.get().len() > MAX_PDU_BYTES {
        return Err(rejected(format!(
            "the event is larger than {MAX_PDU_BYTES} bytes"
        )));
    }
    let mut object: CanonicalJsonObject = serde_json::from_str(raw.get())
        .map_err(|error| rejected(format!("the event is not canonical JSON: {error}")))?;
    object.remove("unsigned");
    Ok(object)
}

/// Checks signatures and the content hash of a parsed PDU with the signing
/// keys of the servers that must have signed it.
pub async fn check_pdu(
    keys: &KeyRing,
    version: &RoomVersion,
    object: CanonicalJsonObject,
) -> Result<CheckedPdu, PduRejected> {
    let event_id = event_id_of(version, &object)?;
    for (key, most) in [
        ("prev_events", myelin_room::MAX_PREV_EVENTS),
        ("auth_events", MAX_AUTH_EVENTS),
    ] {
        if let Some(CanonicalJsonValue::Array(cited)) = object.get(key)
            && cited.len() > most
        {
            return Err(rejected(format!("the event cites more than {most} {key}")));
        }
    }
    let servers = ruma::signatures::required_server_signatures_to_verify_event(
        &object,
        &version.rules.signatures,
    )
    .map_err(|error| rejected(format!("cannot tell who signed the event: {error}")))?;
    let at = match object.get("origin_server_ts") {
        Some(CanonicalJsonValue::Integer(ts)) => i64::from(*ts),
        _ => return Err(rejected("the event has no `origin_server_ts`")),
    };
    let mut public_keys = BTreeMap::new();
    for server in &servers {
        public_keys.insert(server.to_string(), keys_of(keys, server, at).await?);
    }
    let verified = ruma::signatures::verify_event(&public_keys, &object, &version.rules)
        .map_err(|error| rejected(format!("bad signature: {error}")))?;
    let json = serde_json::to_string(&object)
        .map_err(|error| rejected(format!("cannot serialise the event: {error}")))?;
    let (json, redacted) = match verified {
        Verified::All => (json, false),
        Verified::Signatures => (
            myelin_room::prune_pdu(version, &json).map_err(rejected)?,
            true,
        ),
    };
    let pdu = Pdu::from_json(&event_id, &json).map_err(|error| rejected(error.to_string()))?;
    let room_id = match &pdu.room_id {
        Some(room_id) => room_id.to_string(),
        // From version 12 the create event's ID names its room.
        None if version.room_id_from_create_event()
            && pdu.event_type.to_string() == "m.room.create" =>
        {
            format!("!{}", &event_id[1..])
        }
        None => return Err(rejected("the event names no room")),
    };
    Ok(CheckedPdu {
        event_id,
        room_id,
        json,
        pdu,
        redacted,
    })
}

async fn keys_of(
    keys: &KeyRing,
    server: &ServerName,
    at: i64,
) -> Result<BTreeMap<String, Base64>, PduRejected> {
    let found = keys
        .verify_keys(server, None, at)
        .await
        .map_err(|why| rejected(format!("no signing key of {server}: {why}")))?;
    found
        .into_iter()
        .map(|(key_id, key)| {
            Base64::parse(&key)
                .map(|key| (key_id, key))
                .map_err(|error| rejected(format!("a key of {server} is not base64: {error}")))
        })
        .collect()
}
