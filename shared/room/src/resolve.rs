//! State resolution where a room's graph has forked: v2 by ruma, and v1
//! (room version 1, which ruma leaves out) in `v1`.
//!
//! A room written only by this server stays linear (one writer per room),
//! so this runs when federation brings in events on another branch.

mod v1;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::room_version_rules::StateResolutionVersion;
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::{EventId, OwnedEventId};

use crate::{Pdu, RoomState, RoomVersion};

/// Every event the resolution may look at, by ID.
pub type EventPool = BTreeMap<OwnedEventId, Arc<Pdu>>;

/// Resolves the states of several branches into one.
pub fn resolve_state(
    version: &RoomVersion,
    forks: &[RoomState],
    pool: &EventPool,
) -> Result<RoomState, String> {
    let StateResolutionVersion::V2(rules) = &version.rules.state_res else {
        return Ok(v1::resolve(version, forks));
    };
    let state_maps: Vec<HashMap<(StateEventType, String), OwnedEventId>> = forks
        .iter()
        .map(|fork| {
            fork.iter()
                .map(|((kind, key), pdu)| {
                    (
                        (StateEventType::from(kind.as_str()), key.clone()),
                        pdu.event_id.clone(),
                    )
                })
                .collect()
        })
        .collect();
    let auth_chains: Vec<EventIdSet<OwnedEventId>> = forks
        .iter()
        .map(|fork| {
            auth_chain(fork.values().map(|pdu| pdu.event_id.clone()), pool)
                .into_iter()
                .collect()
        })
        .collect();
    let resolved = ruma::state_res::resolve(
        &version.rules.authorization,
        rules,
        &state_maps,
        auth_chains,
        |event_id: &EventId| pool.get(event_id).cloned(),
        |conflicted| {
            Some(
                conflicted_subgraph(conflicted.values().flatten().cloned(), pool)
                    .into_iter()
                    .collect(),
            )
        },
    )
    .map_err(|error| error.to_string())?;
    resolved
        .into_iter()
        .map(|((kind, key), event_id)| {
            let pdu = pool
                .get(&event_id)
                .cloned()
                .ok_or_else(|| format!("resolved to unknown event {event_id}"))?;
            Ok(((kind.to_string(), key), pdu))
        })
        .collect()
}

/// The events reachable from `start` through `auth_events`, `start` excluded.
fn auth_chain(
    start: impl IntoIterator<Item = OwnedEventId>,
    pool: &EventPool,
) -> BTreeSet<OwnedEventId> {
    let mut seen = BTreeSet::new();
    let mut queue: Vec<OwnedEventId> = start
        .into_iter()
        .filter_map(|id| pool.get(&id))
        .flat_map(|pdu| pdu.auth_events.clone())
        .collect();
    while let Some(event_id) = queue.pop() {
        if seen.insert(event_id.clone())
            && let Some(pdu) = pool.get(&event_id)
        {
            queue.extend(pdu.auth_events.iter().cloned());
        }
    }
    seen
}

/// Events on an `auth_events` path between two conflicted events (v12's
/// conflicted state subgraph): ancestors of a conflicted event that have a
/// conflicted event among their own ancestors.
fn conflicted_subgraph(
    conflicted: impl IntoIterator<Item = OwnedEventId>,
    pool: &EventPool,
) -> BTreeSet<OwnedEventId> {
    let conflicted: BTreeSet<OwnedEventId> = conflicted.into_iter().collect();
    let mut candidates = auth_chain(conflicted.iter().cloned(), pool);
    candidates.extend(conflicted.iter().cloned());
    candidates
        .into_iter()
        .filter(|event_id| {
            let ancestors = auth_chain([event_id.clone()], pool);
            conflicted.contains(event_id)
                || ancestors
                    .iter()
                    .any(|ancestor| conflicted.contains(ancestor))
        })
        .collect()
}

#[cfg(test)]
mod tests;
