//! History fetched from other servers. The client API asked another server
//! for the events before the oldest this server holds, or before an event
//! whose prev_events are missing (`/backfill`), checked them and stored
//! them as outliers; here each is authorized against the state before it
//! and moved into the timeline, below every event there or into the gap,
//! with its snapshots. The room's current state and forward extremities
//! stay as they are: this is the past.
//!
//! History arrives newest first, so a redaction often comes before its
//! target: it is remembered, and applied when the target is promoted.

use std::collections::HashMap;
use std::sync::Arc;

use myelin_bus::messages::{BackfilledEvents, RoomInputDone, RoomInputRefused};
use myelin_room::{Pdu, RoomState};
use myelin_store::{AppliedRedaction, Fence, FetchedInto, PromotedEvent};

use crate::EventPersister;
use crate::head::head_missing;
use crate::input::unavailable;
use crate::redactions::Arriving;
use crate::snapshots::{self, HeadSnapshot};

/// The answer when nothing of a batch was taken.
fn nothing_written(room_id: String) -> RoomInputDone {
    RoomInputDone {
        room_id,
        event_id: String::new(),
        position: None,
    }
}

impl EventPersister {
    pub(crate) async fn accept_backfill(
        &self,
        batch: BackfilledEvents,
        fence: Fence,
    ) -> Result<RoomInputDone, RoomInputRefused> {
        let mut guard = self.locked_head(&batch.room_id).await?;
        let Some(head) = guard.as_mut() else {
            return Err(head_missing());
        };
        let gap_slot = match &batch.gap_before {
            Some(event_id) => match self.gap_slot(&head.room_id, event_id).await? {
                Some(slot) => Some(slot),
                // Not an event of this room's timeline: nowhere to put it.
                None => return Ok(nothing_written(batch.room_id)),
            },
            None => None,
        };
        let ids: Vec<String> = batch
            .events
            .iter()
            .map(|event| event.event_id.clone())
            .collect();
        let in_timeline = self.store.timeline_ids(&ids).await.map_err(unavailable)?;
        let stored: HashMap<String, myelin_store::StoredEvent> = self
            .store
            .events_by_id(&ids)
            .await
            .map_err(unavailable)?
            .into_iter()
            .filter(|event| event.room_id == head.room_id)
            .map(|event| (event.event_id.clone(), event))
            .collect();
        // Redactions already in the timeline that wait for events of this batch.
        let arriving: Vec<Arriving<'_>> = stored
            .values()
            .map(|event| Arriving {
                event_id: &event.event_id,
                sender: &event.sender,
                pdu_json: &event.pdu_json,
            })
            .collect();
        let mut waiting = self.waiting_redactions(head, &arriving).await?;
        // The state after each event taken from this batch, for the next.
        let mut taken: HashMap<String, (RoomState, HeadSnapshot)> = HashMap::new();
        let mut promoted = Vec::new();
        let mut visibility_below = None;
        for event in &batch.events {
            if in_timeline.contains(&event.event_id) {
                continue;
            }
            let Some(record) = stored.get(&event.event_id) else {
                // Not stored, or an event of another room.
                continue;
            };
            let Ok(pdu) = Pdu::from_json(&record.event_id, &record.pdu_json) else {
                continue;
            };
            let before = match &event.state_ids {
                Some(state_ids) => self.stated(&head.room_id, &head.version, state_ids).await?,
                None => {
                    self.after_prevs(&head.room_id, &head.version, &pdu, &taken)
                        .await?
                }
            };
            let Some((state_before, snapshot_before)) = before else {
                tracing::info!(event_id = %event.event_id, "fetched history whose state is not known was left out");
                continue;
            };
            if let Err(refusal) = self.authorize_remote(head, &pdu, &state_before).await {
                tracing::info!(event_id = %event.event_id, why = %refusal.error, "fetched history was rejected");
                continue;
            }
            let state_key = pdu.state_key.clone();
            let event_type = pdu.event_type.to_string();
            let is_redaction = event_type == "m.room.redaction";
            let mut redactions = waiting.remove(&event.event_id).unwrap_or_default();
            if let Some(target) = pdu.redacts.as_ref().filter(|_| is_redaction) {
                let applies = self
                    .remote_redaction(head, &event.event_id, pdu.sender.as_str(), target.as_str())
                    .await?;
                redactions.extend(applies.map(|redaction| AppliedRedaction {
                    redaction_event_id: event.event_id.clone(),
                    target_event_id: redaction.target_event_id,
                    pruned_pdu_json: redaction.pruned_pdu_json,
                }));
            }
            let (event_snapshots, snapshot_after) = snapshots::around_event(
                snapshot_before.as_ref(),
                &state_before,
                &event.event_id,
                state_key.as_deref().map(|key| (event_type.as_str(), key)),
            );
            if visibility_below.is_none() {
                visibility_below = Some(
                    state_before
                        .get(&("m.room.history_visibility".to_owned(), String::new()))
                        .and_then(|setting| {
                            serde_json::from_str::<serde_json::Value>(setting.content.get())
                                .ok()?
                                .get("history_visibility")?
                                .as_str()
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| "shared".to_owned()),
                );
            }
            let mut state_after = state_before;
            if let Some(key) = state_key {
                state_after.insert((event_type, key), Arc::new(pdu));
            }
            taken.insert(event.event_id.clone(), (state_after, snapshot_after));
            promoted.push(PromotedEvent {
                event_id: event.event_id.clone(),
                snapshots: event_snapshots,
                redactions,
            });
        }
        let Some(last) = promoted.last().map(|event| event.event_id.clone()) else {
            return Ok(nothing_written(batch.room_id));
        };
        let into = match (gap_slot, visibility_below) {
            (Some(slot), _) => FetchedInto::Gap { slot },
            // Set with the first event taken.
            (None, visibility_below) => FetchedInto::Start {
                visibility_below: visibility_below.unwrap_or_else(|| "shared".to_owned()),
            },
        };
        self.store
            .promote_outliers(&batch.room_id, promoted, into, Some(fence))
            .await
            .map_err(unavailable)?;
        Ok(RoomInputDone {
            room_id: batch.room_id,
            event_id: last,
            position: None,
        })
    }

    /// The slot of the gap before `event_id`: the event's own, when it is
    /// an event of the room's timeline.
    async fn gap_slot(
        &self,
        room_id: &str,
        event_id: &str,
    ) -> Result<Option<myelin_types::StreamPosition>, RoomInputRefused> {
        let ids = [event_id.to_owned()];
        let in_timeline = self.store.timeline_ids(&ids).await.map_err(unavailable)?;
        if in_timeline.is_empty() {
            return Ok(None);
        }
        let event = self.store.event(event_id).await.map_err(unavailable)?;
        Ok(event
            .filter(|event| event.room_id == room_id)
            .map(|event| event.slot))
    }

    /// The state a list of stored event IDs names, with no snapshot yet;
    /// `None` when one is missing.
    pub(crate) async fn stated(
        &self,
        room_id: &str,
        version: &myelin_room::RoomVersion,
        state_ids: &[String],
    ) -> Result<Option<(RoomState, Option<HeadSnapshot>)>, RoomInputRefused> {
        let stored = self
            .store
            .events_by_id(state_ids)
            .await
            .map_err(unavailable)?;
        // Another room's state must never stand in for this one's.
        if stored.len() != state_ids.len() || stored.iter().any(|event| event.room_id != room_id) {
            return Ok(None);
        }
        let Ok(state) = myelin_room::state_from_pdus(
            version,
            stored
                .iter()
                .map(|event| (event.event_id.as_str(), event.pdu_json.as_str())),
        ) else {
            return Ok(None);
        };
        Ok(Some((state, None)))
    }

    /// The state after the event's prev_events, each taken from this batch
    /// or the store; `None` when one is known in neither.
    async fn after_prevs(
        &self,
        room_id: &str,
        version: &myelin_room::RoomVersion,
        pdu: &Pdu,
        taken: &HashMap<String, (RoomState, HeadSnapshot)>,
    ) -> Result<Option<(RoomState, Option<HeadSnapshot>)>, RoomInputRefused> {
        if pdu.prev_events.is_empty() {
            // The create event: nothing before it.
            return Ok(Some((RoomState::new(), None)));
        }
        // Another room's state must never stand in for this one's.
        let stored: Vec<String> = pdu
            .prev_events
            .iter()
            .filter(|prev| !taken.contains_key(prev.as_str()))
            .map(ToString::to_string)
            .collect();
        let found = self
            .store
            .events_by_id(&stored)
            .await
            .map_err(unavailable)?;
        if found.len() != stored.len() || found.iter().any(|event| event.room_id != room_id) {
            return Ok(None);
        }
        let mut forks = Vec::with_capacity(pdu.prev_events.len());
        for prev in &pdu.prev_events {
            let known = match taken.get(prev.as_str()) {
                Some(known) => Some(known.clone()),
                None => self.state_after(version, prev.as_str()).await?,
            };
            let Some(known) = known else {
                return Ok(None);
            };
            forks.push(known);
        }
        self.merge_forks(version, forks).await.map(Some)
    }
}
