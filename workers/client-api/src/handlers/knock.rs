//! `POST /knock/{roomIdOrAlias}`: asking to join a room whose join rule is
//! `knock` or `knock_restricted`. The room's authorization rules decide;
//! only rooms this server has can be knocked on until federation exists.

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
    let room_id = if target.starts_with('#') {
        api.store
            .alias(target)
            .await?
            .ok_or_else(|| MatrixError::not_found("Room alias not found"))?
            .room_id
    } else {
        target.to_owned()
    };
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
