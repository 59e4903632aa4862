//! `GET /rooms/{roomId}/hierarchy`: a local space's rooms, breadth first
//! along `m.space.child` state, showing only rooms the user may see, peek
//! into or join. A child this server does not have is asked of the servers
//! its parent names (`/federation/v1/hierarchy`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::space::{MAX_CHILDREN, children_state, open_to, space_children, via_of};
use ruma::api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy};
use ruma::api::federation::space::get_hierarchy as federation_hierarchy;
use ruma::room::{JoinRuleSummary, RoomSummary, RoomType};
use serde_json::Value;

use crate::ClientApi;

/// Rooms per page when the client names no limit, and the most it may ask.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;
/// How deep the walk goes at most, whatever the client asks.
const MAX_DEPTH: usize = 10;
/// Rooms one walk looks at before it stops.
const MAX_VISITED: usize = 1000;
/// Rooms of other servers one walk asks about, and the servers asked for
/// each, one after the other.
const MAX_REMOTE_ASKS: usize = 20;
const MAX_VIA: usize = 3;

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

    let mut queue = VecDeque::from([(root.to_owned(), 0usize, Vec::new())]);
    let mut visited = BTreeSet::new();
    // Rooms other servers told of as children of a room they answered for.
    let mut told: HashMap<String, RoomSummary> = HashMap::new();
    let mut remote_asks = 0;
    let mut rooms = Vec::new();
    while let Some((room_id, depth, via)) = queue.pop_front() {
        if visited.len() >= MAX_VISITED || rooms.len() > skip + limit {
            break;
        }
        if !visited.insert(room_id.clone()) {
            continue;
        }
        let room = match api.summary_of(&room_id).await? {
            Some(summary) => {
                if room_id != root && !api.may_preview(&room_id, &user.user_id).await? {
                    continue;
                }
                let children = space_children(
                    api.store.current_state(&room_id).await?,
                    request.suggested_only,
                );
                Some((summary, children))
            }
            // A room this server does not have: asked of the servers its
            // parent names, unless one of them told of it already (a room
            // that is no space has no children to show).
            None => {
                let known = told
                    .get(&room_id)
                    .filter(|summary| summary.room_type != Some(RoomType::Space))
                    .map(|summary| (summary.clone(), Vec::new()));
                let known = match known {
                    Some(known) => Some(known),
                    None if remote_asks < MAX_REMOTE_ASKS => {
                        remote_asks += 1;
                        api.remote_hierarchy(&room_id, &via, request.suggested_only, &mut told)
                            .await
                    }
                    None => None,
                };
                match known {
                    Some((summary, children))
                        if api.may_preview_summary(&summary, &user.user_id).await? =>
                    {
                        Some((summary, children))
                    }
                    _ => None,
                }
            }
        };
        let Some((summary, children)) = room else {
            continue;
        };
        if depth < max_depth {
            for (child, stripped) in &children {
                if !visited.contains(child) {
                    queue.push_back((child.clone(), depth + 1, via_of(stripped)));
                }
            }
        }
        let children_state = children_state(children);
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
    /// Asks the servers a parent names (`via`) for a room this server does
    /// not have (`/federation/v1/hierarchy`); the children they tell of are
    /// remembered in `told`. `None` when none of them answers.
    async fn remote_hierarchy(
        &self,
        room_id: &str,
        via: &[String],
        suggested_only: bool,
        told: &mut HashMap<String, RoomSummary>,
    ) -> Option<(RoomSummary, Vec<(String, Value)>)> {
        let room = ruma::OwnedRoomId::try_from(room_id).ok()?;
        for server in via.iter().take(MAX_VIA) {
            let Ok(server) = ruma::OwnedServerName::try_from(server.as_str()) else {
                continue;
            };
            if server.as_str() == self.server_name {
                continue;
            }
            let mut request = federation_hierarchy::v1::Request::new(room.clone());
            request.suggested_only = suggested_only;
            let answer = match self.federation.send(&server, request).await {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::info!(%server, %room_id, %error, "could not read a space of another server");
                    continue;
                }
            };
            if answer.room.summary.room_id != room {
                continue;
            }
            for child in answer.children.into_iter().take(MAX_CHILDREN) {
                told.insert(child.room_id.to_string(), child);
            }
            let children = answer
                .room
                .children_state
                .iter()
                .filter_map(|raw| serde_json::from_str::<Value>(raw.json().get()).ok())
                .filter(|child| {
                    child["type"] == "m.space.child"
                        && !via_of(child).is_empty()
                        && (!suggested_only || child["content"]["suggested"] == true)
                })
                .filter_map(|child| Some((child["state_key"].as_str()?.to_owned(), child)))
                .take(MAX_CHILDREN)
                .collect();
            return Some((answer.room.summary, children));
        }
        None
    }

    /// Whether the user may see a room in a hierarchy: they are in it or
    /// invited, not banned, and anyone may read or join it (or knock), or
    /// its restricted join rule lets members of a room they are in join.
    async fn may_preview_summary(
        &self,
        summary: &RoomSummary,
        user_id: &str,
    ) -> Result<bool, MatrixError> {
        let room_id = summary.room_id.as_str();
        match self.current_membership(room_id, user_id).await?.as_deref() {
            Some("join" | "invite") => return Ok(true),
            Some("ban") => return Ok(false),
            _ => {}
        }
        let mut joined = BTreeSet::new();
        if let JoinRuleSummary::Restricted(allowed) = &summary.join_rule {
            for allowed_room in &allowed.allowed_room_ids {
                let member = self
                    .current_membership(allowed_room.as_str(), user_id)
                    .await?;
                if member.as_deref() == Some("join") {
                    joined.insert(allowed_room.to_string());
                }
            }
        }
        Ok(open_to(summary, |room_id| joined.contains(room_id)))
    }

    /// [`Self::may_preview_summary`] for a room this server has.
    async fn may_preview(&self, room_id: &str, user_id: &str) -> Result<bool, MatrixError> {
        match self.summary_of(room_id).await? {
            Some(summary) => self.may_preview_summary(&summary, user_id).await,
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
