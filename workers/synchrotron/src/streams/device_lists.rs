//! The device-list stream: `device_lists.changed` names the users, among
//! those who share a room with the syncing user (and the user), whose
//! devices or keys changed, and those who newly share one; `left` the users
//! who share none any more. Clients then ask `/keys/query` again. An
//! initial sync carries neither: clients query whomever they track.

use std::collections::{BTreeSet, HashSet};

use myelin_http::MatrixError;
use myelin_types::SyncToken;
use ruma::api::client::sync::sync_events::v3::{Response, State};
use ruma::{OwnedRoomId, OwnedUserId};
use serde::Deserialize;

use super::SyncRequest;
use crate::Synchrotron;

/// Most changed users read from the store for one response.
const MAX_CHANGES: usize = 10_000;

/// What a timeline or state event says of a membership, if it is one.
#[derive(Deserialize)]
struct MemberEvent {
    #[serde(rename = "type")]
    kind: String,
    state_key: Option<String>,
    content: MemberContent,
}

#[derive(Deserialize)]
struct MemberContent {
    membership: Option<String>,
}

/// `(user, membership)` of the member events among these events' JSON
/// (timeline and state of one room). Events that cannot be member events
/// are passed over without being parsed.
fn member_changes<'a>(events: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    events
        .filter(|json| json.contains("m.room.member"))
        .filter_map(|json| serde_json::from_str::<MemberEvent>(json).ok())
        .filter(|event| event.kind == "m.room.member")
        .filter_map(|event| Some((event.state_key?, event.content.membership?)))
        .collect()
}

pub(super) async fn fill(
    sync: &Synchrotron,
    request: &SyncRequest,
    joined: &[OwnedRoomId],
    upto: SyncToken,
    response: &mut Response,
) -> Result<bool, MatrixError> {
    let Some(since) = request.since else {
        return Ok(false);
    };
    // What the response shows of memberships, room by room.
    let mut memberships = Vec::new();
    for (room_id, room) in &response.rooms.join {
        let state: &[_] = match &room.state {
            State::Before(state) | State::After(state) => &state.events,
            _ => &[],
        };
        let timeline = room.timeline.events.iter().map(|raw| raw.json().get());
        let changes = member_changes(timeline.chain(state.iter().map(|raw| raw.json().get())));
        if !changes.is_empty() {
            memberships.push((room_id.clone(), changes));
        }
    }
    // Most long-polls wake for something else: nothing to work out.
    if since.device_lists >= upto.device_lists
        && memberships.is_empty()
        && response.rooms.leave.is_empty()
    {
        return Ok(false);
    }
    let me = request.user.user_id.as_str();
    let mut sharing: HashSet<String> = HashSet::from([me.to_owned()]);
    for room_id in joined {
        sharing.extend(
            sync.members
                .of(sync.store.as_ref(), room_id.as_str())
                .await?,
        );
    }
    let mut changed = BTreeSet::new();
    let mut left = BTreeSet::new();
    if since.device_lists < upto.device_lists {
        for user in sync
            .store
            .device_list_changes(since.device_lists, upto.device_lists, MAX_CHANGES)
            .await?
        {
            if sharing.contains(&user) {
                changed.insert(user);
            }
        }
    }
    for (room_id, changes) in memberships {
        for (user, membership) in changes {
            match membership.as_str() {
                // A room newly joined: everyone in it is news.
                "join" if user == me => changed.extend(
                    sync.members
                        .of(sync.store.as_ref(), room_id.as_str())
                        .await?
                        .into_iter()
                        .filter(|member| member != me),
                ),
                "join" => {
                    changed.insert(user);
                }
                "leave" | "ban" if !sharing.contains(&user) => {
                    left.insert(user);
                }
                _ => {}
            }
        }
    }
    for room_id in response.rooms.leave.keys() {
        for membership in sync.store.room_memberships(room_id.as_str()).await? {
            if membership.membership == "join" && !sharing.contains(&membership.user_id) {
                left.insert(membership.user_id);
            }
        }
    }
    let to_ids = |users: BTreeSet<String>| -> Vec<OwnedUserId> {
        users
            .into_iter()
            .filter_map(|user| OwnedUserId::try_from(user).ok())
            .collect()
    };
    let news = !changed.is_empty() || !left.is_empty();
    response.device_lists.changed = to_ids(changed);
    response.device_lists.left = to_ids(left);
    Ok(news)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_events_are_picked_out_of_timeline_and_state() {
        let events = [
            r#"{"type":"m.room.member","state_key":"@a:hs","content":{"membership":"join"}}"#,
            r#"{"type":"m.room.message","content":{"body":"hi"}}"#,
            "not json",
            r#"{"type":"m.room.member","state_key":"@b:hs","content":{"membership":"leave"}}"#,
            r#"{"type":"m.room.member","state_key":"@c:hs","content":{}}"#,
        ];
        assert_eq!(
            member_changes(events.into_iter()),
            [
                ("@a:hs".to_owned(), "join".to_owned()),
                ("@b:hs".to_owned(), "leave".to_owned())
            ]
        );
    }
}
