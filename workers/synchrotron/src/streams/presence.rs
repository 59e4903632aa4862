//! The presence stream: `m.presence` events of the user and everyone who
//! shares a room with them. What syncs set and how presence lapses is in
//! `activity.rs`.

use std::collections::BTreeSet;

use myelin_http::MatrixError;
use myelin_room::presence::presence_content;
use myelin_types::{SyncToken, now_millis};
use ruma::OwnedRoomId;
use ruma::api::client::sync::sync_events::v3::Response;
use serde_json::json;

use super::{SyncRequest, raw};
use crate::Synchrotron;

/// Most users whose presence one response considers.
const MAX_WATCHED_USERS: usize = 5_000;

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
