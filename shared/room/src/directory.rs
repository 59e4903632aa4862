//! The room directory as this server lists it: the published rooms whose
//! current state lets anyone in or read them, in pages, optionally searched.
//! Served to local clients (`/publicRooms`) and to other servers
//! (`/_matrix/federation/v1/publicRooms`), so both see the same list.

use myelin_store::{Store, StoreResult};
use ruma::directory::{Filter, PublicRoomsChunk, RoomNetwork};
use ruma::room::{JoinRule, JoinRuleKind, JoinRuleSummary, RoomSummary, RoomType};
use ruma::{
    EventEncryptionAlgorithm, OwnedMxcUri, OwnedRoomAliasId, OwnedRoomId, RoomVersionId, UInt,
};

use crate::content_text;

/// Rooms per page when the asker names no limit, and the most it may ask.
const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 500;
/// Published rooms one request looks at before it answers with what it
/// found and a token to go on from (a search may match few of them).
const MAX_SCANNED: usize = 1000;
const SCAN_PAGE: usize = 100;
/// The longest search term taken, in characters.
pub const MAX_SEARCH_TERM_CHARS: usize = 256;

/// One request for a page of the directory, either form, either API.
pub struct DirectoryQuery<'a> {
    pub limit: Option<UInt>,
    pub since: Option<&'a str>,
    pub filter: &'a Filter,
    pub network: &'a RoomNetwork,
}

pub struct DirectoryPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub total: Option<UInt>,
}

/// A request the directory cannot answer: its `since` or search term.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQuery(pub String);

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Invalid(#[from] InvalidQuery),
    #[error(transparent)]
    Store(#[from] myelin_store::StoreError),
}

/// A page of the directory.
pub async fn list_public_rooms(
    store: &dyn Store,
    query: DirectoryQuery<'_>,
) -> Result<DirectoryPage, DirectoryError> {
    let limit = query
        .limit
        .map_or(DEFAULT_LIMIT, |limit| {
            usize::try_from(u64::from(limit)).unwrap_or(MAX_LIMIT)
        })
        .clamp(1, MAX_LIMIT);
    let mut cursor = parse_since(query.since)?.map(str::to_owned);
    let term = search_term(query.filter)?;
    if let RoomNetwork::ThirdParty(_) = query.network {
        // No bridges publish rooms here: a third-party network has none.
        return Ok(DirectoryPage {
            chunk: Vec::new(),
            next_batch: None,
            total: Some(UInt::MIN),
        });
    }
    let total = UInt::try_from(store.published_room_count().await?).ok();
    let mut chunk = Vec::new();
    let mut scanned = 0;
    let mut exhausted = false;
    'pages: while scanned < MAX_SCANNED {
        let rooms = store.published_rooms(cursor.as_deref(), SCAN_PAGE).await?;
        if rooms.len() < SCAN_PAGE {
            exhausted = true;
        }
        for room_id in rooms {
            scanned += 1;
            cursor = Some(room_id.clone());
            let Some(summary) = room_summary(store, &room_id).await? else {
                continue;
            };
            let entry = Listing::from(summary);
            if entry.is_listable() && entry.matches(query.filter, term.as_deref()) {
                chunk.push(entry.chunk);
                if chunk.len() == limit {
                    exhausted = false;
                    break 'pages;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let next_batch = match cursor {
        Some(last) if !exhausted => {
            let more = store.published_rooms(Some(&last), 1).await?;
            (!more.is_empty()).then_some(last)
        }
        _ => None,
    };
    Ok(DirectoryPage {
        chunk,
        next_batch,
        total,
    })
}

/// What the room's current state says of it, as the directory and space
/// hierarchies show it; `None` for a room this server does not have.
pub async fn room_summary(store: &dyn Store, room_id: &str) -> StoreResult<Option<RoomSummary>> {
    let Ok(owned_room_id) = OwnedRoomId::try_from(room_id) else {
        return Ok(None);
    };
    let Some(room) = store.room(room_id).await? else {
        return Ok(None);
    };
    let Some(create) = store.state_event(room_id, "m.room.create", "").await? else {
        return Ok(None);
    };
    let content = |event_type: &'static str| async move {
        let event = store.state_event(room_id, event_type, "").await?;
        Ok::<_, myelin_store::StoreError>(event.map(|event| event.pdu_json))
    };
    let text =
        |pdu: &Option<String>, field: &str| pdu.as_deref().and_then(|pdu| content_text(pdu, field));
    let name = text(&content("m.room.name").await?, "name");
    let topic = text(&content("m.room.topic").await?, "topic");
    let alias = text(&content("m.room.canonical_alias").await?, "alias");
    let avatar = text(&content("m.room.avatar").await?, "url");
    let history = text(
        &content("m.room.history_visibility").await?,
        "history_visibility",
    );
    let guest_access = text(&content("m.room.guest_access").await?, "guest_access");
    let encryption = text(&content("m.room.encryption").await?, "algorithm");
    let join_rule = content("m.room.join_rules")
        .await?
        .and_then(|pdu| serde_json::from_str::<serde_json::Value>(&pdu).ok())
        .and_then(|mut pdu| pdu.get_mut("content").map(serde_json::Value::take))
        .and_then(|content| serde_json::from_value::<JoinRule>(content).ok())
        .map_or(JoinRuleSummary::Invite, JoinRuleSummary::from);
    let room_type = content_text(&create.pdu_json, "type");
    let joined = store
        .room_memberships(room_id)
        .await?
        .iter()
        .filter(|membership| membership.membership == "join")
        .count();
    let mut summary = RoomSummary::new(
        owned_room_id,
        join_rule,
        guest_access.as_deref() == Some("can_join"),
        UInt::try_from(joined as u64).unwrap_or(UInt::MAX),
        history.as_deref() == Some("world_readable"),
    );
    summary.name = name.filter(|name| !name.is_empty());
    summary.topic = topic.filter(|topic| !topic.is_empty());
    summary.canonical_alias = alias.and_then(|alias| OwnedRoomAliasId::try_from(alias).ok());
    summary.avatar_url = avatar.filter(|url| !url.is_empty()).map(OwnedMxcUri::from);
    summary.room_type = room_type.as_deref().map(RoomType::from);
    summary.encryption = encryption.as_deref().map(EventEncryptionAlgorithm::from);
    summary.room_version = RoomVersionId::try_from(room.room_version.as_str()).ok();
    Ok(Some(summary))
}

/// The room's directory entry as its current state tells it.
struct Listing {
    chunk: PublicRoomsChunk,
    /// The room type as a string (`None` for rooms without one).
    room_type: Option<String>,
}

impl From<RoomSummary> for Listing {
    fn from(summary: RoomSummary) -> Listing {
        let room_type = summary.room_type.as_ref().map(|t| t.to_string());
        Listing {
            chunk: PublicRoomsChunk::from(summary),
            room_type,
        }
    }
}

impl Listing {
    /// Whether the directory shows the room to anyone: published rooms are
    /// listed while they can be joined, knocked on or read by anyone.
    fn is_listable(&self) -> bool {
        self.chunk.world_readable
            || matches!(
                self.chunk.join_rule,
                JoinRuleKind::Public | JoinRuleKind::Knock | JoinRuleKind::KnockRestricted
            )
    }

    fn matches(&self, filter: &Filter, term: Option<&str>) -> bool {
        if !filter.room_types.is_empty()
            && !filter
                .room_types
                .iter()
                .any(|wanted| wanted.as_str() == self.room_type.as_deref())
        {
            return false;
        }
        let Some(term) = term else {
            return true;
        };
        let alias = self.chunk.canonical_alias.as_ref().map(|a| a.as_str());
        [
            self.chunk.name.as_deref(),
            self.chunk.topic.as_deref(),
            alias,
        ]
        .into_iter()
        .flatten()
        .any(|text| text.to_lowercase().contains(term))
    }
}

/// The `since` token: the last room ID the previous page looked at.
fn parse_since(since: Option<&str>) -> Result<Option<&str>, InvalidQuery> {
    match since {
        None => Ok(None),
        Some(token) if token.starts_with('!') && token.len() <= 255 => Ok(Some(token)),
        Some(_) => Err(InvalidQuery("Unknown pagination token".to_owned())),
    }
}

fn search_term(filter: &Filter) -> Result<Option<String>, InvalidQuery> {
    let Some(term) = filter.generic_search_term.as_deref() else {
        return Ok(None);
    };
    if term.chars().count() > MAX_SEARCH_TERM_CHARS {
        return Err(InvalidQuery(format!(
            "generic_search_term is longer than {MAX_SEARCH_TERM_CHARS} characters"
        )));
    }
    let term = term.trim().to_lowercase();
    Ok((!term.is_empty()).then_some(term))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_tokens_are_room_ids() {
        assert_eq!(parse_since(None).expect("none"), None);
        assert_eq!(parse_since(Some("!a:hs")).expect("room"), Some("!a:hs"));
        assert!(parse_since(Some("nonsense")).is_err());
        assert!(parse_since(Some(&format!("!{}", "a".repeat(300)))).is_err());
    }

    #[test]
    fn search_terms_are_bounded_and_lowercased() {
        let mut filter = Filter::new();
        filter.generic_search_term = Some("  Rust ".to_owned());
        assert_eq!(search_term(&filter).expect("term").as_deref(), Some("rust"));
        filter.generic_search_term = Some("   ".to_owned());
        assert_eq!(search_term(&filter).expect("blank"), None);
        filter.generic_search_term = Some("x".repeat(MAX_SEARCH_TERM_CHARS + 1));
        assert!(search_term(&filter).is_err());
    }
}
