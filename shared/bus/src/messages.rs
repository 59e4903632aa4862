//! The payloads that cross the bus. Each carries a wire version `v` so a
//! rolling upgrade can tell old messages from new ones.

use bytes::Bytes;
use myelin_types::StreamPosition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{BusError, BusResult};

pub const WIRE_VERSION: u16 = 1;

/// Published after an event is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedEvent {
    pub v: u16,
    pub room_id: String,
    pub event_id: String,
    pub position: StreamPosition,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub membership: Option<String>,
    /// The room's current state was rebuilt with this event (a join over
    /// federation, or branches resolved), not only changed by it: who is
    /// in the room may differ by more than this event says.
    #[serde(default)]
    pub state_rebuilt: bool,
}

/// What a client asks to be written into a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventTemplate {
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: serde_json::Value,
    /// The target of an `m.room.redaction`.
    pub redacts: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTxn {
    pub device_id: String,
    pub txn_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendEvent {
    pub room_id: String,
    pub sender: String,
    pub template: EventTemplate,
    pub txn: Option<WireTxn>,
}

/// Creates a room from its initial events; the first is `m.room.create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRoom {
    /// Chosen by the caller in versions whose room ID is not derived from
    /// the create event (before version 12).
    pub room_id: Option<String>,
    pub room_version: String,
    pub creator: String,
    pub events: Vec<EventTemplate>,
}

/// Why another server's event is offered to its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteEventKind {
    /// A PDU of a transaction (`/send`).
    Transaction,
    /// The join a `send_join` completes: a join of a user of the origin.
    Join,
    /// The leave a `send_leave` completes.
    Leave,
    /// The knock a `send_knock` completes.
    Knock,
}

/// An event from another server, already checked for format, signatures
/// and content hash; its room's writer authorizes and stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteEvent {
    pub room_id: String,
    pub event_id: String,
    /// Canonical JSON of the PDU as it is to be stored.
    pub pdu_json: String,
    /// The server that sent it.
    pub origin: String,
    pub kind: RemoteEventKind,
    /// The state before the event (`/state_ids`), stored as outliers, for
    /// an event whose prev_events could not be fetched.
    #[serde(default)]
    pub state_ids: Option<Vec<String>>,
}

/// A user of this server joins another server's room: the join, signed by
/// this server and accepted by the resident server, and the state before
/// it, whose events are stored already (as outliers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRemoteRoom {
    pub room_id: String,
    pub room_version: String,
    pub event_id: String,
    pub pdu_json: String,
    pub state_ids: Vec<String>,
}

/// A membership of a local user in a room this server may not be in:
/// another server's invite (`PUT /v2/invite`, checked and countersigned
/// here), or the user's rejection of it or knock (signed here and accepted
/// by a resident server through `make_leave`/`send_leave` or
/// `make_knock`/`send_knock`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteMembership {
    pub room_id: String,
    pub room_version: String,
    pub event_id: String,
    pub pdu_json: String,
    pub origin: String,
}

/// Another server's events of one room, in the order its transaction
/// carried them. The writer stores those that extend the room's head one
/// after another in one store transaction, and answers for each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteEvents {
    pub room_id: String,
    pub events: Vec<RemoteEvent>,
}

/// What became of one event of [`RemoteEvents`]: `None`, stored (or known
/// already, or soft-failed); else why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEventOutcome {
    pub event_id: String,
    pub refused: Option<RoomInputRefused>,
}

/// The answer to [`RemoteEvents`]: each event's outcome, in order, or a
/// refusal of the whole batch (nothing of it written that is not known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEventsReply {
    pub v: u16,
    pub outcome: Result<Vec<RemoteEventOutcome>, RoomInputRefused>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoomInput {
    Send(SendEvent),
    CreateRoom(CreateRoom),
    Remote(RemoteEvent),
    RemoteBatch(RemoteEvents),
    JoinRemote(JoinRemoteRoom),
    RemoteMembership(RemoteMembership),
    Backfill(BackfilledEvents),
}

/// A room's history fetched from another server (`/backfill`), already
/// checked and stored as outliers: the room's writer moves those its rules
/// allow into the timeline, below every event there, or into the gap just
/// before `gap_before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfilledEvents {
    pub room_id: String,
    /// Oldest first.
    pub events: Vec<BackfilledEvent>,
    /// The event of the timeline whose missing prev_events were fetched:
    /// the history goes just before it. `None` for history from before
    /// the room's oldest event.
    #[serde(default)]
    pub gap_before: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfilledEvent {
    pub event_id: String,
    /// The state before the event (`/state_ids`), stored as outliers, when
    /// its prev_events are not known here.
    pub state_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInputRequest {
    pub v: u16,
    pub input: RoomInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInputDone {
    pub room_id: String,
    /// The last event written (the requested event, or the last initial event).
    pub event_id: String,
    pub position: Option<StreamPosition>,
}

/// The `errcode` of a refusal that means "not processed, send it again": a
/// writer giving its partition away answers requests it will not handle.
pub const RESEND: &str = "MYELIN_RESEND";

/// A refusal, already in Matrix terms so the client API can pass it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInputRefused {
    pub status: u16,
    pub errcode: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInputReply {
    pub v: u16,
    pub outcome: Result<RoomInputDone, RoomInputRefused>,
}

pub fn encode<T: Serialize>(message: &T) -> Bytes {
    // Serialising these plain structs cannot fail: no maps with non-string keys.
    Bytes::from(serde_json::to_vec(message).unwrap_or_default())
}

pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> BusResult<T> {
    serde_json::from_slice(payload).map_err(|error| BusError::Invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let event = PersistedEvent {
            v: WIRE_VERSION,
            room_id: "!r:hs".into(),
            event_id: "$e".into(),
            position: StreamPosition(3),
            sender: "@a:hs".into(),
            event_type: "m.room.member".into(),
            state_key: Some("@a:hs".into()),
            membership: Some("join".into()),
            state_rebuilt: true,
        };
        assert_eq!(decode::<PersistedEvent>(&encode(&event)), Ok(event));
        assert!(decode::<PersistedEvent>(b"{").is_err());
    }

    #[test]
    fn an_announcement_without_the_rebuilt_flag_reads_as_not_rebuilt() {
        let older = br#"{"v":1,"room_id":"!r:hs","event_id":"$e","position":3,"sender":"@a:hs",
            "event_type":"m.room.message","state_key":null,"membership":null}"#;
        let event = decode::<PersistedEvent>(older).expect("an older announcement decodes");
        assert!(!event.state_rebuilt);
    }
}
