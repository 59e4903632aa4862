//! Walking a room's graph backwards for another server: `/backfill` and
//! `/get_missing_events`. Each event is shown only if the requesting server
//! may see it: the room's history visibility in the state before the event
//! is `shared` or `world_readable`, or one of the server's users was joined
//! (or, for `invited`, invited) then. Events it may not see are left out.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_store::{Store, StoredEvent};
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::get_missing_events;
use ruma::{MilliSecondsSinceUnixEpoch, ServerName};

use crate::FederationApi;
use crate::rooms::{raw_pdu, require_server_in_room};

/// The most events one answer holds.
const MAX_EVENTS: usize = 100;

/// The asked number of events, at most [`MAX_EVENTS`].
fn answer_limit(asked: ruma::UInt) -> usize {
    usize::try_from(u64::from(asked))
        .unwrap_or(MAX_EVENTS)
        .min(MAX_EVENTS)
}

/// The prev_events of a stored PDU.
fn prev_events(event: &StoredEvent) -> Vec<String> {
    myelin_room::Pdu::from_json(&event.event_id, &event.pdu_json)
        .map(|pdu| pdu.prev_events.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// Whether `server` may see `event`, by the state before it.
pub(crate) async fn visible_to(
    store: &dyn Store,
    server: &ServerName,
    event: &StoredEvent,
    cache: &mut HashMap<String, bool>,
) -> Result<bool, MatrixError> {
    let before = store
        .event_state_ids(&event.event_id)
        .await?
        .and_then(|ids| ids.before);
    let key = before
        .clone()
        .unwrap_or_else(|| format!("@{}", event.position.0));
    if let Some(known) = cache.get(&key) {
        return Ok(*known);
    }
    let state = match &before {
        Some(snapshot_id) => {
            let Some(snapshot) = store.snapshot(snapshot_id).await? else {
                // Nothing known of the state there: shown to nobody.
                cache.insert(key, false);
                return Ok(false);
            };
            let entries = snapshot.entries;
            let suffix = format!(":{server}");
            let wanted: Vec<String> = entries
                .into_iter()
                .filter(|entry| {
                    entry.event_type == "m.room.history_visibility"
                        || (entry.event_type == "m.room.member"
                            && entry.state_key.ends_with(&suffix))
                })
                .map(|entry| entry.event_id)
                .collect();
            store.events_by_id(&wanted).await?
        }
        // Written before snapshots: the room was linear, position is exact.
        None => {
            store
                .state_at(
                    &event.room_id,
                    myelin_types::StreamPosition(event.position.0 - 1),
                )
                .await?
        }
    };
    let visibility = state
        .iter()
        .find(|state| state.event_type == "m.room.history_visibility")
        .and_then(|state| myelin_room::content_text(&state.pdu_json, "history_visibility"))
        .unwrap_or_else(|| "shared".to_owned());
    let suffix = format!(":{server}");
    let memberships: Vec<String> = state
        .iter()
        .filter(|state| {
            state.event_type == "m.room.member"
                && state
                    .state_key
                    .as_deref()
                    .is_some_and(|key| key.ends_with(&suffix))
        })
        .filter_map(|state| myelin_room::content_text(&state.pdu_json, "membership"))
        .collect();
    let visible = match visibility.as_str() {
        "world_readable" | "shared" => true,
        "invited" => memberships
            .iter()
            .any(|membership| membership == "join" || membership == "invite"),
        _ => memberships.iter().any(|membership| membership == "join"),
    };
    cache.insert(key, visible);
    Ok(visible)
}

/// Walks back from `start` over prev_events, newest first by depth, not
/// past `stop` or below `min_depth`, keeping what `server` may see.
async fn walk_back(
    store: &dyn Store,
    server: &ServerName,
    room_id: &str,
    start: Vec<String>,
    stop: &BTreeSet<String>,
    min_depth: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, MatrixError> {
    let mut seen: BTreeSet<String> = start.iter().cloned().collect();
    let mut frontier = store.events_by_id(&start).await?;
    let mut found = Vec::new();
    let mut cache = HashMap::new();
    // Events the server may not see still cost a visit: bounded too.
    let mut visits = 0;
    while found.len() < limit && visits < limit.saturating_mul(10) {
        visits += 1;
        frontier.retain(|event| event.room_id == room_id && event.depth >= min_depth);
        frontier.sort_by_key(|event| std::cmp::Reverse(event.depth));
        let Some(event) = frontier.first().cloned() else {
            break;
        };
        frontier.remove(0);
        let prevs: Vec<String> = prev_events(&event)
            .into_iter()
            .filter(|prev| !stop.contains(prev) && seen.insert(prev.clone()))
            .collect();
        frontier.extend(store.events_by_id(&prevs).await?);
        if visible_to(store, server, &event, &mut cache).await? {
            found.push(event);
        }
    }
    Ok(found)
}

pub(crate) async fn backfill(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: get_backfill::v1::Request,
) -> Result<get_backfill::v1::Response, MatrixError> {
    let server = &**ctx.origin()?;
    let store = api.store.as_ref();
    let room_id = request.room_id.as_str();
    require_server_in_room(store, room_id, Some(server)).await?;
    let limit = answer_limit(request.limit);
    let start: Vec<String> = request
        .v
        .iter()
        .take(MAX_EVENTS)
        .map(ToString::to_string)
        .collect();
    let events = walk_back(
        store,
        server,
        room_id,
        start,
        &BTreeSet::new(),
        i64::MIN,
        limit,
    )
    .await?;
    Ok(get_backfill::v1::Response::new(
        api.server_keys_owner().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
        events.iter().map(raw_pdu).collect::<Result<_, _>>()?,
    ))
}

pub(crate) async fn missing_events(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: get_missing_events::v1::Request,
) -> Result<get_missing_events::v1::Response, MatrixError> {
    let server = &**ctx.origin()?;
    let store = api.store.as_ref();
    let room_id = request.room_id.as_str();
    require_server_in_room(store, room_id, Some(server)).await?;
    let limit = answer_limit(request.limit);
    let stop: BTreeSet<String> = request
        .earliest_events
        .iter()
        .map(ToString::to_string)
        .collect();
    // The latest events themselves are known to the asker: start behind them.
    let latest = store
        .events_by_id(
            &request
                .latest_events
                .iter()
                .take(MAX_EVENTS)
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .await?;
    let start: Vec<String> = latest
        .iter()
        .filter(|event| event.room_id == room_id)
        .flat_map(prev_events)
        .filter(|prev| !stop.contains(prev))
        .collect();
    let min_depth = i64::try_from(u64::from(request.min_depth)).unwrap_or(i64::MAX);
    let mut events = walk_back(store, server, room_id, start, &stop, min_depth, limit).await?;
    events.sort_by_key(|event| (event.depth, event.position));
    Ok(get_missing_events::v1::Response::new(
        events.iter().map(raw_pdu).collect::<Result<_, _>>()?,
    ))
}
