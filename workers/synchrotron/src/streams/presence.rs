//! The presence stream: `m.presence` events of the user and everyone who
//! shares a room with them. A sync marks its user active (`set_presence`),
//! written at most once a minute while nothing else changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use myelin_bus::topics::{self, PresenceChanged};
use myelin_http::MatrixError;
use myelin_room::presence::presence_content;
use myelin_store::PresenceUpdate;
use myelin_types::{SyncToken, now_millis};
use ruma::OwnedRoomId;
use ruma::api::client::sync::sync_events::v3::Response;
use ruma::presence::PresenceState;
use serde_json::json;

use super::{SyncRequest, raw};
use crate::Synchrotron;

/// A sync refreshes `last_active` at most this often.
const ACTIVITY_GRANULARITY_MS: i64 = 60_000;
/// Users whose last mark is remembered; past this the memory starts over.
const MAX_REMEMBERED: usize = 100_000;
/// Most users whose presence one response considers.
const MAX_WATCHED_USERS: usize = 5_000;

/// The state and time each user was last marked by a sync here.
#[derive(Default)]
pub(crate) struct ActivityMarks {
    by_user: Mutex<HashMap<String, (String, i64)>>,
}

impl ActivityMarks {
    /// Whether a mark of `state` at `now` is news worth writing.
    fn due(&self, user_id: &str, state: &str, now: i64) -> bool {
        let mut marks = self
            .by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = marks.get(user_id).is_none_or(|(last_state, at)| {
            last_state != state || now - at >= ACTIVITY_GRANULARITY_MS
        });
        if due {
            if marks.len() >= MAX_REMEMBERED {
                marks.clear();
            }
            marks.insert(user_id.to_owned(), (state.to_owned(), now));
        }
        due
    }
}

impl Synchrotron {
    /// Marks the syncing user present as `set_presence` says (`offline`
    /// leaves their presence alone).
    pub(crate) async fn mark_active(&self, user_id: &str, set_presence: &PresenceState) {
        if !self.presence_enabled {
            return;
        }
        let state = match set_presence {
            PresenceState::Online => "online",
            PresenceState::Unavailable => "unavailable",
            _ => return,
        };
        let now = now_millis();
        if !self.activity.due(user_id, state, now) {
            return;
        }
        let update = PresenceUpdate {
            user_id: user_id.to_owned(),
            state: state.to_owned(),
            status_msg: None,
            last_active_ts: now,
        };
        match self.store.set_presence(update).await {
            Ok(position) => {
                let change = PresenceChanged {
                    user_id: user_id.to_owned(),
                    position,
                };
                if let Err(error) = topics::PRESENCE.announce(self.bus.as_ref(), &change).await {
                    tracing::warn!(%error, "cannot announce a presence change");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot record presence"),
        }
    }
}

pub(super) async fn fill(
    sync: &Synchrotron,
    request: &SyncRequest,
    joined: &[OwnedRoomId],
    upto: SyncToken,
    response: &mut Response,
) -> Result<bool, MatrixError> {
    let since = request.since.map(|token| token.presence);
    if !sync.presence_enabled
        || since == Some(upto.presence)
        || !request.filter.presence.allows_type("m.presence")
    {
        return Ok(false);
    }
    let mut watched = BTreeSet::from([request.user.user_id.clone()]);
    for room_id in joined {
        for member in sync
            .members
            .of(sync.store.as_ref(), room_id.as_str())
            .await?
        {
            if watched.len() >= MAX_WATCHED_USERS {
                break;
            }
            watched.insert(member);
        }
    }
    let watched: Vec<String> = watched.into_iter().collect();
    let changes = sync
        .store
        .presence_changes(&watched, since, upto.presence)
        .await?;
    let now = now_millis();
    for record in &changes {
        let event = json!({
            "type": "m.presence",
            "sender": record.user_id,
            "content": presence_content(record, now),
        });
        response.presence.events.push(raw(&event)?);
    }
    Ok(!changes.is_empty())
}
