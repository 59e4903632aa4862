use myelin_types::{StreamPosition, TimelinePoint};

use super::{at, start};

use crate::{Direction, PersistEvent, PersistOutcome, Redaction, Store, TxnKey};

pub(crate) fn event(
    room_id: &str,
    n: usize,
    state: Option<(&str, &str)>,
    prev: &[String],
) -> PersistEvent {
    let event_id = format!("${room_id}-{n}");
    let (event_type, state_key) = match state {
        Some((event_type, state_key)) => (event_type.to_owned(), Some(state_key.to_owned())),
        None => ("m.room.message".to_owned(), None),
    };
    PersistEvent {
        pdu_json: format!(r#"{{"event_id":"{event_id}","n":{n}}}"#),
        event_id,
        room_id: room_id.to_owned(),
        sender: "@s:test".to_owned(),
        event_type,
        state_key,
        depth: n as i64 + 1,
        origin_server_ts: 1000 + n as i64,
        prev_events: prev.to_vec(),
        membership: None,
        txn: None,
        redaction: None,
        redacted_on_arrival: None,
        new_room_version: None,
        push_actions: Vec::new(),
        fence: None,
        snapshots: None,
        resolved_state: None,
        opens_gap: false,
    }
}

pub(super) async fn persist(store: &dyn Store, new: PersistEvent) -> StreamPosition {
    match store.persist_event(new).await.expect("persist") {
        PersistOutcome::Persisted(position) => position,
        other => panic!("expected a new event, got {other:?}"),
    }
}

/// Persists a create event plus `count` messages in a linear chain.
async fn chain(store: &dyn Store, room_id: &str, count: usize) -> Vec<String> {
    let mut create = event(room_id, 0, Some(("m.room.create", "")), &[]);
    create.new_room_version = Some("12".to_owned());
    let mut ids = vec![create.event_id.clone()];
    persist(store, create).await;
    for n in 1..=count {
        let next = event(room_id, n, None, &ids[ids.len() - 1..]);
        ids.push(next.event_id.clone());
        persist(store, next).await;
    }
    ids
}

pub(super) async fn persist_and_read_back(store: &dyn Store) {
    let ids = chain(store, "!read:test", 1).await;
    let room = store
        .room("!read:test")
        .await
        .expect("room")
        .expect("exists");
    assert_eq!(room.room_version, "12");
    let message = store.event(&ids[1]).await.expect("read").expect("exists");
    assert_eq!(message.event_type, "m.room.message");
    assert_eq!(message.depth, 2);
    assert!(message.pdu_json.contains(r#""n":1"#));
    assert_eq!(
        store.forward_extremities("!read:test").await.expect("fx"),
        vec![(ids[1].clone(), 2)]
    );
    assert!(store.event("$missing").await.expect("read").is_none());
}

pub(super) async fn positions_increase_and_paginate(store: &dyn Store) {
    let before = store.max_position().await.expect("max");
    let ids = chain(store, "!page:test", 5).await;
    let after = store.max_position().await.expect("max");
    assert!(after > before);

    let newest_first = store
        .room_events("!page:test", at(after), None, Direction::Backward, 3)
        .await
        .expect("back");
    let got: Vec<_> = newest_first.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(got, vec![ids[5].clone(), ids[4].clone(), ids[3].clone()]);
    assert!(
        newest_first
            .windows(2)
            .all(|w| w[0].position > w[1].position)
    );

    let oldest_first = store
        .room_events(
            "!page:test",
            at(before),
            Some(at(after)),
            Direction::Forward,
            10,
        )
        .await
        .expect("forward");
    assert_eq!(oldest_first.len(), 6);
    assert_eq!(oldest_first[0].event_id, ids[0]);

    // A point excludes itself going forward and includes itself going back.
    let third = oldest_first[2].point();
    let next = store
        .room_events("!page:test", third, None, Direction::Forward, 1)
        .await
        .expect("f");
    assert_eq!(next[0].event_id, ids[3]);
    let prev = store
        .room_events("!page:test", third, None, Direction::Backward, 1)
        .await
        .expect("b");
    assert_eq!(prev[0].event_id, ids[2]);
}

pub(super) async fn the_log_reads_every_room_in_position_order(store: &dyn Store) {
    let before = store.max_position().await.expect("max");
    let first = chain(store, "!log-a:test", 2).await;
    let second = chain(store, "!log-b:test", 1).await;
    let upto = store.max_position().await.expect("max");

    let all = store.events_after(before, upto, 100).await.expect("log");
    let ids: Vec<_> = all.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids, [first, second].concat());
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));

    // Bounds: `after` is excluded, `upto` included, `limit` respected.
    let page = store
        .events_after(all[0].position, all[3].position, 2)
        .await
        .expect("page");
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].event_id, all[1].event_id);
    let tail = store
        .events_after(all[3].position, upto, 100)
        .await
        .expect("tail");
    assert_eq!(tail.len(), all.len() - 4);
    assert!(
        store
            .events_after(upto, upto, 10)
            .await
            .expect("empty")
            .is_empty()
    );
}

pub(super) async fn state_and_memberships_follow_latest(store: &dyn Store) {
    let ids = chain(store, "!state:test", 0).await;
    let mut join = event("!state:test", 1, Some(("m.room.member", "@m:test")), &ids);
    join.membership = Some("join".to_owned());
    let join_id = join.event_id.clone();
    let join_check_id = join_id.clone();
    persist(store, join).await;
    let mut leave = event(
        "!state:test",
        2,
        Some(("m.room.member", "@m:test")),
        &[join_id],
    );
    leave.membership = Some("leave".to_owned());
    let leave_id = leave.event_id.clone();
    let leave_position = persist(store, leave).await;

    let before_leave = store
        .state_event_at(
            "!state:test",
            "m.room.member",
            "@m:test",
            leave_position.before(),
        )
        .await
        .expect("state at");
    assert_eq!(before_leave.expect("joined then").event_id, join_check_id);
    let at_start =
        store.state_event_at("!state:test", "m.room.member", "@m:test", StreamPosition(0));
    assert!(at_start.await.expect("at").is_none());
    let member = store
        .state_event("!state:test", "m.room.member", "@m:test")
        .await
        .expect("state");
    assert_eq!(member.expect("present").event_id, leave_id);
    let state = store.current_state("!state:test").await.expect("state");
    assert_eq!(state.len(), 2, "create + one member: {state:?}");

    let mine = store
        .memberships_of_user("@m:test")
        .await
        .expect("memberships");
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].membership.as_str(), mine[0].position),
        ("leave", leave_position)
    );
    let room = store
        .room_memberships("!state:test")
        .await
        .expect("room memberships");
    assert_eq!(room.len(), 1);
    assert_eq!(room[0].user_id, "@m:test");
}

pub(super) async fn same_txn_id_returns_same_event(store: &dyn Store) {
    let ids = chain(store, "!txn:test", 0).await;
    let txn = TxnKey {
        user_id: "@s:test".into(),
        device_id: "D".into(),
        txn_id: "t1".into(),
    };
    let mut first = event("!txn:test", 1, None, &ids);
    first.txn = Some(txn.clone());
    let first_id = first.event_id.clone();
    persist(store, first).await;
    let mut retry = event("!txn:test", 2, None, &ids);
    retry.txn = Some(txn.clone());
    let outcome = store.persist_event(retry).await.expect("persist");
    assert_eq!(
        outcome,
        PersistOutcome::DuplicateTxn {
            event_id: first_id.clone()
        }
    );
    assert!(
        store.event("$!txn:test-2").await.expect("read").is_none(),
        "retry wrote nothing"
    );
    assert_eq!(
        store.txn_event_id(&txn).await.expect("txn"),
        Some(first_id.clone())
    );
    let stored = store.event(&first_id).await.expect("read").expect("exists");
    assert_eq!(stored.txn, Some(txn));
}

pub(super) async fn redaction_prunes_target(store: &dyn Store) {
    let ids = chain(store, "!redact:test", 1).await;
    let mut redaction = event("!redact:test", 2, None, &ids[1..]);
    redaction.event_type = "m.room.redaction".to_owned();
    redaction.redaction = Some(Redaction {
        target_event_id: ids[1].clone(),
        pruned_pdu_json: r#"{"pruned":true}"#.to_owned(),
    });
    let redaction_id = redaction.event_id.clone();
    let redaction_pdu = redaction.pdu_json.clone();
    persist(store, redaction).await;
    let target = store.event(&ids[1]).await.expect("read").expect("exists");
    assert_eq!(target.pdu_json, r#"{"pruned":true}"#);
    assert_eq!(target.redacted_by, Some(redaction_id));
    assert_eq!(target.redaction_pdu_json, Some(redaction_pdu));
    // Every read path carries the redaction along, not only the lookup by ID.
    let timeline = store
        .room_events(
            "!redact:test",
            TimelinePoint::AFTER_ALL,
            None,
            Direction::Backward,
            10,
        )
        .await
        .expect("timeline");
    let in_timeline = timeline
        .iter()
        .find(|event| event.event_id == ids[1])
        .expect("target in timeline");
    assert_eq!(in_timeline.redaction_pdu_json, target.redaction_pdu_json);
    let untouched = store.event(&ids[0]).await.expect("read").expect("exists");
    assert_eq!(untouched.redaction_pdu_json, None);
}

pub(super) async fn forgotten_rooms_hide_until_rejoined(store: &dyn Store) {
    let ids = chain(store, "!forget:test", 0).await;
    let mut leave = event("!forget:test", 1, Some(("m.room.member", "@f:test")), &ids);
    leave.membership = Some("leave".to_owned());
    let leave_id = leave.event_id.clone();
    persist(store, leave).await;
    store
        .forget_room("@f:test", "!forget:test")
        .await
        .expect("forget");
    store
        .forget_room("@f:test", "!forget:test")
        .await
        .expect("forgetting twice is fine");
    assert!(
        store
            .room_forgotten("@f:test", "!forget:test")
            .await
            .expect("read")
    );
    assert!(
        store
            .memberships_of_user("@f:test")
            .await
            .expect("memberships")
            .is_empty()
    );
    let mut join = event(
        "!forget:test",
        2,
        Some(("m.room.member", "@f:test")),
        &[leave_id],
    );
    join.membership = Some("join".to_owned());
    persist(store, join).await;
    assert!(
        !store
            .room_forgotten("@f:test", "!forget:test")
            .await
            .expect("read")
    );
    assert_eq!(
        store
            .memberships_of_user("@f:test")
            .await
            .expect("memberships")
            .len(),
        1
    );
}

/// A write under a fence is refused once the lease was acquired again, and
/// nothing of it is stored; the new holder's fence writes.
pub async fn writes_under_a_superseded_fence_are_refused(store: &dyn Store) {
    let room_id = "!fenced:test";
    let key = 7_100_001;
    let old_holder = store.lease_session().await.expect("session");
    let old_fence = old_holder
        .try_acquire(key)
        .await
        .expect("acquire")
        .expect("a free lease");
    let mut create = event(room_id, 0, Some(("m.room.create", "")), &[]);
    create.new_room_version = Some("12".to_owned());
    create.fence = Some(old_fence);
    let create_id = create.event_id.clone();
    persist(store, create).await;

    // The old holder loses its lease without noticing; another takes it.
    old_holder.release(key).await.expect("release");
    let new_holder = store.lease_session().await.expect("session");
    let new_fence = new_holder
        .try_acquire(key)
        .await
        .expect("acquire")
        .expect("a released lease");

    let mut stale = event(room_id, 1, None, std::slice::from_ref(&create_id));
    stale.fence = Some(old_fence);
    let stale_id = stale.event_id.clone();
    match store.persist_event(stale).await {
        Err(crate::StoreError::Fenced) => {}
        other => panic!("a write under a superseded fence gave {other:?}"),
    }
    assert_eq!(store.event(&stale_id).await.expect("read"), None);

    // Fetched history is promoted under the fence too.
    let fetched = || {
        vec![crate::PromotedEvent {
            event_id: "$fetched-under-a-fence".to_owned(),
            snapshots: crate::EventSnapshots {
                before: "^fetched-under-a-fence".to_owned(),
                after: "^fetched-under-a-fence".to_owned(),
                new: Vec::new(),
            },
            redactions: Vec::new(),
        }]
    };
    store
        .store_outliers(vec![crate::OutlierEvent {
            event_id: "$fetched-under-a-fence".to_owned(),
            room_id: room_id.to_owned(),
            sender: "@far:remote.test".to_owned(),
            event_type: "m.room.message".to_owned(),
            state_key: None,
            depth: 1,
            origin_server_ts: 1,
            pdu_json: r#"{"content":{"body":"old"}}"#.to_owned(),
            soft_failed: false,
        }])
        .await
        .expect("store an outlier");
    match store
        .promote_outliers(room_id, fetched(), start(), Some(old_fence))
        .await
    {
        Err(crate::StoreError::Fenced) => {}
        other => panic!("a promotion under a superseded fence gave {other:?}"),
    }
    let fetched_id = ["$fetched-under-a-fence".to_owned()];
    let in_timeline = || store.timeline_ids(&fetched_id);
    assert!(in_timeline().await.expect("read").is_empty());
    store
        .promote_outliers(room_id, fetched(), start(), Some(new_fence))
        .await
        .expect("promote under the current fence");
    assert_eq!(in_timeline().await.expect("read").len(), 1);

    let mut current = event(room_id, 2, None, std::slice::from_ref(&create_id));
    current.fence = Some(new_fence);
    persist(store, current).await;
}

pub(super) async fn state_at_a_position_and_one_key_over_time(store: &dyn Store) {
    let room = "!history:test";
    let ids = chain(store, room, 0).await;
    let mut last = ids[0].clone();
    let mut next = |n: usize, state: Option<(&str, &str)>, membership: Option<&str>| {
        let mut new = event(room, n, state, std::slice::from_ref(&last));
        new.membership = membership.map(str::to_owned);
        last = new.event_id.clone();
        new
    };
    let first_name = next(1, Some(("m.room.name", "")), None);
    let first_name_id = first_name.event_id.clone();
    persist(store, first_name).await;
    let join = next(2, Some(("m.room.member", "@m:test")), Some("join"));
    let join_id = join.event_id.clone();
    persist(store, join).await;
    let leave = next(3, Some(("m.room.member", "@m:test")), Some("leave"));
    let leave_id = leave.event_id.clone();
    let leave_position = persist(store, leave).await;
    persist(store, next(4, None, None)).await;
    let second_name = next(5, Some(("m.room.name", "")), None);
    let second_name_id = second_name.event_id.clone();
    persist(store, second_name).await;
    persist(store, next(6, Some(("m.room.topic", "")), None)).await;

    let at_leave: Vec<String> = store
        .state_at(room, leave_position)
        .await
        .expect("state at")
        .into_iter()
        .map(|event| event.event_id)
        .collect();
    assert_eq!(
        at_leave,
        vec![ids[0].clone(), first_name_id.clone(), leave_id.clone()],
        "the state when the member left: create, the first name, the leave"
    );
    let now: Vec<String> = store
        .current_state(room)
        .await
        .expect("current")
        .into_iter()
        .map(|event| event.event_id)
        .collect();
    let at_end: Vec<String> = store
        .state_at(room, StreamPosition(i64::MAX))
        .await
        .expect("state at the end")
        .into_iter()
        .map(|event| event.event_id)
        .collect();
    assert_eq!(at_end, now, "the state at the end is the current state");
    assert!(at_end.contains(&second_name_id));
    assert!(
        store
            .state_at(room, StreamPosition(0))
            .await
            .expect("before the room")
            .is_empty()
    );

    let memberships: Vec<String> = store
        .state_history(room, "m.room.member", "@m:test")
        .await
        .expect("history")
        .into_iter()
        .map(|event| event.event_id)
        .collect();
    assert_eq!(memberships, vec![join_id, leave_id], "oldest first");
    assert!(
        store
            .state_history(room, "m.room.member", "@other:test")
            .await
            .expect("none")
            .is_empty()
    );
}

/// Events found by the time they were sent, in both directions.
pub(super) async fn events_by_time_in_both_directions(store: &dyn Store) {
    // `chain` sends event n at 1000 + n.
    let ids = chain(store, "!bytime:test", 4).await;
    let found = |ts, direction, limit| async move {
        store
            .events_by_time("!bytime:test", ts, direction, limit)
            .await
            .expect("by time")
            .into_iter()
            .map(|event| event.event_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(found(1002, Direction::Forward, 2).await, ids[2..4].to_vec());
    assert_eq!(
        found(1002, Direction::Backward, 2).await,
        vec![ids[2].clone(), ids[1].clone()]
    );
    assert_eq!(
        found(999, Direction::Backward, 5).await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(2000, Direction::Forward, 5).await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(2000, Direction::Backward, 1).await,
        vec![ids[4].clone()]
    );
}
