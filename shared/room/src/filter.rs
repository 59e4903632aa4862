//! Event filters (`/user/{id}/filter`, `/sync?filter=`, `/messages?filter=`),
//! read from their JSON so a filter stored today still applies tomorrow.

use serde_json::Value;

/// One `RoomEventFilter`: type, sender and room rules plus a limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub limit: Option<usize>,
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    Some(
        value?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
    )
}

/// `m.room.*` matches every type that starts with `m.room.`.
fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

impl EventFilter {
    pub fn from_json(value: &Value) -> EventFilter {
        EventFilter {
            types: strings(value.get("types")),
            not_types: strings(value.get("not_types")).unwrap_or_default(),
            senders: strings(value.get("senders")),
            not_senders: strings(value.get("not_senders")).unwrap_or_default(),
            rooms: strings(value.get("rooms")),
            not_rooms: strings(value.get("not_rooms")).unwrap_or_default(),
            limit: value
                .get("limit")
                .and_then(Value::as_u64)
                .map(|limit| limit as usize),
        }
    }

    pub fn allows_room(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self
                .rooms
                .as_ref()
                .is_none_or(|rooms| rooms.iter().any(|r| r == room_id))
    }

    /// Whether the type passes `types`/`not_types`; for data without a
    /// sender (account data, receipts, typing).
    pub fn allows_type(&self, event_type: &str) -> bool {
        !self.not_types.iter().any(|p| type_matches(p, event_type))
            && self
                .types
                .as_ref()
                .is_none_or(|types| types.iter().any(|p| type_matches(p, event_type)))
    }

    pub fn allows(&self, event_type: &str, sender: &str) -> bool {
        self.allows_type(event_type)
            && !self.not_senders.iter().any(|s| s == sender)
            && self
                .senders
                .as_ref()
                .is_none_or(|senders| senders.iter().any(|s| s == sender))
    }
}

/// The parts of a full filter definition that `/sync` applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncFilter {
    /// `room.rooms` / `room.not_rooms`.
    pub rooms: EventFilter,
    pub timeline: EventFilter,
    pub state: EventFilter,
    /// `room.ephemeral`: receipts and typing.
    pub ephemeral: EventFilter,
    /// `room.account_data`.
    pub room_account_data: EventFilter,
    /// Top-level `account_data`.
    pub account_data: EventFilter,
    /// Top-level `presence`.
    pub presence: EventFilter,
    pub include_leave: bool,
    /// `room.timeline.unread_thread_notifications`: counts per thread.
    pub unread_thread_notifications: bool,
}

impl SyncFilter {
    pub fn from_json(value: &Value) -> SyncFilter {
        let room = value.get("room").cloned().unwrap_or(Value::Null);
        SyncFilter {
            rooms: EventFilter::from_json(&room),
            timeline: EventFilter::from_json(room.get("timeline").unwrap_or(&Value::Null)),
            state: EventFilter::from_json(room.get("state").unwrap_or(&Value::Null)),
            ephemeral: EventFilter::from_json(room.get("ephemeral").unwrap_or(&Value::Null)),
            room_account_data: EventFilter::from_json(
                room.get("account_data").unwrap_or(&Value::Null),
            ),
            account_data: EventFilter::from_json(value.get("account_data").unwrap_or(&Value::Null)),
            presence: EventFilter::from_json(value.get("presence").unwrap_or(&Value::Null)),
            include_leave: room
                .get("include_leave")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            unread_thread_notifications: room
                .get("timeline")
                .and_then(|timeline| timeline.get("unread_thread_notifications"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn types_senders_and_wildcards() {
        let filter = EventFilter::from_json(
            &json!({"types": ["m.room.*"], "not_senders": ["@spam:hs"], "limit": 5}),
        );
        assert!(filter.allows("m.room.message", "@a:hs"));
        assert!(!filter.allows("m.reaction", "@a:hs"));
        assert!(!filter.allows("m.room.message", "@spam:hs"));
        assert_eq!(filter.limit, Some(5));
        assert!(EventFilter::default().allows("anything", "@a:hs"));
    }

    #[test]
    fn sync_filter_reads_nested_sections() {
        let filter = SyncFilter::from_json(
            &json!({"room": {"rooms": ["!a:hs"], "timeline": {"limit": 3}, "include_leave": true}}),
        );
        assert!(filter.rooms.allows_room("!a:hs") && !filter.rooms.allows_room("!b:hs"));
        assert_eq!(filter.timeline.limit, Some(3));
        assert!(filter.include_leave);
        let quiet = SyncFilter::from_json(&json!({
            "account_data": {"not_types": ["m.direct"]},
            "room": {"ephemeral": {"types": []}, "account_data": {"types": ["m.tag"]}},
        }));
        assert!(!quiet.account_data.allows_type("m.direct"));
        assert!(!quiet.ephemeral.allows_type("m.typing"));
        assert!(quiet.room_account_data.allows_type("m.tag"));
        assert!(!quiet.room_account_data.allows_type("m.fully_read"));
    }
}
