//! Asking a room's writer to write: a request over the bus to the event
//! persister that holds the room's partition, retried while the partition
//! changes hands.

use std::time::Duration;

use http::StatusCode;
use myelin_bus::messages::{
    self, RoomInput, RoomInputDone, RoomInputReply, RoomInputRequest, WIRE_VERSION,
};
use myelin_bus::{Bus, BusError, subjects};
use myelin_http::MatrixError;
use myelin_types::Partition;

/// A writer that has not answered by then is presumed gone; a client may
/// retry with the same transaction ID and get the same event.
const ROOM_INPUT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a partition that has no writer (a writer
/// starting, or a partition moving between writers).
const HANDOVER_WAIT: Duration = Duration::from_secs(30);

/// Sends `input` to the writer of `partition` and returns its answer, a
/// refusal as the Matrix error it names.
pub async fn request_room_input(
    bus: &dyn Bus,
    partition: Partition,
    input: RoomInput,
) -> Result<RoomInputDone, MatrixError> {
    let request = RoomInputRequest {
        v: WIRE_VERSION,
        input,
    };
    // A send with a transaction ID may be repeated safely: the store dedupes
    // it, as the writer does another server's event by its ID. Other inputs
    // are resent only when surely not processed.
    let idempotent = match &request.input {
        RoomInput::Send(send) => send.txn.is_some(),
        RoomInput::Remote(_)
        | RoomInput::JoinRemote(_)
        | RoomInput::RemoteMembership(_)
        | RoomInput::Backfill(_) => true,
        RoomInput::CreateRoom(_) => false,
    };
    let subject = subjects::room_input(partition);
    let payload = messages::encode(&request);
    let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
    loop {
        let in_time = tokio::time::Instant::now() < deadline;
        let reply = match bus
            .request(&subject, payload.clone(), ROOM_INPUT_TIMEOUT)
            .await
        {
            // Nobody got the request: the partition is changing hands.
            Err(BusError::NoResponders(_)) if in_time => None,
            // A request in a writer's buffer when it let go of the partition is lost.
            Err(BusError::Timeout) if in_time && idempotent => None,
            other => Some(messages::decode::<RoomInputReply>(&other?)?),
        };
        match reply.map(|reply| reply.outcome) {
            Some(Err(refused)) if refused.errcode == messages::RESEND && in_time => {}
            Some(outcome) => {
                return outcome.map_err(|refused| {
                    let status = StatusCode::from_u16(refused.status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    MatrixError::new(status, refused.errcode, refused.error)
                });
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
