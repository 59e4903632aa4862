//! The authorization rules, run by ruma against the room state.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::{EventId, UserId};
use serde_json::Value;

use crate::{Pdu, RoomVersion};

/// A room's state: `(event type, state key)` to the state event.
pub type RoomState = BTreeMap<(String, String), Arc<Pdu>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The rules reject the event.
    #[error("{0}")]
    Forbidden(String),
    /// The input is not a valid event (bad user ID, bad content).
    #[error("{0}")]
    Invalid(String),
}

/// The state events a new event must cite as `auth_events`.
pub fn auth_event_ids(
    version: &RoomVersion,
    sender: &str,
    event_type: &str,
    state_key: Option<&str>,
    content: &Value,
    state: &RoomState,
) -> Result<Vec<String>, AuthError> {
    let sender =
        <&UserId>::try_from(sender).map_err(|error| AuthError::Invalid(error.to_string()))?;
    let raw_content = serde_json::value::to_raw_value(content)
        .map_err(|error| AuthError::Invalid(error.to_string()))?;
    let needed = ruma::state_res::auth_types_for_event(
        &TimelineEventType::from(event_type),
        sender,
        state_key,
        &raw_content,
        &version.rules.authorization,
    )
    .map_err(AuthError::Invalid)?;
    let mut ids: Vec<String> = needed
        .iter()
        .filter_map(|(kind, key)| state.get(&(kind.to_string(), key.clone())))
        .map(|pdu| pdu.event_id.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Runs every authorization rule of the room version on `pdu` against `state`
/// (the state before it); the event's `auth_events` are looked up in `state`.
pub fn authorize(version: &RoomVersion, pdu: &Pdu, state: &RoomState) -> Result<(), AuthError> {
    let by_id: BTreeMap<&EventId, &Arc<Pdu>> = state
        .values()
        .map(|event| (&*event.event_id, event))
        .collect();
    authorize_citing(version, pdu, state, |event_id| {
        by_id.get(event_id).map(|event| Arc::clone(event))
    })
}

/// [`authorize`] for an event from another server, whose `auth_events` may
/// cite events no longer in `state`: `cited` finds them.
pub fn authorize_citing(
    version: &RoomVersion,
    pdu: &Pdu,
    state: &RoomState,
    cited: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<(), AuthError> {
    let rules = &version.rules.authorization;
    ruma::state_res::check_state_independent_auth_rules(rules, pdu, |event_id: &EventId| {
        cited(event_id)
    })
    .map_err(AuthError::Forbidden)?;
    ruma::state_res::check_state_dependent_auth_rules(
        rules,
        pdu,
        |kind: &StateEventType, key: &str| state.get(&(kind.to_string(), key.to_owned())).cloned(),
    )
    .map_err(AuthError::Forbidden)
}

/// Checks events handed over together (a join's state and auth chain)
/// each by the auth events it cites, oldest first, and returns the IDs of
/// those that pass. An event citing one that failed or is not among them
/// fails too; the create event, which a version 12 event cites by its room
/// ID alone, is found by its ID.
pub fn authorized_by_auth_events(
    version: &RoomVersion,
    events: &[Arc<Pdu>],
) -> std::collections::BTreeSet<ruma::OwnedEventId> {
    let mut ordered: Vec<&Arc<Pdu>> = events.iter().collect();
    ordered.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
    let mut passed: BTreeMap<ruma::OwnedEventId, Arc<Pdu>> = BTreeMap::new();
    let mut create: Option<Arc<Pdu>> = None;
    for pdu in ordered {
        if passed.contains_key(&pdu.event_id) {
            continue;
        }
        let mut cited = RoomState::new();
        let mut complete = true;
        for auth_event in &pdu.auth_events {
            match passed.get(auth_event) {
                Some(event) => {
                    if let Some(key) = &event.state_key {
                        cited.insert(
                            (event.event_type.to_string(), key.clone()),
                            Arc::clone(event),
                        );
                    }
                }
                None => complete = false,
            }
        }
        if !complete {
            continue;
        }
        if let Some(create) = &create {
            cited
                .entry(("m.room.create".to_owned(), String::new()))
                .or_insert_with(|| Arc::clone(create));
        }
        let lookup = |event_id: &EventId| passed.get(event_id).cloned();
        if authorize_citing(version, pdu, &cited, lookup).is_err() {
            continue;
        }
        if pdu.event_type.to_string() == "m.room.create" && pdu.state_key.as_deref() == Some("") {
            create.get_or_insert_with(|| Arc::clone(pdu));
        }
        passed.insert(pdu.event_id.clone(), Arc::clone(pdu));
    }
    passed.into_keys().collect()
}

/// The state a stored list of state events makes: `(event ID, PDU JSON)`
/// pairs, each keyed by its own type and state key.
pub fn state_from_pdus<'a>(
    version: &RoomVersion,
    events: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<RoomState, crate::PduParseError> {
    let mut state = RoomState::new();
    for (event_id, pdu_json) in events {
        let mut pdu = Pdu::from_json(event_id, pdu_json)?;
        let Some(state_key) = pdu.state_key.clone() else {
            return Err(crate::PduParseError(format!(
                "{event_id} is not a state event"
            )));
        };
        pdu.reference_hash = crate::event_ref(version, event_id, pdu_json).reference_hash;
        state.insert((pdu.event_type.to_string(), state_key), Arc::new(pdu));
    }
    Ok(state)
}
