//! The room versions we create and their rules.

use ruma::RoomVersionId;
use ruma::room_version_rules::RoomVersionRules;

/// Every stable room version of the spec.
pub const STABLE_ROOM_VERSIONS: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
];

/// What current Synapse creates by default.
pub const DEFAULT_ROOM_VERSION: &str = "12";

#[derive(Debug, Clone)]
pub struct RoomVersion {
    pub id: RoomVersionId,
    pub rules: RoomVersionRules,
}

impl RoomVersion {
    /// A stable version we support, or `None`.
    pub fn stable(id: &str) -> Option<RoomVersion> {
        if !STABLE_ROOM_VERSIONS.contains(&id) {
            return None;
        }
        let id = RoomVersionId::try_from(id).ok()?;
        let rules = id.rules()?;
        Some(RoomVersion { id, rules })
    }

    /// Whether the room ID is the create event's reference hash (v12+).
    pub fn room_id_from_create_event(&self) -> bool {
        self.rules.authorization.room_create_event_id_as_room_id
    }

    /// Whether creators have infinite power and must not be listed in
    /// `m.room.power_levels` `users` (v12+).
    pub fn privileges_creators(&self) -> bool {
        self.rules.authorization.explicitly_privilege_room_creators
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stable_version_has_rules() {
        for id in STABLE_ROOM_VERSIONS {
            assert!(RoomVersion::stable(id).is_some(), "{id}");
        }
        assert!(RoomVersion::stable("13").is_none());
        assert!(RoomVersion::stable("org.matrix.msc1234").is_none());
        assert!(
            RoomVersion::stable("12")
                .expect("v12")
                .room_id_from_create_event()
        );
        assert!(
            !RoomVersion::stable("11")
                .expect("v11")
                .room_id_from_create_event()
        );
    }
}
