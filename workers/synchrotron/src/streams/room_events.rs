//! The room-event stream: timelines and state of joined rooms, invites with
//! their stripped state, and rooms the user left.

use std::collections::HashSet;
use std::sync::Arc;

use myelin_http::MatrixError;
use myelin_room::{HistoryView, content_text, stored_client_event, stripped_state_event};
use myelin_store::{Direction, Membership, TokenOwner};
use myelin_types::{StreamPosition, TimelinePoint};
use ruma::api::client::sync::sync_events::v3::{
    InviteState, InvitedRoom, JoinedRoom, KnockState, KnockedRoom, LeftRoom, Response, RoomSummary,
    State, StateEvents, Timeline,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedUserId, UInt};
use serde_json::Value;

use super::{SyncRequest, raw};
use crate::Synchrotron;
use crate::timelines::CachedEvent;

const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// Most events one room's timeline returns, whatever the filter asks;
/// `/messages` pages on from `prev_batch`.
const MAX_TIMELINE_LIMIT: usize = 100;

/// The rooms the user is joined to (as the filter allows them), for the
/// streams that fill per-room sections, and whether any room changed.
pub(super) struct JoinedRooms {
    pub(super) rooms: Vec<OwnedRoomId>,
    pub(super) news: bool,
}

impl SyncRequest {
    /// Events per room timeline: the filter's, within bounds, so one
    /// request cannot ask for a whole room's history at once.
    fn timeline_limit(&self) -> usize {
        self.filter
            .timeline
            .limit
            .unwrap_or(DEFAULT_TIMELINE_LIMIT)
            .clamp(1, MAX_TIMELINE_LIMIT)
    }
}

pub(super) async fn fill(
    sync: &Synchrotron,
    request: &SyncRequest,
    upto: StreamPosition,
    response: &mut Response,
) -> Result<JoinedRooms, MatrixError> {
    sync.timelines.catch_up(sync.store.as_ref(), upto).await?;
    let since = request.since.map(|token| token.events);
    let mut joined = JoinedRooms {
        rooms: Vec::new(),
        news: false,
    };
    for membership in sync
        .store
        .memberships_of_user(&request.user.user_id)
        .await?
    {
        if !request.filter.rooms.allows_room(&membership.room_id) {
            continue;
        }
        let Ok(room_id) = OwnedRoomId::try_from(membership.room_id.as_str()) else {
            continue;
        };
        let changed_since = since.is_none_or(|since| membership.position > since);
        match membership.membership.as_str() {
            "join" => {
                if let Some(room) = joined_room(sync, request, &membership, upto).await? {
                    response.rooms.join.insert(room_id.clone(), room);
                    joined.news = true;
                }
                joined.rooms.push(room_id);
            }
            "invite" if changed_since => {
                response
                    .rooms
                    .invite
                    .insert(room_id, invited_room(sync, &membership).await?);
                joined.news = true;
            }
            "knock" if changed_since => {
                let mut state = KnockState::new();
                state.events = stripped_state_with(sync, &membership).await?;
                response
                    .rooms
                    .knock
                    .insert(room_id, KnockedRoom::from(state));
                joined.news = true;
            }
            "leave" | "ban"
                if changed_since && (since.is_some() || request.filter.include_leave) =>
            {
                response
                    .rooms
                    .leave
                    .insert(room_id, left_room(sync, request, &membership).await?);
                joined.news = true;
            }
            _ => {}
        }
    }
    Ok(joined)
}

async fn joined_room(
    sync: &Synchrotron,
    request: &SyncRequest,
    membership: &Membership,
    upto: StreamPosition,
) -> Result<Option<JoinedRoom>, MatrixError> {
    let room_id = &membership.room_id;
    let user = &request.user;
    let since = request.since.map(|token| token.events);
    let limit = request.timeline_limit();
    let newly_joined = match since {
        None => true,
        Some(since) if membership.position > since => {
            !was_joined_at(sync, room_id, &user.user_id, since).await?
        }
        Some(_) => false,
    };
    let lower = if newly_joined { None } else { since };
    // One more than the limit tells whether the timeline was cut.
    let mut recent = newest_events(sync, room_id, lower, upto, limit + 1).await?;
    let mut limited = recent.len() > limit;
    recent.truncate(limit);
    recent.reverse();
    limited |= start_after_gap(&mut recent);
    if recent.is_empty() && !newly_joined && !request.full_state {
        return Ok(None);
    }
    // Joined since before the oldest event here: all of it is theirs to
    // see. Otherwise each event is judged by the visibility at it.
    if recent
        .first()
        .is_some_and(|oldest| oldest.position < membership.position)
    {
        keep_visible(sync, &mut recent, room_id, &user.user_id).await?;
    }
    let viewer = viewer_of(user);
    let in_timeline: HashSet<&str> = recent.iter().map(|event| event.event_id.as_str()).collect();
    // `state` is the state before the timeline: what the timeline does
    // not show. `state_after` (asked with `use_state_after`) is every state
    // change up to the end of the timeline, shown there or not.
    let after = request.use_state_after;
    let include_state = newly_joined || request.full_state || limited || after;
    let mut state = Vec::new();
    if include_state {
        for event in sync.store.current_state(room_id).await? {
            let wanted = (after || !in_timeline.contains(event.event_id.as_str()))
                && (newly_joined
                    || request.full_state
                    || since.is_none_or(|since| event.position > since))
                && request
                    .filter
                    .state
                    .allows(&event.event_type, &event.sender);
            if wanted {
                state.push(raw(&stored_client_event(&event, viewer))?);
            }
        }
    }
    // Paging back goes on from just before the oldest event shown, which
    // may sit in a gap filled from other servers.
    let prev_batch = recent
        .first()
        .map_or(TimelinePoint::of_stream(upto), |first| {
            first.point().before()
        });
    let events = timeline_events(sync, request, room_id, &recent, upto).await?;
    let mut timeline = Timeline::new();
    timeline.limited = limited;
    timeline.prev_batch = Some(prev_batch.to_string());
    for event in &events {
        timeline.events.push(raw(event)?);
    }
    let mut room = JoinedRoom::new();
    room.timeline = timeline;
    let members_changed = recent
        .iter()
        .any(|event| event.event_type == "m.room.member");
    if newly_joined || request.full_state || members_changed {
        room.summary = summary(sync, room_id, &user.user_id).await?;
    }
    let state = StateEvents::with_events(state);
    room.state = if after {
        State::After(state)
    } else {
        State::Before(state)
    };
    Ok(Some(room))
}

/// Heroes are named in the summary up to this many.
const MAX_HEROES: usize = 5;

/// Member counts and the members a client names an unnamed room after.
async fn summary(
    sync: &Synchrotron,
    room_id: &str,
    user_id: &str,
) -> Result<RoomSummary, MatrixError> {
    let memberships = sync.store.room_memberships(room_id).await?;
    let count = |kind: &str| {
        memberships
            .iter()
            .filter(|membership| membership.membership == kind)
            .count()
    };
    let mut summary = RoomSummary::new();
    summary.joined_member_count = UInt::try_from(count("join") as u64).ok();
    summary.invited_member_count = UInt::try_from(count("invite") as u64).ok();
    let mut heroes: Vec<&str> = memberships
        .iter()
        .filter(|membership| {
            membership.user_id != user_id
                && (membership.membership == "join" || membership.membership == "invite")
        })
        .map(|membership| membership.user_id.as_str())
        .collect();
    heroes.sort_unstable();
    summary.heroes = heroes
        .into_iter()
        .take(MAX_HEROES)
        .filter_map(|hero| OwnedUserId::try_from(hero).ok())
        .collect();
    Ok(summary)
}

/// The timeline's events as the filter and the client see them, with
/// their bundled aggregations as of `upto`.
async fn timeline_events(
    sync: &Synchrotron,
    request: &SyncRequest,
    room_id: &str,
    recent: &[CachedEvent],
    upto: StreamPosition,
) -> Result<Vec<Value>, MatrixError> {
    let user = &request.user;
    let mut events: Vec<Value> = recent
        .iter()
        .filter(|event| {
            request
                .filter
                .timeline
                .allows(&event.event_type, &event.sender)
        })
        .map(|event| stored_client_event(event, viewer_of(user)))
        .collect();
    let viewer = myelin_room::Viewer {
        user_id: &user.user_id,
        device_id: Some(&user.device_id),
        upto: Some(upto),
    };
    myelin_room::bundle_aggregations(sync.store.as_ref(), room_id, viewer, &mut events).await?;
    Ok(events)
}

fn viewer_of(user: &TokenOwner) -> Option<(&str, &str)> {
    Some((user.user_id.as_str(), user.device_id.as_str()))
}

/// Cuts a timeline (oldest first) so it never runs across history missing
/// here: it starts at the newest event written with a gap before it, and
/// the client pages back from there (`prev_batch`), which fetches what is
/// missing into the gap. `true` when something was cut.
fn start_after_gap(recent: &mut Vec<CachedEvent>) -> bool {
    match recent.iter().rposition(|event| event.opens_gap) {
        Some(first_kept) if first_kept > 0 => {
            recent.drain(..first_kept);
            true
        }
        _ => false,
    }
}

/// The room's newest events in `(lower, upper]`, at most `take`, newest
/// first: from the cache when it can tell, else from the store.
async fn newest_events(
    sync: &Synchrotron,
    room_id: &str,
    lower: Option<StreamPosition>,
    upper: StreamPosition,
    take: usize,
) -> Result<Vec<CachedEvent>, MatrixError> {
    if let Some(cached) = sync.timelines.newest(room_id, lower, upper, take) {
        sync.timeline_reads.with_label_values(&["cache"]).inc();
        return Ok(cached);
    }
    sync.timeline_reads.with_label_values(&["store"]).inc();
    let stored = sync
        .store
        .room_events(
            room_id,
            TimelinePoint::of_stream(upper),
            lower.map(TimelinePoint::of_stream),
            Direction::Backward,
            take,
        )
        .await?;
    Ok(stored.into_iter().map(Arc::new).collect())
}

/// Drops the events the user may not see by the room's history visibility
/// and their membership at each event.
async fn keep_visible(
    sync: &Synchrotron,
    events: &mut Vec<CachedEvent>,
    room_id: &str,
    user_id: &str,
) -> Result<(), MatrixError> {
    let view = HistoryView::load(sync.store.as_ref(), room_id, user_id).await?;
    events.retain(|event| view.may_see(event));
    Ok(())
}

/// Whether the user was already joined at `since`: a profile change
/// re-sends the join event, and must not look like a fresh join.
async fn was_joined_at(
    sync: &Synchrotron,
    room_id: &str,
    user_id: &str,
    since: StreamPosition,
) -> Result<bool, MatrixError> {
    let then = sync
        .store
        .state_event_at(room_id, "m.room.member", user_id, since)
        .await?;
    Ok(then.is_some_and(|event| {
        content_text(&event.pdu_json, "membership").as_deref() == Some("join")
    }))
}

async fn invited_room(
    sync: &Synchrotron,
    membership: &Membership,
) -> Result<InvitedRoom, MatrixError> {
    let stripped = stripped_state_with(sync, membership).await?;
    Ok(InvitedRoom::from(InviteState::from(stripped)))
}

/// The room's stripped state for someone outside it (invited or knocking),
/// ending with their own membership event.
async fn stripped_state_with<T>(
    sync: &Synchrotron,
    membership: &Membership,
) -> Result<Vec<Raw<T>>, MatrixError> {
    let state = sync.store.current_state(&membership.room_id).await?;
    let mut stripped = Vec::new();
    // Another server's room: the stripped state that came with the invite
    // or the knock's answer.
    if matches!(membership.membership.as_str(), "invite" | "knock")
        && let Some(sent) = sync
            .store
            .invite_state(&membership.room_id, &membership.user_id)
            .await?
    {
        let sent: Vec<serde_json::Value> = serde_json::from_str(&sent).unwrap_or_default();
        for event in &sent {
            stripped.push(raw(event)?);
        }
    }
    for event in &state {
        if myelin_room::INVITE_STATE_TYPES.contains(&event.event_type.as_str()) {
            stripped.push(raw(&stripped_state_event(&event.pdu_json))?);
        }
    }
    if let Some(own) = state
        .iter()
        .find(|event| event.event_id == membership.event_id)
    {
        stripped.push(raw(&stripped_state_event(&own.pdu_json))?);
    }
    Ok(stripped)
}

async fn left_room(
    sync: &Synchrotron,
    request: &SyncRequest,
    membership: &Membership,
) -> Result<LeftRoom, MatrixError> {
    let limit = request.timeline_limit();
    let since = request.since.map(|token| token.events);
    let mut recent = newest_events(
        sync,
        &membership.room_id,
        since,
        membership.position,
        limit + 1,
    )
    .await?;
    let mut limited = recent.len() > limit;
    recent.truncate(limit);
    recent.reverse();
    limited |= start_after_gap(&mut recent);
    let prev_batch = recent
        .first()
        .map_or(TimelinePoint::of_stream(membership.position), |first| {
            first.point().before()
        });
    keep_visible(
        sync,
        &mut recent,
        &membership.room_id,
        &request.user.user_id,
    )
    .await?;
    // A former member's view stops at their leave.
    let events = timeline_events(
        sync,
        request,
        &membership.room_id,
        &recent,
        membership.position,
    )
    .await?;
    let mut room = LeftRoom::new();
    room.timeline.limited = limited;
    room.timeline.prev_batch = Some(prev_batch.to_string());
    for event in &events {
        room.timeline.events.push(raw(event)?);
    }
    Ok(room)
}
