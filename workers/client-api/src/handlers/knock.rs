//! `POST /knock/{roomIdOrAlias}`: asking to join a room whose join rule is
//! `knock` or `knock_restricted`. The room's authorization rules decide. A
//! room this server is not in is knocked on through another server
//! (`make_knock`/`send_knock`): `via`, the alias's server, the room ID's.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use ruma::OwnedRoomId;
use ruma::api::client::knock::knock_room;

use crate::ClientApi;
use crate::handlers::report::check_reason;

pub(crate) async fn knock(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: knock_room::v3::Request,
) -> Result<knock_room::v3::Response, MatrixError> {
    let user = context.user()?;
    if let Some(reason) = &request.reason {
        check_reason(reason)?;
    }
    api.limits.joins.check(&user.user_id)?;
    let target = request.room_id_or_alias.as_str();
    let (room_id, mut servers) = if !target.starts_with('#') {
        (target.to_owned(), Vec::new())
    } else if api.is_local_name(target) {
        let record = api.store.alias(target).await?;
        let record = record.ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
        (record.room_id, Vec::new())
    } else {
        api.resolve_remote_alias(target).await?
    };
    servers.extend(request.via.iter().cloned());
    let members = api.store.room_memberships(&room_id).await?;
    if let Ok(room) = OwnedRoomId::try_from(room_id.as_str())
        && let Some(server) = room.server_name()
    {
        servers.push(server.to_owned());
    }
    // The servers of the members last known here, for a room once held.
    servers.extend(api.member_servers(&members));
    servers.retain(|server| server.as_str() != api.server_name);
    if !api.has_local_member(&members) && !servers.is_empty() {
        api.knock_remote(&user.user_id, &room_id, &servers, request.reason.as_deref())
            .await?;
        let room_id = OwnedRoomId::try_from(room_id)
            .map_err(|error| MatrixError::invalid_param(error.to_string()))?;
        return Ok(knock_room::v3::Response::new(room_id));
    }
    api.require_room(&room_id).await?;
    api.set_membership(
        &room_id,
        &user.user_id,
        &user.user_id,
        "knock",
        request.reason.as_deref(),
    )
    .await?;
    let room_id =
        OwnedRoomId::try_from(room_id).map_err(|error| MatrixError::internal(error.to_string()))?;
    Ok(knock_room::v3::Response::new(room_id))
}
