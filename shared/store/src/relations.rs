//! Relations between events (`m.relates_to`), threads, and full-text
//! search over room events. Both indexes are written by `persist_event(s)`
//! in the event's own transaction, and for fetched history by
//! `promote_outliers`, from what [`index_of`] reads out of the PDU; a
//! redaction removes its target from both.

use async_trait::async_trait;
use myelin_types::{StreamPosition, TimelinePoint};
use serde_json::Value;

use crate::{Direction, StoreResult, StoredEvent};

/// The longest relation type or parent event ID that is indexed; an event
/// naming a longer one is stored but relates to nothing.
pub const MAX_RELATION_KEY_BYTES: usize = 255;

/// Most words of a search term that are searched for; the rest are ignored.
pub const MAX_SEARCH_WORDS: usize = 16;

/// Longest word of a search term; longer ones are cut.
const MAX_SEARCH_WORD_CHARS: usize = 64;

/// How deep `recurse` follows relations of relations.
pub const MAX_RELATION_DEPTH: u32 = 3;

/// The rel_type of thread replies.
pub const THREAD: &str = "m.thread";

/// An event's relation to an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationRef {
    pub rel_type: String,
    pub parent_id: String,
}

/// What an event contributes to the search index: the searched key
/// (`content.body`, `content.name` or `content.topic`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText {
    pub key: &'static str,
    pub text: String,
}

/// What the relation and search indexes keep of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventIndex {
    pub relation: Option<RelationRef>,
    pub search: Option<SearchText>,
}

/// The fields of one event the relation and search indexes read: a new
/// event's as it is persisted, or fetched history's as it is promoted.
#[derive(Debug, Clone, Copy)]
pub struct IndexedEvent<'a> {
    pub event_id: &'a str,
    pub room_id: &'a str,
    pub sender: &'a str,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub origin_server_ts: i64,
    pub pdu_json: &'a str,
}

impl IndexedEvent<'_> {
    /// What the indexes keep of this event.
    pub fn index(&self) -> EventIndex {
        index_of(self.event_type, self.state_key, self.pdu_json)
    }
}

impl<'a> From<&'a crate::PersistEvent> for IndexedEvent<'a> {
    fn from(event: &'a crate::PersistEvent) -> Self {
        IndexedEvent {
            event_id: &event.event_id,
            room_id: &event.room_id,
            sender: &event.sender,
            event_type: &event.event_type,
            state_key: event.state_key.as_deref(),
            origin_server_ts: event.origin_server_ts,
            pdu_json: &event.pdu_json,
        }
    }
}

/// Reads an event's relation and searchable text from its PDU. State
/// events relate to nothing; only `m.room.message` bodies, room names and
/// topics are searchable.
pub fn index_of(event_type: &str, state_key: Option<&str>, pdu_json: &str) -> EventIndex {
    let Ok(pdu) = serde_json::from_str::<Value>(pdu_json) else {
        return EventIndex::default();
    };
    let Some(content) = pdu.get("content") else {
        return EventIndex::default();
    };
    let relation = match state_key {
        Some(_) => None,
        None => content.get("m.relates_to").and_then(|relates| {
            let rel_type = relates.get("rel_type")?.as_str()?;
            let parent_id = relates.get("event_id")?.as_str()?;
            // PostgreSQL text holds no NUL.
            let fits = |text: &str| {
                !text.is_empty() && text.len() <= MAX_RELATION_KEY_BYTES && !text.contains('\0')
            };
            (fits(rel_type) && fits(parent_id)).then(|| RelationRef {
                rel_type: rel_type.to_owned(),
                parent_id: parent_id.to_owned(),
            })
        }),
    };
    let key = match (event_type, state_key) {
        ("m.room.message", None) => Some(("content.body", "body")),
        ("m.room.name", Some("")) => Some(("content.name", "name")),
        ("m.room.topic", Some("")) => Some(("content.topic", "topic")),
        _ => None,
    };
    let search = key.and_then(|(key, field)| {
        let text = content.get(field)?.as_str()?;
        // PostgreSQL text holds no NUL; it separates words as a space would.
        (!text.trim().is_empty()).then(|| SearchText {
            key,
            text: text.replace('\0', " "),
        })
    });
    EventIndex { relation, search }
}

/// The words of a search term, lower case, as both engines match them:
/// runs of letters and digits, at most [`MAX_SEARCH_WORDS`].
pub fn search_words(term: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in term.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word: String = word
            .to_lowercase()
            .chars()
            .take(MAX_SEARCH_WORD_CHARS)
            .collect();
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == MAX_SEARCH_WORDS {
            break;
        }
    }
    words
}

/// Which relations of one event to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationQuery {
    pub room_id: String,
    pub event_id: String,
    pub rel_type: Option<String>,
    pub event_type: Option<String>,
    /// Backward: positions at or below `from` and above `to`, newest
    /// first. Forward: above `from` and at or below `to`, oldest first.
    pub from: StreamPosition,
    pub to: Option<StreamPosition>,
    pub direction: Direction,
    pub limit: usize,
    /// Also relations of relations, down to [`MAX_RELATION_DEPTH`]; the
    /// type filters apply at every depth.
    pub recurse: bool,
}

/// A thread's summary as seen at some position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSummary {
    /// Thread replies.
    pub count: u64,
    /// The newest reply.
    pub latest: StoredEvent,
    /// Whether the user asked about sent a reply.
    pub user_replied: bool,
}

/// A thread root and the position of the thread's newest reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRoot {
    pub root: StoredEvent,
    pub latest_position: StreamPosition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first.
    Rank,
    /// Newest first.
    Recent,
}

/// A stretch of one room's timeline a search may look in: above `after`
/// and at or below `upto`. A room may be given in several stretches (what
/// history visibility lets the user see), which must not overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRoom {
    pub room_id: String,
    pub after: TimelinePoint,
    pub upto: Option<TimelinePoint>,
}

/// A full-text search over room events. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The words to find, all of them, as [`search_words`] gives them.
    pub words: Vec<String>,
    /// `content.body`, `content.name`, `content.topic`.
    pub keys: Vec<String>,
    pub rooms: Vec<SearchRoom>,
    pub types: Vec<String>,
    pub not_types: Vec<String>,
    pub senders: Vec<String>,
    pub not_senders: Vec<String>,
    pub order: SearchOrder,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub event: StoredEvent,
    /// Higher is a better match.
    pub rank: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Every match of the query, not only this page.
    pub count: u64,
}

#[async_trait]
pub trait RelationStore: Send + Sync {
    /// Events relating to one event of the room, as the query asks.
    async fn relations(&self, query: &RelationQuery) -> StoreResult<Vec<StoredEvent>>;

    /// Of `event_ids`, those with relations at or below `upto`, each with
    /// the relation types it has.
    async fn related_parents(
        &self,
        event_ids: &[String],
        upto: Option<StreamPosition>,
    ) -> StoreResult<Vec<(String, String)>>;

    /// The newest `m.replace` of the event by `sender` with `event_type`
    /// in its room, at or below `upto`: greatest `origin_server_ts`, then
    /// event ID.
    async fn latest_edit(
        &self,
        room_id: &str,
        event_id: &str,
        sender: &str,
        event_type: &str,
        upto: Option<StreamPosition>,
    ) -> StoreResult<Option<StoredEvent>>;

    /// The thread rooted at the event, counting only the replies of its
    /// room inside `visible`: half-open ranges `(after, upto]` of its
    /// timeline that do not overlap (`upto` `None` for "to the end"), so that what a
    /// viewer may not see is neither counted nor shown. `None` without
    /// such replies.
    async fn thread_summary(
        &self,
        room_id: &str,
        root_id: &str,
        user_id: &str,
        visible: &[(TimelinePoint, Option<TimelinePoint>)],
    ) -> StoreResult<Option<ThreadSummary>>;

    /// Thread roots of the room whose newest reply is at or below `upto`
    /// and below `before`, newest activity first; with `participant`, only
    /// threads that user started or replied to.
    async fn threads(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: Option<StreamPosition>,
        upto: Option<StreamPosition>,
        limit: usize,
    ) -> StoreResult<Vec<ThreadRoot>>;

    /// Full-text search over the indexed text of room events.
    async fn search(&self, query: &SearchQuery) -> StoreResult<SearchPage>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_and_text_are_read_from_content() {
        let pdu = r#"{"content":{"body":"Hello there","m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}}"#;
        let index = index_of("m.room.message", None, pdu);
        assert_eq!(
            index.relation,
            Some(RelationRef {
                rel_type: "m.thread".to_owned(),
                parent_id: "$root".to_owned()
            })
        );
        assert_eq!(
            index.search,
            Some(SearchText {
                key: "content.body",
                text: "Hello there".to_owned()
            })
        );
        let topic = index_of("m.room.topic", Some(""), r#"{"content":{"topic":"Rust"}}"#);
        assert_eq!(topic.search.map(|text| text.key), Some("content.topic"));
        assert_eq!(topic.relation, None);
    }

    #[test]
    fn malformed_or_oversized_relations_are_not_indexed() {
        for content in [
            r#"{"m.relates_to":{"rel_type":"m.thread"}}"#,
            r#"{"m.relates_to":{"rel_type":5,"event_id":"$x"}}"#,
            r#"{"m.relates_to":"$x"}"#,
            r#"{"m.relates_to":{"rel_type":"","event_id":"$x"}}"#,
        ] {
            let pdu = format!(r#"{{"content":{content}}}"#);
            assert_eq!(
                index_of("m.reaction", None, &pdu).relation,
                None,
                "{content}"
            );
        }
        let long = "x".repeat(MAX_RELATION_KEY_BYTES + 1);
        let pdu = format!(
            r#"{{"content":{{"m.relates_to":{{"rel_type":"m.reference","event_id":"{long}"}}}}}}"#
        );
        assert_eq!(index_of("m.room.message", None, &pdu).relation, None);
        assert_eq!(
            index_of("m.room.message", None, "not json"),
            EventIndex::default()
        );
        let nul = r#"{"content":{"body":"a\u0000b","m.relates_to":{"rel_type":"m.thread","event_id":"$x\u0000"}}}"#;
        let index = index_of("m.room.message", None, nul);
        assert_eq!(index.relation, None);
        assert_eq!(
            index.search.map(|search| search.text),
            Some("a b".to_owned())
        );
        let state = r#"{"content":{"m.relates_to":{"rel_type":"m.thread","event_id":"$x"}}}"#;
        assert_eq!(
            index_of("m.room.member", Some("@a:b"), state).relation,
            None
        );
    }

    #[test]
    fn search_words_are_lower_case_unique_and_bounded() {
        assert_eq!(
            search_words("Hello, \"world\" OR hello* -NEAR(x)"),
            vec!["hello", "world", "or", "near", "x"]
        );
        assert!(search_words(" ,.;\"* ").is_empty());
        let many: String = (0..100).map(|n| format!("w{n} ")).collect();
        assert_eq!(search_words(&many).len(), MAX_SEARCH_WORDS);
        assert_eq!(search_words(&"a".repeat(500))[0].len(), 64);
    }
}
