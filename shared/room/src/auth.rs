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
/// (the state before it).
pub fn authorize(version: &RoomVersion, pdu: &Pdu, state: &RoomState) -> Result<(), AuthError> {
    let rules = &version.rules.authorization;
    let by_id: BTreeMap<&EventId, &Arc<Pdu>> = state
        .values()
        .map(|event| (&*event.event_id, event))
        .collect();
    ruma::state_res::check_state_independent_auth_rules(rules, pdu, |event_id: &EventId| {
        by_id.get(event_id).map(|event| Arc::clone(event))
    })
    .map_err(AuthError::Forbidden)?;
    ruma::state_res::check_state_dependent_auth_rules(
        rules,
        pdu,
        |kind: &StateEventType, key: &str| state.get(&(kind.to_string(), key.to_owned())).cloned(),
    )
    .map_err(AuthError::Forbidden)
}
