//! Reading a room's past from another server: events by ID (`/event`) and
//! the state before an event (`/state_ids`). Every event is checked before
//! it is kept, as an outlier: citable, never in a timeline by itself.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use myelin_room::{Pdu, RoomVersion};
use myelin_store::{OutlierEvent, SnapshotStore, StoreResult};
use ruma::api::federation::event::{get_event, get_room_state_ids};
use ruma::{OwnedEventId, OwnedRoomId, ServerName};

use crate::{CheckedPdu, FederationClient, FederationError, KeyRing, check_pdu, parse_pdu};

/// The most events fetched one by one for one purpose.
pub const MAX_FETCHED: usize = 500;
/// Fetches running at once.
const PARALLEL_FETCHES: usize = 8;

impl CheckedPdu {
    /// The event as an outlier to keep.
    pub fn outlier(&self) -> OutlierEvent {
        OutlierEvent {
            event_id: self.event_id.clone(),
            room_id: self.room_id.clone(),
            sender: self.pdu.sender.to_string(),
            event_type: self.pdu.event_type.to_string(),
            state_key: self.pdu.state_key.clone(),
            depth: self.pdu.depth,
            origin_server_ts: self.pdu.origin_server_ts.get().into(),
            pdu_json: self.json.clone(),
            soft_failed: false,
        }
    }
}

/// Where another server's events are read from and checked against.
pub struct RemoteRoom<'a> {
    pub client: &'a FederationClient,
    pub keys: &'a KeyRing,
    pub server: &'a ServerName,
    pub room_id: &'a str,
    pub version: &'a RoomVersion,
}

impl RemoteRoom<'_> {
    /// Checks a PDU the server handed over as an event of this room.
    pub async fn check(&self, raw: &serde_json::value::RawValue) -> Option<CheckedPdu> {
        let object = parse_pdu(raw).ok()?;
        let checked = check_pdu(self.keys, self.version, object).await.ok()?;
        (checked.room_id == self.room_id).then_some(checked)
    }

    /// The events among `event_ids`, fetched and checked, at most
    /// [`MAX_FETCHED`]; those that cannot be had are left out.
    pub async fn fetch_events(&self, event_ids: &[String]) -> Vec<CheckedPdu> {
        let wanted: Vec<OwnedEventId> = event_ids
            .iter()
            .take(MAX_FETCHED)
            .filter_map(|event_id| OwnedEventId::try_from(event_id.as_str()).ok())
            .collect();
        let fetched: Vec<Option<CheckedPdu>> = futures::stream::iter(wanted)
            .map(|event_id| self.fetch_event(event_id))
            .buffer_unordered(PARALLEL_FETCHES)
            .collect()
            .await;
        fetched.into_iter().flatten().collect()
    }

    async fn fetch_event(&self, event_id: OwnedEventId) -> Option<CheckedPdu> {
        let answer = self
            .client
            .send(self.server, get_event::v1::Request::new(event_id.clone()))
            .await
            .ok()?;
        let checked = self.check(&answer.pdu).await?;
        (checked.event_id == event_id.as_str()).then_some(checked)
    }

    /// The state before `event_id` as the server holds it (`/state_ids`),
    /// as event IDs; the events of it and of its auth chain that are not
    /// stored here are fetched, checked and kept as outliers. Each must
    /// also be allowed by the auth events it cites (the auth rules), as a
    /// join's state must. `None` when some of the state could not be had
    /// or is not allowed.
    pub async fn state_before(
        &self,
        store: &dyn SnapshotStore,
        event_id: &str,
    ) -> Result<Option<Vec<String>>, FederationError> {
        let (Ok(room), Ok(event)) = (
            OwnedRoomId::try_from(self.room_id),
            OwnedEventId::try_from(event_id),
        ) else {
            return Ok(None);
        };
        let answer = self
            .client
            .send(
                self.server,
                get_room_state_ids::v1::Request::new(event, room),
            )
            .await?;
        let state: Vec<String> = answer.pdu_ids.iter().map(ToString::to_string).collect();
        // The state first: the auth chain only helps to resolve forks.
        let wanted: Vec<String> = state
            .iter()
            .cloned()
            .chain(answer.auth_chain_ids.iter().map(ToString::to_string))
            .collect();
        let Ok(allowed) = self.keep_allowed(store, &wanted).await else {
            return Ok(None);
        };
        let refused = state.iter().filter(|id| !allowed.contains(*id)).count();
        if refused > 0 {
            tracing::info!(server = %self.server, room_id = self.room_id, refused,
                "state from another server that could not be had or the auth rules do not allow");
            return Ok(None);
        }
        Ok(Some(state))
    }

    /// Fetches those of `wanted` not stored here, and keeps those that the
    /// auth rules allow, judged with the stored ones by the auth events
    /// each cites; returns the IDs among `wanted` that are stored and
    /// allowed.
    async fn keep_allowed(
        &self,
        store: &dyn SnapshotStore,
        wanted: &[String],
    ) -> StoreResult<HashSet<String>> {
        let stored: Vec<Arc<Pdu>> = store
            .events_by_id(wanted)
            .await?
            .into_iter()
            .filter(|event| event.room_id == self.room_id)
            .filter_map(|event| Pdu::from_json(&event.event_id, &event.pdu_json).ok())
            .map(Arc::new)
            .collect();
        let known: HashSet<&str> = stored.iter().map(|pdu| pdu.event_id.as_str()).collect();
        let mut seen = HashSet::new();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|event_id| !known.contains(event_id.as_str()) && seen.insert(event_id.as_str()))
            .cloned()
            .collect();
        let fetched = self.fetch_events(&missing).await;
        let every: Vec<Arc<Pdu>> = stored
            .iter()
            .cloned()
            .chain(fetched.iter().map(|checked| Arc::new(checked.pdu.clone())))
            .collect();
        let allowed: HashSet<String> = myelin_room::authorized_by_auth_events(self.version, &every)
            .into_iter()
            .map(|event_id| event_id.to_string())
            .collect();
        let kept: Vec<OutlierEvent> = fetched
            .iter()
            .filter(|checked| allowed.contains(&checked.event_id))
            .map(CheckedPdu::outlier)
            .collect();
        if !kept.is_empty() {
            store.store_outliers(kept).await?;
        }
        Ok(allowed)
    }
}
