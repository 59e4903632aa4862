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

/// The `auth_events` a new event cites, from the head's state.
fn cited_auth_events(
    head: &RoomHead<'_>,
    new: &NewEvent<'_>,
) -> Result<Vec<EventRef>, ComposeError> {
    let auth_ids = crate::auth_event_ids(
        head.version,
        new.sender,
        new.event_type,
        new.state_key,
        &new.content,
        head.state,
    )?;
    Ok(auth_ids
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
        .collect())
}

fn pdu_input<'a>(
    head: &'a RoomHead<'a>,
    new: NewEvent<'a>,
    auth_events: &'a [EventRef],
) -> PduInput<'a> {
    PduInput {
        version: head.version,
        room_id: head.room_id,
        sender: new.sender,
        event_type: new.event_type,
        state_key: new.state_key,
        content: new.content,
        redacts: new.redacts,
        prev_events: head.extremities,
        auth_events,
        depth: crate::next_depth(head.max_depth),
        origin_server_ts: new.origin_server_ts,
    }
}

pub fn compose_event(
    key: &ServerKey,
    head: &RoomHead<'_>,
    new: NewEvent<'_>,
) -> Result<BuiltPdu, ComposeError> {
    let auth_events = cited_auth_events(head, &new)?;
    let built = crate::build_pdu(key, pdu_input(head, new, &auth_events))?;
    crate::authorize(head.version, &built.pdu, head.state)?;
    Ok(built)
}

/// The unsigned event a user of another server is asked to sign to join,
/// leave or knock (`make_join` and its kin): what [`compose_event`] would
/// build, without hashes and signatures, and allowed by the room's state.
pub fn event_template(
    head: &RoomHead<'_>,
    new: NewEvent<'_>,
) -> Result<serde_json::Map<String, Value>, ComposeError> {
    let auth_events = cited_auth_events(head, &new)?;
    let object = crate::build::unsigned_pdu(pdu_input(head, new, &auth_events))?;
    // The rules judge the event before it has an ID of its own.
    let pdu = crate::Pdu::from_object("$template", &object)
        .map_err(|error| BuildError::NotCanonical(error.to_string()))?;
    crate::authorize(head.version, &pdu, head.state)?;
    Ok(object)
}

/// The most `prev_events` one event may cite; servers refuse more.
pub const MAX_PREV_EVENTS: usize = 20;

/// Splits a room's forward extremities, each with its depth, into those the
/// next event cites (the deepest [`MAX_PREV_EVENTS`]; ties by ID, so every
/// writer picks the same) and those left for a later event.
pub fn cite_deepest(mut extremities: Vec<(EventRef, i64)>) -> (Vec<EventRef>, Vec<EventRef>) {
    extremities.sort_by(|(a, a_depth), (b, b_depth)| {
        b_depth
            .cmp(a_depth)
            .then_with(|| a.event_id.cmp(&b.event_id))
    });
    let uncited = extremities
        .split_off(extremities.len().min(MAX_PREV_EVENTS))
        .into_iter()
        .map(|(extremity, _)| extremity)
        .collect();
    let cited = extremities
        .into_iter()
        .map(|(extremity, _)| extremity)
        .collect();
    (cited, uncited)
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
