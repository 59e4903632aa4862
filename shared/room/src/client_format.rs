//! PDUs as clients see them (the "client event" format).

use serde_json::{Map, Value, json};

/// Keys of a PDU that the client format keeps.
const CLIENT_KEYS: &[&str] = &[
    "content",
    "origin_server_ts",
    "sender",
    "state_key",
    "type",
    "redacts",
];

/// A client event from a stored PDU; `unsigned` is merged in as given.
pub fn client_event(
    event_id: &str,
    room_id: &str,
    pdu_json: &str,
    unsigned: Map<String, Value>,
) -> Value {
    let pdu: Map<String, Value> = serde_json::from_str(pdu_json).unwrap_or_default();
    let mut event = Map::new();
    for key in CLIENT_KEYS {
        if let Some(value) = pdu.get(*key) {
            event.insert((*key).to_owned(), value.clone());
        }
    }
    // Version 11 keeps `redacts` in the content; clients still look at the top level.
    if !event.contains_key("redacts")
        && pdu.get("type").and_then(Value::as_str) == Some("m.room.redaction")
        && let Some(redacts) = pdu
            .get("content")
            .and_then(|content| content.get("redacts"))
    {
        event.insert("redacts".to_owned(), redacts.clone());
    }
    event.entry("content").or_insert_with(|| json!({}));
    event.insert("event_id".to_owned(), Value::String(event_id.to_owned()));
    event.insert("room_id".to_owned(), Value::String(room_id.to_owned()));
    if !unsigned.is_empty() {
        event.insert("unsigned".to_owned(), Value::Object(unsigned));
    }
    Value::Object(event)
}

/// The stripped state shown with invites: type, state key, sender, content.
pub fn stripped_state_event(pdu_json: &str) -> Value {
    let pdu: Map<String, Value> = serde_json::from_str(pdu_json).unwrap_or_default();
    let mut event = Map::new();
    for key in ["type", "state_key", "sender", "content"] {
        if let Some(value) = pdu.get(key) {
            event.insert(key.to_owned(), value.clone());
        }
    }
    Value::Object(event)
}
