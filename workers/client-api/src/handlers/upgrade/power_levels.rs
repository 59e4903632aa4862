//! The power-level arithmetic of a room upgrade, on `m.room.power_levels`
//! content as stored (levels may be strings in old room versions).

use serde_json::{Value, json};

/// A level as the spec's integer, or as a string of one (room versions 1-9).
fn level(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn user_level(power_levels: &Value, user_id: &str) -> i64 {
    level(
        power_levels
            .get("users")
            .and_then(|users| users.get(user_id)),
    )
    .or_else(|| level(power_levels.get("users_default")))
    .unwrap_or(0)
}

/// Whether `user_id` may send a state event of `event_type`, as the
/// authorization rules will judge it. `creators` are the room's creators;
/// `privileged_creators` is set in versions where they have unlimited power.
pub(super) fn may_send_state(
    power_levels: Option<&Value>,
    creators: &[String],
    privileged_creators: bool,
    user_id: &str,
    event_type: &str,
) -> bool {
    let is_creator = creators.iter().any(|creator| creator == user_id);
    if privileged_creators && is_creator {
        return true;
    }
    let Some(power_levels) = power_levels else {
        // Without power levels the creator has 100, everyone else 0, and state needs 0.
        return is_creator;
    };
    let needed = level(
        power_levels
            .get("events")
            .and_then(|events| events.get(event_type)),
    )
    .or_else(|| level(power_levels.get("state_default")))
    .unwrap_or(50);
    user_level(power_levels, user_id) >= needed
}

/// The highest level any state event of a copied room may need.
fn highest_needed(power_levels: &Value) -> i64 {
    let events = power_levels
        .get("events")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(_, value)| level(Some(value)));
    let defaults = ["state_default", "ban"]
        .into_iter()
        .map(|key| level(power_levels.get(key)).unwrap_or(50));
    events.chain(defaults).max().unwrap_or(50)
}

/// The new room's power levels: the ones to create it with and, when the
/// upgrader needed a temporary raise to copy the state, the ones to restore
/// afterwards.
///
/// In versions where creators have unlimited power they must not be listed
/// (`new_creators`); coming from such a version into an older one, the old
/// room's creators (`old_creators`) are listed at 100 so they keep their power.
pub(super) fn new_room_power_levels(
    old: &Value,
    upgrader: &str,
    old_creators: Option<&[String]>,
    new_creators: Option<&[String]>,
) -> (Value, Option<Value>) {
    let mut power_levels = old.clone();
    if !power_levels.get("users").is_some_and(Value::is_object) {
        power_levels["users"] = json!({});
    }
    if let Some(new_creators) = new_creators {
        if let Some(users) = power_levels["users"].as_object_mut() {
            for creator in new_creators {
                users.remove(creator);
            }
        }
        return (power_levels, None);
    }
    for creator in old_creators.unwrap_or_default() {
        if user_level(&power_levels, creator) < 100 {
            power_levels["users"][creator.as_str()] = json!(100);
        }
    }
    let needed = highest_needed(&power_levels);
    if user_level(&power_levels, upgrader) >= needed {
        return (power_levels, None);
    }
    let mut raised = power_levels.clone();
    raised["users"][upgrader] = json!(needed);
    (raised, Some(power_levels))
}

/// The old room's power levels with `events_default` and `invite` at least
/// the greater of 50 and `users_default + 1`, or `None` when they already are.
pub(super) fn restricted_power_levels(power_levels: &Value) -> Option<Value> {
    let floor = 50.max(level(power_levels.get("users_default")).unwrap_or(0) + 1);
    let mut restricted = power_levels.clone();
    let mut changed = false;
    for (key, default) in [("events_default", 0), ("invite", 0)] {
        let current = level(power_levels.get(key)).unwrap_or(default);
        if current < floor {
            restricted[key] = json!(floor);
            changed = true;
        }
    }
    changed.then_some(restricted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creators(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn tombstone_needs_its_event_level_or_state_default() {
        let pl = json!({"users": {"@mod:hs": 50, "@admin:hs": "100"}, "events": {"m.room.tombstone": 100}});
        let none = creators(&[]);
        assert!(may_send_state(
            Some(&pl),
            &none,
            false,
            "@admin:hs",
            "m.room.tombstone"
        ));
        assert!(!may_send_state(
            Some(&pl),
            &none,
            false,
            "@mod:hs",
            "m.room.tombstone"
        ));
        assert!(may_send_state(
            Some(&pl),
            &none,
            false,
            "@mod:hs",
            "m.room.topic"
        ));
        assert!(!may_send_state(
            Some(&pl),
            &none,
            false,
            "@x:hs",
            "m.room.topic"
        ));
    }

    #[test]
    fn creators_of_new_versions_may_always_upgrade() {
        let pl = json!({"users": {}, "events": {"m.room.tombstone": 150}});
        let owner = creators(&["@owner:hs"]);
        assert!(may_send_state(
            Some(&pl),
            &owner,
            true,
            "@owner:hs",
            "m.room.tombstone"
        ));
        assert!(!may_send_state(
            Some(&pl),
            &owner,
            false,
            "@owner:hs",
            "m.room.tombstone"
        ));
        assert!(may_send_state(
            None,
            &owner,
            false,
            "@owner:hs",
            "m.room.tombstone"
        ));
        assert!(!may_send_state(
            None,
            &owner,
            false,
            "@x:hs",
            "m.room.tombstone"
        ));
    }

    #[test]
    fn new_creators_are_not_listed() {
        let old = json!({"users": {"@a:hs": 100, "@b:hs": 50}});
        let (initial, restore) =
            new_room_power_levels(&old, "@a:hs", None, Some(&creators(&["@a:hs"])));
        assert_eq!(initial["users"], json!({"@b:hs": 50}));
        assert!(restore.is_none());
    }

    #[test]
    fn upgrader_is_raised_only_while_copying() {
        let old = json!({"users": {"@a:hs": 50}, "state_default": 50, "events": {"m.room.encryption": 100}});
        let (initial, restore) = new_room_power_levels(&old, "@a:hs", None, None);
        assert_eq!(initial["users"]["@a:hs"], 100);
        assert_eq!(restore.expect("restore")["users"]["@a:hs"], 50);
        let (kept, restore) = new_room_power_levels(&initial, "@a:hs", None, None);
        assert_eq!(kept, initial);
        assert!(restore.is_none());
    }

    #[test]
    fn old_creators_keep_their_power_in_older_versions() {
        let old = json!({"users": {}, "events": {"m.room.tombstone": 150}});
        let (initial, restore) =
            new_room_power_levels(&old, "@a:hs", Some(&creators(&["@a:hs"])), None);
        assert_eq!(initial["users"]["@a:hs"], 150);
        assert_eq!(restore.expect("restore")["users"]["@a:hs"], 100);
    }

    #[test]
    fn old_room_is_restricted_to_the_spec_floor() {
        let pl = json!({"events_default": 0, "invite": 0, "users_default": 0});
        let restricted = restricted_power_levels(&pl).expect("changed");
        assert_eq!(
            (
                restricted["events_default"].clone(),
                restricted["invite"].clone()
            ),
            (json!(50), json!(50))
        );
        let high = json!({"events_default": 0, "invite": 75, "users_default": 60});
        let restricted = restricted_power_levels(&high).expect("changed");
        assert_eq!(
            (
                restricted["events_default"].clone(),
                restricted["invite"].clone()
            ),
            (json!(61), json!(75))
        );
        assert!(restricted_power_levels(&json!({"events_default": 50, "invite": 50})).is_none());
    }
}
