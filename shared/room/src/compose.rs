//! The next event of a room: cite the state it depends on, build and sign
//! it, and check it against the authorization rules.

use serde_json::Value;

use crate::build::reference_hash_of;
use crate::{
    AuthError, BuildError, BuiltPdu, EventRef, PduInput, RoomState, RoomVersion, ServerKey,
};

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Where a room stands before the new event.
pub struct RoomHead<'a> {
    pub version: &'a RoomVersion,
    /// `None` for the create event of a version that derives the room ID.
    pub room_id: Option<&'a str>,
    pub state: &'a RoomState,
    /// The forward extremities and the highest depth among them.
    pub extremities: &'a [EventRef],
    pub max_depth: i64,
}

/// What a client asked for.
pub struct NewEvent<'a> {
    pub sender: &'a str,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub content: Value,
    pub redacts: Option<&'a str>,
    pub origin_server_ts: i64,
}

pub fn compose_event(
    key: &ServerKey,
    head: &RoomHead<'_>,
    new: NewEvent<'_>,
) -> Result<BuiltPdu, ComposeError> {
    let auth_ids = crate::auth_event_ids(
        head.version,
        new.sender,
        new.event_type,
        new.state_key,
        &new.content,
        head.state,
    )?;
    let auth_events: Vec<EventRef> = auth_ids
        .into_iter()
        .map(|event_id| {
            let reference_hash = head
                .state
                .values()
                .find(|pdu| pdu.event_id.as_str() == event_id)
                .and_then(|pdu| pdu.reference_hash.clone());
            EventRef {
                event_id,
                reference_hash,
            }
        })
        .collect();
    let built = crate::build_pdu(
        key,
        PduInput {
            version: head.version,
            room_id: head.room_id,
            sender: new.sender,
            event_type: new.event_type,
            state_key: new.state_key,
            content: new.content,
            redacts: new.redacts,
            prev_events: head.extremities,
            auth_events: &auth_events,
            depth: head.max_depth + 1,
            origin_server_ts: new.origin_server_ts,
        },
    )?;
    crate::authorize(head.version, &built.pdu, head.state)?;
    Ok(built)
}

/// The reference to an event for later `prev_events`/`auth_events`.
pub fn event_ref(version: &RoomVersion, event_id: &str, pdu_json: &str) -> EventRef {
    let needs_hash = version.rules.events_reference_format
        == ruma::room_version_rules::EventsReferenceFormatVersion::V1;
    EventRef {
        event_id: event_id.to_owned(),
        reference_hash: if needs_hash {
            reference_hash_of(version, pdu_json)
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests;
