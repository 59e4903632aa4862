//! Who may read a room, up to where, and which of its events.

use myelin_http::MatrixError;
use myelin_room::HistoryView;
use myelin_store::{Direction, Store, StoreResult, StoredEvent};
use myelin_types::{StreamPosition, TimelinePoint};

use crate::ClientApi;

/// How much of a room's history a user may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAccess {
    /// A current member: up to now.
    Joined,
    /// A former member: up to the event that ended the membership.
    Until(TimelinePoint),
    /// Anyone else, in a room that is world readable now: up to now, and
    /// only the events that were world readable when sent.
    Peeking,
}

impl ReadAccess {
    /// Where a former member's reading of the timeline stops.
    pub(crate) fn limit_point(self) -> Option<TimelinePoint> {
        match self {
            ReadAccess::Joined | ReadAccess::Peeking => None,
            ReadAccess::Until(point) => Some(point),
        }
    }

    /// The same limit for what is read by stream position (state,
    /// relations): the live events at or below it.
    pub(crate) fn limit(self) -> Option<StreamPosition> {
        self.limit_point().map(TimelinePoint::stream_position)
    }
}

/// What one user may read of one room: how far, and which events, judged
/// at each event by the history visibility and their membership then.
pub(crate) struct RoomReader {
    pub(crate) access: ReadAccess,
    view: HistoryView,
}

impl RoomReader {
    pub(crate) fn limit(&self) -> Option<StreamPosition> {
        self.access.limit()
    }

    pub(crate) fn limit_point(&self) -> Option<TimelinePoint> {
        self.access.limit_point()
    }

    pub(crate) fn may_see(&self, event: &StoredEvent) -> bool {
        self.limit_point()
            .is_none_or(|limit| event.point() <= limit)
            && self.view.may_see(event)
    }

    /// Where the user may see the room's ordinary events (all but member
    /// events and visibility changes): `(after, upto]`, within the limit.
    pub(crate) fn visible_ranges(&self) -> Vec<(TimelinePoint, Option<TimelinePoint>)> {
        self.view
            .visible_ranges()
            .into_iter()
            .filter_map(|(after, upto)| {
                let upto = match (upto, self.limit_point()) {
                    (Some(upto), Some(limit)) => Some(upto.min(limit)),
                    (upto, None) => upto,
                    (None, limit) => limit,
                };
                upto.is_none_or(|upto| upto > after)
                    .then_some((after, upto))
            })
            .collect()
    }

    /// The events around `event` in its room's timeline that the user may
    /// see: at most `before` older ones (newest first) and `after` newer
    /// ones (oldest first), never past the reader's limit. The points
    /// returned are where paging on starts, past everything read, seen or
    /// not, so a page of hidden events is not read again.
    pub(crate) async fn events_around(
        &self,
        store: &dyn Store,
        event: &StoredEvent,
        before: usize,
        after: usize,
    ) -> StoreResult<EventsAround> {
        let room_id = event.room_id.as_str();
        let older = store
            .room_events(
                room_id,
                event.point().before(),
                None,
                Direction::Backward,
                before,
            )
            .await?;
        let newer = store
            .room_events(
                room_id,
                event.point(),
                self.limit_point(),
                Direction::Forward,
                after,
            )
            .await?;
        let start = older
            .last()
            .map_or(event.point(), StoredEvent::point)
            .before();
        let end = newer.last().map_or(event.point(), StoredEvent::point);
        let visible = |events: Vec<StoredEvent>| -> Vec<StoredEvent> {
            events.into_iter().filter(|e| self.may_see(e)).collect()
        };
        Ok(EventsAround {
            before: visible(older),
            after: visible(newer),
            start,
            end,
        })
    }
}

/// What [`RoomReader::events_around`] found.
pub(crate) struct EventsAround {
    pub(crate) before: Vec<StoredEvent>,
    pub(crate) after: Vec<StoredEvent>,
    /// Where paging back from the oldest event read starts.
    pub(crate) start: TimelinePoint,
    /// Where paging forward from the newest event read starts.
    pub(crate) end: TimelinePoint,
}

impl ClientApi {
    /// The user's current membership in the room (`join`, `leave`, ...), if any.
    pub(crate) async fn current_membership(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, MatrixError> {
        let event = self
            .store
            .state_event(room_id, "m.room.member", user_id)
            .await?;
        Ok(event.and_then(|event| membership_of(&event.pdu_json)))
    }

    pub(crate) async fn read_access(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<ReadAccess, MatrixError> {
        let member_event = self
            .store
            .state_event(room_id, "m.room.member", user_id)
            .await?;
        let membership = member_event
            .as_ref()
            .and_then(|event| membership_of(&event.pdu_json));
        if membership.as_deref() == Some("join") {
            return Ok(ReadAccess::Joined);
        }
        if self.world_readable_now(room_id).await? {
            return Ok(ReadAccess::Peeking);
        }
        if self.store.room_forgotten(user_id, room_id).await? {
            return Err(MatrixError::forbidden("You have forgotten this room"));
        }
        match (membership.as_deref(), member_event) {
            (Some("leave" | "ban"), Some(event)) => Ok(ReadAccess::Until(event.point())),
            _ => Err(MatrixError::forbidden("You are not a member of this room")),
        }
    }

    /// The user's access to the room with what they may see of its history.
    pub(crate) async fn room_reader(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<RoomReader, MatrixError> {
        let access = self.read_access(room_id, user_id).await?;
        let view = HistoryView::load(self.store.as_ref(), room_id, user_id).await?;
        Ok(RoomReader { access, view })
    }

    /// The room's state as the user may read it: now for members and
    /// peekers, as of their leave for former members.
    pub(crate) async fn readable_state(
        &self,
        room_id: &str,
        access: ReadAccess,
    ) -> Result<Vec<StoredEvent>, MatrixError> {
        Ok(match access.limit_point() {
            None => self.store.current_state(room_id).await?,
            Some(limit) => {
                myelin_store::state_at_point(self.store.as_ref(), room_id, limit).await?
            }
        })
    }

    /// Whether anyone may read the room now (`world_readable`).
    pub(crate) async fn world_readable_now(&self, room_id: &str) -> Result<bool, MatrixError> {
        let setting = self
            .store
            .state_event(room_id, "m.room.history_visibility", "")
            .await?;
        Ok(setting.is_some_and(|event| {
            myelin_room::content_text(&event.pdu_json, "history_visibility").as_deref()
                == Some("world_readable")
        }))
    }
}

/// `content.membership` of a stored member event.
pub(crate) fn membership_of(pdu_json: &str) -> Option<String> {
    myelin_room::content_text(pdu_json, "membership")
}
