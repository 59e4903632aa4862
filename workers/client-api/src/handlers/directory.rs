//! The room directory: `GET|POST /publicRooms` and
//! `GET|PUT /directory/list/room/{roomId}`.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::content_text;
use ruma::EventEncryptionAlgorithm;
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::Visibility;
use ruma::directory::{Filter, PublicRoomsChunk, RoomNetwork};
use ruma::room::{JoinRule, JoinRuleKind, JoinRuleSummary, RoomType};
use ruma::{OwnedMxcUri, OwnedRoomAliasId, OwnedRoomId, RoomVersionId, ServerName, UInt};

use crate::ClientApi;
use crate::access::ReadAccess;

/// Rooms per page when the client names no limit, and the most it may ask.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 500;
/// Published rooms one request looks at before it answers with what it
/// found and a token to go on from (a search may match few of them).
const MAX_SCANNED: usize = 1000;
const SCAN_PAGE: usize = 100;
/// The longest search term taken, in characters.
pub(crate) const MAX_SEARCH_TERM_CHARS: usize = 256;

pub(crate) async fn get_public_rooms(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_public_rooms::v3::Request,
) -> Result<get_public_rooms::v3::Response, MatrixError> {
    if !api.config.allow_public_rooms_without_auth {
        context.user()?;
    }
    let page = api
        .public_rooms(Query {
            server: request.server.as_deref(),
            limit: request.limit,
            since: request.since.as_deref(),
            filter: &Filter::new(),
            network: &RoomNetwork::Matrix,
        })
        .await?;
    let mut response = get_public_rooms::v3::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.total_room_count_estimate = page.total;
    Ok(response)
}

pub(crate) async fn search_public_rooms(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_public_rooms_filtered::v3::Request,
) -> Result<get_public_rooms_filtered::v3::Response, MatrixError> {
    context.user()?;
    let page = api
        .public_rooms(Query {
            server: request.server.as_deref(),
            limit: request.limit,
            since: request.since.as_deref(),
            filter: &request.filter,
            network: &request.room_network,
        })
        .await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.total_room_count_estimate = page.total;
    Ok(response)
}

pub(crate) async fn get_visibility(
    api: Arc<ClientApi>,
    _context: RequestContext,
    request: get_room_visibility::v3::Request,
) -> Result<get_room_visibility::v3::Response, MatrixError> {
    let room_id = request.room_id.as_str();
    api.require_room(room_id).await?;
    let visibility = if api.store.room_published(room_id).await? {
        Visibility::Public
    } else {
        Visibility::Private
    };
    Ok(get_room_visibility::v3::Response::new(visibility))
}

pub(crate) async fn set_visibility(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_room_visibility::v3::Request,
) -> Result<set_room_visibility::v3::Response, MatrixError> {
    let user = context.user()?;
    let room_id = request.room_id.as_str();
    let published = match request.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => {
            return Err(MatrixError::invalid_param(
                "visibility must be public or private",
            ));
        }
    };
    api.require_room(room_id).await?;
    // As Synapse: server admins, or members who may set the canonical alias.
    if !user.is_admin {
        let joined = api.read_access(room_id, &user.user_id).await.ok() == Some(ReadAccess::Joined);
        if !joined
            || !api
                .may_send_state_now(room_id, &user.user_id, "m.room.canonical_alias")
                .await?
        {
            return Err(MatrixError::forbidden(
                "You need the power to set the room's canonical alias to change its directory visibility",
            ));
        }
    }
    api.store.set_room_published(room_id, published).await?;
    Ok(set_room_visibility::v3::Response::new())
}

/// One `/publicRooms` request, either form.
struct Query<'a> {
    server: Option<&'a ServerName>,
    limit: Option<UInt>,
    since: Option<&'a str>,
    filter: &'a Filter,
    network: &'a RoomNetwork,
}

struct Page {
    chunk: Vec<PublicRoomsChunk>,
    next_batch: Option<String>,
    total: Option<UInt>,
}

/// The room's directory entry as its current state tells it.
struct RoomSummary {
    chunk: PublicRoomsChunk,
    /// The room type as a string (`None` for rooms without one).
    room_type: Option<String>,
}

impl RoomSummary {
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
fn parse_since(since: Option<&str>) -> Result<Option<&str>, MatrixError> {
    match since {
        None => Ok(None),
        Some(token) if token.starts_with('!') && token.len() <= 255 => Ok(Some(token)),
        Some(_) => Err(MatrixError::invalid_param("Unknown pagination token")),
    }
}

fn search_term(filter: &Filter) -> Result<Option<String>, MatrixError> {
    let Some(term) = filter.generic_search_term.as_deref() else {
        return Ok(None);
    };
    if term.chars().count() > MAX_SEARCH_TERM_CHARS {
        return Err(MatrixError::invalid_param(format!(
            "generic_search_term is longer than {MAX_SEARCH_TERM_CHARS} characters"
        )));
    }
    let term = term.trim().to_lowercase();
    Ok((!term.is_empty()).then_some(term))
}

impl ClientApi {
    async fn public_rooms(&self, query: Query<'_>) -> Result<Page, MatrixError> {
        if let Some(server) = query.server
            && server.as_str() != self.server_name
        {
            return Err(MatrixError::invalid_param(
                "This server does not list other servers' rooms",
            ));
        }
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
            return Ok(Page {
                chunk: Vec::new(),
                next_batch: None,
                total: Some(UInt::MIN),
            });
        }
        let total = UInt::try_from(self.store.published_room_count().await?).ok();
        let mut chunk = Vec::new();
        let mut scanned = 0;
        let mut exhausted = false;
        'pages: while scanned < MAX_SCANNED {
            let rooms = self
                .store
                .published_rooms(cursor.as_deref(), SCAN_PAGE)
                .await?;
            if rooms.len() < SCAN_PAGE {
                exhausted = true;
            }
            for room_id in rooms {
                scanned += 1;
                cursor = Some(room_id.clone());
                if let Some(summary) = self.room_summary(&room_id).await?
                    && summary.is_listable()
                    && summary.matches(query.filter, term.as_deref())
                {
                    chunk.push(summary.chunk);
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
                let more = self.store.published_rooms(Some(&last), 1).await?;
                (!more.is_empty()).then_some(last)
            }
            _ => None,
        };
        Ok(Page {
            chunk,
            next_batch,
            total,
        })
    }

    /// The room's directory entry; `None` for a room this server does not have.
    async fn room_summary(&self, room_id: &str) -> Result<Option<RoomSummary>, MatrixError> {
        let Some(summary) = self.summary_of(room_id).await? else {
            return Ok(None);
        };
        let room_type = summary.room_type.as_ref().map(|t| t.to_string());
        Ok(Some(RoomSummary {
            chunk: PublicRoomsChunk::from(summary),
            room_type,
        }))
    }

    /// What the room's current state says of it, as the directory and
    /// space hierarchies show it; `None` for a room this server does not have.
    pub(crate) async fn summary_of(
        &self,
        room_id: &str,
    ) -> Result<Option<ruma::room::RoomSummary>, MatrixError> {
        let Ok(owned_room_id) = OwnedRoomId::try_from(room_id) else {
            return Ok(None);
        };
        let Some(room) = self.store.room(room_id).await? else {
            return Ok(None);
        };
        let Some(create) = self.store.state_event(room_id, "m.room.create", "").await? else {
            return Ok(None);
        };
        let content = |event_type: &'static str| async move {
            let event = self.store.state_event(room_id, event_type, "").await?;
            Ok::<_, MatrixError>(event.map(|event| event.pdu_json))
        };
        let text = |pdu: &Option<String>, field: &str| {
            pdu.as_deref().and_then(|pdu| content_text(pdu, field))
        };
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
        let joined = self
            .store
            .room_memberships(room_id)
            .await?
            .iter()
            .filter(|membership| membership.membership == "join")
            .count();
        let mut summary = ruma::room::RoomSummary::new(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_tokens_are_room_ids() {
        assert_eq!(parse_since(None).expect("none"), None);
        assert_eq!(parse_since(Some("!a:hs")).expect("room"), Some("!a:hs"));
        let bad = parse_since(Some("nonsense")).expect_err("refused");
        assert_eq!(bad.errcode.as_ref(), "M_INVALID_PARAM");
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
