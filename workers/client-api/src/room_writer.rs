//! The client side of room writes: requests over the bus to the room's
//! event persister.

use myelin_bus::messages::{
    CreateRoom, EventTemplate, RoomInput, RoomInputDone, SendEvent, WireTxn,
};
use myelin_http::MatrixError;
use myelin_types::Partition;
use serde_json::Value;

use crate::ClientApi;

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
        myelin_process::request_room_input(self.bus.as_ref(), partition, input).await
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
