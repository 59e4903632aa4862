//! The typing stream: `m.typing` in each joined room's `ephemeral`, from
//! notices kept in memory. Positions are local to this synchrotron and
//! start at the clock's milliseconds, so they never go back across a restart
//! (a user's syncs stay on one synchrotron).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use myelin_types::{StreamPosition, SyncToken, now_millis};
use ruma::OwnedRoomId;
use ruma::api::client::sync::sync_events::v3::Response;
use serde_json::json;

use super::{SyncRequest, raw};
use crate::Synchrotron;

/// A room whose last typer stopped this long ago is forgotten; a sync that
/// has not come back since then misses only that the typing ended.
const FORGET_QUIET_ROOMS_MS: i64 = 10 * 60 * 1000;

pub(crate) struct TypingRooms {
    state: Mutex<TypingState>,
}

struct TypingState {
    position: i64,
    rooms: HashMap<String, RoomTyping>,
}

#[derive(Default)]
struct RoomTyping {
    changed_at: i64,
    changed_ms: i64,
    /// Typers and when each notice ends (ms since the epoch).
    until: BTreeMap<String, i64>,
}

impl Default for TypingRooms {
    fn default() -> Self {
        TypingRooms {
            state: Mutex::new(TypingState {
                position: now_millis(),
                rooms: HashMap::new(),
            }),
        }
    }
}

impl TypingRooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, TypingState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn position(&self) -> StreamPosition {
        StreamPosition(self.lock().position)
    }

    /// Applies a notice; true when the room's set of typers changed.
    pub(crate) fn apply(&self, room_id: &str, user_id: &str, until_ms: Option<i64>) -> bool {
        let now = now_millis();
        let mut state = self.lock();
        let room = state.rooms.entry(room_id.to_owned()).or_default();
        let changed = match until_ms {
            Some(until) if until > now => room.until.insert(user_id.to_owned(), until).is_none(),
            _ => room.until.remove(user_id).is_some(),
        };
        if changed {
            state.position += 1;
            let position = state.position;
            if let Some(room) = state.rooms.get_mut(room_id) {
                room.changed_at = position;
                room.changed_ms = now;
            }
        }
        changed
    }

    /// Ends the notices that ran out; returns the rooms that changed.
    pub(crate) fn expire(&self, now_ms: i64) -> Vec<String> {
        let mut state = self.lock();
        let mut changed = Vec::new();
        for (room_id, room) in &mut state.rooms {
            let before = room.until.len();
            room.until.retain(|_, until| *until > now_ms);
            if room.until.len() != before {
                changed.push(room_id.clone());
            }
        }
        for room_id in &changed {
            state.position += 1;
            let position = state.position;
            if let Some(room) = state.rooms.get_mut(room_id) {
                room.changed_at = position;
                room.changed_ms = now_ms;
            }
        }
        state.rooms.retain(|_, room| {
            !room.until.is_empty() || now_ms - room.changed_ms < FORGET_QUIET_ROOMS_MS
        });
        changed
    }

    /// The room's typers when they changed after `since` (or, without
    /// `since`, when anyone types).
    fn changed_since(&self, room_id: &str, since: Option<StreamPosition>) -> Option<Vec<String>> {
        let state = self.lock();
        let room = state.rooms.get(room_id)?;
        let changed = match since {
            None => !room.until.is_empty(),
            Some(since) => room.changed_at > since.0,
        };
        changed.then(|| room.until.keys().cloned().collect())
    }
}

pub(super) fn fill(
    sync: &Synchrotron,
    request: &SyncRequest,
    joined: &[OwnedRoomId],
    upto: SyncToken,
    response: &mut Response,
) -> Result<bool, myelin_http::MatrixError> {
    let since = request.since.map(|token| token.typing);
    if since == Some(upto.typing) || !request.filter.ephemeral.allows_type("m.typing") {
        return Ok(false);
    }
    let mut news = false;
    for room_id in joined {
        if let Some(user_ids) = sync.typing.changed_since(room_id.as_str(), since) {
            let event = json!({"type": "m.typing", "content": {"user_ids": user_ids}});
            response
                .rooms
                .join
                .entry(room_id.clone())
                .or_default()
                .ephemeral
                .events
                .push(raw(&event)?);
            news = true;
        }
    }
    Ok(news)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typers_change_positions_and_run_out() {
        let typing = TypingRooms::default();
        let start = typing.position();
        let soon = now_millis() + 60_000;
        assert!(typing.apply("!r", "@a", Some(soon)));
        assert!(!typing.apply("!r", "@a", Some(soon + 1)), "an extension");
        let after_a = typing.position();
        assert!(after_a > start);
        assert_eq!(
            typing.changed_since("!r", Some(start)),
            Some(vec!["@a".to_owned()])
        );
        assert_eq!(typing.changed_since("!r", Some(after_a)), None);
        assert!(typing.apply("!r", "@a", None));
        assert_eq!(typing.changed_since("!r", Some(after_a)), Some(vec![]));
        assert_eq!(typing.changed_since("!r", None), None, "nobody types now");
        typing.apply("!r", "@b", Some(soon));
        let before_expiry = typing.position();
        assert_eq!(typing.expire(soon + 1), vec!["!r".to_owned()]);
        assert!(typing.position() > before_expiry);
        assert_eq!(
            typing.changed_since("!r", Some(before_expiry)),
            Some(vec![])
        );
        assert!(
            !typing.apply("!r", "@c", Some(now_millis() - 1)),
            "already over"
        );
    }
}
