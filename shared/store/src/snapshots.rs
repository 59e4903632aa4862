//! The room's state at each event, kept as snapshots.
//!
//! A snapshot holds a room's state at one point of its graph: after an event
//! (named by that event's ID) or where branches met. Most snapshots are a few
//! entries on top of a base snapshot; the writer makes a complete one when
//! the chain of bases would grow past [`MAX_SNAPSHOT_CHAIN`], so reading any
//! snapshot walks a bounded number of rows.

use async_trait::async_trait;

use crate::StoreResult;

/// The longest chain of bases a snapshot may stand on.
pub const MAX_SNAPSHOT_CHAIN: i64 = 64;

/// One piece of a room's state: the event that holds a type and state key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateEntry {
    pub event_type: String,
    pub state_key: String,
    pub event_id: String,
}

/// A snapshot written with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSnapshot {
    pub snapshot_id: String,
    /// The snapshot these entries add to or replace; `None` when the
    /// entries are the whole state.
    pub base_id: Option<String>,
    /// 0 for a complete snapshot, else the base's length plus one.
    pub chain_length: i64,
    pub entries: Vec<StateEntry>,
}

/// The state around an event, as written with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSnapshots {
    /// The snapshot of the state the event was authorized against.
    pub before: String,
    /// The snapshot of the state after it: `before` for a message.
    pub after: String,
    /// Snapshots that do not exist yet, written first, in order.
    pub new: Vec<NewSnapshot>,
}

/// A snapshot read back: its whole state, sorted by type and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub chain_length: i64,
    pub entries: Vec<StateEntry>,
}

/// The snapshots recorded for one event; both `None` for events written
/// before snapshots were kept (their rooms were linear, so state by stream
/// position is exact for them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventStateIds {
    pub before: Option<String>,
    pub after: Option<String>,
}

#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// The whole state a snapshot names, or `None` for an unknown snapshot.
    async fn snapshot(&self, snapshot_id: &str) -> StoreResult<Option<Snapshot>>;

    /// The snapshots of an event, or `None` for an unknown event.
    async fn event_state_ids(&self, event_id: &str) -> StoreResult<Option<EventStateIds>>;

    /// The stored events among `event_ids`, in no particular order; unknown
    /// IDs are left out.
    async fn events_by_id(&self, event_ids: &[String]) -> StoreResult<Vec<crate::StoredEvent>>;

    /// Stores another server's events that this server holds only as state
    /// or auth chain: citable by ID, never in a timeline, never an
    /// extremity. Events already stored are left as they are.
    async fn store_outliers(&self, events: Vec<OutlierEvent>) -> StoreResult<()>;

    /// Keeps the stripped state (a JSON list) another server sent with an
    /// invite of `user_id`, replacing an earlier one.
    async fn set_invite_state(
        &self,
        room_id: &str,
        user_id: &str,
        stripped_state: &str,
    ) -> StoreResult<()>;

    async fn invite_state(&self, room_id: &str, user_id: &str) -> StoreResult<Option<String>>;

    /// The IDs among `event_ids` of events in a room's timeline (stored and
    /// not outliers).
    async fn timeline_ids(&self, event_ids: &[String]) -> StoreResult<Vec<String>>;

    /// Moves outliers of `room_id` into its timeline: history fetched from
    /// another server, put where `into` says. Soft-failed outliers stay. `events` come oldest first,
    /// each with its snapshots, and take positions below zero in that
    /// order, below every position handed out before. IDs that are not
    /// outliers of this room are left as they are. The current state and
    /// extremities do not change. Refused with `StoreError::Fenced` under a
    /// fence whose lease moved on.
    async fn promote_outliers(
        &self,
        room_id: &str,
        events: Vec<PromotedEvent>,
        into: FetchedInto,
        fence: Option<crate::Fence>,
    ) -> StoreResult<()>;

    /// Remembers that `redaction_event_id` redacts an event of the room
    /// this server does not hold yet. Written before the redaction itself,
    /// so nothing is lost between the two; [`Self::waiting_redactions`]
    /// tells only of redactions that reached the timeline.
    async fn remember_redaction(
        &self,
        room_id: &str,
        target_event_id: &str,
        redaction_event_id: &str,
    ) -> StoreResult<()>;

    /// Whether any redaction of the room waits for a target not in its
    /// timeline yet (one whose target came and was not redacted by it
    /// waits no more).
    async fn redactions_wait_in(&self, room_id: &str) -> StoreResult<bool>;

    /// `(target, redaction)` pairs remembered for targets among
    /// `target_event_ids` of the room whose redaction is in its timeline.
    async fn waiting_redactions(
        &self,
        room_id: &str,
        target_event_ids: &[String],
    ) -> StoreResult<Vec<(String, String)>>;
}

/// The events a snapshot names; `None` when the snapshot is unknown or
/// names an event that is not stored.
pub async fn snapshot_events(
    store: &dyn crate::Store,
    snapshot_id: &str,
) -> StoreResult<Option<Vec<crate::StoredEvent>>> {
    let Some(snapshot) = store.snapshot(snapshot_id).await? else {
        return Ok(None);
    };
    let wanted: Vec<String> = snapshot
        .entries
        .into_iter()
        .map(|entry| entry.event_id)
        .collect();
    let found = store.events_by_id(&wanted).await?;
    Ok((found.len() == wanted.len()).then_some(found))
}

/// The room's state at point `at` of its timeline: the state after the
/// newest event at or below it, as written with that event. Events only
/// held as state or refused (outliers) never count, though they have
/// positions. Rooms from before snapshots were linear: there the latest
/// state event per key at or below `at` is exact.
pub async fn state_at_point(
    store: &dyn crate::Store,
    room_id: &str,
    at: myelin_types::TimelinePoint,
) -> StoreResult<Vec<crate::StoredEvent>> {
    let newest = store
        .room_events(room_id, at, None, crate::Direction::Backward, 1)
        .await?;
    if let Some(event) = newest.first()
        && let Some(after) = store
            .event_state_ids(&event.event_id)
            .await?
            .and_then(|ids| ids.after)
    {
        return snapshot_events(store, &after)
            .await?
            .ok_or_else(|| crate::StoreError::Corrupt(format!("snapshot {after} is incomplete")));
    }
    store.state_at(room_id, at.stream_position()).await
}

/// Where fetched history goes in a room's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchedInto {
    /// Below every event of the room; the room's history visibility below
    /// the oldest of them becomes `visibility_below`.
    Start { visibility_below: String },
    /// Into the gap just before the event at `slot` (its slot: a gap
    /// filled in several goes keeps one slot, each go older than the last).
    Gap { slot: myelin_types::StreamPosition },
}

/// An outlier moved into its room's timeline, with the state around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotedEvent {
    pub event_id: String,
    pub snapshots: EventSnapshots,
    /// Applied once the event is in the timeline: its own redaction of a
    /// stored event, or a timeline redaction that waited for it.
    pub redactions: Vec<AppliedRedaction>,
}

/// A redaction applied to its target: the target's PDU is replaced by its
/// pruned form and both indexes lose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRedaction {
    pub redaction_event_id: String,
    pub target_event_id: String,
    pub pruned_pdu_json: String,
}

/// An event known only as state or auth chain (see
/// [`SnapshotStore::store_outliers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierEvent {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub pdu_json: String,
    /// Kept because it was soft-failed: never promoted into the timeline.
    pub soft_failed: bool,
}

/// One key of a room's current state set by state resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentStateChange {
    pub entry: StateEntry,
    /// `content.membership` of an `m.room.member` event.
    pub membership: Option<String>,
}

/// Folds a chain's entries, read from the base upwards, into one state:
/// an entry replaces its base's entry for the same type and key.
pub fn fold_chain(entries_base_first: impl IntoIterator<Item = StateEntry>) -> Vec<StateEntry> {
    let mut state = std::collections::BTreeMap::new();
    for entry in entries_base_first {
        state.insert((entry.event_type.clone(), entry.state_key.clone()), entry);
    }
    state.into_values().collect()
}
