//! Presence as clients see it: the stored state with how long ago the user
//! was last active, and whether they count as active right now.

use myelin_store::PresenceRecord;
use serde_json::{Value, json};

/// Active within this long counts as `currently_active`.
pub const CURRENTLY_ACTIVE_MS: i64 = 60_000;

pub fn currently_active(record: &PresenceRecord, now_ms: i64) -> bool {
    record.state == "online" && now_ms - record.last_active_ts < CURRENTLY_ACTIVE_MS
}

pub fn last_active_ago(record: &PresenceRecord, now_ms: i64) -> i64 {
    (now_ms - record.last_active_ts).max(0)
}

/// The content of an `m.presence` event.
pub fn presence_content(record: &PresenceRecord, now_ms: i64) -> Value {
    let mut content = json!({
        "presence": record.state,
        "last_active_ago": last_active_ago(record, now_ms),
        "currently_active": currently_active(record, now_ms),
    });
    if let Some(message) = &record.status_msg {
        content["status_msg"] = json!(message);
    }
    content
}

#[cfg(test)]
mod tests {
    use myelin_types::StreamPosition;

    use super::*;

    #[test]
    fn activity_is_judged_against_now() {
        let record = PresenceRecord {
            user_id: "@a:hs".to_owned(),
            state: "online".to_owned(),
            status_msg: Some("here".to_owned()),
            last_active_ts: 1_000,
            position: StreamPosition(1),
        };
        let content = presence_content(&record, 31_000);
        assert_eq!(content["last_active_ago"], 30_000);
        assert_eq!(content["currently_active"], true);
        assert_eq!(content["status_msg"], "here");
        assert!(!currently_active(&record, 1_000 + CURRENTLY_ACTIVE_MS));
        let away = PresenceRecord {
            state: "unavailable".to_owned(),
            ..record
        };
        assert!(!currently_active(&away, 1_001));
    }
}
