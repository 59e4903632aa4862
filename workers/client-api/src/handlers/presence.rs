//! `PUT`/`GET /presence/{userId}/status`: a user sets their own presence;
//! users who share a room with them read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
/// A user's activity refreshes their presence at most this often.
const ACTIVITY_GRANULARITY_MS: i64 = 60_000;
/// Users the gate remembers; past this it starts over.
const MAX_REMEMBERED: usize = 100_000;

/// When each user's activity last refreshed their presence here.
#[derive(Default)]
pub(crate) struct ActivityGate {
    last: Mutex<HashMap<String, i64>>,
}

impl ActivityGate {
    /// Whether activity at `now` should refresh the user's presence.
    fn due(&self, user_id: &str, now: i64) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last
            .get(user_id)
            .is_some_and(|at| now - at < ACTIVITY_GRANULARITY_MS)
        {
            return false;
        }
        if last.len() >= MAX_REMEMBERED {
            last.clear();
        }
        last.insert(user_id.to_owned(), now);
        true
    }
}

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

    /// The user did something (sent an event): an online user's activity
    /// is refreshed and an idle one is back online. An offline user stays
    /// offline: only their syncs or their own word bring them back.
    pub(crate) async fn note_activity(&self, user_id: &str) {
        let now = now_millis();
        if !self.config.presence.enabled || !self.activity.due(user_id, now) {
            return;
        }
        let result = match self.store.presence(user_id).await {
            Ok(Some(record)) if record.state != "offline" => {
                self.record_presence(PresenceUpdate {
                    user_id: user_id.to_owned(),
                    state: "online".to_owned(),
                    status_msg: None,
                    last_active_ts: now,
                })
                .await
            }
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        };
        if let Err(error) = result {
            tracing::warn!(error = %error.error, "cannot record activity");
        }
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
