//! Redactions: who may redact what, and the pruned target each applies.
//!
//! Another server's redaction can arrive before its target (history is
//! fetched newest first; a transaction can be lost and sent again later).
//! It is remembered, and applied when the target arrives, by backfill or
//! live: the target is written redacted.

use std::collections::HashMap;

use myelin_bus::messages::RoomInputRefused;
use myelin_room::prune_pdu;
use myelin_store::{AppliedRedaction, Redaction};
use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent};
use ruma::{OwnedUserId, UserId};
use serde_json::Value;

use crate::EventPersister;
use crate::head::CachedHead;
use crate::input::{refused, unavailable};

/// An event a redaction may wait for, as it arrives.
pub(crate) struct Arriving<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) sender: &'a str,
    pub(crate) pdu_json: &'a str,
}

impl EventPersister {
    /// Checks that `sender` may redact the stored event `target` and prunes it.
    pub(crate) async fn redaction_of(
        &self,
        head: &CachedHead,
        sender: &str,
        target: &str,
    ) -> Result<Redaction, RoomInputRefused> {
        let stored = self
            .event_store
            .event(target)
            .await
            .map_err(unavailable)?
            .filter(|event| event.room_id == head.room_id)
            .ok_or_else(|| refused(404, "M_NOT_FOUND", "Event to redact not found in this room"))?;
        redaction_by(
            head,
            sender,
            &Arriving {
                event_id: target,
                sender: &stored.sender,
                pdu_json: &stored.pdu_json,
            },
        )
    }

    /// What another server's redaction `redaction_id` applies now. One whose
    /// target is not here yet is remembered, to be applied when the target
    /// arrives; one the sender may not make applies nothing.
    pub(crate) async fn remote_redaction(
        &self,
        head: &mut CachedHead,
        redaction_id: &str,
        sender: &str,
        target: &str,
    ) -> Result<Option<Redaction>, RoomInputRefused> {
        match self.redaction_of(head, sender, target).await {
            Ok(redaction) => Ok(Some(redaction)),
            Err(refusal) if refusal.status == 404 => {
                self.store
                    .remember_redaction(&head.room_id, target, redaction_id)
                    .await
                    .map_err(unavailable)?;
                head.redactions_wait = true;
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    /// The redactions in the timeline that wait for the `arriving` events,
    /// each checked and pruned as it would have been had its target been
    /// here first; keyed by target, oldest redaction first.
    pub(crate) async fn waiting_redactions(
        &self,
        head: &CachedHead,
        arriving: &[Arriving<'_>],
    ) -> Result<HashMap<String, Vec<AppliedRedaction>>, RoomInputRefused> {
        if !head.redactions_wait || arriving.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = arriving
            .iter()
            .map(|event| event.event_id.to_owned())
            .collect();
        let waiting = self
            .store
            .waiting_redactions(&head.room_id, &ids)
            .await
            .map_err(unavailable)?;
        if waiting.is_empty() {
            return Ok(HashMap::new());
        }
        let redaction_ids: Vec<String> = waiting.iter().map(|(_, id)| id.clone()).collect();
        let senders: HashMap<String, String> = self
            .store
            .events_by_id(&redaction_ids)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|event| (event.event_id, event.sender))
            .collect();
        let mut applied: HashMap<String, Vec<AppliedRedaction>> = HashMap::new();
        for (target, redaction_id) in waiting {
            let Some(sender) = senders.get(&redaction_id) else {
                continue;
            };
            let Some(event) = arriving.iter().find(|event| event.event_id == target) else {
                continue;
            };
            if let Ok(redaction) = redaction_by(head, sender, event) {
                applied.entry(target).or_default().push(AppliedRedaction {
                    redaction_event_id: redaction_id,
                    target_event_id: redaction.target_event_id,
                    pruned_pdu_json: redaction.pruned_pdu_json,
                });
            }
        }
        Ok(applied)
    }
}

/// Checks that `sender` may redact `target` and prunes it: one's own
/// events, or anyone's at the room's redaction power level.
fn redaction_by(
    head: &CachedHead,
    sender: &str,
    target: &Arriving<'_>,
) -> Result<Redaction, RoomInputRefused> {
    if target.sender != sender && !may_redact_others(head, sender) {
        return Err(refused(
            403,
            "M_FORBIDDEN",
            "You may not redact other users' events",
        ));
    }
    let pruned_pdu_json = prune_pdu(&head.version, target.pdu_json)
        .map_err(|error| refused(500, "M_UNKNOWN", &format!("cannot redact: {error}")))?;
    Ok(Redaction {
        target_event_id: target.event_id.to_owned(),
        pruned_pdu_json,
    })
}

/// Whether the room's power levels let `sender` redact other users' events.
fn may_redact_others(head: &CachedHead, sender: &str) -> bool {
    let Ok(sender) = UserId::parse(sender) else {
        return false;
    };
    let content = head
        .state
        .get(&("m.room.power_levels".to_owned(), String::new()))
        .and_then(|levels| {
            serde_json::from_str::<RoomPowerLevelsEventContent>(levels.content.get()).ok()
        });
    RoomPowerLevels::new(
        content.into(),
        &head.version.rules.authorization,
        creators(head),
    )
    .user_can_redact_event_of_other(&sender)
}

/// The room's creators: the create event's sender and, where the version
/// privileges creators, its `additional_creators`.
fn creators(head: &CachedHead) -> Vec<OwnedUserId> {
    let Some(create) = head.state.get(&("m.room.create".to_owned(), String::new())) else {
        return Vec::new();
    };
    let mut creators = vec![create.sender.clone()];
    if head.version.privileges_creators()
        && let Ok(content) = serde_json::from_str::<Value>(create.content.get())
        && let Some(more) = content.get("additional_creators").and_then(Value::as_array)
    {
        creators.extend(
            more.iter()
                .filter_map(Value::as_str)
                .filter_map(|user| UserId::parse(user).ok()),
        );
    }
    creators
}
