//! Push rules as the server applies them: a user's rule set (the spec's
//! defaults from ruma, with what the user changed) and the verdict of those
//! rules on one event, with ruma's evaluator.

use std::collections::BTreeMap;

use ruma::events::AnySyncTimelineEvent;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset, Tweak};
use ruma::room_version_rules::{AuthorizationRules, RoomPowerLevelsRules};
use ruma::serde::Raw;
use ruma::{Int, OwnedRoomId, OwnedUserId, UInt, UserId};
use serde_json::Value;

/// The `m.push_rules` account-data type the rules are kept under.
pub const PUSH_RULES_TYPE: &str = "m.push_rules";

/// The user's rules: `stored` (the `m.push_rules` content) with the server
/// defaults brought up to date, or the defaults alone when nothing usable
/// is stored.
pub fn user_ruleset(user_id: &UserId, stored: Option<&str>) -> Ruleset {
    let defaults = Ruleset::server_default(user_id);
    let Some(stored) = stored else {
        return defaults;
    };
    let parsed = serde_json::from_str::<Value>(stored)
        .ok()
        .and_then(|content| serde_json::from_value::<Ruleset>(content.get("global")?.clone()).ok());
    match parsed {
        Some(mut rules) => {
            rules.update_with_server_default(defaults);
            rules
        }
        None => defaults,
    }
}

/// What the rules say about one event for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushVerdict {
    pub notify: bool,
    pub highlight: bool,
    /// The `sound` tweak, for push gateways.
    pub sound: Option<String>,
}

/// The room as push conditions see it when an event arrives.
pub struct PushRoom {
    pub room_id: OwnedRoomId,
    pub member_count: u64,
    /// The `m.room.power_levels` content, if any.
    pub power_levels: Option<Value>,
    /// Creators ranked above every power level (room version 12 on).
    pub privileged_creators: Option<Vec<OwnedUserId>>,
}

impl PushRoom {
    fn power_levels_ctx(&self) -> Option<PushConditionPowerLevelsCtx> {
        let content = self.power_levels.as_ref()?;
        let users: BTreeMap<OwnedUserId, Int> = content
            .get("users")
            .and_then(|users| serde_json::from_value(users.clone()).ok())
            .unwrap_or_default();
        let users_default = content
            .get("users_default")
            .and_then(Value::as_i64)
            .and_then(|level| Int::try_from(level).ok())
            .unwrap_or_default();
        let notifications: NotificationPowerLevels = content
            .get("notifications")
            .and_then(|levels| serde_json::from_value(levels.clone()).ok())
            .unwrap_or_default();
        let rules = match &self.privileged_creators {
            Some(creators) => {
                RoomPowerLevelsRules::new(&AuthorizationRules::V12, creators.iter().cloned())
            }
            None => RoomPowerLevelsRules::new(&AuthorizationRules::V1, Vec::new()),
        };
        Some(PushConditionPowerLevelsCtx::new(
            users,
            users_default,
            notifications,
            rules,
        ))
    }
}

/// Runs the user's rules on the event (its PDU or client JSON).
pub async fn evaluate(
    rules: &Ruleset,
    event: &Raw<AnySyncTimelineEvent>,
    room: &PushRoom,
    user_id: &UserId,
    display_name: &str,
) -> PushVerdict {
    let mut context = PushConditionRoomCtx::new(
        room.room_id.clone(),
        UInt::try_from(room.member_count).unwrap_or(UInt::MAX),
        user_id.to_owned(),
        display_name.to_owned(),
    );
    context.power_levels = room.power_levels_ctx();
    let actions = rules.get_actions(event, &context).await;
    PushVerdict {
        notify: actions.iter().any(|action| action.should_notify()),
        highlight: actions.iter().any(|action| action.is_highlight()),
        sound: actions.iter().find_map(|action| match action {
            Action::SetTweak(Tweak::Sound(sound)) => Some(sound.as_str().to_owned()),
            _ => None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(value: Value) -> Raw<AnySyncTimelineEvent> {
        Raw::from_json(serde_json::value::to_raw_value(&value).expect("JSON"))
    }

    fn room(members: u64) -> PushRoom {
        PushRoom {
            room_id: "!r:hs".try_into().expect("a room ID"),
            member_count: members,
            power_levels: Some(json!({"users": {"@admin:hs": 100}, "users_default": 0})),
            privileged_creators: None,
        }
    }

    fn message(body: Value) -> Raw<AnySyncTimelineEvent> {
        event(json!({
            "type": "m.room.message", "sender": "@bob:hs", "event_id": "$e",
            "origin_server_ts": 1, "content": body,
        }))
    }

    #[tokio::test]
    async fn the_defaults_notify_messages_and_highlight_mentions() {
        let alice: &UserId = "@alice:hs".try_into().expect("a user ID");
        let rules = user_ruleset(alice, None);
        let plain = evaluate(
            &rules,
            &message(json!({"msgtype": "m.text", "body": "hi"})),
            &room(3),
            alice,
            "Alice",
        )
        .await;
        assert_eq!(
            plain,
            PushVerdict {
                notify: true,
                highlight: false,
                sound: None,
            }
        );
        let one_to_one = evaluate(
            &rules,
            &message(json!({"msgtype": "m.text", "body": "hi"})),
            &room(2),
            alice,
            "Alice",
        )
        .await;
        assert_eq!(one_to_one.sound.as_deref(), Some("default"));
        let mention = message(
            json!({"msgtype": "m.text", "body": "hi", "m.mentions": {"user_ids": ["@alice:hs"]}}),
        );
        let mentioned = evaluate(&rules, &mention, &room(3), alice, "Alice").await;
        assert_eq!(
            mentioned,
            PushVerdict {
                notify: true,
                highlight: true,
                sound: Some("default".to_owned()),
            }
        );
        let notice = message(json!({"msgtype": "m.notice", "body": "bot"}));
        assert!(
            !evaluate(&rules, &notice, &room(3), alice, "Alice")
                .await
                .notify
        );
        let reaction = event(json!({
            "type": "m.reaction", "sender": "@bob:hs", "event_id": "$r", "origin_server_ts": 1,
            "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": "+1"}},
        }));
        assert!(
            !evaluate(&rules, &reaction, &room(3), alice, "Alice")
                .await
                .notify
        );
    }

    #[tokio::test]
    async fn a_users_changes_are_kept_and_unreadable_ones_fall_back() {
        let alice: &UserId = "@alice:hs".try_into().expect("a user ID");
        let mut muted = Ruleset::server_default(alice);
        muted
            .set_enabled(ruma::push::RuleKind::Override, ".m.rule.master", true)
            .expect("the master rule");
        let stored = json!({"global": muted}).to_string();
        let rules = user_ruleset(alice, Some(&stored));
        let verdict = evaluate(
            &rules,
            &message(json!({"msgtype": "m.text", "body": "hi"})),
            &room(3),
            alice,
            "A",
        )
        .await;
        assert!(!verdict.notify, "the master rule mutes everything");
        let fallback = user_ruleset(alice, Some("not json"));
        let enabled = |rules: &Ruleset| {
            rules
                .get(ruma::push::RuleKind::Override, ".m.rule.master")
                .map(|rule| rule.enabled())
        };
        assert_eq!(enabled(&fallback), Some(false), "the defaults again");
    }
}
