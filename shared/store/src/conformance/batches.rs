//! `persist_events`: a batch of events lands whole or not at all.

use crate::{PersistEvent, Store, StoreError, TxnKey};

use super::events::event;

/// A new room's first events as one linear chain: create, a member, then
/// `extra` more state events.
fn new_room(room_id: &str, extra: usize) -> Vec<PersistEvent> {
    let mut create = event(room_id, 0, Some(("m.room.create", "")), &[]);
    create.new_room_version = Some("12".to_owned());
    let mut member = event(
        room_id,
        1,
        Some(("m.room.member", "@s:test")),
        std::slice::from_ref(&create.event_id),
    );
    member.membership = Some("join".to_owned());
    let mut events = vec![create, member];
    for n in 2..2 + extra {
        let prev = events[n - 1].event_id.clone();
        let key = format!("key{n}");
        events.push(event(room_id, n, Some(("m.room.topic", &key)), &[prev]));
    }
    events
}

async fn nothing_of(store: &dyn Store, room_id: &str, events: &[PersistEvent]) {
    assert!(store.room(room_id).await.expect("room").is_none());
    assert!(
        store
            .current_state(room_id)
            .await
            .expect("state")
            .is_empty()
    );
    assert!(
        store
            .forward_extremities(room_id)
            .await
            .expect("fx")
            .is_empty()
    );
    for written in events {
        assert!(
            store
                .event(&written.event_id)
                .await
                .expect("read")
                .is_none(),
            "{} was written by a refused batch",
            written.event_id
        );
    }
}

pub(super) async fn a_batch_lands_whole_in_order(store: &dyn Store) {
    let room_id = "!batch:test";
    let events = new_room(room_id, 3);
    let positions = store
        .persist_events(events.clone())
        .await
        .expect("persist a batch");
    assert_eq!(positions.len(), events.len());
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(store.max_position().await.expect("max"), positions[4]);
    assert!(store.room(room_id).await.expect("room").is_some());
    assert_eq!(store.current_state(room_id).await.expect("state").len(), 5);
    let memberships = store.memberships_of_user("@s:test").await.expect("members");
    assert!(
        memberships
            .iter()
            .any(|m| m.room_id == room_id && m.membership == "join")
    );
    assert_eq!(
        store.forward_extremities(room_id).await.expect("fx"),
        vec![(events[4].event_id.clone(), events[4].depth)]
    );
}

/// An event that cannot be written late in a batch takes the events
/// before it with it, the room record included.
pub(super) async fn a_batch_failing_part_way_writes_nothing(store: &dyn Store) {
    let taken = new_room("!batch-taken:test", 0);
    store
        .persist_events(taken.clone())
        .await
        .expect("first room");

    let room_id = "!batch-clash:test";
    let mut events = new_room(room_id, 2);
    // The last event reuses an event ID the store already holds.
    events[3].event_id = taken[1].event_id.clone();
    assert!(store.persist_events(events.clone()).await.is_err());
    events.truncate(3);
    nothing_of(store, room_id, &events).await;

    let txn = TxnKey {
        user_id: "@s:test".to_owned(),
        device_id: "D".to_owned(),
        txn_id: "batch-txn".to_owned(),
    };
    let mut sent = event("!batch-taken:test", 9, None, &[]);
    sent.txn = Some(txn.clone());
    store.persist_event(sent).await.expect("send with a txn");
    let room_id = "!batch-txn:test";
    let mut events = new_room(room_id, 1);
    events[2].txn = Some(txn);
    assert!(matches!(
        store.persist_events(events.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    nothing_of(store, room_id, &events).await;
}

/// Canonical JSON writes a NUL inside a string as the escape `\u0000`;
/// both engines keep that text as it was given.
pub(super) async fn content_with_an_escaped_nul_round_trips(store: &dyn Store) {
    let mut events = new_room("!batch-nul:test", 0);
    let pdu_json = r#"{"content":{"body":"a\u0000b"},"event_id":"$nul"}"#.to_owned();
    events[1].pdu_json = pdu_json.clone();
    store.persist_events(events.clone()).await.expect("persist");
    let stored = store
        .event(&events[1].event_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.pdu_json, pdu_json);
    let content: serde_json::Value = serde_json::from_str(&stored.pdu_json).expect("json");
    assert_eq!(content["content"]["body"], "a\u{0}b");
}
