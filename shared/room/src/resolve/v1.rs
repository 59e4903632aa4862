//! State resolution v1, for room version 1 rooms: kept for the old rooms
//! still federating. It is known to reset state in some forks; newer room
//! versions use v2. Servers must agree on the outcome, so this follows the
//! spec's passes as Synapse runs them: one key at a time, the state that
//! authorization checks against growing with each pass.
//!
//! A key set to the same event in every fork that has it is unconflicted
//! and kept. Conflicts are resolved in passes: power levels, then join
//! rules, then memberships, each by walking its candidates from the oldest
//! (ascending depth, then descending SHA-1 of the event ID) and keeping
//! the last that the rules allow one after the other; then every other key
//! takes its newest candidate the rules allow (descending depth, ascending
//! SHA-1), or its oldest when none is allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ruma::events::StateEventType;
use sha1::{Digest, Sha1};

use crate::{Pdu, RoomState, RoomVersion};

type StateKey = (String, String);

/// Resolves the states of several forks into one.
pub(super) fn resolve(version: &RoomVersion, forks: &[RoomState]) -> RoomState {
    let mut candidates: BTreeMap<StateKey, BTreeMap<String, Arc<Pdu>>> = BTreeMap::new();
    for fork in forks {
        for (key, pdu) in fork {
            candidates
                .entry(key.clone())
                .or_default()
                .insert(pdu.event_id.to_string(), Arc::clone(pdu));
        }
    }
    let mut resolved = RoomState::new();
    let mut conflicted: BTreeMap<StateKey, Vec<Arc<Pdu>>> = BTreeMap::new();
    for (key, events) in candidates {
        let mut events: Vec<Arc<Pdu>> = events.into_values().collect();
        if events.len() == 1 {
            resolved.insert(key, events.remove(0));
        } else {
            conflicted.insert(key, events);
        }
    }
    if conflicted.is_empty() {
        return resolved;
    }
    // The state the rules check against: what the conflicted events need,
    // as far as the unconflicted state has it.
    let mut checked_against = RoomState::new();
    for event in conflicted.values().flatten() {
        for key in auth_keys(version, event) {
            if let Some(pdu) = resolved.get(&key) {
                checked_against.insert(key, Arc::clone(pdu));
            }
        }
    }
    let mut winners = RoomState::new();
    // The room's power levels alone, then join rules and memberships under
    // any state key.
    let passes: [&dyn Fn(&StateKey) -> bool; 3] = [
        &|key| key.0 == "m.room.power_levels" && key.1.is_empty(),
        &|key| key.0 == "m.room.join_rules",
        &|key| key.0 == "m.room.member",
    ];
    for in_pass in passes {
        for (key, events) in conflicted.iter().filter(|(key, _)| in_pass(key)) {
            let winner = last_allowed_in_turn(version, events, &checked_against);
            winners.insert(key.clone(), winner);
        }
        checked_against.extend(
            winners
                .iter()
                .map(|(key, pdu)| (key.clone(), Arc::clone(pdu))),
        );
    }
    for (key, events) in &conflicted {
        if !winners.contains_key(key) {
            winners.insert(
                key.clone(),
                newest_allowed(version, events, &checked_against),
            );
        }
    }
    resolved.extend(winners);
    resolved
}

/// Newest first: descending depth, then ascending SHA-1 of the event ID.
fn newest_first(events: &[Arc<Pdu>]) -> Vec<Arc<Pdu>> {
    let mut ordered: Vec<(i64, String, Arc<Pdu>)> = events
        .iter()
        .map(|pdu| {
            let digest = Sha1::digest(pdu.event_id.as_str().as_bytes());
            (-pdu.depth, hex::encode(digest), Arc::clone(pdu))
        })
        .collect();
    ordered.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    ordered.into_iter().map(|(_, _, pdu)| pdu).collect()
}

/// The `(type, state key)`s the rules read to authorize `pdu`.
fn auth_keys(version: &RoomVersion, pdu: &Pdu) -> Vec<StateKey> {
    ruma::state_res::auth_types_for_event(
        &pdu.event_type,
        &pdu.sender,
        pdu.state_key.as_deref(),
        &pdu.content,
        &version.rules.authorization,
    )
    .map(|keys| {
        keys.into_iter()
            .map(|(kind, key)| (kind.to_string(), key))
            .collect()
    })
    .unwrap_or_default()
}

/// Whether the rules allow `pdu` in `state`.
fn allowed(version: &RoomVersion, pdu: &Pdu, state: &RoomState) -> bool {
    ruma::state_res::check_state_dependent_auth_rules(
        &version.rules.authorization,
        pdu,
        |kind: &StateEventType, key: &str| state.get(&(kind.to_string(), key.to_owned())).cloned(),
    )
    .is_ok()
}

/// A pass over one key's candidates, oldest first: each is checked with
/// the one before it in place, and the walk stops at the first refused;
/// the last allowed wins.
fn last_allowed_in_turn(version: &RoomVersion, events: &[Arc<Pdu>], state: &RoomState) -> Arc<Pdu> {
    let mut oldest_first = newest_first(events);
    oldest_first.reverse();
    let needed: BTreeSet<StateKey> = events
        .iter()
        .flat_map(|pdu| auth_keys(version, pdu))
        .collect();
    let mut state: RoomState = state
        .iter()
        .filter(|(key, _)| needed.contains(*key))
        .map(|(key, pdu)| (key.clone(), Arc::clone(pdu)))
        .collect();
    let mut winner = Arc::clone(&oldest_first[0]);
    for pdu in &oldest_first[1..] {
        if let Some(key) = &winner.state_key {
            state.insert(
                (winner.event_type.to_string(), key.clone()),
                Arc::clone(&winner),
            );
        }
        if !allowed(version, pdu, &state) {
            break;
        }
        winner = Arc::clone(pdu);
    }
    winner
}

/// The newest candidate the rules allow; the oldest when none is.
fn newest_allowed(version: &RoomVersion, events: &[Arc<Pdu>], state: &RoomState) -> Arc<Pdu> {
    let ordered = newest_first(events);
    ordered
        .iter()
        .find(|pdu| allowed(version, pdu, state))
        .or(ordered.last())
        .map(Arc::clone)
        .unwrap_or_else(|| Arc::clone(&events[0]))
}
