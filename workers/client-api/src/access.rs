//! Who may read a room, and up to where.

use myelin_http::MatrixError;
use myelin_types::StreamPosition;

use crate::ClientApi;

/// How much of a room's history a user may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAccess {
    /// A current member: everything.
    Joined,
    /// A former member: up to the event that ended the membership.
    Until(StreamPosition),
}

impl ReadAccess {
    pub(crate) fn limit(self) -> Option<StreamPosition> {
        match self {
            ReadAccess::Joined => None,
            ReadAccess::Until(position) => Some(position),
        }
    }
}

impl ClientApi {
    /// The user's current membership in the room (`join`, `leave`, ...), if any.
    pub(crate) async fn current_membership(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, MatrixError> {
        let event = self
            .store
            .state_event(room_id, "m.room.member", user_id)
            .await?;
        Ok(event.and_then(|event| membership_of(&event.pdu_json)))
    }

    pub(crate) async fn read_access(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<ReadAccess, MatrixError> {
        let member_event = self
            .store
            .state_event(room_id, "m.room.member", user_id)
            .await?;
        if self.store.room_forgotten(user_id, room_id).await? {
            return Err(MatrixError::forbidden("You have forgotten this room"));
        }
        let Some(event) = member_event else {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        };
        match membership_of(&event.pdu_json).as_deref() {
            Some("join") => Ok(ReadAccess::Joined),
            Some("leave" | "ban") => Ok(ReadAccess::Until(event.position)),
            _ => Err(MatrixError::forbidden("You are not a member of this room")),
        }
    }
}

/// `content.membership` of a stored member event.
pub(crate) fn membership_of(pdu_json: &str) -> Option<String> {
    let pdu: serde_json::Value = serde_json::from_str(pdu_json).ok()?;
    pdu.get("content")?
        .get("membership")?
        .as_str()
        .map(str::to_owned)
}
