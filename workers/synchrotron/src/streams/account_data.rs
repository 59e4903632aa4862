//! The account-data stream: global entries in `account_data`, room entries
//! in each joined room's `account_data`.

use myelin_http::MatrixError;
use myelin_types::SyncToken;
use ruma::OwnedRoomId;
use ruma::api::client::sync::sync_events::v3::Response;
use serde_json::{Value, json};

use super::{SyncRequest, raw};
use crate::Synchrotron;

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
