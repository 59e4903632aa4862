//! Closing a gap before an event of a transaction: its prev_events are not
//! here, so what lies between is fetched from its sender
//! (`/get_missing_events`) and handed to the room's writer oldest first,
//! before the event itself. A gap filled here sits in the timeline in
//! order, with no hole for paging back to fall through. A gap longer than
//! the budget is closed by the state before the oldest event fetched
//! (`/state_ids`); the part older than that is fetched into the gap when
//! paging back reaches it (the client API's backfill).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use myelin_bus::messages::{RemoteEvent, RemoteEventKind, RemoteEvents};
use myelin_federation::history::RemoteRoom;
use myelin_federation::{CheckedPdu, check_pdu, parse_pdu};
use myelin_http::MatrixError;
use myelin_types::Partition;
use ruma::api::federation::event::get_missing_events;
use ruma::{OwnedEventId, OwnedServerName};

use crate::FederationApi;
use crate::transactions::{MAX_PDUS, MISSING_PREV_EVENTS};

/// The most events fetched to close the gaps of one transaction.
const GAP_EVENTS: usize = 10_000;
/// The most bytes of event JSON held for them: a gap of large events
/// stops sooner.
const GAP_BYTES: usize = 16 * 1024 * 1024;
/// How long one walk back may fetch: what it has then is handed over, so
/// the transaction is answered before its sender gives up on it (and
/// retries it, walking the same way again).
const GAP_WALK_FOR: Duration = Duration::from_secs(30);
/// Walks back one replica makes at once, whatever the origins: what they
/// hold in memory is bounded for the process.
pub(crate) const GAP_WALKS_AT_ONCE: usize = 4;
/// Events asked for per `/get_missing_events` round (servers may answer
/// with fewer), and the most events a round walks back from.
const GAP_ROUND: u16 = 100;
const GAP_ROUND_FROM: usize = 20;

/// What one transaction may still fetch to close its gaps.
pub(crate) struct GapBudget {
    events: usize,
    bytes: usize,
}

impl Default for GapBudget {
    fn default() -> Self {
        GapBudget {
            events: GAP_EVENTS,
            bytes: GAP_BYTES,
        }
    }
}

impl GapBudget {
    fn spent(&self) -> bool {
        self.events == 0 || self.bytes == 0
    }

    fn take(&mut self, json_len: usize) {
        self.events = self.events.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(json_len);
    }
}

/// A fetched event of a gap, kept small: what the walk back reads and
/// what the writer is handed.
struct GapEvent {
    event_id: String,
    depth: i64,
    prev_events: Vec<String>,
    json: String,
}

impl From<CheckedPdu> for GapEvent {
    fn from(checked: CheckedPdu) -> Self {
        GapEvent {
            depth: checked.pdu.depth,
            prev_events: checked
                .pdu
                .prev_events
                .iter()
                .map(ToString::to_string)
                .collect(),
            event_id: checked.event_id,
            json: checked.json,
        }
    }
}

impl FederationApi {
    /// Hands a checked PDU to its room's writer; when its prev_events are
    /// not known here, first closes the gap (see the module's comment).
    pub(crate) async fn hand_over_across_gaps(
        &self,
        origin: &OwnedServerName,
        room_id: &str,
        version: &myelin_room::RoomVersion,
        checked: &CheckedPdu,
        budget: &mut GapBudget,
    ) -> Result<(), MatrixError> {
        let event = (checked.event_id.as_str(), checked.json.as_str());
        let first = self.hand_over(origin, room_id, event, None).await;
        if !matches!(&first, Err(error) if error.errcode == MISSING_PREV_EVENTS) {
            return first;
        }
        let walk = GapWalk {
            api: self,
            origin,
            room_id,
            version,
        };
        if let Ok(_walking) = self.gap_walks.acquire().await {
            walk.fill(&checked.event_id, checked.pdu.depth, budget)
                .await;
        }
        let second = self.hand_over(origin, room_id, event, None).await;
        let Err(error) = &second else {
            return second;
        };
        if error.errcode != MISSING_PREV_EVENTS {
            return second;
        }
        walk.hand_over_with_state(event).await.unwrap_or(second)
    }
}

/// One gap being closed: the room, and the server asked about it.
struct GapWalk<'a> {
    api: &'a FederationApi,
    origin: &'a OwnedServerName,
    room_id: &'a str,
    version: &'a myelin_room::RoomVersion,
}

impl GapWalk<'_> {
    /// Asks the origin for the events between the room's forward
    /// extremities and `event_id`, round after round back from the oldest
    /// fetched, until they join what is here, the budget is spent or
    /// [`GAP_WALK_FOR`] has passed, and hands them over, oldest first, in
    /// batches as a transaction's PDUs are; what cannot be used is left
    /// out.
    async fn fill(&self, event_id: &str, depth: i64, budget: &mut GapBudget) {
        let fetched = self.fetch(event_id, depth, budget).await;
        let mut events: Vec<GapEvent> = fetched.into_values().collect();
        events.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        // The walk may have stopped short of what is here (a longer gap):
        // the first event refused for missing prevs has the state before it
        // asked for, once, and the events refused beside it are handed
        // over again on top of it.
        let mut state_asked = false;
        for batch in events.chunks(MAX_PDUS) {
            let batch: Vec<&GapEvent> = batch.iter().collect();
            let missing = self.hand_over_batch(&batch).await;
            let Some((first, rest)) = missing.split_first() else {
                continue;
            };
            if state_asked {
                self.note_not_taken(&missing);
                continue;
            }
            state_asked = true;
            let event = (first.event_id.as_str(), first.json.as_str());
            match self.hand_over_with_state(event).await {
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    tracing::info!(event_id = %first.event_id, error = %error.error, "a missing event was not taken");
                }
                None => self.note_not_taken(&[first]),
            }
            if !rest.is_empty() {
                let still = self.hand_over_batch(rest).await;
                self.note_not_taken(&still);
            }
        }
    }

    fn note_not_taken(&self, events: &[&GapEvent]) {
        for event in events {
            tracing::info!(event_id = %event.event_id, "a missing event was not taken: its prev_events are not here");
        }
    }

    /// The walk back: the fetched events, by ID.
    async fn fetch(
        &self,
        event_id: &str,
        depth: i64,
        budget: &mut GapBudget,
    ) -> BTreeMap<String, GapEvent> {
        let mut fetched: BTreeMap<String, GapEvent> = BTreeMap::new();
        let Ok(room) = ruma::OwnedRoomId::try_from(self.room_id) else {
            return fetched;
        };
        let earliest: Vec<OwnedEventId> =
            match self.api.store.forward_extremities(self.room_id).await {
                Ok(extremities) => extremities
                    .into_iter()
                    .filter_map(|(id, _)| OwnedEventId::try_from(id).ok())
                    .collect(),
                Err(error) => {
                    tracing::warn!(%error, "cannot read a room's extremities");
                    return fetched;
                }
            };
        let Ok(latest) = OwnedEventId::try_from(event_id) else {
            return fetched;
        };
        let min_depth = ruma::UInt::try_from(depth.saturating_sub(GAP_EVENTS as i64).max(0))
            .unwrap_or_default();
        let mut from = vec![latest];
        let deadline = Instant::now() + GAP_WALK_FOR;
        while !from.is_empty() && !budget.spent() && Instant::now() < deadline {
            let mut request =
                get_missing_events::v1::Request::new(room.clone(), earliest.clone(), from);
            request.limit = ruma::UInt::from(GAP_ROUND);
            request.min_depth = min_depth;
            let missing = match self.api.federation.send(self.origin, request).await {
                Ok(answer) => answer.events,
                Err(error) => {
                    tracing::info!(origin = %self.origin, room_id = %self.room_id, %error, "could not fetch missing events");
                    break;
                }
            };
            let before = fetched.len();
            for raw in missing.iter().take(usize::from(GAP_ROUND)) {
                if budget.spent() {
                    break;
                }
                let Ok(object) = parse_pdu(raw) else { continue };
                match check_pdu(&self.api.server_keys, self.version, object).await {
                    Ok(checked)
                        if checked.room_id == self.room_id
                            && !fetched.contains_key(&checked.event_id) =>
                    {
                        budget.take(checked.json.len());
                        fetched.insert(checked.event_id.clone(), checked.into());
                    }
                    _ => {}
                }
            }
            if fetched.len() == before {
                break;
            }
            from = match self.still_missing(&fetched).await {
                Ok(from) => from,
                Err(error) => {
                    tracing::warn!(%error, "cannot read which events are here");
                    break;
                }
            };
        }
        fetched
    }

    /// The fetched events whose prev_events are neither fetched nor in the
    /// room's timeline: where the next round walks back from.
    async fn still_missing(
        &self,
        fetched: &BTreeMap<String, GapEvent>,
    ) -> Result<Vec<OwnedEventId>, myelin_store::StoreError> {
        let prevs: BTreeSet<&str> = fetched
            .values()
            .flat_map(|event| event.prev_events.iter().map(String::as_str))
            .filter(|prev| !fetched.contains_key(*prev))
            .collect();
        let prevs: Vec<String> = prevs.into_iter().map(str::to_owned).collect();
        let here: HashSet<String> = self
            .api
            .store
            .timeline_ids(&prevs)
            .await?
            .into_iter()
            .collect();
        Ok(fetched
            .values()
            .filter(|event| {
                event.prev_events.iter().any(|prev| {
                    !fetched.contains_key(prev.as_str()) && !here.contains(prev.as_str())
                })
            })
            .filter_map(|event| OwnedEventId::try_from(event.event_id.as_str()).ok())
            .take(GAP_ROUND_FROM)
            .collect())
    }

    /// Hands fetched events to the room's writer in one request; answers
    /// those refused because their prev_events are not here.
    async fn hand_over_batch<'e>(&self, batch: &[&'e GapEvent]) -> Vec<&'e GapEvent> {
        let events = batch
            .iter()
            .map(|event| RemoteEvent {
                room_id: self.room_id.to_owned(),
                event_id: event.event_id.clone(),
                pdu_json: event.json.clone(),
                origin: self.origin.to_string(),
                kind: RemoteEventKind::Transaction,
                state_ids: None,
            })
            .collect();
        let answered = myelin_process::request_remote_events(
            self.api.bus.as_ref(),
            Partition::of_room(self.room_id),
            RemoteEvents {
                room_id: self.room_id.to_owned(),
                events,
            },
        )
        .await;
        let outcomes = match answered {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::info!(room_id = %self.room_id, error = %error.error, "missing events were not taken");
                return Vec::new();
            }
        };
        let mut missing = Vec::new();
        for outcome in outcomes {
            let Some(refused) = outcome.refused else {
                continue;
            };
            if refused.errcode == MISSING_PREV_EVENTS
                && let Some(event) = batch
                    .iter()
                    .find(|event| event.event_id == outcome.event_id)
            {
                missing.push(*event);
            } else {
                tracing::info!(event_id = %outcome.event_id, error = %refused.error, "a missing event was not taken");
            }
        }
        missing
    }

    /// Hands over an event whose prev_events cannot be had with the state
    /// before it as the origin holds it (`/state_ids`); `None` when that
    /// state cannot be had either.
    async fn hand_over_with_state(&self, event: (&str, &str)) -> Option<Result<(), MatrixError>> {
        let remote = RemoteRoom {
            client: &self.api.federation,
            keys: &self.api.server_keys,
            server: self.origin,
            room_id: self.room_id,
            version: self.version,
        };
        match remote.state_before(self.api.store.as_ref(), event.0).await {
            Ok(Some(state_ids)) => Some(
                self.api
                    .hand_over(self.origin, self.room_id, event, Some(state_ids))
                    .await,
            ),
            Ok(None) => None,
            Err(error) => {
                tracing::info!(origin = %self.origin, room_id = %self.room_id, %error, "could not fetch the state before an event");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_spent_by_events_or_by_bytes() {
        let mut budget = GapBudget::default();
        assert!(!budget.spent());
        for _ in 0..GAP_EVENTS - 1 {
            budget.take(10);
        }
        assert!(!budget.spent());
        budget.take(10);
        assert!(budget.spent(), "every event taken");
        let mut budget = GapBudget::default();
        budget.take(GAP_BYTES - 1);
        assert!(!budget.spent());
        budget.take(2);
        assert!(budget.spent(), "every byte taken");
    }
}
