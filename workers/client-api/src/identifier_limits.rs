//! The spec's limits on what a request names (event types, state keys,
//! transaction IDs, room aliases, user IDs, names), checked where requests
//! come in so that both store engines see the same refusals.

use myelin_http::MatrixError;
use ruma::{OwnedRoomAliasId, RoomAliasId};

/// The spec's limit, in bytes, on an event's `type` and `state_key`, on
/// user and room IDs and on room aliases: the one the PDU builder applies.
pub(crate) const MAX_IDENTIFIER_BYTES: usize = myelin_room::MAX_KEY_BYTES;

/// PostgreSQL `text` cannot hold a NUL and SQLite can: refusing it before
/// the store keeps the engines alike.
pub(crate) fn refuse_nul(what: &str, value: &str) -> Result<(), MatrixError> {
    if value.contains('\0') {
        return Err(MatrixError::invalid_param(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// An event's `type` or `state_key`. Too long is `413 M_TOO_LARGE`, the
/// answer Synapse gives for an event over the spec's size limits.
pub(crate) fn check_event_key(what: &str, value: &str) -> Result<(), MatrixError> {
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(MatrixError::too_large(format!(
            "{what} is longer than {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    refuse_nul(what, value)
}

/// A client's transaction ID, kept with the event it sent.
pub(crate) fn check_txn_id(txn_id: &str) -> Result<(), MatrixError> {
    if txn_id.len() > MAX_IDENTIFIER_BYTES {
        return Err(MatrixError::invalid_param(format!(
            "Transaction IDs are at most {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    refuse_nul("The transaction ID", txn_id)
}

/// A device ID and name a client chose, checked before anything is written.
pub(crate) fn check_new_device(
    device_id: Option<&str>,
    display_name: Option<&str>,
) -> Result<(), MatrixError> {
    for (what, value) in [
        ("The device ID", device_id),
        ("The device name", display_name),
    ] {
        if let Some(value) = value {
            refuse_nul(what, value)?;
        }
    }
    Ok(())
}

/// A room alias: the spec's grammar (no NUL in the localpart) and size.
pub(crate) fn check_alias(alias: &RoomAliasId) -> Result<(), MatrixError> {
    if alias.as_str().len() > MAX_IDENTIFIER_BYTES {
        return Err(MatrixError::invalid_param(format!(
            "Room aliases are at most {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    refuse_nul("A room alias", alias.as_str())
}

/// `#{localpart}:{server_name}` for createRoom's `room_alias_name`.
pub(crate) fn local_alias(
    localpart: &str,
    server_name: &str,
) -> Result<OwnedRoomAliasId, MatrixError> {
    // A colon would move the server name; the localpart is asked for alone.
    if localpart.is_empty() || localpart.contains(':') || localpart.contains(char::is_whitespace) {
        return Err(MatrixError::invalid_param("Invalid room alias name"));
    }
    let alias = RoomAliasId::parse(format!("#{localpart}:{server_name}"))
        .map_err(|error| MatrixError::invalid_param(format!("Invalid room alias: {error}")))?;
    check_alias(&alias)?;
    Ok(alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(result: Result<impl std::fmt::Debug, MatrixError>) -> (u16, String) {
        let error = result.expect_err("refused");
        (error.status.as_u16(), error.errcode.to_string())
    }

    #[test]
    fn event_keys_stop_at_255_bytes_and_refuse_nul() {
        assert!(check_event_key("type", &"t".repeat(255)).is_ok());
        // 128 two-byte characters: 256 bytes in 128 characters.
        assert_eq!(
            refusal(check_event_key("type", &"é".repeat(128))),
            (413, "M_TOO_LARGE".to_owned())
        );
        assert_eq!(
            refusal(check_event_key("state_key", "a\0b")),
            (400, "M_INVALID_PARAM".to_owned())
        );
    }

    #[test]
    fn transaction_ids_stop_at_255_bytes() {
        assert!(check_txn_id(&"x".repeat(255)).is_ok());
        assert_eq!(
            refusal(check_txn_id(&"x".repeat(256))),
            (400, "M_INVALID_PARAM".to_owned())
        );
        assert_eq!(
            refusal(check_txn_id("a\0")),
            (400, "M_INVALID_PARAM".to_owned())
        );
    }

    #[test]
    fn aliases_follow_the_grammar_and_size() {
        let alias = local_alias("lobby", "hs.test").expect("a plain alias");
        assert_eq!(alias.as_str(), "#lobby:hs.test");
        for bad in ["", "a:b", "a b", "a\0b", &"a".repeat(300)] {
            assert_eq!(
                refusal(local_alias(bad, "hs.test")),
                (400, "M_INVALID_PARAM".to_owned()),
                "{bad:?}"
            );
        }
        // 247 + "#" + ":hs.test" is 256 bytes.
        assert!(local_alias(&"a".repeat(246), "hs.test").is_ok());
        assert!(local_alias(&"a".repeat(247), "hs.test").is_err());
    }
}
