//! `GET /notifications`: the events that notified the user, newest first.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::stored_client_event;
use myelin_types::StreamPosition;
use ruma::api::client::push::get_notifications::{self, v3::Notification};
use ruma::push::{Action, Tweak};
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedRoomId, UInt};

use crate::ClientApi;

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

fn actions(highlight: bool) -> Vec<Action> {
    let mut actions = vec![Action::Notify];
    if highlight {
        actions.push(Action::SetTweak(Tweak::Highlight(true.into())));
    }
    actions
}

pub(crate) async fn list(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_notifications::v3::Request,
) -> Result<get_notifications::v3::Response, MatrixError> {
    let user = context.user()?;
    let before = match &request.from {
        Some(token) => Some(StreamPosition(token.parse::<i64>().map_err(|_| {
            MatrixError::invalid_param("from is not a token this server gave")
        })?)),
        None => None,
    };
    let only_highlight = match request.only.as_deref() {
        None => false,
        Some("highlight") => true,
        Some(other) => {
            return Err(MatrixError::invalid_param(format!(
                "only must be \"highlight\", not {other:?}"
            )));
        }
    };
    let limit = request
        .limit
        .map_or(DEFAULT_LIMIT, |limit| {
            usize::try_from(u64::from(limit)).unwrap_or(MAX_LIMIT)
        })
        .clamp(1, MAX_LIMIT);
    let records = api
        .store
        .notifications(&user.user_id, before, limit + 1, only_highlight)
        .await?;
    let more = records.len() > limit;
    let viewer = Some((user.user_id.as_str(), user.device_id.as_str()));
    let mut notifications = Vec::new();
    for record in records.iter().take(limit) {
        let json = stored_client_event(&record.event, viewer);
        let event = serde_json::value::to_raw_value(&json)
            .map(Raw::from_json)
            .map_err(|error| MatrixError::internal(error.to_string()))?;
        let room_id = OwnedRoomId::try_from(record.event.room_id.as_str())
            .map_err(|error| MatrixError::internal(error.to_string()))?;
        let ts = MilliSecondsSinceUnixEpoch(
            UInt::try_from(record.event.origin_server_ts.max(0)).unwrap_or_default(),
        );
        notifications.push(Notification::new(
            actions(record.highlight),
            event,
            record.read,
            room_id,
            ts,
        ));
    }
    let mut response = get_notifications::v3::Response::new(notifications);
    if more {
        response.next_token = records
            .get(limit - 1)
            .map(|last| last.event.position.0.to_string());
    }
    Ok(response)
}
