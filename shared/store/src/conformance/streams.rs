//! The streams beside room events: account data and receipts.

use myelin_types::StreamPosition;

use crate::{NewReceipt, Store};

pub(super) async fn account_data_changes_read_by_position(store: &dyn Store) {
    let user = "@streams-ad:conformance";
    let start = store.max_account_data_position().await.expect("position");
    let first = store
        .set_account_data(user, None, "m.direct", r#"{"a":1}"#)
        .await
        .expect("set");
    let second = store
        .set_account_data(user, Some("!r:conformance"), "m.tag", r#"{"tags":{}}"#)
        .await
        .expect("set");
    let replaced = store
        .set_account_data(user, None, "m.direct", r#"{"a":2}"#)
        .await
        .expect("replace");
    assert!(start < first && first < second && second < replaced);
    assert_eq!(
        store.max_account_data_position().await.expect("position"),
        replaced
    );
    assert_eq!(
        store
            .account_data(user, None, "m.direct")
            .await
            .expect("read")
            .as_deref(),
        Some(r#"{"a":2}"#)
    );
    assert_eq!(
        store
            .account_data(user, Some("!r:conformance"), "m.direct")
            .await
            .expect("read"),
        None,
        "room data and global data are apart"
    );
    let all = store
        .account_data_changes(user, None, replaced)
        .await
        .expect("all");
    let kinds: Vec<(Option<&str>, &str)> = all
        .iter()
        .map(|entry| (entry.room_id.as_deref(), entry.data_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [(Some("!r:conformance"), "m.tag"), (None, "m.direct")],
        "one entry per key, oldest change first"
    );
    let since_first = store
        .account_data_changes(user, Some(first), second)
        .await
        .expect("a window");
    assert_eq!(since_first.len(), 1);
    assert_eq!(since_first[0].data_type, "m.tag");
    assert!(
        store
            .account_data_changes("@other:conformance", None, replaced)
            .await
            .expect("other user")
            .is_empty()
    );
}

pub(super) async fn receipts_replace_per_type_user_and_thread(store: &dyn Store) {
    let room = "!receipts:conformance".to_owned();
    let receipt = |user: &str, thread: Option<&str>, event: &str| NewReceipt {
        room_id: room.clone(),
        receipt_type: "m.read".to_owned(),
        user_id: user.to_owned(),
        thread_id: thread.map(str::to_owned),
        event_id: event.to_owned(),
        ts: 1_000,
    };
    let start = store.max_receipt_position().await.expect("position");
    let a1 = store
        .set_receipt(receipt("@a:c", None, "$1"))
        .await
        .expect("set");
    let b1 = store
        .set_receipt(receipt("@b:c", None, "$1"))
        .await
        .expect("set");
    let a_thread = store
        .set_receipt(receipt("@a:c", Some("$root"), "$2"))
        .await
        .expect("set");
    let a2 = store
        .set_receipt(receipt("@a:c", None, "$3"))
        .await
        .expect("move");
    assert!(start < a1 && a1 < b1 && b1 < a_thread && a_thread < a2);
    assert_eq!(store.max_receipt_position().await.expect("position"), a2);
    let current = store
        .receipt_changes(std::slice::from_ref(&room), None, a2)
        .await
        .expect("all");
    let seen: Vec<(&str, Option<&str>, &str)> = current
        .iter()
        .map(|r| {
            (
                r.user_id.as_str(),
                r.thread_id.as_deref(),
                r.event_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("@b:c", None, "$1"),
            ("@a:c", Some("$root"), "$2"),
            ("@a:c", None, "$3")
        ]
    );
    // Across rooms, from a position on, at most as many as asked.
    let across = store
        .receipts_between(a1, a2, 10)
        .await
        .expect("across rooms");
    let across: Vec<&str> = across.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(across, ["$1", "$2", "$3"]);
    let first = store.receipts_between(start, a2, 1).await.expect("one");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].user_id, "@b:c", "a's first receipt was replaced");
    let recent = store
        .receipt_changes(std::slice::from_ref(&room), Some(a_thread), a2)
        .await
        .expect("since");
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].event_id, "$3");
    assert!(
        store
            .receipt_changes(&["!elsewhere:c".to_owned()], None, a2)
            .await
            .expect("other room")
            .is_empty()
    );
    assert!(
        store
            .receipt_changes(std::slice::from_ref(&room), None, StreamPosition(start.0))
            .await
            .expect("nothing yet")
            .is_empty()
    );
}

pub(super) async fn typing_notices_run_until_they_end(store: &dyn Store) {
    let room = "!typing:conformance";
    store
        .set_typing(room, "@a:c", Some(5_000))
        .await
        .expect("start");
    store
        .set_typing(room, "@b:c", Some(2_000))
        .await
        .expect("start");
    store
        .set_typing(room, "@c:c", Some(9_000))
        .await
        .expect("start");
    store.set_typing(room, "@c:c", None).await.expect("stop");
    store
        .set_typing(room, "@a:c", Some(6_000))
        .await
        .expect("extend");
    let live = store.typing_now(3_000).await.expect("read");
    let users: Vec<(&str, i64)> = live
        .iter()
        .filter(|notice| notice.room_id == room)
        .map(|notice| (notice.user_id.as_str(), notice.until_ms))
        .collect();
    assert_eq!(users, [("@a:c", 6_000)]);
    assert!(store.typing_now(6_000).await.expect("read").is_empty());
}

/// Counts rise with notifying events and fall back with read receipts,
/// per thread; the list says what was read.
pub(super) async fn unread_counts_follow_push_actions_and_receipts(store: &dyn Store) {
    use crate::{PushAction, UnreadCounts};
    let room = "!counts:conformance";
    let user = "@reader:conformance";
    let notify = |highlight: bool, thread: Option<&str>| PushAction {
        user_id: user.to_owned(),
        highlight,
        thread_id: thread.map(str::to_owned),
        sound: None,
    };
    let mut prev: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    for (n, actions) in [
        vec![notify(false, None)],
        vec![notify(true, None)],
        vec![],
        vec![notify(false, Some("$root"))],
        vec![notify(false, None)],
    ]
    .into_iter()
    .enumerate()
    {
        let mut new = super::events::event(room, n, None, &prev);
        new.push_actions = actions;
        ids.push(new.event_id.clone());
        prev = vec![new.event_id.clone()];
        store.persist_event(new).await.expect("persist");
    }
    let counts = store.unread_counts(user, room).await.expect("counts");
    assert_eq!(
        counts.main,
        UnreadCounts {
            notifications: 3,
            highlights: 1
        }
    );
    assert_eq!(
        counts.threads,
        vec![(
            "$root".to_owned(),
            UnreadCounts {
                notifications: 1,
                highlights: 0
            }
        )]
    );
    assert_eq!(counts.total().notifications, 4);
    assert_eq!(
        store
            .unread_counts("@someone-else:conformance", room)
            .await
            .expect("counts"),
        Default::default()
    );

    let receipt = |event: &str, kind: &str, thread: Option<&str>| NewReceipt {
        room_id: room.to_owned(),
        receipt_type: kind.to_owned(),
        user_id: user.to_owned(),
        thread_id: thread.map(str::to_owned),
        event_id: event.to_owned(),
        ts: 1,
    };
    // A private receipt on the second event reads the first two.
    store
        .set_receipt(receipt(&ids[1], "m.read.private", None))
        .await
        .expect("receipt");
    let counts = store.unread_counts(user, room).await.expect("counts");
    assert_eq!(counts.main.notifications, 1);
    assert_eq!(counts.main.highlights, 0);
    assert_eq!(counts.threads.len(), 1);
    // A receipt in the thread reads the thread only.
    store
        .set_receipt(receipt(&ids[3], "m.read", Some("$root")))
        .await
        .expect("receipt");
    let counts = store.unread_counts(user, room).await.expect("counts");
    assert!(counts.threads.is_empty(), "{counts:?}");
    assert_eq!(counts.main.notifications, 1);

    let listed = store
        .notifications(user, None, 10, false)
        .await
        .expect("list");
    let seen: Vec<(&str, bool, bool)> = listed
        .iter()
        .map(|n| (n.event.event_id.as_str(), n.highlight, n.read))
        .collect();
    assert_eq!(
        seen,
        [
            (ids[4].as_str(), false, false),
            (ids[3].as_str(), false, true),
            (ids[1].as_str(), true, true),
            (ids[0].as_str(), false, true),
        ]
    );
    let highlights = store
        .notifications(user, None, 10, true)
        .await
        .expect("highlights");
    assert_eq!(highlights.len(), 1);
    let older = store
        .notifications(user, Some(listed[1].event.position), 1, false)
        .await
        .expect("a page");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].event.event_id, ids[1]);

    // Read push actions can be swept, oldest first; unread ones stay.
    let newest = store
        .event(&ids[4])
        .await
        .expect("event")
        .expect("stored")
        .position;
    assert_eq!(
        store
            .prune_read_push_actions(newest, 1)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune_read_push_actions(newest, 10)
            .await
            .expect("prune"),
        2
    );
    assert_eq!(
        store
            .prune_read_push_actions(newest, 10)
            .await
            .expect("prune"),
        0
    );
    let listed = store
        .notifications(user, None, 10, false)
        .await
        .expect("list");
    let left: Vec<&str> = listed.iter().map(|n| n.event.event_id.as_str()).collect();
    assert_eq!(left, [ids[4].as_str()]);
    assert_eq!(
        store
            .unread_counts(user, room)
            .await
            .expect("counts")
            .main
            .notifications,
        1
    );
}

pub(super) async fn presence_changes_read_by_position(store: &dyn Store) {
    use crate::PresenceUpdate;
    let update = |user: &str, state: &str, message: Option<Option<&str>>, ts: i64| PresenceUpdate {
        user_id: user.to_owned(),
        state: state.to_owned(),
        status_msg: message.map(|message| message.map(str::to_owned)),
        last_active_ts: ts,
    };
    let start = store.max_presence_position().await.expect("position");
    let first = store
        .set_presence(update("@p1:c", "online", Some(Some("lunch")), 10))
        .await
        .expect("set");
    let second = store
        .set_presence(update("@p2:c", "unavailable", None, 20))
        .await
        .expect("set");
    let third = store
        .set_presence(update("@p1:c", "offline", None, 30))
        .await
        .expect("set");
    assert!(start < first && first < second && second < third);
    assert_eq!(
        store.max_presence_position().await.expect("position"),
        third
    );
    let p1 = store
        .presence("@p1:c")
        .await
        .expect("read")
        .expect("a record");
    assert_eq!(
        (
            p1.state.as_str(),
            p1.status_msg.as_deref(),
            p1.last_active_ts
        ),
        ("offline", Some("lunch"), 30),
        "a change without a message keeps the message"
    );
    store
        .set_presence(update("@p1:c", "online", Some(None), 40))
        .await
        .expect("clear the message");
    assert_eq!(
        store
            .presence("@p1:c")
            .await
            .expect("read")
            .expect("a record")
            .status_msg,
        None
    );
    let users = ["@p1:c".to_owned(), "@p2:c".to_owned(), "@p3:c".to_owned()];
    let now = store.max_presence_position().await.expect("position");
    let all = store
        .presence_changes(&users, None, now)
        .await
        .expect("all");
    let order: Vec<&str> = all.iter().map(|record| record.user_id.as_str()).collect();
    assert_eq!(order, ["@p2:c", "@p1:c"]);
    let recent = store
        .presence_changes(&users, Some(third), now)
        .await
        .expect("since");
    assert_eq!(recent.len(), 1);
    assert!(
        store
            .presence_changes(&["@p2:c".to_owned()], Some(second), now)
            .await
            .expect("since")
            .is_empty()
    );
    assert_eq!(store.presence("@nobody:c").await.expect("read"), None);
}

pub(super) async fn presence_lapses_once_with_time(store: &dyn Store) {
    use crate::{LapseCutoffs, PresenceUpdate};
    let base = 1_000_000_000_i64;
    let set = |user: &str, state: &str, ts: i64| PresenceUpdate {
        user_id: user.to_owned(),
        state: state.to_owned(),
        status_msg: Some(Some(format!("{user} says hi"))),
        last_active_ts: ts,
    };
    for (user, state) in [
        ("@gone:l", "online"),
        ("@idle:l", "online"),
        ("@away:l", "unavailable"),
        ("@off:l", "offline"),
        ("@busy:l", "online"),
    ] {
        store
            .set_presence(set(user, state, base))
            .await
            .expect("set");
    }
    // Still syncing, and still active, respectively.
    store
        .note_presence_syncs(&["@idle:l".to_owned(), "@nobody:l".to_owned()], base + 50)
        .await
        .expect("note syncs");
    store
        .set_presence(set("@busy:l", "online", base + 50))
        .await
        .expect("set");
    let before = store.max_presence_position().await.expect("position");
    let cutoffs = LapseCutoffs {
        idle_before: base + 20,
        gone_before: base + 10,
    };
    let mut lapsed: Vec<_> = store
        .lapse_presence(cutoffs)
        .await
        .expect("lapse")
        .into_iter()
        .filter(|change| change.user_id.ends_with(":l"))
        .collect();
    lapsed.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let states: Vec<(&str, &str)> = lapsed
        .iter()
        .map(|change| (change.user_id.as_str(), change.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("@away:l", "offline"),
            ("@gone:l", "offline"),
            ("@idle:l", "unavailable"),
        ]
    );
    assert!(lapsed.iter().all(|change| change.position > before));
    let after = store.max_presence_position().await.expect("position");
    assert!(lapsed.iter().all(|change| change.position <= after));
    let idle = store
        .presence("@idle:l")
        .await
        .expect("read")
        .expect("a record");
    assert_eq!(
        (
            idle.state.as_str(),
            idle.status_msg.as_deref(),
            idle.last_active_ts
        ),
        ("unavailable", Some("@idle:l says hi"), base),
        "a lapse keeps the message and the time of the last activity"
    );
    let users: Vec<String> = lapsed.iter().map(|change| change.user_id.clone()).collect();
    assert_eq!(
        store
            .presence_changes(&users, Some(before), after)
            .await
            .expect("changes")
            .len(),
        3,
        "lapses are changes in the stream"
    );
    assert!(
        store
            .lapse_presence(cutoffs)
            .await
            .expect("lapse again")
            .iter()
            .all(|change| !change.user_id.ends_with(":l")),
        "a lapse happens once"
    );
    // The syncing user goes offline once their syncs stop too.
    let later = store
        .lapse_presence(LapseCutoffs {
            idle_before: base + 100,
            gone_before: base + 100,
        })
        .await
        .expect("lapse");
    let mut later: Vec<(&str, &str)> = later
        .iter()
        .filter(|change| change.user_id.ends_with(":l"))
        .map(|change| (change.user_id.as_str(), change.state.as_str()))
        .collect();
    later.sort();
    assert_eq!(later, [("@busy:l", "offline"), ("@idle:l", "offline")]);
}
