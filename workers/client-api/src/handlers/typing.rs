//! `PUT /rooms/{roomId}/typing/{userId}`: typing notices, stored while they
//! run (for synchrotrons that start) and rung on the bus.

use std::sync::Arc;
use std::time::Duration;

use myelin_bus::topics::{self, TypingChanged};
use myelin_http::{MatrixError, RequestContext};
use myelin_types::now_millis;
use ruma::api::client::typing::create_typing_event::{self, v3::Typing};

use crate::ClientApi;

/// Longest a notice runs without being renewed, whatever the client asks.
const MAX_TYPING: Duration = Duration::from_secs(120);

pub(crate) async fn set(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: create_typing_event::v3::Request,
) -> Result<create_typing_event::v3::Response, MatrixError> {
    let user = context.user()?;
    if request.user_id.as_str() != user.user_id {
        return Err(MatrixError::forbidden(
            "Cannot send typing notices for another user",
        ));
    }
    let room_id = request.room_id.as_str();
    if api
        .current_membership(room_id, &user.user_id)
        .await?
        .as_deref()
        != Some("join")
    {
        return Err(MatrixError::forbidden("You are not joined to this room"));
    }
    let until_ms = match request.state {
        Typing::Yes(info) => {
            let timeout = info.timeout.min(MAX_TYPING);
            Some(now_millis() + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX))
        }
        _ => None,
    };
    api.store
        .set_typing(room_id, &user.user_id, until_ms)
        .await?;
    let change = TypingChanged {
        room_id: room_id.to_owned(),
        user_id: user.user_id.clone(),
        until_ms,
    };
    if let Err(error) = topics::TYPING.announce(api.bus.as_ref(), &change).await {
        tracing::warn!(%error, "cannot announce a typing notice");
    }
    Ok(create_typing_event::v3::Response::new())
}
