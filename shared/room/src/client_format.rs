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

/// A stored event as `viewer` (user ID and device ID) sees it: with `age`,
/// and `transaction_id` for the device that sent it.
pub fn stored_client_event(
    event: &myelin_store::StoredEvent,
    viewer: Option<(&str, &str)>,
) -> Value {
    let mut unsigned = Map::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(event.origin_server_ts);
    unsigned.insert(
        "age".to_owned(),
        json!((now - event.origin_server_ts).max(0)),
    );
    if let (Some(txn), Some((user_id, device_id))) = (&event.txn, viewer)
        && txn.user_id == user_id
        && txn.device_id == device_id
    {
        unsigned.insert(
            "transaction_id".to_owned(),
            Value::String(txn.txn_id.clone()),
        );
    }
    client_event(&event.event_id, &event.room_id, &event.pdu_json, unsigned)
}
