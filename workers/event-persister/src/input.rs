//! Answering room input requests from the bus.

use myelin_bus::Request;
use myelin_bus::messages::{
    self, CreateRoom, RemoteEventsReply, RoomInput, RoomInputDone, RoomInputRefused,
    RoomInputReply, RoomInputRequest, SendEvent, WIRE_VERSION,
};
use myelin_room::RoomVersion;
use myelin_store::{Fence, StoreError, TxnKey};

use crate::EventPersister;
use crate::head::CachedHead;
use crate::persist::advance;

pub(crate) fn refused(status: u16, errcode: &str, error: &str) -> RoomInputRefused {
    RoomInputRefused {
        status,
        errcode: errcode.to_owned(),
        error: error.to_owned(),
    }
}

pub(crate) fn unavailable(error: StoreError) -> RoomInputRefused {
    if matches!(error, StoreError::Fenced) {
        // The partition's lease moved on without this writer noticing yet:
        // the client API sends the input again, to the new owner.
        tracing::warn!("a write was fenced off: this writer lost a partition lease");
        return refused(
            503,
            messages::RESEND,
            "This room's writer is changing; send again",
        );
    }
    tracing::warn!(%error, "store error while writing a room");
    refused(
        503,
        "M_UNKNOWN",
        "The database is unavailable; try again later",
    )
}

async fn respond(request: Request, reply: &impl serde::Serialize) {
    if let Err(error) = request.respond(messages::encode(reply)).await {
        tracing::warn!(%error, "could not answer a room input request");
    }
}

impl EventPersister {
    pub(crate) async fn answer(&self, request: Request, fence: Fence) {
        let decoded = messages::decode::<RoomInputRequest>(&request.message.payload);
        if let Ok(RoomInputRequest {
            input: RoomInput::RemoteBatch(batch),
            ..
        }) = decoded
        {
            let outcome = self.accept_remote_events(batch, fence).await;
            self.review_if_fenced(outcome.as_ref().err());
            let reply = RemoteEventsReply {
                v: WIRE_VERSION,
                outcome,
            };
            respond(request, &reply).await;
            return;
        }
        let outcome = match decoded {
            Ok(input) => match input.input {
                RoomInput::Send(send) => self.send(send, fence).await,
                RoomInput::CreateRoom(create) => self.create_room(create, fence).await,
                RoomInput::Remote(remote) => self.accept_remote(remote, fence).await,
                RoomInput::JoinRemote(join) => self.join_remote_room(join, fence).await,
                RoomInput::RemoteMembership(membership) => {
                    self.accept_remote_membership(membership, fence).await
                }
                RoomInput::Backfill(batch) => self.accept_backfill(batch, fence).await,
                // Taken above: its answer has a shape of its own.
                RoomInput::RemoteBatch(_) => Err(refused(
                    400,
                    "M_BAD_JSON",
                    "a batch of events is answered apart",
                )),
            },
            Err(error) => Err(refused(
                400,
                "M_BAD_JSON",
                &format!("unreadable room input: {error}"),
            )),
        };
        self.review_if_fenced(outcome.as_ref().err());
        let reply = RoomInputReply {
            v: WIRE_VERSION,
            outcome,
        };
        respond(request, &reply).await;
    }

    /// A write fenced off: the session is checked at once and what was
    /// lost let go.
    fn review_if_fenced(&self, refusal: Option<&RoomInputRefused>) {
        if refusal.is_some_and(|refusal| refusal.errcode == messages::RESEND) {
            self.leases.review_now();
        }
    }

    async fn send(&self, send: SendEvent, fence: Fence) -> Result<RoomInputDone, RoomInputRefused> {
        let txn = send.txn.map(|txn| TxnKey {
            user_id: send.sender.clone(),
            device_id: txn.device_id,
            txn_id: txn.txn_id,
        });
        // A repeated transaction ID is caught by the store, atomically with the write.
        let mut guard = self.locked_head(&send.room_id).await?;
        let Some(head) = guard.as_mut() else {
            return Err(crate::head::head_missing());
        };
        let result = self
            .write_event(head, &send.sender, send.template, txn, fence)
            .await;
        if result.is_err() {
            // The store may or may not have the event; trust only the store next time.
            *guard = None;
        }
        result
    }

    /// A new room is written under the fence of the partition the request
    /// came in on; nobody else can write a room whose ID is not known yet.
    async fn create_room(
        &self,
        create: CreateRoom,
        fence: Fence,
    ) -> Result<RoomInputDone, RoomInputRefused> {
        let version = RoomVersion::stable(&create.room_version).ok_or_else(|| {
            refused(
                400,
                "M_UNSUPPORTED_ROOM_VERSION",
                "This server does not support that room version",
            )
        })?;
        let slot = create
            .room_id
            .as_deref()
            .map(|room_id| self.heads.slot(room_id));
        let _guard = match &slot {
            Some(slot) => Some(slot.lock().await),
            None => None,
        };
        // A room ID derived from the create event is the same for two equal
        // requests in one millisecond: the second is composed again, later.
        let mut attempts_left = if create.room_id.is_none() { 5 } else { 1 };
        let (composed, positions) = loop {
            attempts_left -= 1;
            let composed = self.compose_room(&create, version.clone(), fence).await?;
            match self
                .event_store
                .persist_events(composed.iter().map(|event| event.record.clone()).collect())
                .await
            {
                Ok(positions) => break (composed, positions),
                Err(StoreError::Conflict(_)) if attempts_left > 0 => {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err(error) => return Err(unavailable(error)),
            }
        };
        let Some(last) = composed.last() else {
            return Err(refused(400, "M_BAD_JSON", "no create event"));
        };
        for (event, position) in composed.iter().zip(&positions) {
            self.announce(&event.record, *position).await;
        }
        Ok(last.done(positions.last().copied()))
    }

    /// Every event of a new room, composed and authorized in order; none is
    /// written yet.
    async fn compose_room(
        &self,
        create: &CreateRoom,
        version: RoomVersion,
        fence: Fence,
    ) -> Result<Vec<crate::persist::ComposedEvent>, RoomInputRefused> {
        let mut head = CachedHead {
            room_id: create.room_id.clone().unwrap_or_default(),
            version,
            state: Default::default(),
            extremities: Vec::new(),
            max_depth: 0,
            snapshot: None,
            joined: Default::default(),
            redactions_wait: false,
        };
        // Every event is composed and authorized before any is written, and
        // all are written in one transaction: a refusal or a crash part-way
        // leaves no room behind.
        let mut composed = Vec::with_capacity(create.events.len());
        for template in &create.events {
            let event = self
                .compose(&head, &create.creator, template.clone(), None, fence)
                .await?;
            advance(&mut head, &event);
            composed.push(event);
        }
        Ok(composed)
    }
}
