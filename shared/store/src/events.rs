//! Events, room state and the room graph's forward extremities.

use async_trait::async_trait;
use myelin_types::{StreamPosition, TimelinePoint};

use crate::{Fence, StoreResult};

/// The device and transaction that sent an event (`PUT .../send/{type}/{txnId}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxnKey {
    pub user_id: String,
    pub device_id: String,
    pub txn_id: String,
}

/// A redaction's effect on its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub target_event_id: String,
    /// The target's PDU after the redaction algorithm of its room version.
    pub pruned_pdu_json: String,
}

/// One event, authorized and signed, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistEvent {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    /// The full PDU, canonical JSON.
    pub pdu_json: String,
    /// The extremities this event replaces (its `prev_events`).
    pub prev_events: Vec<String>,
    /// `content.membership` of an `m.room.member` event.
    pub membership: Option<String>,
    pub txn: Option<TxnKey>,
    pub redaction: Option<Redaction>,
    /// Another server's redaction of this event that arrived before it:
    /// the event is written redacted.
    pub redacted_on_arrival: Option<crate::AppliedRedaction>,
    /// Set on `m.room.create`: registers the room with this version.
    pub new_room_version: Option<String>,
    /// The users this event notifies, written with it.
    pub push_actions: Vec<crate::PushAction>,
    /// The room partition's lease the writer holds: the write is refused
    /// with `StoreError::Fenced` once the lease was acquired again since.
    pub fence: Option<Fence>,
    /// The state around the event, with the snapshots it needs written.
    pub snapshots: Option<crate::EventSnapshots>,
    /// Set where branches met: the keys of the current state that change,
    /// written instead of the event's own key (which may have lost).
    pub resolved_state: Option<Vec<crate::CurrentStateChange>>,
    /// History before the event is missing here: its prev_events were not
    /// held and the state its sender's server gave stood in for them.
    pub opens_gap: bool,
}

impl PersistEvent {
    /// The users whose membership of the room this event's write leaves as
    /// something other than a join (a leave, kick, ban or invite).
    pub fn members_no_longer_joined(&self) -> Vec<&str> {
        let not_joined = |membership: &Option<String>| {
            membership
                .as_deref()
                .is_some_and(|membership| membership != "join")
        };
        match &self.resolved_state {
            Some(changes) => changes
                .iter()
                .filter(|change| {
                    change.entry.event_type == "m.room.member" && not_joined(&change.membership)
                })
                .map(|change| change.entry.state_key.as_str())
                .collect(),
            None if self.event_type == "m.room.member" && not_joined(&self.membership) => {
                self.state_key.as_deref().into_iter().collect()
            }
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistOutcome {
    Persisted(StreamPosition),
    /// The transaction ID was used before; nothing was written.
    DuplicateTxn {
        event_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub position: StreamPosition,
    /// Where the event sits in its room's timeline, with `position`: see
    /// [`TimelinePoint`]. The position itself for all but history fetched
    /// into a gap.
    pub slot: StreamPosition,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    /// The PDU as persisted, redacted if a redaction arrived later.
    pub pdu_json: String,
    pub txn: Option<TxnKey>,
    /// The event ID of the redaction that pruned this event.
    pub redacted_by: Option<String>,
    /// The PDU of that redaction, as stored (clients see it as
    /// `unsigned.redacted_because`).
    pub redaction_pdu_json: Option<String>,
    /// Written with history before it missing (see
    /// [`PersistEvent::opens_gap`]).
    pub opens_gap: bool,
}

impl StoredEvent {
    /// The point just after this event in its room's timeline.
    pub fn point(&self) -> TimelinePoint {
        TimelinePoint::after_event(self.slot, self.position)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    /// The room's history visibility just before the oldest event fetched
    /// from another server (see [`crate::SnapshotStore::promote_outliers`]);
    /// `None` when nothing was fetched.
    pub visibility_below: Option<String>,
}

/// A user's current membership in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub room_id: String,
    pub user_id: String,
    pub membership: String,
    pub event_id: String,
    pub position: StreamPosition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes the event, the current-state change, the forward extremities,
    /// the transaction ID and a redaction's effect in one transaction, and
    /// returns its stream position. Positions become visible in order: once a
    /// reader sees position `p`, every event below `p` is visible too.
    async fn persist_event(&self, event: PersistEvent) -> StoreResult<PersistOutcome>;

    /// Writes `events` in order in one transaction, each as `persist_event`
    /// would, and returns their positions: all of them or none, so a refusal
    /// or a crash part-way never leaves half a room behind. A transaction ID
    /// used before fails the whole batch with `StoreError::Conflict`.
    async fn persist_events(&self, events: Vec<PersistEvent>) -> StoreResult<Vec<StreamPosition>>;

    async fn event(&self, event_id: &str) -> StoreResult<Option<StoredEvent>>;

    async fn room(&self, room_id: &str) -> StoreResult<Option<RoomRecord>>;

    /// Every state event of the room's current state.
    async fn current_state(&self, room_id: &str) -> StoreResult<Vec<StoredEvent>>;

    async fn state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StoreResult<Option<StoredEvent>>;

    /// The latest state event of that type and key at or below `at`.
    async fn state_event_at(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        at: StreamPosition,
    ) -> StoreResult<Option<StoredEvent>>;

    /// The room's state as of position `at` in a linear room: for each
    /// type and key, the latest state event of the timeline at or below it
    /// (outliers never count). Exact for rooms from before snapshots; see
    /// [`crate::state_at_point`] for any room.
    async fn state_at(&self, room_id: &str, at: StreamPosition) -> StoreResult<Vec<StoredEvent>>;

    /// Every state event of one type and key in the room's timeline, by
    /// position (callers wanting timeline order sort by
    /// [`StoredEvent::point`]: history fetched into a gap has positions
    /// below zero): how a user's membership or the room's history visibility
    /// changed over time. Outliers (another server's state this server only
    /// holds, or events it did not take) are no change.
    async fn state_history(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StoreResult<Vec<StoredEvent>>;

    /// The room's forward extremities with their depths.
    async fn forward_extremities(&self, room_id: &str) -> StoreResult<Vec<(String, i64)>>;

    /// Events of one room between two points of its timeline. Backward:
    /// at or below `from` and above `to`, newest first. Forward: above
    /// `from` and at or below `to`, oldest first.
    async fn room_events(
        &self,
        room_id: &str,
        from: TimelinePoint,
        to: Option<TimelinePoint>,
        direction: Direction,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;

    /// The highest position whose event is visible.
    async fn max_position(&self) -> StoreResult<StreamPosition>;

    /// Events of every room above `after` and at or below `upto`, oldest
    /// first, at most `limit`: the store read as one ordered log.
    async fn events_after(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;

    /// The user's current membership in every room they have one in and
    /// have not forgotten.
    async fn memberships_of_user(&self, user_id: &str) -> StoreResult<Vec<Membership>>;

    /// Hides the room from the user's memberships and history until their
    /// next join, which clears it (the caller checks they have left).
    async fn forget_room(&self, user_id: &str, room_id: &str) -> StoreResult<()>;

    async fn room_forgotten(&self, user_id: &str, room_id: &str) -> StoreResult<bool>;

    /// The current membership of every user the room has one for.
    async fn room_memberships(&self, room_id: &str) -> StoreResult<Vec<Membership>>;

    async fn txn_event_id(&self, txn: &TxnKey) -> StoreResult<Option<String>>;
}

/// Finding a room's events by when they were sent (`/timestamp_to_event`).
#[async_trait]
pub trait EventTimeStore: Send + Sync {
    /// Events of the room sent at or after `ts` (forward, oldest first) or
    /// at or before it (backward, newest first), by `origin_server_ts` and
    /// then stream position, at most `limit`.
    async fn events_by_time(
        &self,
        room_id: &str,
        ts: i64,
        direction: Direction,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;
}
