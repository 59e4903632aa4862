use super::events::{event, persist};
use super::{at, start};
use crate::{EventSnapshots, MAX_SNAPSHOT_CHAIN, NewSnapshot, StateEntry, Store};

fn entry(event_type: &str, state_key: &str, event_id: &str) -> StateEntry {
    StateEntry {
        event_type: event_type.to_owned(),
        state_key: state_key.to_owned(),
        event_id: event_id.to_owned(),
    }
}

/// A state event written on top of `before`, with the snapshot after it.
fn on_top(before: &str, after: &str, chain_length: i64, added: StateEntry) -> EventSnapshots {
    EventSnapshots {
        before: before.to_owned(),
        after: after.to_owned(),
        new: vec![NewSnapshot {
            snapshot_id: after.to_owned(),
            base_id: Some(before.to_owned()),
            chain_length,
            entries: vec![added],
        }],
    }
}

/// Snapshots written with events read back as whole states: a chain of
/// additions over a complete snapshot, an entry replaced further up, a
/// message sharing its predecessor's snapshot, two branches from one point.
pub(super) async fn snapshots_read_back_whole(store: &dyn Store) {
    let room = "!snapshots:test";
    let mut create = event(room, 0, Some(("m.room.create", "")), &[]);
    create.snapshots = Some(EventSnapshots {
        before: "^$create".to_owned(),
        after: create.event_id.clone(),
        new: vec![
            NewSnapshot {
                snapshot_id: "^$create".to_owned(),
                base_id: None,
                chain_length: 0,
                entries: Vec::new(),
            },
            NewSnapshot {
                snapshot_id: create.event_id.clone(),
                base_id: None,
                chain_length: 0,
                entries: vec![entry("m.room.create", "", &create.event_id)],
            },
        ],
    });
    let create_id = create.event_id.clone();
    persist(store, create).await;

    let mut join = event(
        room,
        1,
        Some(("m.room.member", "@a:test")),
        std::slice::from_ref(&create_id),
    );
    let join_id = join.event_id.clone();
    join.snapshots = Some(on_top(
        &create_id,
        &join_id,
        1,
        entry("m.room.member", "@a:test", &join_id),
    ));
    persist(store, join).await;

    let mut message = event(room, 2, None, std::slice::from_ref(&join_id));
    message.snapshots = Some(EventSnapshots {
        before: join_id.clone(),
        after: join_id.clone(),
        new: Vec::new(),
    });
    let message_id = message.event_id.clone();
    persist(store, message).await;

    // The member changes on one branch; another branch from the join names
    // a new topic.
    let mut rename = event(
        room,
        3,
        Some(("m.room.member", "@a:test")),
        std::slice::from_ref(&message_id),
    );
    let rename_id = rename.event_id.clone();
    rename.snapshots = Some(on_top(
        &join_id,
        &rename_id,
        2,
        entry("m.room.member", "@a:test", &rename_id),
    ));
    persist(store, rename).await;
    let mut topic = event(
        room,
        4,
        Some(("m.room.topic", "")),
        std::slice::from_ref(&join_id),
    );
    let topic_id = topic.event_id.clone();
    topic.snapshots = Some(on_top(
        &join_id,
        &topic_id,
        2,
        entry("m.room.topic", "", &topic_id),
    ));
    persist(store, topic).await;

    let at_message = store
        .event_state_ids(&message_id)
        .await
        .expect("ids")
        .expect("known");
    assert_eq!(at_message.before.as_deref(), Some(join_id.as_str()));
    assert_eq!(at_message.after.as_deref(), Some(join_id.as_str()));
    assert!(
        store
            .event_state_ids("$nowhere")
            .await
            .expect("ids")
            .is_none()
    );
    let unrecorded = event(room, 5, None, std::slice::from_ref(&topic_id));
    let unrecorded_id = unrecorded.event_id.clone();
    persist(store, unrecorded).await;
    let none = store
        .event_state_ids(&unrecorded_id)
        .await
        .expect("ids")
        .expect("known");
    assert_eq!((none.before, none.after), (None, None));

    let empty = store
        .snapshot("^$create")
        .await
        .expect("read")
        .expect("known");
    assert!(empty.entries.is_empty());
    let renamed = store
        .snapshot(&rename_id)
        .await
        .expect("read")
        .expect("known");
    assert_eq!(renamed.chain_length, 2);
    assert_eq!(
        renamed.entries,
        vec![
            entry("m.room.create", "", &create_id),
            entry("m.room.member", "@a:test", &rename_id),
        ]
    );
    let topical = store
        .snapshot(&topic_id)
        .await
        .expect("read")
        .expect("known");
    assert_eq!(
        topical.entries,
        vec![
            entry("m.room.create", "", &create_id),
            entry("m.room.member", "@a:test", &join_id),
            entry("m.room.topic", "", &topic_id),
        ]
    );
    assert!(store.snapshot("$unknown").await.expect("read").is_none());

    // The state at a position is the snapshot after the newest timeline
    // event there: the topic's branch, without the rename on the other
    // branch, though the rename has a lower position.
    let state_ids = |events: Vec<crate::StoredEvent>| {
        let mut ids: Vec<String> = events.into_iter().map(|event| event.event_id).collect();
        ids.sort();
        ids
    };
    let mut topical_ids = vec![create_id.clone(), join_id.clone(), topic_id.clone()];
    topical_ids.sort();
    let topic_position = store
        .event(&topic_id)
        .await
        .expect("read")
        .expect("stored")
        .position;
    let at_topic = crate::state_at_point(store, room, at(topic_position))
        .await
        .expect("state");
    assert_eq!(state_ids(at_topic), topical_ids);
    // An outlier has a position but is never state, by snapshot or not.
    store
        .store_outliers(vec![crate::OutlierEvent {
            event_id: "$outlier-name".to_owned(),
            room_id: room.to_owned(),
            sender: "@far:remote.test".to_owned(),
            event_type: "m.room.name".to_owned(),
            state_key: Some(String::new()),
            depth: 6,
            origin_server_ts: 1000,
            pdu_json: "{}".to_owned(),
            soft_failed: false,
        }])
        .await
        .expect("outlier");
    let newest = store.max_position().await.expect("position");
    let linear = store.state_at(room, newest).await.expect("state");
    assert!(
        linear.iter().all(|event| event.event_type != "m.room.name"),
        "{linear:?}"
    );
    let mut later = event(room, 6, None, std::slice::from_ref(&unrecorded_id));
    later.snapshots = Some(EventSnapshots {
        before: topic_id.clone(),
        after: topic_id.clone(),
        new: Vec::new(),
    });
    let later_position = persist(store, later).await;
    let at_later = crate::state_at_point(store, room, at(later_position))
        .await
        .expect("state");
    assert_eq!(state_ids(at_later), topical_ids);
}

/// A snapshot written again under its name keeps its first content, and a
/// complete snapshot with many entries and a long chain reads back whole.
pub(super) async fn snapshots_are_immutable_and_chains_bounded(store: &dyn Store) {
    let room = "!snapshot-chain:test";
    let members: Vec<StateEntry> = (0..500)
        .map(|n| entry("m.room.member", &format!("@u{n}:test"), &format!("$m{n}")))
        .collect();
    let mut first = event(room, 0, Some(("m.room.create", "")), &[]);
    let first_id = first.event_id.clone();
    first.snapshots = Some(EventSnapshots {
        before: "^full".to_owned(),
        after: "^full".to_owned(),
        new: vec![NewSnapshot {
            snapshot_id: "^full".to_owned(),
            base_id: None,
            chain_length: 0,
            entries: members.clone(),
        }],
    });
    persist(store, first).await;
    let mut previous = "^full".to_owned();
    let mut prev_event = first_id;
    for n in 1..MAX_SNAPSHOT_CHAIN {
        let mut next = event(room, n as usize, Some(("m.room.topic", "")), &[prev_event]);
        prev_event = next.event_id.clone();
        next.snapshots = Some(on_top(
            &previous,
            &next.event_id,
            n,
            entry("m.room.topic", "", &next.event_id),
        ));
        previous = next.event_id.clone();
        persist(store, next).await;
    }
    let top = store
        .snapshot(&previous)
        .await
        .expect("read")
        .expect("known");
    assert_eq!(top.chain_length, MAX_SNAPSHOT_CHAIN - 1);
    assert_eq!(top.entries.len(), 501);
    assert!(top.entries.contains(&entry("m.room.topic", "", &previous)));

    // The same name again, with other content: the first stays.
    let mut again = event(room, 900, None, &[prev_event]);
    again.snapshots = Some(EventSnapshots {
        before: "^full".to_owned(),
        after: "^full".to_owned(),
        new: vec![NewSnapshot {
            snapshot_id: "^full".to_owned(),
            base_id: None,
            chain_length: 0,
            entries: Vec::new(),
        }],
    });
    persist(store, again).await;
    let full = store.snapshot("^full").await.expect("read").expect("known");
    assert_eq!(full.entries.len(), 500);
}

/// Events read by ID, and a write where branches met: the current state
/// takes the resolved keys, each at its own event's position, and not the
/// new event's own key when it lost.
pub(super) async fn events_by_id_and_resolved_current_state(store: &dyn Store) {
    let room = "!resolved:test";
    let create = event(room, 0, Some(("m.room.create", "")), &[]);
    let create_id = create.event_id.clone();
    persist(store, create).await;
    let first = event(
        room,
        1,
        Some(("m.room.topic", "")),
        std::slice::from_ref(&create_id),
    );
    let first_id = first.event_id.clone();
    let first_position = persist(store, first).await;
    let second = event(
        room,
        2,
        Some(("m.room.topic", "")),
        std::slice::from_ref(&first_id),
    );
    let second_id = second.event_id.clone();
    persist(store, second).await;

    let found = store
        .events_by_id(&[create_id.clone(), "$unknown".to_owned(), second_id.clone()])
        .await
        .expect("read");
    let mut ids: Vec<&str> = found.iter().map(|event| event.event_id.as_str()).collect();
    ids.sort();
    let mut wanted = vec![create_id.as_str(), second_id.as_str()];
    wanted.sort();
    assert_eq!(ids, wanted);

    // A third topic on a branch from the first loses to the first's branch
    // in resolution: the current topic goes back to the first.
    let mut losing = event(
        room,
        3,
        Some(("m.room.topic", "")),
        std::slice::from_ref(&first_id),
    );
    losing.resolved_state = Some(vec![crate::CurrentStateChange {
        entry: entry("m.room.topic", "", &first_id),
        membership: None,
    }]);
    persist(store, losing).await;
    let topic = store
        .state_event(room, "m.room.topic", "")
        .await
        .expect("read")
        .expect("a topic");
    assert_eq!(topic.event_id, first_id);
    let current = store.current_state(room).await.expect("read");
    assert_eq!(current.len(), 2);
    let topic_row = current
        .iter()
        .find(|event| event.event_type == "m.room.topic")
        .expect("topic");
    assert_eq!(topic_row.position, first_position);
}

/// Outliers are stored once, found by ID, and kept out of timelines, the
/// log, extremities and the current state.
pub(super) async fn outliers_are_citable_but_never_in_a_timeline(store: &dyn Store) {
    let room = "!outliers:test";
    let outlier = |n: usize, event_type: &str| crate::OutlierEvent {
        event_id: format!("$outlier-{n}"),
        room_id: room.to_owned(),
        sender: "@far:remote.test".to_owned(),
        event_type: event_type.to_owned(),
        state_key: Some(String::new()),
        depth: n as i64,
        origin_server_ts: 1000,
        pdu_json: format!(r#"{{"n":{n}}}"#),
        soft_failed: false,
    };
    let before = store.max_position().await.expect("position");
    store
        .store_outliers(vec![
            outlier(1, "m.room.create"),
            outlier(2, "m.room.topic"),
        ])
        .await
        .expect("store");
    // Again, with one new: the known ones are left alone.
    let mut changed = outlier(1, "m.room.create");
    changed.pdu_json = r#"{"changed":true}"#.to_owned();
    store
        .store_outliers(vec![changed, outlier(3, "m.room.name")])
        .await
        .expect("store again");
    let found = store
        .events_by_id(&["$outlier-1".to_owned(), "$outlier-3".to_owned()])
        .await
        .expect("read");
    assert_eq!(found.len(), 2);
    let first = store
        .event("$outlier-1")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(first.pdu_json, r#"{"n":1}"#);

    let after = store.max_position().await.expect("position");
    let log = store.events_after(before, after, 100).await.expect("log");
    assert!(log.iter().all(|event| event.room_id != room), "{log:?}");
    let timeline = store
        .room_events(room, at(after), None, crate::Direction::Backward, 10)
        .await
        .expect("timeline");
    assert!(timeline.is_empty(), "{timeline:?}");
    assert!(
        store
            .forward_extremities(room)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(store.current_state(room).await.expect("read").is_empty());
}

/// Fetched history moves from outliers into the timeline below every event
/// there, oldest lowest, batch after batch; the room's current state,
/// extremities and live log do not change.
pub(super) async fn promoted_outliers_sit_below_the_timeline_in_order(store: &dyn Store) {
    let room = "!promoted:test";
    let mut live = event(room, 100, Some(("m.room.member", "@me:test")), &[]);
    live.new_room_version = Some("12".to_owned());
    let live_id = live.event_id.clone();
    persist(store, live).await;
    let extremities = store.forward_extremities(room).await.expect("read");
    let state = store.current_state(room).await.expect("read");
    let outlier = |n: i64| crate::OutlierEvent {
        event_id: format!("$old-{n}"),
        room_id: room.to_owned(),
        sender: "@far:remote.test".to_owned(),
        event_type: if n == 1 {
            "m.room.topic"
        } else {
            "m.room.message"
        }
        .to_owned(),
        state_key: (n == 1).then(String::new),
        depth: n,
        origin_server_ts: 1000 + n,
        pdu_json: format!(r#"{{"n":{n}}}"#),
        soft_failed: false,
    };
    store
        .store_outliers((1..=5).map(outlier).collect())
        .await
        .expect("store");
    let complete = |snapshot_id: &str| EventSnapshots {
        before: snapshot_id.to_owned(),
        after: snapshot_id.to_owned(),
        new: vec![NewSnapshot {
            snapshot_id: snapshot_id.to_owned(),
            base_id: None,
            chain_length: 0,
            entries: vec![entry("m.room.topic", "", "$old-1")],
        }],
    };
    let promoted = |n: i64| crate::PromotedEvent {
        event_id: format!("$old-{n}"),
        snapshots: complete(&format!("$old-{n}")),
        redactions: Vec::new(),
    };
    let tip = store.max_position().await.expect("position");
    // The newer batch first, as paging back fetches it; a live event and an
    // unknown ID in it are left alone.
    store
        .promote_outliers(
            room,
            vec![
                promoted(4),
                promoted(5),
                crate::PromotedEvent {
                    event_id: live_id.clone(),
                    snapshots: complete("^live"),
                    redactions: Vec::new(),
                },
            ],
            crate::FetchedInto::Start {
                visibility_below: "joined".to_owned(),
            },
            None,
        )
        .await
        .expect("promote");
    store
        .promote_outliers(room, vec![promoted(2), promoted(3)], start(), None)
        .await
        .expect("promote older");
    let timeline = store
        .room_events(room, at(tip), None, crate::Direction::Backward, 10)
        .await
        .expect("timeline");
    let ids: Vec<&str> = timeline
        .iter()
        .map(|event| event.event_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [live_id.as_str(), "$old-5", "$old-4", "$old-3", "$old-2"]
    );
    assert!(timeline[1..].iter().all(|event| event.position.0 < 0));
    let moved = store.event("$old-5").await.expect("read").expect("stored");
    assert_eq!(moved.pdu_json, r#"{"n":5}"#);
    let ids = store
        .event_state_ids("$old-3")
        .await
        .expect("read")
        .expect("ids");
    assert_eq!(ids.after.as_deref(), Some("$old-3"));
    assert_eq!(
        store
            .timeline_ids(&["$old-1".to_owned(), "$old-2".to_owned()])
            .await
            .expect("read"),
        ["$old-2".to_owned()]
    );
    let record = store.room(room).await.expect("read").expect("room");
    assert_eq!(record.visibility_below.as_deref(), Some("shared"));
    assert_eq!(
        store.forward_extremities(room).await.expect("read"),
        extremities
    );
    assert_eq!(store.current_state(room).await.expect("read"), state);
    let log = store
        .events_after(tip, store.max_position().await.expect("position"), 100)
        .await
        .expect("log");
    assert!(log.iter().all(|event| event.room_id != room), "{log:?}");
}

/// Fetched history, once promoted, is found by relations, thread summaries
/// and search as a live event is; an outlier never left is found by none.
pub(super) async fn promoted_history_is_related_and_searchable(store: &dyn Store) {
    use crate::{Direction, RelationQuery};
    use myelin_types::StreamPosition;

    let room = "!indexed-history:test";
    let mut live = event(room, 100, Some(("m.room.member", "@me:test")), &[]);
    live.new_room_version = Some("12".to_owned());
    persist(store, live).await;
    let outlier =
        |id: &str, event_type: &str, state_key: Option<&str>, content: &str| crate::OutlierEvent {
            event_id: id.to_owned(),
            room_id: room.to_owned(),
            sender: "@far:remote.test".to_owned(),
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            depth: 1,
            origin_server_ts: 1000,
            pdu_json: format!(r#"{{"content":{content}}}"#),
            soft_failed: false,
        };
    store
        .store_outliers(vec![
            outlier(
                "$lighthouse",
                "m.room.message",
                None,
                r#"{"body":"the old lighthouse"}"#,
            ),
            outlier(
                "$keeper",
                "m.room.message",
                None,
                r#"{"body":"its keeper","m.relates_to":{"rel_type":"m.thread","event_id":"$lighthouse"}}"#,
            ),
            outlier(
                "$auth-only",
                "m.room.topic",
                Some(""),
                r#"{"topic":"a lighthouse topic"}"#,
            ),
        ])
        .await
        .expect("store");
    let query = super::relations::search_query("lighthouse", &[(room, None)]);
    let found = |page: crate::SearchPage| -> Vec<String> {
        page.hits
            .into_iter()
            .map(|hit| hit.event.event_id)
            .collect()
    };
    // Outliers are in no timeline: nothing of them is searched.
    assert!(found(store.search(&query).await.expect("search")).is_empty());

    let promoted = |id: &str| promoted_with(id, Vec::new());
    store
        .promote_outliers(
            room,
            vec![promoted("$lighthouse"), promoted("$keeper")],
            start(),
            None,
        )
        .await
        .expect("promote");

    assert_eq!(
        found(store.search(&query).await.expect("search")),
        ["$lighthouse"]
    );
    let replies = store
        .relations(&RelationQuery {
            room_id: room.to_owned(),
            event_id: "$lighthouse".to_owned(),
            rel_type: None,
            event_type: None,
            from: StreamPosition::BEFORE_ALL,
            to: None,
            direction: Direction::Forward,
            limit: 10,
            recurse: false,
        })
        .await
        .expect("relations");
    let ids: Vec<&str> = replies
        .iter()
        .map(|reply| reply.event_id.as_str())
        .collect();
    assert_eq!(ids, ["$keeper"]);
    assert!(replies[0].position.0 < 0);
    let summary = store
        .thread_summary(
            room,
            "$lighthouse",
            "@far:remote.test",
            &[(myelin_types::TimelinePoint::BEFORE_ALL, None)],
        )
        .await
        .expect("summary")
        .expect("a thread");
    assert_eq!(summary.count, 1);
    assert!(summary.user_replied);
    assert_eq!(summary.latest.event_id, "$keeper");
}

/// History fetched into a gap sits just before the event after the gap,
/// oldest first, batch after batch: paging reads it there both ways, a
/// stream token just before that event is after the gap, and search looks
/// in it by its place. A soft-failed outlier is never brought in, and the
/// live log does not change.
pub(super) async fn fetched_history_fills_a_gap_in_order(store: &dyn Store) {
    use crate::{Direction, FetchedInto};
    use myelin_types::TimelinePoint;

    let room = "!gap:test";
    let mut create = event(room, 0, Some(("m.room.create", "")), &[]);
    create.new_room_version = Some("12".to_owned());
    let create_id = create.event_id.clone();
    persist(store, create).await;
    // The event after the gap cites history this server does not hold.
    let mut edge = event(room, 10, None, &["$gap-4".to_owned()]);
    edge.opens_gap = true;
    let edge_id = edge.event_id.clone();
    let edge_position = persist(store, edge).await;
    let newest = event(room, 11, None, std::slice::from_ref(&edge_id));
    let newest_id = newest.event_id.clone();
    persist(store, newest).await;
    let tip = store.max_position().await.expect("position");

    let outlier = |id: &str, soft_failed: bool| crate::OutlierEvent {
        event_id: id.to_owned(),
        room_id: room.to_owned(),
        sender: "@far:remote.test".to_owned(),
        event_type: "m.room.message".to_owned(),
        state_key: None,
        depth: 5,
        origin_server_ts: 1000,
        pdu_json: format!(r#"{{"content":{{"body":"harbour {id}"}}}}"#),
        soft_failed,
    };
    store
        .store_outliers(vec![
            outlier("$gap-1", false),
            outlier("$gap-2", false),
            outlier("$gap-3", false),
            outlier("$gap-4", false),
            outlier("$gap-soft", true),
        ])
        .await
        .expect("store");
    let into = FetchedInto::Gap {
        slot: edge_position,
    };
    // The newer part first, as paging back fetches it.
    store
        .promote_outliers(
            room,
            vec![
                promoted_with("$gap-3", Vec::new()),
                promoted_with("$gap-4", Vec::new()),
            ],
            into.clone(),
            None,
        )
        .await
        .expect("promote");
    store
        .promote_outliers(
            room,
            vec![
                promoted_with("$gap-1", Vec::new()),
                promoted_with("$gap-soft", Vec::new()),
                promoted_with("$gap-2", Vec::new()),
            ],
            into,
            None,
        )
        .await
        .expect("promote older");

    let ids = |events: &[crate::StoredEvent]| -> Vec<String> {
        events.iter().map(|event| event.event_id.clone()).collect()
    };
    let backward = store
        .room_events(room, at(tip), None, Direction::Backward, 10)
        .await
        .expect("backward");
    assert_eq!(
        ids(&backward),
        [
            &newest_id, &edge_id, "$gap-4", "$gap-3", "$gap-2", "$gap-1", &create_id
        ]
    );
    let opening: Vec<bool> = backward.iter().map(|event| event.opens_gap).collect();
    assert_eq!(opening, [false, true, false, false, false, false, false]);
    for fetched in &backward[2..6] {
        assert_eq!(fetched.slot, edge_position, "{fetched:?}");
        assert!(fetched.position.0 < 0, "{fetched:?}");
    }
    let forward = store
        .room_events(
            room,
            TimelinePoint::BEFORE_ALL,
            None,
            Direction::Forward,
            10,
        )
        .await
        .expect("forward");
    let mut reversed = ids(&backward);
    reversed.reverse();
    assert_eq!(ids(&forward), reversed);

    // Paging on from the middle of the gap, through the token's text.
    let first_page = store
        .room_events(room, at(tip), None, Direction::Backward, 3)
        .await
        .expect("page");
    let token = first_page[2].point().before().to_string();
    let from: TimelinePoint = token.parse().expect("a token of ours");
    let second_page = store
        .room_events(room, from, None, Direction::Backward, 3)
        .await
        .expect("next page");
    assert_eq!(ids(&second_page), ["$gap-3", "$gap-2", "$gap-1"]);
    // A stream token just before the event after the gap is after the gap.
    let before_edge = store
        .room_events(
            room,
            at(edge_position.before()),
            None,
            Direction::Backward,
            1,
        )
        .await
        .expect("before the edge");
    assert_eq!(ids(&before_edge), ["$gap-4"]);

    assert!(
        store
            .timeline_ids(&["$gap-soft".to_owned()])
            .await
            .expect("read")
            .is_empty(),
        "a soft-failed event stays out"
    );
    let log = store
        .events_after(tip, store.max_position().await.expect("position"), 100)
        .await
        .expect("log");
    assert!(log.iter().all(|event| event.room_id != room), "{log:?}");

    // Search by place: the stretch up to the edge holds the gap, the one
    // from the edge on does not.
    let search_in = |after: TimelinePoint, upto: Option<TimelinePoint>| {
        let mut query = super::relations::search_query("harbour", &[(room, None)]);
        query.rooms[0].after = after;
        query.rooms[0].upto = upto;
        query
    };
    let edge_point = TimelinePoint::after_event(edge_position, edge_position);
    let found = store
        .search(&search_in(
            TimelinePoint::BEFORE_ALL,
            Some(edge_point.before()),
        ))
        .await
        .expect("search");
    assert_eq!(found.count, 4, "{found:?}");
    let found = store
        .search(&search_in(edge_point.before(), None))
        .await
        .expect("search");
    assert_eq!(found.count, 0, "{found:?}");
}

/// An outlier promoted with what its promotion applies.
fn promoted_with(id: &str, redactions: Vec<crate::AppliedRedaction>) -> crate::PromotedEvent {
    crate::PromotedEvent {
        event_id: id.to_owned(),
        snapshots: EventSnapshots {
            before: format!("^{id}"),
            after: format!("^{id}"),
            new: vec![NewSnapshot {
                snapshot_id: format!("^{id}"),
                base_id: None,
                chain_length: 0,
                entries: Vec::new(),
            }],
        },
        redactions,
    }
}

/// A redaction fetched before its target waits for it: it is told of only
/// once the redaction is in the timeline, and applying it as the target is
/// promoted prunes the target, drops it from search and ends the wait.
pub(super) async fn waiting_redactions_apply_when_their_target_arrives(store: &dyn Store) {
    let room = "!redacted-history:test";
    let mut live = event(room, 100, Some(("m.room.member", "@me:test")), &[]);
    live.new_room_version = Some("12".to_owned());
    persist(store, live).await;
    let outlier = |id: &str, event_type: &str, content: &str| crate::OutlierEvent {
        event_id: id.to_owned(),
        room_id: room.to_owned(),
        sender: "@far:remote.test".to_owned(),
        event_type: event_type.to_owned(),
        state_key: None,
        depth: 1,
        origin_server_ts: 1000,
        pdu_json: format!(r#"{{"content":{content}}}"#),
        soft_failed: false,
    };
    store
        .store_outliers(vec![outlier(
            "$strike",
            "m.room.redaction",
            r#"{"redacts":"$secret"}"#,
        )])
        .await
        .expect("store");
    let target = ["$secret".to_owned()];
    let waiting_in = |room: &'static str| {
        let target = &target;
        async move {
            store
                .waiting_redactions(room, target)
                .await
                .expect("read waiting redactions")
        }
    };
    store
        .remember_redaction(room, "$secret", "$strike")
        .await
        .expect("remember");
    store
        .remember_redaction(room, "$secret", "$strike")
        .await
        .expect("remembered twice");
    // The redaction is no more than an outlier yet.
    assert!(waiting_in(room).await.is_empty());
    assert!(store.redactions_wait_in(room).await.expect("ask"));
    assert!(
        !store
            .redactions_wait_in("!elsewhere:test")
            .await
            .expect("ask")
    );
    store
        .promote_outliers(
            room,
            vec![promoted_with("$strike", Vec::new())],
            start(),
            None,
        )
        .await
        .expect("promote the redaction");
    assert_eq!(
        waiting_in(room).await,
        [("$secret".to_owned(), "$strike".to_owned())]
    );
    assert!(waiting_in("!elsewhere:test").await.is_empty());

    store
        .store_outliers(vec![outlier(
            "$secret",
            "m.room.message",
            r#"{"body":"a classified rendezvous"}"#,
        )])
        .await
        .expect("store the target");
    // Held, but as an outlier: still waited for.
    assert!(store.redactions_wait_in(room).await.expect("ask"));
    let pruned = r#"{"content":{}}"#;
    store
        .promote_outliers(
            room,
            vec![promoted_with(
                "$secret",
                vec![crate::AppliedRedaction {
                    redaction_event_id: "$strike".to_owned(),
                    target_event_id: "$secret".to_owned(),
                    pruned_pdu_json: pruned.to_owned(),
                }],
            )],
            start(),
            None,
        )
        .await
        .expect("promote the target");
    let secret = store.event("$secret").await.expect("read").expect("stored");
    assert_eq!(secret.pdu_json, pruned);
    assert_eq!(secret.redacted_by.as_deref(), Some("$strike"));
    assert!(secret.position.0 < 0);
    assert!(waiting_in(room).await.is_empty());
    let search = store
        .search(&super::relations::search_query(
            "classified",
            &[(room, None)],
        ))
        .await
        .expect("search");
    assert_eq!(search.count, 0, "{search:?}");

    // A target that arrives live is written redacted by the redaction
    // waiting for it, and the wait ends.
    let mut strike = event(room, 101, None, &[]);
    strike.event_type = "m.room.redaction".to_owned();
    let strike_id = strike.event_id.clone();
    persist(store, strike).await;
    let mut late = event(room, 102, None, std::slice::from_ref(&strike_id));
    late.pdu_json = r#"{"content":{"msgtype":"m.text","body":"a belated rendezvous"}}"#.to_owned();
    store
        .remember_redaction(room, &late.event_id, &strike_id)
        .await
        .expect("remember");
    let late_target = [late.event_id.clone()];
    assert_eq!(
        store
            .waiting_redactions(room, &late_target)
            .await
            .expect("read"),
        [(late.event_id.clone(), strike_id.clone())]
    );
    late.redacted_on_arrival = Some(crate::AppliedRedaction {
        redaction_event_id: strike_id.clone(),
        target_event_id: late.event_id.clone(),
        pruned_pdu_json: pruned.to_owned(),
    });
    let late_id = late.event_id.clone();
    persist(store, late).await;
    let late = store.event(&late_id).await.expect("read").expect("stored");
    assert_eq!(late.pdu_json, pruned);
    assert_eq!(late.redacted_by.as_deref(), Some(strike_id.as_str()));
    assert!(
        store
            .waiting_redactions(room, &late_target)
            .await
            .expect("read")
            .is_empty()
    );
    let search = store
        .search(&super::relations::search_query("belated", &[(room, None)]))
        .await
        .expect("search");
    assert_eq!(search.count, 0, "{search:?}");

    // A redaction its target's arrival did not apply (its sender may not
    // make it) leaves no wait behind.
    let kept = event(room, 103, None, std::slice::from_ref(&late_id));
    store
        .remember_redaction(room, &kept.event_id, &strike_id)
        .await
        .expect("remember");
    assert!(store.redactions_wait_in(room).await.expect("ask"));
    persist(store, kept).await;
    assert!(!store.redactions_wait_in(room).await.expect("ask"));
}

/// The stripped state of another server's invite is kept per invitee and
/// replaced by a later one.
pub(super) async fn invite_states_are_kept_per_invitee(store: &dyn Store) {
    let room = "!invited:remote.test";
    assert_eq!(
        store.invite_state(room, "@a:test").await.expect("read"),
        None
    );
    store
        .set_invite_state(room, "@a:test", r#"[{"type":"m.room.name"}]"#)
        .await
        .expect("write");
    store
        .set_invite_state(room, "@a:test", r#"[{"type":"m.room.topic"}]"#)
        .await
        .expect("write again");
    assert_eq!(
        store
            .invite_state(room, "@a:test")
            .await
            .expect("read")
            .as_deref(),
        Some(r#"[{"type":"m.room.topic"}]"#)
    );
    assert_eq!(
        store.invite_state(room, "@b:test").await.expect("read"),
        None
    );
}
