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

/// The state events an invited or knocking user is shown of a room.
pub const INVITE_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.encryption",
];

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
/// `transaction_id` for the device that sent it, and `redacted_because`
/// (the redaction, itself in client format) once it was redacted.
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
    if let (Some(redaction_id), Some(redaction_pdu)) =
        (&event.redacted_by, &event.redaction_pdu_json)
    {
        unsigned.insert(
            "redacted_because".to_owned(),
            redaction_client_event(redaction_id, &event.room_id, redaction_pdu, now),
        );
    }
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

/// The redaction of an event, as its `unsigned.redacted_because`.
fn redaction_client_event(event_id: &str, room_id: &str, pdu_json: &str, now: i64) -> Value {
    let mut unsigned = Map::new();
    if let Some(origin_server_ts) = serde_json::from_str::<Value>(pdu_json)
        .ok()
        .and_then(|pdu| pdu.get("origin_server_ts").and_then(Value::as_i64))
    {
        unsigned.insert("age".to_owned(), json!((now - origin_server_ts).max(0)));
    }
    client_event(event_id, room_id, pdu_json, unsigned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_store::StoredEvent;
    use myelin_types::StreamPosition;

    fn stored(redaction: Option<(&str, &str)>) -> StoredEvent {
        StoredEvent {
            position: StreamPosition(7),
            slot: StreamPosition(7),
            opens_gap: false,
            event_id: "$target".to_owned(),
            room_id: "!r:hs".to_owned(),
            sender: "@a:hs".to_owned(),
            event_type: "m.room.message".to_owned(),
            state_key: None,
            depth: 3,
            origin_server_ts: 1,
            pdu_json:
                r#"{"type":"m.room.message","content":{},"sender":"@a:hs","origin_server_ts":1}"#
                    .to_owned(),
            txn: None,
            redacted_by: redaction.map(|(id, _)| id.to_owned()),
            redaction_pdu_json: redaction.map(|(_, pdu)| pdu.to_owned()),
        }
    }

    #[test]
    fn a_redacted_event_carries_its_redaction() {
        let redaction = r#"{"type":"m.room.redaction","sender":"@b:hs","room_id":"!r:hs","origin_server_ts":5,"content":{"reason":"spam","redacts":"$target"},"redacts":"$target","depth":4,"hashes":{"sha256":"x"},"signatures":{},"prev_events":[],"auth_events":[]}"#;
        let event = stored_client_event(&stored(Some(("$redaction", redaction))), None);
        let because = &event["unsigned"]["redacted_because"];
        assert_eq!(because["event_id"], "$redaction");
        assert_eq!(because["room_id"], "!r:hs");
        assert_eq!(because["type"], "m.room.redaction");
        assert_eq!(because["sender"], "@b:hs");
        assert_eq!(because["redacts"], "$target");
        assert_eq!(because["content"]["reason"], "spam");
        assert_eq!(because["origin_server_ts"], 5);
        assert!(because["unsigned"]["age"].is_i64());
        // Client format only: no federation fields.
        for key in [
            "hashes",
            "signatures",
            "depth",
            "prev_events",
            "auth_events",
        ] {
            assert!(because.get(key).is_none(), "{key} leaked");
        }
    }

    #[test]
    fn an_intact_event_has_no_redacted_because() {
        let event = stored_client_event(&stored(None), None);
        assert!(event["unsigned"].get("redacted_because").is_none());
        assert!(event["unsigned"]["age"].is_i64());
    }
}
