//! Reading a room's events and state: `/event`, `/state_ids`, `/state`,
//! for servers with a user in the room.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use ruma::api::federation::event::{get_event, get_room_state, get_room_state_ids};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId};

use crate::FederationApi;
use crate::history::visible_to;
use crate::rooms::{auth_chain, raw_pdu, require_server_in_room, state_before};

pub(crate) async fn event(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: get_event::v1::Request,
) -> Result<get_event::v1::Response, MatrixError> {
    let store = api.store.as_ref();
    let event = store
        .event(request.event_id.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("This server does not know that event"))?;
    require_server_in_room(store, &event.room_id, ctx.origin.as_deref()).await?;
    let origin = ctx.origin()?;
    if !visible_to(store, origin, &event, &mut Default::default()).await? {
        return Err(MatrixError::forbidden(
            "The requesting server may not see that event",
        ));
    }
    Ok(get_event::v1::Response::new(
        api.server_keys_owner().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
        raw_pdu(&event)?,
    ))
}

pub(crate) async fn state_ids(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: get_room_state_ids::v1::Request,
) -> Result<get_room_state_ids::v1::Response, MatrixError> {
    let store = api.store.as_ref();
    let room_id = request.room_id.as_str();
    require_server_in_room(store, room_id, ctx.origin.as_deref()).await?;
    let state = state_before(store, room_id, request.event_id.as_str()).await?;
    let chain = auth_chain(store, &state).await?;
    let ids = |events: &[myelin_store::StoredEvent]| -> Vec<OwnedEventId> {
        events
            .iter()
            .filter_map(|event| OwnedEventId::try_from(event.event_id.as_str()).ok())
            .collect()
    };
    Ok(get_room_state_ids::v1::Response::new(
        ids(&chain),
        ids(&state),
    ))
}

pub(crate) async fn state(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: get_room_state::v1::Request,
) -> Result<get_room_state::v1::Response, MatrixError> {
    let store = api.store.as_ref();
    let room_id = request.room_id.as_str();
    require_server_in_room(store, room_id, ctx.origin.as_deref()).await?;
    let state = state_before(store, room_id, request.event_id.as_str()).await?;
    let chain = auth_chain(store, &state).await?;
    Ok(get_room_state::v1::Response::new(
        chain.iter().map(raw_pdu).collect::<Result<_, _>>()?,
        state.iter().map(raw_pdu).collect::<Result<_, _>>()?,
    ))
}
