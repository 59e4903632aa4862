//! A persisted PDU as the authorization rules see it.

use ruma::events::TimelineEventType;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
};
use serde_json::Value;
use serde_json::value::RawValue as RawJsonValue;

#[derive(Debug, thiserror::Error)]
#[error("malformed PDU: {0}")]
pub struct PduParseError(pub String);

#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub event_type: TimelineEventType,
    pub content: Box<RawJsonValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: i64,
    /// Set in versions 1 and 2, where references carry the hash.
    pub reference_hash: Option<String>,
}

/// `content.<name>` of a stored PDU when it is a string; `None` when the
/// JSON, the content or the field is missing or of another kind.
pub fn content_text(pdu_json: &str, name: &str) -> Option<String> {
    let pdu: Value = serde_json::from_str(pdu_json).ok()?;
    pdu.get("content")?.get(name)?.as_str().map(str::to_owned)
}

fn field<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<&'a Value, PduParseError> {
    object
        .get(key)
        .ok_or_else(|| PduParseError(format!("missing `{key}`")))
}

fn text<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<&'a str, PduParseError> {
    field(object, key)?
        .as_str()
        .ok_or_else(|| PduParseError(format!("`{key}` is not a string")))
}

/// `prev_events`/`auth_events`: IDs (v3+) or `[id, hashes]` pairs (v1, v2).
fn references(
    object: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Vec<OwnedEventId>, PduParseError> {
    let Some(list) = object.get(key) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| PduParseError(format!("`{key}` is not a list")))?;
    list.iter()
        .map(|item| {
            let id = match item {
                Value::String(id) => id.as_str(),
                Value::Array(pair) => pair.first().and_then(Value::as_str).unwrap_or_default(),
                _ => "",
            };
            OwnedEventId::try_from(id).map_err(|error| PduParseError(format!("`{key}`: {error}")))
        })
        .collect()
}

impl Pdu {
    /// Reads a PDU; `event_id` is passed in because versions 3+ do not carry it.
    pub fn from_json(event_id: &str, json: &str) -> Result<Pdu, PduParseError> {
        let value: Value =
            serde_json::from_str(json).map_err(|error| PduParseError(error.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| PduParseError("not an object".to_owned()))?;
        Pdu::from_object(event_id, object)
    }

    pub fn from_object(
        event_id: &str,
        object: &serde_json::Map<String, Value>,
    ) -> Result<Pdu, PduParseError> {
        let bad = |error: ruma::IdParseError| PduParseError(error.to_string());
        let content = serde_json::value::to_raw_value(field(object, "content")?)
            .map_err(|error| PduParseError(error.to_string()))?;
        let ts = field(object, "origin_server_ts")?
            .as_u64()
            .and_then(UInt::new)
            .ok_or_else(|| PduParseError("`origin_server_ts` is not an integer".to_owned()))?;
        let redacts = match object
            .get("redacts")
            .or_else(|| object.get("content")?.get("redacts"))
        {
            Some(Value::String(id)) => Some(OwnedEventId::try_from(id.as_str()).map_err(bad)?),
            _ => None,
        };
        Ok(Pdu {
            event_id: OwnedEventId::try_from(event_id).map_err(bad)?,
            room_id: match object.get("room_id").and_then(Value::as_str) {
                Some(room_id) => Some(OwnedRoomId::try_from(room_id).map_err(bad)?),
                None => None,
            },
            sender: OwnedUserId::try_from(text(object, "sender")?).map_err(bad)?,
            origin_server_ts: MilliSecondsSinceUnixEpoch(ts),
            event_type: TimelineEventType::from(text(object, "type")?),
            content,
            state_key: object
                .get("state_key")
                .and_then(Value::as_str)
                .map(str::to_owned),
            prev_events: references(object, "prev_events")?,
            auth_events: references(object, "auth_events")?,
            redacts,
            depth: object.get("depth").and_then(Value::as_i64).unwrap_or(0),
            reference_hash: None,
        })
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.event_type
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::content_text;

    #[test]
    fn content_text_reads_only_string_fields() {
        let pdu = r#"{"content": {"membership": "join", "depth": 3}}"#;
        assert_eq!(content_text(pdu, "membership").as_deref(), Some("join"));
        assert_eq!(content_text(pdu, "depth"), None);
        assert_eq!(content_text(pdu, "missing"), None);
        assert_eq!(content_text("{}", "membership"), None);
        assert_eq!(content_text("not json", "membership"), None);
    }
}
