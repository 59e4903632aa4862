//! Push rules run by the writer of the room: every event is judged for each
//! local member (and the invitee of an invite) before it is persisted, and
//! the verdicts are written in the same transaction as the event, so unread
//! counts never lag behind the timeline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use myelin_room::push::{PUSH_RULES_TYPE, PushRoom, evaluate, user_ruleset};
use myelin_room::{Pdu, RoomState};
use myelin_store::{PushAction, StoreResult};
use ruma::events::AnySyncTimelineEvent;
use ruma::push::Ruleset;
use ruma::serde::Raw;
use ruma::{OwnedUserId, UserId};
use serde_json::Value;

use crate::EventPersister;
use crate::head::CachedHead;

/// Users whose rules are kept parsed; past this the cache starts over.
const MAX_CACHED_RULESETS: usize = 10_000;

/// Parsed rule sets by user, dropped when the user changes them.
#[derive(Default)]
pub(crate) struct RulesetCache {
    by_user: Mutex<HashMap<String, Arc<Ruleset>>>,
}

impl RulesetCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Ruleset>>> {
        self.by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn forget(&self, user_id: &str) {
        self.lock().remove(user_id);
    }
}

/// The one who is notified, with the name mentions are matched against.
struct Recipient {
    user_id: OwnedUserId,
    display_name: String,
}

fn content(pdu: &Pdu) -> Value {
    serde_json::from_str(pdu.content.get()).unwrap_or_default()
}

/// The joined members of a head's state, with the member events they were
/// read from. Reused while the state holds the very same events (a pointer
/// comparison each), so a message in a big room does not parse every
/// member event again; any change of membership reads them afresh.
#[derive(Default)]
pub struct JoinedMembers(Mutex<Option<Arc<Joined>>>);

impl Clone for JoinedMembers {
    fn clone(&self) -> Self {
        JoinedMembers(Mutex::new(self.lock().clone()))
    }
}

impl JoinedMembers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Joined>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The joined members of `state` (before the event being judged).
    fn of(&self, state: &RoomState) -> Arc<Joined> {
        let events: Vec<&Arc<Pdu>> = state
            .range(("m.room.member".to_owned(), String::new())..)
            .take_while(|((event_type, _), _)| event_type == "m.room.member")
            .map(|(_, pdu)| pdu)
            .collect();
        let mut memo = self.lock();
        if let Some(joined) = memo.as_ref()
            && joined.events.len() == events.len()
            && joined
                .events
                .iter()
                .zip(&events)
                .all(|(known, now)| Arc::ptr_eq(known, now))
        {
            return Arc::clone(joined);
        }
        let members = events
            .iter()
            .filter_map(|pdu| {
                let content = content(pdu);
                if content["membership"] != "join" {
                    return None;
                }
                let display_name = content["displayname"].as_str().unwrap_or_default();
                Some((pdu.state_key.clone()?, display_name.to_owned()))
            })
            .collect();
        let joined = Arc::new(Joined {
            events: events.into_iter().cloned().collect(),
            members,
        });
        *memo = Some(Arc::clone(&joined));
        joined
    }
}

/// Joined members read from a state's member events.
struct Joined {
    /// Every member event of the state, in key order.
    events: Vec<Arc<Pdu>>,
    /// User ID and display name of each joined member.
    members: Vec<(String, String)>,
}

/// The thread root of an event in a thread.
fn thread_of(event: &Value) -> Option<String> {
    let relation = &event["content"]["m.relates_to"];
    (relation["rel_type"] == "m.thread")
        .then(|| relation["event_id"].as_str().map(str::to_owned))
        .flatten()
}

impl EventPersister {
    async fn ruleset(&self, user_id: &UserId) -> StoreResult<Arc<Ruleset>> {
        if let Some(rules) = self.rulesets.lock().get(user_id.as_str()) {
            return Ok(Arc::clone(rules));
        }
        let stored = self
            .store
            .account_data(user_id.as_str(), None, PUSH_RULES_TYPE)
            .await?;
        let rules = Arc::new(user_ruleset(user_id, stored.as_deref()));
        let mut cache = self.rulesets.lock();
        if cache.len() >= MAX_CACHED_RULESETS {
            cache.clear();
        }
        cache.insert(user_id.to_string(), Arc::clone(&rules));
        Ok(rules)
    }

    /// Who of this server the event notifies, and how.
    pub(crate) async fn push_actions(
        &self,
        head: &CachedHead,
        sender: &str,
        pdu_json: &str,
    ) -> StoreResult<Vec<PushAction>> {
        let local = format!(":{}", self.server_key.server_name);
        let joined = head.joined.of(&head.state);
        let mut recipients: Vec<Recipient> = joined
            .members
            .iter()
            .filter(|(user_id, _)| user_id != sender && user_id.ends_with(&local))
            .filter_map(|(user_id, display_name)| {
                Some(Recipient {
                    user_id: UserId::parse(user_id.as_str()).ok()?,
                    display_name: display_name.clone(),
                })
            })
            .collect();
        let Ok(event) = serde_json::from_str::<Value>(pdu_json) else {
            return Ok(Vec::new());
        };
        // An invite notifies its invitee, who is not joined yet.
        if event["type"] == "m.room.member"
            && event["content"]["membership"] == "invite"
            && let Some(invitee) = event["state_key"].as_str()
            && invitee.ends_with(&local)
            && let Ok(user_id) = UserId::parse(invitee)
        {
            recipients.push(Recipient {
                user_id,
                display_name: String::new(),
            });
        }
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let Ok(raw) = serde_json::value::to_raw_value(&event) else {
            return Ok(Vec::new());
        };
        let raw: Raw<AnySyncTimelineEvent> = Raw::from_json(raw);
        let room = self.push_room(head, joined.members.len());
        let thread_id = thread_of(&event);
        let mut actions = Vec::new();
        for recipient in recipients {
            let rules = self.ruleset(&recipient.user_id).await?;
            let verdict = evaluate(
                &rules,
                &raw,
                &room,
                &recipient.user_id,
                &recipient.display_name,
            )
            .await;
            if verdict.notify {
                actions.push(PushAction {
                    user_id: recipient.user_id.to_string(),
                    highlight: verdict.highlight,
                    thread_id: thread_id.clone(),
                    sound: verdict.sound,
                });
            }
        }
        Ok(actions)
    }

    fn push_room(&self, head: &CachedHead, member_count: usize) -> PushRoom {
        let state_content = |event_type: &str| {
            head.state
                .get(&(event_type.to_owned(), String::new()))
                .map(|pdu| (pdu.sender.clone(), content(pdu)))
        };
        let privileged_creators = head.version.privileges_creators().then(|| {
            let Some((creator, create)) = state_content("m.room.create") else {
                return Vec::new();
            };
            let mut creators = vec![creator];
            if let Some(more) = create["additional_creators"].as_array() {
                creators.extend(
                    more.iter()
                        .filter_map(|user| UserId::parse(user.as_str()?).ok()),
                );
            }
            creators
        });
        PushRoom {
            room_id: head
                .room_id
                .as_str()
                .try_into()
                .unwrap_or_else(|_| ruma::owned_room_id!("!unknown:invalid")),
            member_count: member_count as u64,
            power_levels: state_content("m.room.power_levels").map(|(_, content)| content),
            privileged_creators,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn threads_are_read_from_the_relation() {
        let in_thread =
            json!({"content": {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}});
        assert_eq!(thread_of(&in_thread).as_deref(), Some("$root"));
        let reply = json!({"content": {"m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}}});
        assert_eq!(thread_of(&reply), None);
    }

    fn member(n: u32, user: &str, membership: &str, name: &str) -> Arc<Pdu> {
        let json = json!({
            "type": "m.room.member",
            "state_key": user,
            "sender": user,
            "origin_server_ts": 1,
            "content": {"membership": membership, "displayname": name},
            "prev_events": [],
            "auth_events": [],
        });
        Arc::new(Pdu::from_json(&format!("$member-{n}"), &json.to_string()).expect("a PDU"))
    }

    fn set(state: &mut RoomState, pdu: Arc<Pdu>) {
        let key = pdu.state_key.clone().unwrap_or_default();
        state.insert(("m.room.member".to_owned(), key), pdu);
    }

    #[test]
    fn joined_members_are_read_again_only_when_a_member_event_changes() {
        let mut state = RoomState::new();
        set(&mut state, member(1, "@a:here", "join", "Ann"));
        set(&mut state, member(2, "@b:here", "invite", "Bo"));
        let memo = JoinedMembers::default();
        let first = memo.of(&state);
        assert_eq!(first.members, [("@a:here".to_owned(), "Ann".to_owned())]);
        // The same events: the same reading, not a new one.
        assert!(Arc::ptr_eq(&first, &memo.of(&state)));
        assert!(Arc::ptr_eq(&first, &memo.clone().of(&state)));

        // Bo joins under a new name; Ann's event stays as it was.
        set(&mut state, member(3, "@b:here", "join", "Bob"));
        let second = memo.of(&state);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(
            second.members,
            [
                ("@a:here".to_owned(), "Ann".to_owned()),
                ("@b:here".to_owned(), "Bob".to_owned())
            ]
        );
        // Ann leaves.
        set(&mut state, member(4, "@a:here", "leave", "Ann"));
        assert_eq!(
            memo.of(&state).members,
            [("@b:here".to_owned(), "Bob".to_owned())]
        );
    }
}
