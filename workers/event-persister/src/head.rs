//! The cached head of each room this writer has touched: version, current
//! state, forward extremities and depth.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use myelin_bus::messages::RoomInputRefused;
use myelin_room::{EventRef, RoomState, RoomVersion, event_ref};
use myelin_store::Store;

use crate::input::{refused, unavailable};
use crate::snapshots::HeadSnapshot;

#[derive(Clone)]
pub struct CachedHead {
    pub version: RoomVersion,
    pub room_id: String,
    pub state: RoomState,
    pub extremities: Vec<EventRef>,
    pub max_depth: i64,
    /// The snapshot holding `state`; `None` until one is written (a room
    /// from before snapshots, or a new room).
    pub snapshot: Option<HeadSnapshot>,
    /// `state`'s joined members as push rules last read them.
    pub joined: crate::push::JoinedMembers,
    /// Whether a redaction of the room may wait for its target: only then
    /// is each arriving event looked up.
    pub redactions_wait: bool,
}

impl CachedHead {
    /// Whether an event citing `prev_events` extends this head: it cites
    /// exactly the forward extremities.
    pub(crate) fn is_extended_by<'a>(
        &self,
        prev_events: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let prevs: BTreeSet<&str> = prev_events.into_iter().collect();
        let extremities: BTreeSet<&str> = self
            .extremities
            .iter()
            .map(|extremity| extremity.event_id.as_str())
            .collect();
        prevs == extremities
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedHead>>>;

/// One async lock per room: requests of a room run one at a time.
#[derive(Default)]
pub struct RoomHeads {
    rooms: Mutex<HashMap<String, Slot>>,
}

impl RoomHeads {
    /// Drops the cached heads of a partition's rooms.
    pub(crate) fn forget_partition(&self, partition: myelin_types::Partition) {
        let rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (room_id, slot) in rooms.iter() {
            // A slot in use belongs to a write in progress, which leaves its head current.
            if myelin_types::Partition::of_room(room_id) == partition
                && let Ok(mut head) = slot.try_lock()
            {
                *head = None;
            }
        }
    }

    pub(crate) fn slot(&self, room_id: &str) -> Slot {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(rooms.entry(room_id.to_owned()).or_default())
    }
}

impl crate::EventPersister {
    /// The room's head, locked for one request and read from the store when
    /// not cached: the guard always holds one.
    pub(crate) async fn locked_head(
        &self,
        room_id: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<CachedHead>>, RoomInputRefused> {
        let mut guard = self.heads.slot(room_id).lock_owned().await;
        if guard.is_none() {
            *guard = Some(load_head(self.store.as_ref(), room_id).await?);
        }
        Ok(guard)
    }
}

/// The answer when a locked head is missing, which [`crate::EventPersister::locked_head`] rules out.
pub(crate) fn head_missing() -> RoomInputRefused {
    refused(500, "M_UNKNOWN", "room head missing")
}

/// Reads a room's head from the store.
pub(crate) async fn load_head(
    event_store: &dyn Store,
    room_id: &str,
) -> Result<CachedHead, RoomInputRefused> {
    let room = event_store
        .room(room_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| refused(404, "M_NOT_FOUND", "Unknown room"))?;
    let version = RoomVersion::stable(&room.room_version).ok_or_else(|| {
        refused(
            400,
            "M_UNSUPPORTED_ROOM_VERSION",
            "Unsupported room version",
        )
    })?;
    let stored = event_store
        .current_state(room_id)
        .await
        .map_err(unavailable)?;
    let state = myelin_room::state_from_pdus(
        &version,
        stored
            .iter()
            .map(|event| (event.event_id.as_str(), event.pdu_json.as_str())),
    )
    .map_err(|error| {
        refused(
            500,
            "M_UNKNOWN",
            &format!("stored state is damaged: {error}"),
        )
    })?;
    let mut extremities = Vec::new();
    let mut max_depth = 0;
    for (event_id, depth) in event_store
        .forward_extremities(room_id)
        .await
        .map_err(unavailable)?
    {
        let stored = event_store.event(&event_id).await.map_err(unavailable)?;
        let json = stored.map(|event| event.pdu_json).unwrap_or_default();
        extremities.push(event_ref(&version, &event_id, &json));
        max_depth = max_depth.max(depth);
    }
    let redactions_wait = event_store
        .redactions_wait_in(room_id)
        .await
        .map_err(unavailable)?;
    // The snapshot after the last event need not be the current state (a
    // merge resolves past it): a head read from the store starts without
    // one, and its next event writes a complete snapshot of the state read.
    let snapshot = None;
    Ok(CachedHead {
        version,
        room_id: room_id.to_owned(),
        state,
        extremities,
        max_depth,
        snapshot,
        joined: Default::default(),
        redactions_wait,
    })
}
