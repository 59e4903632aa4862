//! `PUT`/`GET /presence/{userId}/status`: a user sets their own presence;
//! users who share a room with them read it.

use std::sync::Arc;
use std::time::Duration;

use myelin_bus::topics::{self, PresenceChanged};
use myelin_http::{MatrixError, RequestContext};
use myelin_room::presence::{currently_active, last_active_ago};
use myelin_store::PresenceUpdate;
use myelin_types::now_millis;
use ruma::api::client::presence::{get_presence, set_presence};
use ruma::presence::PresenceState;

use crate::ClientApi;

/// Longest status message kept.
const MAX_STATUS_MSG_BYTES: usize = 1024;

impl ClientApi {
    /// Records a presence change and rings its bell.
    pub(crate) async fn record_presence(&self, update: PresenceUpdate) -> Result<(), MatrixError> {
        let user_id = update.user_id.clone();
        let position = self.store.set_presence(update).await?;
        let change = PresenceChanged { user_id, position };
        if let Err(error) = topics::PRESENCE.announce(self.bus.as_ref(), &change).await {
            tracing::warn!(%error, "cannot announce a presence change");
        }
        Ok(())
    }

    /// Whether the two users are joined to a room together.
    async fn share_a_room(&self, user_id: &str, other: &str) -> Result<bool, MatrixError> {
        for membership in self.store.memberships_of_user(user_id).await? {
            if membership.membership == "join"
                && self
                    .current_membership(&membership.room_id, other)
                    .await?
                    .as_deref()
                    == Some("join")
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

pub(crate) async fn set(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_presence::v3::Request,
) -> Result<set_presence::v3::Response, MatrixError> {
    let user = context.user()?;
    if request.user_id.as_str() != user.user_id {
        return Err(MatrixError::forbidden("Cannot set another user's presence"));
    }
    let state = match request.presence {
        PresenceState::Online | PresenceState::Unavailable | PresenceState::Offline => {
            request.presence.as_str().to_owned()
        }
        other => {
            return Err(MatrixError::invalid_param(format!(
                "Unknown presence {}",
                other.as_str()
            )));
        }
    };
    if request
        .status_msg
        .as_ref()
        .is_some_and(|message| message.len() > MAX_STATUS_MSG_BYTES)
    {
        return Err(MatrixError::too_large("The status message is too long"));
    }
    if api.config.presence.enabled {
        api.record_presence(PresenceUpdate {
            user_id: user.user_id.clone(),
            state,
            status_msg: Some(request.status_msg),
            last_active_ts: now_millis(),
        })
        .await?;
    }
    Ok(set_presence::v3::Response::new())
}

pub(crate) async fn get(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_presence::v3::Request,
) -> Result<get_presence::v3::Response, MatrixError> {
    let user = context.user()?;
    let target = request.user_id.as_str();
    if target != user.user_id {
        if api.store.user(target).await?.is_none()
            && target.ends_with(&format!(":{}", api.server_name))
        {
            return Err(MatrixError::not_found("No such user"));
        }
        if !api.share_a_room(&user.user_id, target).await? {
            return Err(MatrixError::forbidden(
                "You do not share a room with this user",
            ));
        }
    }
    let record = if api.config.presence.enabled {
        api.store.presence(target).await?
    } else {
        None
    };
    let Some(record) = record else {
        return Ok(get_presence::v3::Response::new(PresenceState::Offline));
    };
    let now = now_millis();
    let mut response = get_presence::v3::Response::new(PresenceState::from(record.state.as_str()));
    response.status_msg = record.status_msg.clone();
    response.currently_active = Some(currently_active(&record, now));
    response.last_active_ago = Some(Duration::from_millis(
        u64::try_from(last_active_ago(&record, now)).unwrap_or_default(),
    ));
    Ok(response)
}
