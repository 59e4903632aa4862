//! `POST /search`: full-text search over the events of the user's rooms.
//!
//! Rooms searched: those the user is in, and those they left or were
//! banned from, up to that event; in each, only the stretches of history
//! the user may see by history visibility, so `count` counts visible
//! events only. Results are judged once more before they are served.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::{content_text, stored_client_event};
use myelin_store::{SearchOrder, SearchQuery, SearchRoom, StoredEvent, search_words};
use ruma::api::client::search::search_events::v3::{
    self as search_events, Criteria, EventContextResult, GroupingKey, OrderBy, ResultCategories,
    ResultGroup, ResultGroupMap, ResultRoomEvents, SearchKeys, SearchResult, UserProfile,
};
use ruma::{OwnedRoomId, OwnedUserId, UInt};

use crate::ClientApi;
use crate::access::RoomReader;
use crate::handlers::relations::raw;

/// Longest search term, in bytes.
const MAX_TERM_BYTES: usize = 512;
/// Results on one page when the filter does not say.
const DEFAULT_RESULTS: usize = 10;
/// Most results on one page.
const MAX_RESULTS: usize = 50;
/// How far `next_batch` may page into the results.
const MAX_OFFSET: usize = 10_000;
/// Most events of context on either side of a result.
const MAX_CONTEXT: usize = 20;
/// Most rooms one search looks in (each costs a look at its history).
const MAX_ROOMS: usize = 1_000;

const ALL_KEYS: [&str; 3] = ["content.body", "content.name", "content.topic"];

pub(crate) async fn search(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: search_events::Request,
) -> Result<search_events::Response, MatrixError> {
    let mut categories = ResultCategories::new();
    if let Some(criteria) = &request.search_categories.room_events {
        categories.room_events = api
            .search_room_events(&context, criteria, request.next_batch.as_deref())
            .await?;
    }
    Ok(search_events::Response::new(categories))
}

fn keys_of(criteria: &Criteria) -> Result<Vec<String>, MatrixError> {
    let Some(keys) = &criteria.keys else {
        return Ok(ALL_KEYS.iter().map(|key| (*key).to_owned()).collect());
    };
    keys.iter()
        .map(|key| match key {
            SearchKeys::ContentBody | SearchKeys::ContentName | SearchKeys::ContentTopic => {
                Ok(key.as_str().to_owned())
            }
            other => Err(MatrixError::invalid_param(format!(
                "Unknown search key {:?}",
                other.as_str()
            ))),
        })
        .collect()
}

fn strings<T: AsRef<str>>(items: &[T]) -> Vec<String> {
    items.iter().map(|item| item.as_ref().to_owned()).collect()
}

impl ClientApi {
    async fn search_room_events(
        &self,
        context: &RequestContext,
        criteria: &Criteria,
        next_batch: Option<&str>,
    ) -> Result<ResultRoomEvents, MatrixError> {
        let user = context.user()?;
        if criteria.search_term.len() > MAX_TERM_BYTES {
            return Err(MatrixError::invalid_param(format!(
                "The search term is longer than {MAX_TERM_BYTES} bytes"
            )));
        }
        let words = search_words(&criteria.search_term);
        if words.is_empty() {
            return Err(MatrixError::invalid_param(
                "The search term has no words to search for",
            ));
        }
        let order = match &criteria.order_by {
            None | Some(OrderBy::Rank) => SearchOrder::Rank,
            Some(OrderBy::Recent) => SearchOrder::Recent,
            Some(other) => {
                return Err(MatrixError::invalid_param(format!(
                    "order_by must be rank or recent, not {:?}",
                    other.as_str()
                )));
            }
        };
        let keys = keys_of(criteria)?;
        let mut group_keys = Vec::new();
        for grouping in &criteria.groupings.group_by {
            match &grouping.key {
                Some(key @ (GroupingKey::RoomId | GroupingKey::Sender)) => {
                    group_keys.push(key.clone());
                }
                None => {}
                Some(other) => {
                    return Err(MatrixError::invalid_param(format!(
                        "Results can be grouped by room_id or sender, not {:?}",
                        other.as_str()
                    )));
                }
            }
        }
        let offset = match next_batch {
            None => 0,
            Some(token) => token
                .parse::<usize>()
                .ok()
                .filter(|offset| *offset <= MAX_OFFSET)
                .ok_or_else(|| MatrixError::invalid_param("Invalid next_batch"))?,
        };
        let filter = &criteria.filter;
        let limit = filter.limit.map_or(DEFAULT_RESULTS, |limit| {
            usize::try_from(u64::from(limit))
                .unwrap_or(MAX_RESULTS)
                .clamp(1, MAX_RESULTS)
        });

        // The rooms: the user's, narrowed by the filter, each in the
        // stretches of its history the user may see.
        let mut readers: HashMap<String, RoomReader> = HashMap::new();
        let mut rooms = Vec::new();
        for membership in self.store.memberships_of_user(&user.user_id).await? {
            if !matches!(membership.membership.as_str(), "join" | "leave" | "ban") {
                continue;
            }
            let room_id = membership.room_id;
            let wanted = filter
                .rooms
                .as_ref()
                .is_none_or(|rooms| rooms.iter().any(|room| room.as_str() == room_id))
                && !filter.not_rooms.iter().any(|room| room.as_str() == room_id);
            if !wanted || readers.len() == MAX_ROOMS {
                continue;
            }
            // A forgotten room is not read at all.
            let Ok(reader) = self.room_reader(&room_id, &user.user_id).await else {
                continue;
            };
            for (after, upto) in reader.visible_ranges() {
                rooms.push(SearchRoom {
                    room_id: room_id.clone(),
                    after,
                    upto,
                });
            }
            readers.insert(room_id, reader);
        }
        let query = SearchQuery {
            words: words.clone(),
            keys,
            rooms,
            types: filter.types.as_deref().map(strings).unwrap_or_default(),
            not_types: strings(&filter.not_types),
            senders: filter.senders.as_deref().map(strings).unwrap_or_default(),
            not_senders: strings(&filter.not_senders),
            order,
            offset,
            limit,
        };
        let page = self.store.search(&query).await?;

        let mut results = Vec::new();
        let mut found: Vec<StoredEvent> = Vec::new();
        let mut profiles: Vec<BTreeMap<OwnedUserId, UserProfile>> = Vec::new();
        for hit in &page.hits {
            let room_id = hit.event.room_id.as_str();
            // The query asked for visible stretches only; judged again here.
            let Some(reader) = readers.get(room_id) else {
                continue;
            };
            if !reader.may_see(&hit.event) {
                continue;
            }
            let mut event = [stored_client_event(
                &hit.event,
                Some((&user.user_id, &user.device_id)),
            )];
            self.bundle(reader, room_id, context, &mut event).await?;
            let [event] = event;
            let mut result = SearchResult::new();
            result.rank = Some(hit.rank);
            result.result = Some(raw(&event)?);
            if !criteria.event_context.is_default() {
                let (event_context, profile) = self
                    .search_context(reader, &hit.event, context, criteria)
                    .await?;
                result.context = event_context;
                profiles.push(profile);
            }
            results.push(result);
            found.push(hit.event.clone());
        }
        for (result, profile) in results.iter_mut().zip(profiles) {
            result.context.profile_info = profile;
        }

        let next = offset + page.hits.len();
        let next_batch =
            (page.hits.len() == limit && next <= MAX_OFFSET && (next as u64) < page.count)
                .then(|| next.to_string());
        let mut answer = ResultRoomEvents::new();
        answer.count = Some(UInt::try_from(page.count).unwrap_or(UInt::MAX));
        answer.highlights = words;
        answer.next_batch = next_batch.clone();
        for key in group_keys {
            answer
                .groups
                .insert(group(&found, &key, next_batch.as_deref()));
        }
        if criteria.include_state == Some(true) {
            for (room_id, reader) in &readers {
                if !found.iter().any(|event| &event.room_id == room_id) {
                    continue;
                }
                let state = self
                    .readable_state(room_id, reader.access)
                    .await?
                    .iter()
                    .map(|event| raw(&stored_client_event(event, None)))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Ok(room_id) = OwnedRoomId::try_from(room_id.as_str()) {
                    answer.state.insert(room_id, state);
                }
            }
        }
        answer.results = results;
        Ok(answer)
    }

    /// The events around a result that the user may see, and the profiles
    /// of their senders as of each event when asked.
    async fn search_context(
        &self,
        reader: &RoomReader,
        event: &StoredEvent,
        context: &RequestContext,
        criteria: &Criteria,
    ) -> Result<(EventContextResult, BTreeMap<OwnedUserId, UserProfile>), MatrixError> {
        let user = context.user()?;
        let viewer = Some((user.user_id.as_str(), user.device_id.as_str()));
        let settings = &criteria.event_context;
        let bounded = |limit: UInt| {
            usize::try_from(u64::from(limit))
                .unwrap_or(MAX_CONTEXT)
                .min(MAX_CONTEXT)
        };
        let room_id = event.room_id.as_str();
        let around = reader
            .events_around(
                self.store.as_ref(),
                event,
                bounded(settings.before_limit),
                bounded(settings.after_limit),
            )
            .await?;
        let (before, after) = (&around.before, &around.after);
        let mut result = EventContextResult::new();
        result.start = Some(around.start.to_string());
        result.end = Some(around.end.to_string());
        result.events_before = before
            .iter()
            .map(|e| raw(&stored_client_event(e, viewer)))
            .collect::<Result<_, _>>()?;
        result.events_after = after
            .iter()
            .map(|e| raw(&stored_client_event(e, viewer)))
            .collect::<Result<_, _>>()?;
        let mut profiles = BTreeMap::new();
        if settings.include_profile {
            for shown in std::iter::once(event).chain(before).chain(after) {
                let Ok(sender) = OwnedUserId::try_from(shown.sender.as_str()) else {
                    continue;
                };
                if profiles.contains_key(&sender) {
                    continue;
                }
                let member = self
                    .store
                    .state_event_at(
                        room_id,
                        "m.room.member",
                        &shown.sender,
                        shown.point().stream_position(),
                    )
                    .await?;
                let mut profile = UserProfile::new();
                if let Some(member) = member {
                    profile.displayname = content_text(&member.pdu_json, "displayname");
                    profile.avatar_url = content_text(&member.pdu_json, "avatar_url")
                        .filter(|url| !url.is_empty())
                        .map(Into::into);
                }
                profiles.insert(sender, profile);
            }
        }
        Ok((result, profiles))
    }
}

/// This page's results grouped by room or sender, in order of first result.
fn group(found: &[StoredEvent], key: &GroupingKey, next_batch: Option<&str>) -> ResultGroupMap {
    let mut groups: Vec<(String, ResultGroup)> = Vec::new();
    for event in found {
        let name = match key {
            GroupingKey::Sender => &event.sender,
            _ => &event.room_id,
        };
        let index = match groups.iter().position(|(group, _)| group == name) {
            Some(index) => index,
            None => {
                let mut group = ResultGroup::new();
                group.order = Some(UInt::from(groups.len() as u32 + 1));
                group.next_batch = next_batch.map(str::to_owned);
                groups.push((name.clone(), group));
                groups.len() - 1
            }
        };
        if let Ok(event_id) = event.event_id.as_str().try_into() {
            groups[index].1.results.push(event_id);
        }
    }
    match key {
        GroupingKey::Sender => ResultGroupMap::Sender(
            groups
                .into_iter()
                .filter_map(|(name, group)| Some((OwnedUserId::try_from(name).ok()?, group)))
                .collect(),
        ),
        _ => ResultGroupMap::RoomId(
            groups
                .into_iter()
                .filter_map(|(name, group)| Some((OwnedRoomId::try_from(name).ok()?, group)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: i64, room_id: &str, sender: &str) -> StoredEvent {
        StoredEvent {
            position: myelin_types::StreamPosition(n),
            slot: myelin_types::StreamPosition(n),
            opens_gap: false,
            event_id: format!("$e{n}"),
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            event_type: "m.room.message".to_owned(),
            state_key: None,
            depth: n,
            origin_server_ts: n,
            pdu_json: "{}".to_owned(),
            txn: None,
            redacted_by: None,
            redaction_pdu_json: None,
        }
    }

    #[test]
    fn groups_keep_first_seen_order() {
        let found = [
            stored(3, "!b:x", "@a:x"),
            stored(2, "!a:x", "@b:x"),
            stored(1, "!b:x", "@b:x"),
        ];
        let ResultGroupMap::RoomId(rooms) = group(&found, &GroupingKey::RoomId, Some("3")) else {
            panic!("grouped by room");
        };
        let b = &rooms[&OwnedRoomId::try_from("!b:x").expect("room ID")];
        assert_eq!(b.order, Some(UInt::from(1u32)));
        assert_eq!(b.results.len(), 2);
        assert_eq!(b.next_batch.as_deref(), Some("3"));
        let ResultGroupMap::Sender(senders) = group(&found, &GroupingKey::Sender, None) else {
            panic!("grouped by sender");
        };
        assert_eq!(senders.len(), 2);
    }
}
