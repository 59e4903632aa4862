//! `GET /rooms/{roomId}/hierarchy`: a local space's rooms, breadth first
//! along `m.space.child` state, showing only rooms the user may see, peek
//! into or join.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_store::StoredEvent;
use ruma::api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy};
use ruma::room::JoinRuleSummary;
use ruma::serde::Raw;
use serde_json::Value;

use crate::ClientApi;

/// Rooms per page when the client names no limit, and the most it may ask.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;
/// How deep the walk goes at most, whatever the client asks.
const MAX_DEPTH: usize = 10;
/// Rooms one walk looks at before it stops.
const MAX_VISITED: usize = 1000;
/// `m.space.child` events of one room taken into account.
const MAX_CHILDREN: usize = 200;

/// The `from` token: how many rooms earlier pages returned.
fn parse_from(from: Option<&str>) -> Result<usize, MatrixError> {
    match from {
        None => Ok(0),
        Some(token) => token
            .parse::<usize>()
            .ok()
            .filter(|skip| *skip <= MAX_VISITED)
            .ok_or_else(|| MatrixError::invalid_param("Unknown pagination token")),
    }
}

/// A room's `m.space.child` events with a `via` list, in the spec's order:
/// by `order` (when a valid one), then by when they were sent, then by room ID.
fn space_children(state: Vec<StoredEvent>, suggested_only: bool) -> Vec<(String, Value)> {
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

pub(crate) async fn get(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_hierarchy::v1::Request,
) -> Result<get_hierarchy::v1::Response, MatrixError> {
    let user = context.user()?;
    let root = request.room_id.as_str();
    api.require_room(root).await?;
    if !api.may_preview(root, &user.user_id).await? {
        return Err(MatrixError::forbidden(
            "You may not see, peek into or join this room",
        ));
    }
    let limit = request
        .limit
        .map_or(DEFAULT_LIMIT, |limit| {
            usize::try_from(u64::from(limit)).unwrap_or(MAX_LIMIT)
        })
        .clamp(1, MAX_LIMIT);
    let max_depth = request
        .max_depth
        .map_or(MAX_DEPTH, |depth| {
            usize::try_from(u64::from(depth)).unwrap_or(MAX_DEPTH)
        })
        .min(MAX_DEPTH);
    let skip = parse_from(request.from.as_deref())?;

    let mut queue = VecDeque::from([(root.to_owned(), 0usize)]);
    let mut visited = BTreeSet::new();
    let mut rooms = Vec::new();
    while let Some((room_id, depth)) = queue.pop_front() {
        if visited.len() >= MAX_VISITED || rooms.len() > skip + limit {
            break;
        }
        if !visited.insert(room_id.clone()) {
            continue;
        }
        if room_id != root && !api.may_preview(&room_id, &user.user_id).await? {
            continue;
        }
        let Some(summary) = api.summary_of(&room_id).await? else {
            continue;
        };
        let children = space_children(
            api.store.current_state(&room_id).await?,
            request.suggested_only,
        );
        if depth < max_depth {
            for (child, _) in &children {
                if !visited.contains(child) {
                    queue.push_back((child.clone(), depth + 1));
                }
            }
        }
        let children_state = children
            .into_iter()
            .filter_map(|(_, stripped)| {
                serde_json::value::to_raw_value(&stripped)
                    .ok()
                    .map(Raw::from_json)
            })
            .collect();
        rooms.push(SpaceHierarchyRoomsChunk::new(summary, children_state));
    }
    let more = rooms.len() > skip + limit;
    let page: Vec<_> = rooms.into_iter().skip(skip).take(limit).collect();
    let mut response = get_hierarchy::v1::Response::new();
    response.rooms = page;
    response.next_batch = more.then(|| (skip + limit).to_string());
    Ok(response)
}

impl ClientApi {
    /// Whether the user may see the room in a hierarchy: they are in it or
    /// invited, anyone may read or join it (or knock), or its restricted
    /// join rule lets members of a room they are in join.
    async fn may_preview(&self, room_id: &str, user_id: &str) -> Result<bool, MatrixError> {
        let membership = self.current_membership(room_id, user_id).await?;
        if matches!(membership.as_deref(), Some("join" | "invite")) {
            return Ok(true);
        }
        if membership.as_deref() == Some("ban") {
            return Ok(false);
        }
        let Some(summary) = self.summary_of(room_id).await? else {
            return Ok(false);
        };
        if summary.world_readable {
            return Ok(true);
        }
        match &summary.join_rule {
            JoinRuleSummary::Public | JoinRuleSummary::Knock => Ok(true),
            JoinRuleSummary::Restricted(allowed) | JoinRuleSummary::KnockRestricted(allowed) => {
                if matches!(summary.join_rule, JoinRuleSummary::KnockRestricted(_)) {
                    return Ok(true);
                }
                for allowed_room in &allowed.allowed_room_ids {
                    let member = self
                        .current_membership(allowed_room.as_str(), user_id)
                        .await?;
                    if member.as_deref() == Some("join") {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_types::StreamPosition;

    fn child(room: &str, ts: i64, content: &str) -> StoredEvent {
        StoredEvent {
            position: StreamPosition(ts),
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

    #[test]
    fn from_tokens_are_counts() {
        assert_eq!(parse_from(None).expect("none"), 0);
        assert_eq!(parse_from(Some("20")).expect("count"), 20);
        for bad in ["x", "-1", "1000000"] {
            assert_eq!(
                parse_from(Some(bad)).expect_err(bad).errcode.as_ref(),
                "M_INVALID_PARAM"
            );
        }
    }
}
