//! Reading rooms for other servers: the head a template is built on, the
//! state at an event, auth chains, and whether a server may look.

use std::collections::BTreeSet;

use myelin_http::MatrixError;
use myelin_store::{Store, StoredEvent};
use ruma::ServerName;

/// The most events an auth chain answer holds.
const MAX_AUTH_CHAIN: usize = 50_000;

/// Whether a user of `server` is joined to the room now: who may read it.
pub(crate) async fn server_in_room(
    store: &dyn Store,
    room_id: &str,
    server: &ServerName,
) -> Result<bool, MatrixError> {
    let suffix = format!(":{server}");
    Ok(store
        .room_memberships(room_id)
        .await?
        .iter()
        .any(|member| member.membership == "join" && member.user_id.ends_with(&suffix)))
}

/// Refuses a server with no user joined to the room.
pub(crate) async fn require_server_in_room(
    store: &dyn Store,
    room_id: &str,
    server: Option<&ServerName>,
) -> Result<(), MatrixError> {
    if let Some(server) = server {
        myelin_federation::server_acl::require_acl(store, room_id, server.as_str()).await?;
    }
    match server {
        Some(server) if server_in_room(store, room_id, server).await? => Ok(()),
        _ => Err(MatrixError::forbidden(
            "The requesting server has no user in this room",
        )),
    }
}

/// The state before an event, as stored events.
pub(crate) use myelin_federation::room_head::{current_head, damaged, room_version};

pub(crate) async fn state_before(
    store: &dyn Store,
    room_id: &str,
    event_id: &str,
) -> Result<Vec<StoredEvent>, MatrixError> {
    let event = store
        .event(event_id)
        .await?
        .filter(|event| event.room_id == room_id)
        .ok_or_else(|| MatrixError::not_found("This server does not know that event"))?;
    let ids = store.event_state_ids(event_id).await?.unwrap_or_default();
    let Some(snapshot_id) = ids.before else {
        // Written before snapshots were kept: the room was linear, so the
        // state at the position before the event is exact.
        let position = myelin_types::StreamPosition(event.position.0 - 1);
        return Ok(store.state_at(room_id, position).await?);
    };
    myelin_store::snapshot_events(store, &snapshot_id)
        .await?
        .ok_or_else(|| damaged(format!("snapshot {snapshot_id} is missing or incomplete")))
}

/// Every event reachable from `start` through `auth_events`, `start`
/// excluded, oldest-cited first as found.
pub(crate) async fn auth_chain(
    store: &dyn Store,
    start: &[StoredEvent],
) -> Result<Vec<StoredEvent>, MatrixError> {
    let mut seen: BTreeSet<String> = start.iter().map(|event| event.event_id.clone()).collect();
    let mut chain = Vec::new();
    let mut wanted = cited(start);
    while !wanted.is_empty() && chain.len() < MAX_AUTH_CHAIN {
        wanted.retain(|event_id| seen.insert(event_id.clone()));
        if wanted.is_empty() {
            break;
        }
        let found = store.events_by_id(&wanted).await?;
        wanted = cited(&found);
        chain.extend(found);
    }
    Ok(chain)
}

fn cited(events: &[StoredEvent]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .filter_map(|event| myelin_room::Pdu::from_json(&event.event_id, &event.pdu_json).ok())
        .flat_map(|pdu| pdu.auth_events)
        .map(|event_id| event_id.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A stored PDU as another server receives it.
pub(crate) fn raw_pdu(
    event: &StoredEvent,
) -> Result<Box<serde_json::value::RawValue>, MatrixError> {
    serde_json::value::RawValue::from_string(event.pdu_json.clone()).map_err(damaged)
}
