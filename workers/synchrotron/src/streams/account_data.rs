//! The account-data stream: global entries in `account_data`, room entries
//! in each joined room's `account_data`.

use myelin_http::MatrixError;
use myelin_types::SyncToken;
use ruma::api::client::sync::sync_events::v3::Response;
use ruma::push::Ruleset;
use ruma::{OwnedRoomId, UserId};
use serde_json::{Value, json};

use super::{SyncRequest, raw};
use crate::Synchrotron;

const PUSH_RULES: &str = "m.push_rules";

pub(super) async fn fill(
    sync: &Synchrotron,
    request: &SyncRequest,
    joined: &[OwnedRoomId],
    upto: SyncToken,
    response: &mut Response,
) -> Result<bool, MatrixError> {
    let since = request.since.map(|token| token.account_data);
    if since == Some(upto.account_data) {
        return Ok(false);
    }
    let changes = sync
        .store
        .account_data_changes(&request.user.user_id, since, upto.account_data)
        .await?;
    let mut news = false;
    // A first sync always carries the push rules, the defaults when the
    // user has changed none, as clients read them from here.
    if since.is_none()
        && request.filter.account_data.allows_type(PUSH_RULES)
        && !changes
            .iter()
            .any(|entry| entry.room_id.is_none() && entry.data_type == PUSH_RULES)
        && let Ok(user_id) = UserId::parse(&request.user.user_id)
    {
        let defaults = Ruleset::server_default(&user_id);
        let event = json!({"type": PUSH_RULES, "content": {"global": defaults}});
        response.account_data.events.push(raw(&event)?);
    }
    for entry in changes {
        let content: Value = serde_json::from_str(&entry.content)
            .map_err(|error| MatrixError::internal(error.to_string()))?;
        let event = json!({"type": entry.data_type, "content": content});
        match entry.room_id {
            None if request.filter.account_data.allows_type(&entry.data_type) => {
                response.account_data.events.push(raw(&event)?);
                news = true;
            }
            Some(room_id)
                if request
                    .filter
                    .room_account_data
                    .allows_type(&entry.data_type) =>
            {
                let Some(room_id) = joined.iter().find(|joined| joined.as_str() == room_id) else {
                    continue;
                };
                response
                    .rooms
                    .join
                    .entry(room_id.clone())
                    .or_default()
                    .account_data
                    .events
                    .push(raw(&event)?);
                news = true;
            }
            _ => {}
        }
    }
    Ok(news)
}
