//! Another server's transaction, one room's events at a time. Events that
//! extend the room's head one after another are checked against the head
//! as it moves and written together, in one store transaction, then
//! announced; an event that needs the store to see what is pending (a
//! branch, a redaction) has the pending ones written first.

use myelin_bus::messages::{RemoteEvent, RemoteEventOutcome, RemoteEvents, RoomInputRefused};
use myelin_store::{Fence, PersistEvent};
use serde::Deserialize;

use crate::EventPersister;
use crate::head::CachedHead;
use crate::input::{refused, unavailable};
use crate::remote::RemoteStep;

impl EventPersister {
    pub(crate) async fn accept_remote_events(
        &self,
        batch: RemoteEvents,
        fence: Fence,
    ) -> Result<Vec<RemoteEventOutcome>, RoomInputRefused> {
        let mut guard = self.locked_head(&batch.room_id).await?;
        let Some(head) = guard.as_mut() else {
            return Err(crate::head::head_missing());
        };
        let result = self.write_remote_events(head, batch, fence).await;
        if result.is_err() {
            // The head may stand past events that were not written.
            *guard = None;
        }
        result
    }

    async fn write_remote_events(
        &self,
        head: &mut CachedHead,
        batch: RemoteEvents,
        fence: Fence,
    ) -> Result<Vec<RemoteEventOutcome>, RoomInputRefused> {
        let mut outcomes = Vec::with_capacity(batch.events.len());
        let mut pending: Vec<PersistEvent> = Vec::new();
        for remote in batch.events {
            let outcome = |refusal: Option<RoomInputRefused>| RemoteEventOutcome {
                event_id: remote.event_id.clone(),
                refused: refusal,
            };
            if remote.room_id != batch.room_id {
                outcomes.push(outcome(Some(refused(
                    400,
                    "M_BAD_JSON",
                    "the event is of another room than its batch",
                ))));
                continue;
            }
            if pending
                .iter()
                .any(|event| event.event_id == remote.event_id)
            {
                outcomes.push(outcome(None));
                continue;
            }
            if !pending.is_empty() && !extends_head_alone(head, &remote) {
                self.write_pending(&mut pending).await?;
            }
            let mut step = self.compose_remote(head, &remote, fence).await;
            if matches!(&step, Err(refusal) if refusal.status < 500) && !pending.is_empty() {
                // It may cite what is pending (an auth event replaced since):
                // judged again with the store holding it.
                self.write_pending(&mut pending).await?;
                step = self.compose_remote(head, &remote, fence).await;
            }
            match step {
                Ok(RemoteStep::Nothing) => outcomes.push(outcome(None)),
                Ok(RemoteStep::Write(record)) => {
                    pending.push(*record);
                    outcomes.push(outcome(None));
                }
                Err(refusal) if refusal.status >= 500 => return Err(refusal),
                Err(refusal) => outcomes.push(outcome(Some(refusal))),
            }
        }
        self.write_pending(&mut pending).await?;
        Ok(outcomes)
    }

    /// Writes the pending events in one store transaction and announces
    /// them; all or none.
    async fn write_pending(&self, pending: &mut Vec<PersistEvent>) -> Result<(), RoomInputRefused> {
        if pending.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(pending);
        let positions = self
            .event_store
            .persist_events(events.clone())
            .await
            .map_err(unavailable)?;
        for (event, position) in events.iter().zip(positions) {
            self.announce(event, position).await;
        }
        Ok(())
    }
}

/// The parts of a PDU that say what it needs of the store.
#[derive(Deserialize)]
struct Links {
    #[serde(rename = "type")]
    event_type: String,
    /// IDs (v3 on) or `[id, hashes]` pairs (v1, v2).
    prev_events: Vec<serde_json::Value>,
}

/// Whether `remote` is judged on the head alone: its prev_events are the
/// head's extremities and it redacts nothing (a redaction reads its
/// target from the store).
fn extends_head_alone(head: &CachedHead, remote: &RemoteEvent) -> bool {
    let Ok(links) = serde_json::from_str::<Links>(&remote.pdu_json) else {
        return false;
    };
    if links.event_type == "m.room.redaction" {
        return false;
    }
    head.is_extended_by(
        links
            .prev_events
            .iter()
            .filter_map(|prev| prev.as_str().or_else(|| prev.get(0)?.as_str())),
    )
}
