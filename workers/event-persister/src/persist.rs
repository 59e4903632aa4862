//! Writing one event: compose, authorize, persist, announce.

use std::sync::Arc;

use myelin_bus::messages::{
    self, EventTemplate, PersistedEvent, RoomInputDone, RoomInputRefused, WIRE_VERSION,
};
use myelin_bus::subjects;
use myelin_room::{ComposeError, NewEvent, Pdu, RoomHead, compose_event, event_ref};
use myelin_store::{Fence, PersistEvent, PersistOutcome, TxnKey};
use myelin_types::{Partition, StreamPosition};
use serde_json::Value;

use crate::EventPersister;
use crate::head::CachedHead;
use crate::input::{refused, unavailable};
use crate::snapshots::{self, HeadSnapshot};

fn compose_refusal(error: ComposeError) -> RoomInputRefused {
    match error {
        ComposeError::Auth(myelin_room::AuthError::Forbidden(why)) => {
            refused(403, "M_FORBIDDEN", &why)
        }
        ComposeError::Auth(myelin_room::AuthError::Invalid(why)) => {
            refused(400, "M_BAD_JSON", &why)
        }
        ComposeError::Build(myelin_room::BuildError::TooLarge) => {
            refused(413, "M_TOO_LARGE", "Event is larger than 65536 bytes")
        }
        ComposeError::Build(too_long @ myelin_room::BuildError::KeyTooLarge(_)) => {
            refused(413, "M_TOO_LARGE", &too_long.to_string())
        }
        ComposeError::Build(other) => refused(400, "M_BAD_JSON", &other.to_string()),
    }
}

/// An event built, signed and authorized on top of a head, not yet stored.
pub(crate) struct ComposedEvent {
    pub(crate) record: PersistEvent,
    pdu: Pdu,
    /// The head's snapshot once this event is written.
    snapshot_after: HeadSnapshot,
}

impl ComposedEvent {
    pub(crate) fn done(&self, position: Option<StreamPosition>) -> RoomInputDone {
        RoomInputDone {
            room_id: self.record.room_id.clone(),
            event_id: self.record.event_id.clone(),
            position,
        }
    }
}

impl EventPersister {
    /// Writes one event on top of `head` and moves `head` forward.
    pub(crate) async fn write_event(
        &self,
        head: &mut CachedHead,
        sender: &str,
        template: EventTemplate,
        txn: Option<TxnKey>,
        fence: Fence,
    ) -> Result<RoomInputDone, RoomInputRefused> {
        let narrow = self.narrow_head(head).await?;
        let composed_on = narrow.as_ref().map_or(&*head, |narrow| &narrow.cited);
        let mut composed = self
            .compose(composed_on, sender, template, txn, fence)
            .await?;
        let next_head = match &narrow {
            Some(narrow) => {
                let next = self.head_beside_uncited(narrow, &composed).await?;
                composed.record.resolved_state =
                    Some(crate::remote::changes(&head.state, &next.state));
                Some(next)
            }
            None => None,
        };
        let outcome = self
            .event_store
            .persist_event(composed.record.clone())
            .await
            .map_err(unavailable)?;
        let position = match outcome {
            PersistOutcome::Persisted(position) => position,
            PersistOutcome::DuplicateTxn { event_id } => {
                return Ok(RoomInputDone {
                    room_id: composed.record.room_id,
                    event_id,
                    position: None,
                });
            }
        };
        match next_head {
            Some(next) => *head = next,
            None => advance(head, &composed),
        }
        self.announce(&composed.record, position).await;
        Ok(composed.done(Some(position)))
    }

    /// Builds, signs and authorizes the next event on top of `head`; the
    /// store and `head` are left as they were.
    pub(crate) async fn compose(
        &self,
        head: &CachedHead,
        sender: &str,
        template: EventTemplate,
        txn: Option<TxnKey>,
        fence: Fence,
    ) -> Result<ComposedEvent, RoomInputRefused> {
        let room_id = (!head.room_id.is_empty()).then_some(head.room_id.as_str());
        let redaction = match &template.redacts {
            Some(target) => Some(self.redaction_of(head, sender, target).await?),
            None => None,
        };
        let built = compose_event(
            &self.server_key,
            &RoomHead {
                version: &head.version,
                room_id,
                state: &head.state,
                extremities: &head.extremities,
                max_depth: head.max_depth,
            },
            NewEvent {
                sender,
                event_type: &template.event_type,
                state_key: template.state_key.as_deref(),
                content: template.content.clone(),
                redacts: template.redacts.as_deref(),
                origin_server_ts: myelin_types::now_millis(),
            },
        )
        .map_err(compose_refusal)?;

        let membership = (template.event_type == "m.room.member")
            .then(|| {
                template
                    .content
                    .get("membership")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .flatten();
        let push_actions = self
            .push_actions(head, sender, &built.json)
            .await
            .map_err(unavailable)?;
        let (event_snapshots, snapshot_after) = snapshots::around_event(
            head.snapshot.as_ref(),
            &head.state,
            &built.event_id,
            template
                .state_key
                .as_deref()
                .map(|state_key| (template.event_type.as_str(), state_key)),
        );
        let record = PersistEvent {
            event_id: built.event_id,
            room_id: built.room_id,
            sender: sender.to_owned(),
            new_room_version: (template.event_type == "m.room.create")
                .then(|| head.version.id.as_str().to_owned()),
            event_type: template.event_type,
            state_key: template.state_key,
            depth: myelin_room::next_depth(head.max_depth),
            origin_server_ts: built.pdu.origin_server_ts.get().into(),
            pdu_json: built.json,
            prev_events: head
                .extremities
                .iter()
                .map(|r| r.event_id.clone())
                .collect(),
            membership,
            txn,
            redaction,
            redacted_on_arrival: None,
            fence: Some(fence),
            push_actions,
            snapshots: Some(event_snapshots),
            resolved_state: None,
            opens_gap: false,
        };
        Ok(ComposedEvent {
            record,
            pdu: built.pdu,
            snapshot_after,
        })
    }

    /// Tells readers the event is in the store.
    pub(crate) async fn announce(&self, record: &PersistEvent, position: StreamPosition) {
        let announcement = PersistedEvent {
            v: WIRE_VERSION,
            room_id: record.room_id.clone(),
            event_id: record.event_id.clone(),
            position,
            sender: record.sender.clone(),
            event_type: record.event_type.clone(),
            state_key: record.state_key.clone(),
            membership: record.membership.clone(),
            state_rebuilt: rebuilds_state(record),
        };
        let subject = subjects::persisted_event(Partition::of_room(&record.room_id));
        if let Err(error) = self
            .bus
            .announce(&subject, messages::encode(&announcement))
            .await
        {
            // The event is stored; readers find it in the store on their next poll.
            tracing::warn!(%error, event_id = %record.event_id, "could not announce a persisted event");
        }
    }
}

/// Moves `head` past an event composed on it.
pub(crate) fn advance(head: &mut CachedHead, composed: &ComposedEvent) {
    let record = &composed.record;
    head.room_id = record.room_id.clone();
    head.max_depth = myelin_room::next_depth(head.max_depth);
    head.extremities = vec![event_ref(&head.version, &record.event_id, &record.pdu_json)];
    head.snapshot = Some(composed.snapshot_after.clone());
    if let Some(state_key) = &record.state_key {
        let mut pdu = composed.pdu.clone();
        pdu.reference_hash = head.extremities[0].reference_hash.clone();
        head.state.insert(
            (record.event_type.clone(), state_key.clone()),
            Arc::new(pdu),
        );
    }
}

/// Whether readers must read the room's current state again: it was
/// resolved where branches met and something changed, or the event is
/// state whose own key may have lost. A message on a branch that changed
/// nothing (a server catching up) leaves every reader's copy good.
fn rebuilds_state(record: &PersistEvent) -> bool {
    record
        .resolved_state
        .as_ref()
        .is_some_and(|changes| !changes.is_empty() || record.state_key.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_store::{CurrentStateChange, StateEntry};

    fn record(state_key: Option<&str>, resolved: Option<Vec<CurrentStateChange>>) -> PersistEvent {
        PersistEvent {
            event_id: "$e".to_owned(),
            room_id: "!r:a.test".to_owned(),
            sender: "@u:b.test".to_owned(),
            event_type: if state_key.is_some() {
                "m.room.member"
            } else {
                "m.room.message"
            }
            .to_owned(),
            state_key: state_key.map(str::to_owned),
            depth: 2,
            origin_server_ts: 1,
            pdu_json: "{}".to_owned(),
            prev_events: Vec::new(),
            membership: state_key.map(|_| "join".to_owned()),
            txn: None,
            redaction: None,
            redacted_on_arrival: None,
            new_room_version: None,
            push_actions: Vec::new(),
            fence: None,
            snapshots: None,
            resolved_state: resolved,
            opens_gap: false,
        }
    }

    #[test]
    fn only_a_resolution_that_may_change_state_tells_readers_to_reload() {
        let change = CurrentStateChange {
            entry: StateEntry {
                event_type: "m.room.topic".to_owned(),
                state_key: String::new(),
                event_id: "$t".to_owned(),
            },
            membership: None,
        };
        assert!(!rebuilds_state(&record(None, None)));
        assert!(!rebuilds_state(&record(None, Some(Vec::new()))));
        assert!(rebuilds_state(&record(None, Some(vec![change]))));
        // A member event that may have lost: its own key is not news.
        assert!(rebuilds_state(&record(Some("@u:b.test"), Some(Vec::new()))));
        assert!(!rebuilds_state(&record(Some("@u:b.test"), None)));
    }
}
