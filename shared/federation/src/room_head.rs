//! A room's head as the store holds it: its version, current state and
//! forward extremities, for events built here on behalf of a federation
//! handshake (templates, invites).

use myelin_http::MatrixError;
use myelin_room::{EventRef, RoomState, RoomVersion, event_ref};
use myelin_store::Store;

/// A room's current state and forward extremities, as a template needs.
pub struct CurrentHead {
    pub version: RoomVersion,
    pub state: RoomState,
    pub extremities: Vec<EventRef>,
    pub max_depth: i64,
}

pub async fn room_version(store: &dyn Store, room_id: &str) -> Result<RoomVersion, MatrixError> {
    let room = store
        .room(room_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("This server does not know that room"))?;
    RoomVersion::stable(&room.room_version).ok_or_else(|| {
        MatrixError::new(
            http::StatusCode::BAD_REQUEST,
            "M_UNSUPPORTED_ROOM_VERSION",
            "The room's version is not supported",
        )
    })
}

/// The answer when what the store holds of a room cannot be read.
pub fn damaged(error: impl std::fmt::Display) -> MatrixError {
    MatrixError::internal(format!("stored room state is damaged: {error}"))
}

pub async fn current_head(store: &dyn Store, room_id: &str) -> Result<CurrentHead, MatrixError> {
    let version = room_version(store, room_id).await?;
    let stored = store.current_state(room_id).await?;
    let state = myelin_room::state_from_pdus(
        &version,
        stored
            .iter()
            .map(|event| (event.event_id.as_str(), event.pdu_json.as_str())),
    )
    .map_err(damaged)?;
    let mut extremities = Vec::new();
    let mut max_depth = 0;
    let heads = store.forward_extremities(room_id).await?;
    let ids: Vec<String> = heads.iter().map(|(event_id, _)| event_id.clone()).collect();
    for event in store.events_by_id(&ids).await? {
        extremities.push((
            event_ref(&version, &event.event_id, &event.pdu_json),
            event.depth,
        ));
        max_depth = max_depth.max(event.depth);
    }
    // A template cites no more than an event may; the writer judges the
    // signed event by the state its cited events resolve to.
    let (extremities, _) = myelin_room::cite_deepest(extremities);
    Ok(CurrentHead {
        version,
        state,
        extremities,
        max_depth,
    })
}
