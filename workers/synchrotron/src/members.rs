//! Who is in which room, to know whom an event wakes. Loaded from the store
//! on first use and kept current from membership events.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use myelin_store::{EventStore, StoreResult};

#[derive(Default)]
pub(crate) struct RoomMembers {
    rooms: Mutex<HashMap<String, HashSet<String>>>,
}

impl RoomMembers {
    /// Joined and invited users of the room.
    pub(crate) async fn of(
        &self,
        event_store: &dyn EventStore,
        room_id: &str,
    ) -> StoreResult<Vec<String>> {
        if let Some(members) = self.lock().get(room_id) {
            return Ok(members.iter().cloned().collect());
        }
        let members: HashSet<String> = event_store
            .room_memberships(room_id)
            .await?
            .into_iter()
            .filter(|m| m.membership == "join" || m.membership == "invite")
            .map(|m| m.user_id)
            .collect();
        let list = members.iter().cloned().collect();
        self.lock().insert(room_id.to_owned(), members);
        Ok(list)
    }

    /// Applies a membership change to a room already cached.
    pub(crate) fn apply(&self, room_id: &str, user_id: &str, membership: &str) {
        if let Some(members) = self.lock().get_mut(room_id) {
            if membership == "join" || membership == "invite" {
                members.insert(user_id.to_owned());
            } else {
                members.remove(user_id);
            }
        }
    }

    /// Forgets one room; the store is asked again on its next use.
    pub(crate) fn forget(&self, room_id: &str) {
        self.lock().remove(room_id);
    }

    /// Forgets everything; the store is asked again on next use.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
