//! Spaces: the children a space's state names, as both APIs walk them
//! (`/hierarchy` for local clients and for other servers), and which
//! rooms a hierarchy may show.

use myelin_store::StoredEvent;
use ruma::room::{JoinRuleSummary, RoomSummary};
use serde_json::Value;

/// `m.space.child` events of one room taken into account.
pub const MAX_CHILDREN: usize = 200;

/// A room's `m.space.child` events with a `via` list, in the spec's order:
/// by `order` (when a valid one), then by when they were sent, then by room ID.
pub fn space_children(state: Vec<StoredEvent>, suggested_only: bool) -> Vec<(String, Value)> {
    let mut children: Vec<(Option<String>, i64, String, Value)> = state
        .into_iter()
        .filter(|event| event.event_type == "m.space.child")
        .filter_map(|event| {
            let child = event.state_key.clone()?;
            let pdu: Value = serde_json::from_str(&event.pdu_json).ok()?;
            let content = pdu.get("content")?.clone();
            let has_via = content
                .get("via")
                .and_then(Value::as_array)
                .is_some_and(|via| !via.is_empty());
            let suggested = content.get("suggested") == Some(&Value::Bool(true));
            if !has_via || (suggested_only && !suggested) {
                return None;
            }
            let order = content
                .get("order")
                .and_then(Value::as_str)
                .filter(|order| {
                    order.len() <= 50 && order.chars().all(|c| ('\x20'..='\x7e').contains(&c))
                })
                .map(str::to_owned);
            let stripped = serde_json::json!({
                "type": event.event_type,
                "state_key": child,
                "content": content,
                "sender": event.sender,
                "origin_server_ts": event.origin_server_ts,
            });
            Some((order, event.origin_server_ts, child, stripped))
        })
        .collect();
    // Children with an order come first.
    children
        .sort_by(|a, b| (a.0.is_none(), &a.0, a.1, &a.2).cmp(&(b.0.is_none(), &b.0, b.1, &b.2)));
    children.truncate(MAX_CHILDREN);
    children
        .into_iter()
        .map(|(_, _, child, stripped)| (child, stripped))
        .collect()
}

/// Child events as a hierarchy answer carries them.
pub fn children_state<T>(children: Vec<(String, Value)>) -> Vec<ruma::serde::Raw<T>> {
    children
        .into_iter()
        .filter_map(|(_, stripped)| {
            serde_json::value::to_raw_value(&stripped)
                .ok()
                .map(ruma::serde::Raw::from_json)
        })
        .collect()
}

/// Whether a room may be shown in a hierarchy to someone who is not in it:
/// anyone may read it, join it or knock on it, or it lets members of one
/// of its allowed rooms in and `is_member_of` says they are one.
pub fn open_to(summary: &RoomSummary, is_member_of: impl Fn(&str) -> bool) -> bool {
    if summary.world_readable {
        return true;
    }
    match &summary.join_rule {
        JoinRuleSummary::Public | JoinRuleSummary::Knock | JoinRuleSummary::KnockRestricted(_) => {
            true
        }
        JoinRuleSummary::Restricted(allowed) => allowed
            .allowed_room_ids
            .iter()
            .any(|room_id| is_member_of(room_id.as_str())),
        _ => false,
    }
}

/// The servers a child event names to reach the child through.
pub fn via_of(stripped: &Value) -> Vec<String> {
    stripped["content"]["via"]
        .as_array()
        .map(|via| {
            via.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .take(10)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_types::StreamPosition;

    fn child(room: &str, ts: i64, content: &str) -> StoredEvent {
        StoredEvent {
            position: StreamPosition(ts),
            slot: StreamPosition(ts),
            opens_gap: false,
            event_id: format!("${room}"),
            room_id: "!space:hs".to_owned(),
            sender: "@a:hs".to_owned(),
            event_type: "m.space.child".to_owned(),
            state_key: Some(room.to_owned()),
            depth: 1,
            origin_server_ts: ts,
            pdu_json: format!(r#"{{"content":{content}}}"#),
            txn: None,
            redacted_by: None,
            redaction_pdu_json: None,
        }
    }

    #[test]
    fn children_need_via_and_follow_the_spec_order() {
        let state = vec![
            child("!late:hs", 30, r#"{"via":["hs"]}"#),
            child("!early:hs", 10, r#"{"via":["hs"]}"#),
            child("!ordered:hs", 40, r#"{"via":["hs"],"order":"a"}"#),
            child("!removed:hs", 5, "{}"),
            child("!empty:hs", 6, r#"{"via":[]}"#),
            child("!suggested:hs", 50, r#"{"via":["hs"],"suggested":true}"#),
            child("!badorder:hs", 20, r#"{"via":["hs"],"order":"\n"}"#),
        ];
        let order: Vec<String> = space_children(state.clone(), false)
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        assert_eq!(
            order,
            [
                "!ordered:hs",
                "!early:hs",
                "!badorder:hs",
                "!late:hs",
                "!suggested:hs"
            ]
        );
        let suggested: Vec<String> = space_children(state, true)
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        assert_eq!(suggested, ["!suggested:hs"]);
    }
}
