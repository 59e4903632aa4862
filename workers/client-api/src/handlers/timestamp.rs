//! `GET /rooms/{roomId}/timestamp_to_event`: the event closest to a time in
//! one direction, among those the user may see.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_store::Direction;
use ruma::api::client::room::get_event_by_timestamp;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, UInt};

use crate::ClientApi;

/// Events looked at past the time before giving up: those the user may
/// not see are skipped, but not without end.
const MAX_CANDIDATES: usize = 500;

pub(crate) async fn event_at(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_event_by_timestamp::v1::Request,
) -> Result<get_event_by_timestamp::v1::Response, MatrixError> {
    let user = context.user()?;
    let room_id = request.room_id.as_str();
    api.require_room(room_id).await?;
    let reader = api.room_reader(room_id, &user.user_id).await?;
    let direction = match request.dir {
        ruma::api::Direction::Forward => Direction::Forward,
        ruma::api::Direction::Backward => Direction::Backward,
    };
    let ts = i64::try_from(u64::from(request.ts.get())).unwrap_or(i64::MAX);
    let event = api
        .store
        .events_by_time(room_id, ts, direction, MAX_CANDIDATES)
        .await?
        .into_iter()
        .find(|event| reader.may_see(event))
        .ok_or_else(|| MatrixError::not_found("No event found in that direction"))?;
    let event_id = OwnedEventId::try_from(event.event_id)
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    let sent = UInt::try_from(event.origin_server_ts.max(0) as u64).unwrap_or(UInt::MAX);
    Ok(get_event_by_timestamp::v1::Response::new(
        event_id,
        MilliSecondsSinceUnixEpoch(sent),
    ))
}
