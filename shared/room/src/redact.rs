//! The redaction algorithm of each room version, applied to a stored PDU.

use ruma::CanonicalJsonObject;

use crate::RoomVersion;

/// The PDU with every field its room version does not keep removed.
pub fn prune_pdu(version: &RoomVersion, pdu_json: &str) -> Result<String, String> {
    let object: CanonicalJsonObject =
        serde_json::from_str(pdu_json).map_err(|error| error.to_string())?;
    let pruned = ruma::canonical_json::redact(object, &version.rules.redaction, None)
        .map_err(|error| error.to_string())?;
    serde_json::to_string(&pruned).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_content_is_removed_but_member_membership_kept() {
        let version = RoomVersion::stable("10").expect("v10");
        let message = r#"{"type":"m.room.message","content":{"body":"secret"},"sender":"@a:hs","room_id":"!r:hs","origin_server_ts":1,"depth":1,"prev_events":[],"auth_events":[],"hashes":{"sha256":"x"},"signatures":{}}"#;
        let pruned = prune_pdu(&version, message).expect("prune");
        assert!(!pruned.contains("secret"));
        assert!(pruned.contains(r#""content":{}"#));
        let member = message.replace("m.room.message", "m.room.member").replace(
            r#""body":"secret""#,
            r#""membership":"join","displayname":"A""#,
        );
        let pruned = prune_pdu(&version, &member).expect("prune");
        assert!(pruned.contains(r#""membership":"join""#) && !pruned.contains("displayname"));
    }
}
