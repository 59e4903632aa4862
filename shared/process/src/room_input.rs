//! Asking a room's writer to write: a request over the bus to the event
//! persister that holds the room's partition, retried while the partition
//! changes hands.

use std::time::Duration;

use http::StatusCode;
use myelin_bus::messages::{
    self, RemoteEventOutcome, RemoteEvents, RemoteEventsReply, RoomInput, RoomInputDone,
    RoomInputRefused, RoomInputReply, RoomInputRequest, WIRE_VERSION,
};
use myelin_bus::{Bus, BusError, subjects};
use myelin_http::MatrixError;
use myelin_types::Partition;

/// A writer that has not answered by then is presumed gone; a client may
/// retry with the same transaction ID and get the same event.
const ROOM_INPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// A batch of another server's events may need states resolved for many.
const REMOTE_BATCH_TIMEOUT: Duration = Duration::from_secs(30);

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
    ask::<RoomInputReply>(bus, partition, input, ROOM_INPUT_TIMEOUT).await
}

/// Sends another server's events of one room to its writer in one request;
/// returns each event's outcome, in order.
pub async fn request_remote_events(
    bus: &dyn Bus,
    partition: Partition,
    events: RemoteEvents,
) -> Result<Vec<RemoteEventOutcome>, MatrixError> {
    ask::<RemoteEventsReply>(
        bus,
        partition,
        RoomInput::RemoteBatch(events),
        REMOTE_BATCH_TIMEOUT,
    )
    .await
}

/// A writer's answer: what was done, or a refusal.
trait WriterReply: serde::de::DeserializeOwned {
    type Done;
    fn outcome(self) -> Result<Self::Done, RoomInputRefused>;
}

impl WriterReply for RoomInputReply {
    type Done = RoomInputDone;
    fn outcome(self) -> Result<RoomInputDone, RoomInputRefused> {
        self.outcome
    }
}

impl WriterReply for RemoteEventsReply {
    type Done = Vec<RemoteEventOutcome>;
    fn outcome(self) -> Result<Vec<RemoteEventOutcome>, RoomInputRefused> {
        self.outcome
    }
}

async fn ask<Reply: WriterReply>(
    bus: &dyn Bus,
    partition: Partition,
    input: RoomInput,
    timeout: Duration,
) -> Result<Reply::Done, MatrixError> {
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
        | RoomInput::RemoteBatch(_)
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
        let reply = match bus.request(&subject, payload.clone(), timeout).await {
            // Nobody got the request: the partition is changing hands.
            Err(BusError::NoResponders(_)) if in_time => None,
            // A request in a writer's buffer when it let go of the partition is lost.
            Err(BusError::Timeout) if in_time && idempotent => None,
            other => Some(messages::decode::<Reply>(&other?)?),
        };
        match reply.map(WriterReply::outcome) {
            Some(Err(refused)) if refused.errcode == messages::RESEND && in_time => {}
            Some(outcome) => return outcome.map_err(matrix_error),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A writer's refusal as the Matrix error it names.
pub fn matrix_error(refused: RoomInputRefused) -> MatrixError {
    let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    MatrixError::new(status, refused.errcode, refused.error)
}
