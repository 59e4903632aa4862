//! Another server's transaction, one room's events at a time. Events that
//! extend the room's head one after another, or a branch of it (a server
//! catching up on what it sent while the room moved on here), are checked
//! against the state as it moves and written together, in one store
//! transaction, then announced; an event that needs the store to see what
//! is pending (a redaction, one a pending redaction may redact, or one
//! citing an event pending already cited) has the pending ones written
//! first.

use std::collections::HashSet;

use myelin_bus::messages::{RemoteEvent, RemoteEventOutcome, RemoteEvents, RoomInputRefused};
use myelin_store::{Fence, PersistEvent};
use serde::Deserialize;

use crate::EventPersister;
use crate::head::CachedHead;
use crate::input::{refused, unavailable};
use crate::remote::RemoteStep;
use crate::remote::Unwritten;

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
        let mut unwritten = Unwritten::new();
        // What the store holds already (retries, or the same events from
        // another server) is looked up once for the batch; what this batch
        // writes joins it as it goes.
        let ids: Vec<String> = batch
            .events
            .iter()
            .map(|event| event.event_id.clone())
            .collect();
        let mut stored: HashSet<String> = self
            .store
            .events_by_id(&ids)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|event| event.event_id)
            .collect();
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
            if stored.contains(&remote.event_id) {
                outcomes.push(outcome(None));
                continue;
            }
            // A redaction reads its target from the store; an event a
            // pending redaction may wait for is looked up there with it.
            let redaction_pending = head.redactions_wait
                && pending
                    .iter()
                    .any(|event| event.event_type == "m.room.redaction");
            if !pending.is_empty() && (redaction_pending || reads_its_target(&remote)) {
                self.write_pending(&mut pending, &mut unwritten).await?;
            }
            let mut step = self
                .compose_remote(head, &remote, fence, &mut unwritten)
                .await;
            if matches!(&step, Err(refusal) if refusal.status < 500) && !pending.is_empty() {
                // It may cite what is pending (an auth event replaced since,
                // or a prev another event took): judged again with the
                // store holding it.
                self.write_pending(&mut pending, &mut unwritten).await?;
                step = self
                    .compose_remote(head, &remote, fence, &mut unwritten)
                    .await;
            }
            match step {
                Ok(RemoteStep::Nothing) => {
                    // Soft-failed: kept hidden, and known if it comes again.
                    stored.insert(remote.event_id.clone());
                    outcomes.push(outcome(None));
                }
                Ok(RemoteStep::Write(record)) => {
                    stored.insert(record.event_id.clone());
                    pending.push(*record);
                    outcomes.push(outcome(None));
                }
                Err(refusal) if refusal.status >= 500 => return Err(refusal),
                Err(refusal) => outcomes.push(outcome(Some(refusal))),
            }
        }
        self.write_pending(&mut pending, &mut unwritten).await?;
        Ok(outcomes)
    }

    /// Writes the pending events in one store transaction and announces
    /// them; all or none. What was kept of them in memory is the store's
    /// to tell from now on.
    async fn write_pending(
        &self,
        pending: &mut Vec<PersistEvent>,
        unwritten: &mut Unwritten,
    ) -> Result<(), RoomInputRefused> {
        unwritten.clear();
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

/// Whether `remote` is a redaction: it reads its target from the store,
/// which must hold what is pending first.
fn reads_its_target(remote: &RemoteEvent) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        event_type: String,
    }
    serde_json::from_str::<Kind>(&remote.pdu_json)
        .map_or(true, |kind| kind.event_type == "m.room.redaction")
}
