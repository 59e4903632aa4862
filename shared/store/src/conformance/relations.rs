use myelin_types::{StreamPosition, TimelinePoint};
use serde_json::json;

use super::at;
use super::events::event;
use crate::{
    Direction, PersistEvent, PersistOutcome, Redaction, RelationQuery, SearchOrder, SearchQuery,
    SearchRoom, Store, search_words,
};

/// Every live position: a viewer who may see the whole room.
const EVERYTHING: &[(TimelinePoint, Option<TimelinePoint>)] = &[(
    TimelinePoint::after_event(StreamPosition::ZERO, StreamPosition::ZERO),
    None,
)];

/// A message of the room with the given sender and content.
fn message(room_id: &str, n: usize, sender: &str, content: serde_json::Value) -> PersistEvent {
    let mut new = event(room_id, n, None, &[]);
    new.sender = sender.to_owned();
    new.pdu_json =
        json!({"event_id": new.event_id, "type": "m.room.message", "content": content}).to_string();
    new
}

fn relates(rel_type: &str, parent: &str) -> serde_json::Value {
    json!({"rel_type": rel_type, "event_id": parent})
}

async fn persist(store: &dyn Store, new: PersistEvent) -> StreamPosition {
    match store.persist_event(new).await.expect("persist") {
        PersistOutcome::Persisted(position) => position,
        other => panic!("expected a new event, got {other:?}"),
    }
}

fn query(room_id: &str, event_id: &str, from: StreamPosition) -> RelationQuery {
    RelationQuery {
        room_id: room_id.to_owned(),
        event_id: event_id.to_owned(),
        rel_type: None,
        event_type: None,
        from,
        to: None,
        direction: Direction::Backward,
        limit: 100,
        recurse: false,
    }
}

fn ids(events: &[crate::StoredEvent]) -> Vec<&str> {
    events.iter().map(|event| event.event_id.as_str()).collect()
}

/// Relations are indexed with the event, read by type in both directions,
/// recursively, and dropped when the relating event is redacted.
pub(super) async fn relations_are_indexed_and_paginated(store: &dyn Store) {
    let room = "!relations:test";
    let root = format!("${room}-1");
    persist(store, message(room, 1, "@a:test", json!({"body": "root"}))).await;
    let edit_content = |n: usize| {
        json!({"body": format!("* edit {n}"), "m.new_content": {"body": "x"},
               "m.relates_to": relates("m.replace", &root)})
    };
    let mut edit_early = message(room, 2, "@a:test", edit_content(2));
    edit_early.origin_server_ts = 5000;
    persist(store, edit_early).await;
    let mut edit_late = message(room, 3, "@a:test", edit_content(3));
    edit_late.origin_server_ts = 9000;
    persist(store, edit_late).await;
    // Not by the original sender: never the edit that counts.
    let mut edit_other = message(room, 4, "@b:test", edit_content(4));
    edit_other.origin_server_ts = 99_000;
    persist(store, edit_other).await;
    let reply = format!("${room}-5");
    persist(
        store,
        message(
            room,
            5,
            "@b:test",
            json!({"body": "in thread", "m.relates_to": relates("m.thread", &root)}),
        ),
    )
    .await;
    let mut reaction = message(
        room,
        6,
        "@a:test",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": reply, "key": "+1"}}),
    );
    reaction.event_type = "m.reaction".to_owned();
    persist(store, reaction).await;
    let last = persist(
        store,
        message(
            room,
            7,
            "@a:test",
            json!({"body": "ref", "m.relates_to": relates("m.reference", &root)}),
        ),
    )
    .await;
    // The same relations in another room are not this room's.
    persist(
        store,
        message(
            "!elsewhere:test",
            8,
            "@a:test",
            json!({"m.relates_to": relates("m.reference", &root)}),
        ),
    )
    .await;

    let mut foreign_edit = message("!elsewhere:test", 10, "@a:test", edit_content(10));
    foreign_edit.origin_server_ts = 999_000;
    persist(store, foreign_edit).await;
    persist(
        store,
        message(
            "!elsewhere:test",
            11,
            "@c:test",
            json!({"m.relates_to": relates("m.thread", &root)}),
        ),
    )
    .await;

    let all = store
        .relations(&query(room, &root, last))
        .await
        .expect("relations");
    let expected: Vec<String> = [7, 5, 4, 3, 2]
        .iter()
        .map(|n| format!("${room}-{n}"))
        .collect();
    assert_eq!(
        ids(&all),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );

    let mut forward = query(room, &root, StreamPosition::ZERO);
    forward.direction = Direction::Forward;
    forward.limit = 2;
    let page = store.relations(&forward).await.expect("forward");
    assert_eq!(ids(&page), vec![expected[4].as_str(), expected[3].as_str()]);
    forward.from = page[1].position;
    let next = store.relations(&forward).await.expect("forward");
    assert_eq!(ids(&next), vec![expected[2].as_str(), expected[1].as_str()]);

    let mut edits = query(room, &root, last);
    edits.rel_type = Some("m.replace".to_owned());
    assert_eq!(store.relations(&edits).await.expect("edits").len(), 3);
    edits.event_type = Some("m.reaction".to_owned());
    assert!(store.relations(&edits).await.expect("none").is_empty());

    let mut deep = query(room, &root, last);
    deep.recurse = true;
    let with_reaction = store.relations(&deep).await.expect("recurse");
    assert_eq!(with_reaction.len(), 6);
    assert_eq!(with_reaction[1].event_id, format!("${room}-6"));

    let edit = store
        .latest_edit(room, &root, "@a:test", "m.room.message", None)
        .await
        .expect("edit")
        .expect("edited");
    assert_eq!(edit.event_id, format!("${room}-3"));
    let thread = store
        .thread_summary(room, &root, "@b:test", EVERYTHING)
        .await
        .expect("thread")
        .expect("has replies");
    assert_eq!(
        (
            thread.count,
            thread.latest.event_id.as_str(),
            thread.user_replied
        ),
        (1, reply.as_str(), true)
    );
    let thread = store
        .thread_summary(room, &root, "@a:test", EVERYTHING)
        .await
        .expect("thread")
        .expect("replies");
    assert!(!thread.user_replied);
    assert!(
        store
            .thread_summary(room, &reply, "@a:test", EVERYTHING)
            .await
            .expect("none")
            .is_none()
    );
    let parents = store
        .related_parents(
            &[root.clone(), reply.clone(), "$unrelated".to_owned()],
            None,
        )
        .await
        .expect("parents");
    for kind in ["m.reference", "m.replace", "m.thread"] {
        assert!(parents.contains(&(root.clone(), kind.to_owned())), "{kind}");
    }
    assert!(parents.contains(&(reply.clone(), "m.annotation".to_owned())));
    assert_eq!(parents.len(), 4);

    // Redacting the newest edit drops it: the earlier one counts again.
    let mut redaction = event(room, 9, None, &[]);
    redaction.event_type = "m.room.redaction".to_owned();
    redaction.redaction = Some(Redaction {
        target_event_id: format!("${room}-3"),
        pruned_pdu_json: json!({"type": "m.room.message", "content": {}}).to_string(),
    });
    persist(store, redaction).await;
    let edit = store
        .latest_edit(room, &root, "@a:test", "m.room.message", None)
        .await
        .expect("edit")
        .expect("edited");
    assert_eq!(edit.event_id, format!("${room}-2"));
    assert_eq!(
        store
            .relations(&query(room, &root, StreamPosition(i64::MAX)))
            .await
            .expect("after")
            .len(),
        4
    );
}

/// Threads come newest activity first, by participant, up to a position.
pub(super) async fn threads_list_by_latest_reply(store: &dyn Store) {
    let room = "!threads:test";
    let first = format!("${room}-1");
    let second = format!("${room}-2");
    persist(store, message(room, 1, "@a:test", json!({"body": "one"}))).await;
    persist(store, message(room, 2, "@b:test", json!({"body": "two"}))).await;
    let early = persist(
        store,
        message(
            room,
            3,
            "@c:test",
            json!({"m.relates_to": relates("m.thread", &first)}),
        ),
    )
    .await;
    let middle = persist(
        store,
        message(
            room,
            4,
            "@b:test",
            json!({"m.relates_to": relates("m.thread", &second)}),
        ),
    )
    .await;
    let late = persist(
        store,
        message(
            room,
            5,
            "@b:test",
            json!({"m.relates_to": relates("m.thread", &first)}),
        ),
    )
    .await;

    // A summary counts only the replies inside the viewer's ranges.
    let summary = |visible: Vec<(StreamPosition, Option<StreamPosition>)>| {
        let first = first.clone();
        let visible: Vec<(TimelinePoint, Option<TimelinePoint>)> = visible
            .into_iter()
            .map(|(after, upto)| (at(after), upto.map(at)))
            .collect();
        async move {
            store
                .thread_summary(room, &first, "@c:test", &visible)
                .await
                .expect("summary")
                .map(|thread| (thread.count, thread.latest.position, thread.user_replied))
        }
    };
    assert_eq!(
        summary(vec![(StreamPosition::ZERO, None)]).await,
        Some((2, late, true))
    );
    assert_eq!(summary(vec![(early, None)]).await, Some((1, late, false)));
    assert_eq!(
        summary(vec![(StreamPosition::ZERO, Some(early)), (middle, None)]).await,
        Some((2, late, true))
    );
    assert_eq!(
        summary(vec![(StreamPosition::ZERO, Some(early))]).await,
        Some((1, early, true))
    );
    assert_eq!(summary(vec![(early, Some(middle))]).await, None);

    let threads = store
        .threads(room, None, None, None, 10)
        .await
        .expect("threads");
    let roots: Vec<&str> = threads
        .iter()
        .map(|thread| thread.root.event_id.as_str())
        .collect();
    assert_eq!(roots, vec![first.as_str(), second.as_str()]);
    assert_eq!(threads[0].latest_position, late);
    let older = store
        .threads(room, None, Some(late), None, 10)
        .await
        .expect("page");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].root.event_id, second);
    // As of `middle`, the second thread is the newest.
    let then = store
        .threads(room, None, None, Some(middle), 1)
        .await
        .expect("then");
    assert_eq!(then[0].root.event_id, second);
    assert_eq!(then[0].latest_position, middle);
    let of_c = store
        .threads(room, Some("@c:test"), None, None, 10)
        .await
        .expect("c");
    assert_eq!(of_c.len(), 1);
    assert_eq!(of_c[0].root.event_id, first);
    let of_a = store
        .threads(room, Some("@a:test"), None, None, 10)
        .await
        .expect("a");
    assert_eq!(of_a.len(), 1, "the root's sender takes part");
    assert!(
        store
            .threads(room, Some("@z:test"), None, None, 10)
            .await
            .expect("z")
            .is_empty()
    );
    assert!(early < middle);
}

pub(super) fn search_query(words: &str, rooms: &[(&str, Option<StreamPosition>)]) -> SearchQuery {
    SearchQuery {
        words: search_words(words),
        keys: Vec::new(),
        rooms: rooms
            .iter()
            .map(|(room_id, upto)| SearchRoom {
                room_id: (*room_id).to_owned(),
                after: TimelinePoint::BEFORE_ALL,
                upto: upto.map(at),
            })
            .collect(),
        types: Vec::new(),
        not_types: Vec::new(),
        senders: Vec::new(),
        not_senders: Vec::new(),
        order: SearchOrder::Recent,
        offset: 0,
        limit: 10,
    }
}

/// Search finds every word, in the rooms and up to the positions given,
/// by key, type and sender, ranked or newest first, and forgets redactions.
pub(super) async fn search_finds_words_in_allowed_rooms(store: &dyn Store) {
    let room = "!search:test";
    let other = "!search-other:test";
    let weak = persist(
        store,
        message(
            room,
            1,
            "@a:test",
            json!({"body": "the quick brown fox and more words here"}),
        ),
    )
    .await;
    let strong = persist(
        store,
        message(room, 2, "@b:test", json!({"body": "Fox FOX fox, quick!"})),
    )
    .await;
    persist(
        store,
        message(room, 3, "@a:test", json!({"body": "nothing to see"})),
    )
    .await;
    let mut topic = event(room, 4, Some(("m.room.topic", "")), &[]);
    topic.pdu_json =
        json!({"type": "m.room.topic", "content": {"topic": "All about the fox"}}).to_string();
    let topic_position = persist(store, topic).await;
    persist(
        store,
        message(other, 5, "@a:test", json!({"body": "a fox elsewhere"})),
    )
    .await;
    let late = persist(
        store,
        message(room, 6, "@a:test", json!({"body": "late fox"})),
    )
    .await;

    let found = |page: &crate::SearchPage| -> Vec<String> {
        page.hits
            .iter()
            .map(|hit| hit.event.event_id.clone())
            .collect()
    };
    let id = |n: usize| format!("${room}-{n}");

    let recent = store
        .search(&search_query("fox", &[(room, None)]))
        .await
        .expect("search");
    assert_eq!(found(&recent), vec![id(6), id(4), id(2), id(1)]);
    assert_eq!(recent.count, 4);

    let mut both = search_query("QUICK fox", &[(room, None)]);
    both.order = SearchOrder::Rank;
    let ranked = store.search(&both).await.expect("ranked");
    assert_eq!(found(&ranked), vec![id(2), id(1)]);
    assert!(
        ranked.hits[0].rank > ranked.hits[1].rank,
        "{:?}",
        ranked.hits
    );
    assert_eq!(ranked.hits[0].event.position, strong);
    assert_eq!(ranked.hits[1].event.position, weak);

    // A former member's search stops at their leave; other rooms only if given.
    let upto = store
        .search(&search_query(
            "fox",
            &[(room, Some(topic_position)), (other, None)],
        ))
        .await
        .expect("upto");
    assert_eq!(upto.count, 4);
    assert!(!found(&upto).contains(&id(6)));
    assert!(found(&upto).contains(&format!("${other}-5")));
    assert!(upto.hits.iter().all(|hit| hit.event.position < late));

    // Stretches of one room: here all but the strong match.
    let mut stretches = search_query("fox", &[(room, Some(weak))]);
    stretches.rooms.push(SearchRoom {
        room_id: room.to_owned(),
        after: at(strong),
        upto: None,
    });
    let stretched = store.search(&stretches).await.expect("stretches");
    assert_eq!(
        (found(&stretched), stretched.count),
        (vec![id(6), id(4), id(1)], 3)
    );

    let mut keyed = search_query("fox", &[(room, None)]);
    keyed.keys = vec!["content.topic".to_owned()];
    assert_eq!(
        found(&store.search(&keyed).await.expect("keys")),
        vec![id(4)]
    );
    let mut typed = search_query("fox", &[(room, None)]);
    typed.not_types = vec!["m.room.topic".to_owned()];
    typed.senders = vec!["@a:test".to_owned()];
    assert_eq!(
        found(&store.search(&typed).await.expect("types")),
        vec![id(6), id(1)]
    );
    let mut paged = search_query("fox", &[(room, None)]);
    paged.offset = 1;
    paged.limit = 2;
    let page = store.search(&paged).await.expect("page");
    assert_eq!((found(&page), page.count), (vec![id(4), id(2)], 4));

    // Query syntax in the term is only words.
    let odd = store
        .search(&search_query("\"fox\" OR NEAR(* -", &[(room, None)]))
        .await
        .expect("odd term");
    assert!(
        odd.hits.is_empty(),
        "every word is required: {:?}",
        found(&odd)
    );
    assert!(
        store
            .search(&search_query("", &[(room, None)]))
            .await
            .expect("empty")
            .hits
            .is_empty()
    );

    let mut redaction = event(room, 7, None, &[]);
    redaction.event_type = "m.room.redaction".to_owned();
    redaction.redaction = Some(Redaction {
        target_event_id: id(2),
        pruned_pdu_json: json!({"type": "m.room.message", "content": {}}).to_string(),
    });
    persist(store, redaction).await;
    let after = store
        .search(&search_query("fox", &[(room, None)]))
        .await
        .expect("after");
    assert_eq!(found(&after), vec![id(6), id(4), id(1)]);
}

const BACKFILL_ROOM: &str = "!backfill:test";

/// Events for an engine's migration test: written, then the indexes are
/// dropped and migration 12 runs again over them.
pub async fn write_backfill_events(store: &dyn Store) {
    let room = BACKFILL_ROOM;
    let root = format!("${room}-1");
    persist(
        store,
        message(room, 1, "@a:test", json!({"body": "Backfilled words"})),
    )
    .await;
    persist(
        store,
        message(
            room,
            2,
            "@b:test",
            json!({"body": "a reply", "m.relates_to": relates("m.thread", &root)}),
        ),
    )
    .await;
    let mut topic = event(room, 3, Some(("m.room.topic", "")), &[]);
    topic.pdu_json =
        json!({"type": "m.room.topic", "content": {"topic": "backfilled topic"}}).to_string();
    persist(store, topic).await;
    // Neither related nor searchable: an escaped NUL, a member's body.
    persist(
        store,
        message(
            room,
            4,
            "@a:test",
            json!({"body": "backfilled \u{0}", "m.relates_to": relates("m.reference", &root)}),
        ),
    )
    .await;
    let mut member = event(room, 5, Some(("m.room.member", "@a:test")), &[]);
    member.pdu_json = json!({"content": {"membership": "join", "body": "backfilled",
        "m.relates_to": relates("m.reference", &root)}})
    .to_string();
    persist(store, member).await;
}

/// What [`write_backfill_events`] must give once migration 12 ran again.
/// `nul_indexed`: whether the engine reads PDUs with an escaped NUL.
pub async fn check_backfilled(store: &dyn Store, nul_indexed: bool) {
    let room = BACKFILL_ROOM;
    let root = format!("${room}-1");
    let related = store
        .relations(&query(room, &root, StreamPosition(i64::MAX)))
        .await
        .expect("relations");
    let mut expected = vec![format!("${room}-2")];
    if nul_indexed {
        expected.insert(0, format!("${room}-4"));
    }
    assert_eq!(
        ids(&related),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let summary = store
        .thread_summary(room, &root, "@b:test", EVERYTHING)
        .await
        .expect("summary")
        .expect("a thread");
    assert_eq!((summary.count, summary.user_replied), (1, true));
    let found = store
        .search(&search_query("backfilled", &[(room, None)]))
        .await
        .expect("search");
    let mut expected = vec![format!("${room}-3"), format!("${room}-1")];
    if nul_indexed {
        expected.insert(0, format!("${room}-4"));
    }
    let found: Vec<&str> = found
        .hits
        .iter()
        .map(|hit| hit.event.event_id.as_str())
        .collect();
    assert_eq!(
        found,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
}
