//! The client side of room writes: requests over the bus to the room's
//! event persister.

use std::time::Duration;

use http::StatusCode;
use myelin_bus::messages::{
    self, CreateRoom, EventTemplate, RoomInput, RoomInputDone, RoomInputReply, RoomInputRequest,
    SendEvent, WIRE_VERSION, WireTxn,
};
use myelin_bus::{BusError, subjects};
use myelin_http::MatrixError;
use myelin_types::Partition;
use serde_json::Value;

use crate::ClientApi;

/// A writer that has not answered by then is presumed gone; the client may
/// retry with the same transaction ID and get the same event.
const ROOM_INPUT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a partition that has no writer (a writer
/// starting, or a partition moving between writers).
const HANDOVER_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn template(event_type: &str, state_key: Option<&str>, content: Value) -> EventTemplate {
    EventTemplate {
        event_type: event_type.to_owned(),
        state_key: state_key.map(str::to_owned),
        content,
        redacts: None,
    }
}

impl ClientApi {
    async fn room_input(
        &self,
        partition: Partition,
        input: RoomInput,
    ) -> Result<RoomInputDone, MatrixError> {
        let request = RoomInputRequest {
            v: WIRE_VERSION,
            input,
        };
        // A send with a transaction ID may be repeated safely: the store
        // dedupes it. Other inputs are resent only when surely not processed.
        let idempotent = matches!(&request.input, RoomInput::Send(send) if send.txn.is_some());
        let subject = subjects::room_input(partition);
        let payload = messages::encode(&request);
        let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
        loop {
            let in_time = tokio::time::Instant::now() < deadline;
            let reply = match self
                .bus
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

    pub(crate) async fn send_event(
        &self,
        room_id: &str,
        sender: &str,
        template: EventTemplate,
        txn: Option<WireTxn>,
    ) -> Result<RoomInputDone, MatrixError> {
        let send = SendEvent {
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            template,
            txn,
        };
        self.room_input(Partition::of_room(room_id), RoomInput::Send(send))
            .await
    }

    pub(crate) async fn create_room_events(
        &self,
        create: CreateRoom,
    ) -> Result<RoomInputDone, MatrixError> {
        // A derived room ID is unknown until the create event exists; any writer may create it.
        let partition = match &create.room_id {
            Some(room_id) => Partition::of_room(room_id),
            None => Partition::of_room(&crate::user_ids::random_string(12)),
        };
        self.room_input(partition, RoomInput::CreateRoom(create))
            .await
    }

    /// Sets the sender's membership with their profile, as member events carry it.
    pub(crate) async fn set_membership(
        &self,
        room_id: &str,
        sender: &str,
        target: &str,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<RoomInputDone, MatrixError> {
        let mut content = serde_json::json!({"membership": membership});
        if let Some(reason) = reason {
            content["reason"] = Value::String(reason.to_owned());
        }
        if matches!(membership, "join" | "invite" | "knock")
            && let Some(user) = self.store.user(target).await?
        {
            if let Some(name) = user.displayname {
                content["displayname"] = Value::String(name);
            }
            if let Some(avatar) = user.avatar_url {
                content["avatar_url"] = Value::String(avatar);
            }
        }
        self.send_event(
            room_id,
            sender,
            template("m.room.member", Some(target), content),
            None,
        )
        .await
    }
}
