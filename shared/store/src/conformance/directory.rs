use crate::{DirectoryScope, NewUser, PersistEvent, PersistOutcome, ProfileUpdate, Store};

/// Publishing is idempotent, listing pages in byte order from a cursor.
pub(super) async fn room_directory_publishes_and_pages(store: &dyn Store) {
    for room in ["!dir-b:test", "!dir-a:test", "!dir-c:test"] {
        store.set_room_published(room, true).await.expect("publish");
    }
    store
        .set_room_published("!dir-a:test", true)
        .await
        .expect("publish again");
    assert!(store.room_published("!dir-b:test").await.expect("read"));
    assert!(!store.room_published("!dir-z:test").await.expect("read"));
    assert_eq!(store.published_room_count().await.expect("count"), 3);
    assert_eq!(
        store.published_rooms(None, 2).await.expect("first page"),
        vec!["!dir-a:test".to_owned(), "!dir-b:test".to_owned()]
    );
    assert_eq!(
        store
            .published_rooms(Some("!dir-b:test"), 2)
            .await
            .expect("next page"),
        vec!["!dir-c:test".to_owned()]
    );
    store
        .set_room_published("!dir-b:test", false)
        .await
        .expect("unpublish");
    store
        .set_room_published("!dir-b:test", false)
        .await
        .expect("unpublish again");
    assert!(!store.room_published("!dir-b:test").await.expect("read"));
    assert_eq!(
        store.published_rooms(None, 10).await.expect("list"),
        vec!["!dir-a:test".to_owned(), "!dir-c:test".to_owned()]
    );
    for room in ["!dir-a:test", "!dir-c:test"] {
        store
            .set_room_published(room, false)
            .await
            .expect("unpublish");
    }
    assert_eq!(store.published_room_count().await.expect("count"), 0);
}

pub(super) fn state_event(
    room_id: &str,
    n: usize,
    event_type: &str,
    state_key: &str,
    content: &str,
    prev: Option<&str>,
) -> PersistEvent {
    let event_id = format!("${room_id}-{n}");
    let membership = (event_type == "m.room.member").then(|| {
        serde_json::from_str::<serde_json::Value>(content).expect("content")["membership"]
            .as_str()
            .expect("membership")
            .to_owned()
    });
    PersistEvent {
        pdu_json: format!(
            r#"{{"event_id":"{event_id}","type":"{event_type}","state_key":"{state_key}","content":{content}}}"#
        ),
        event_id,
        room_id: room_id.to_owned(),
        sender: "@s:test".to_owned(),
        event_type: event_type.to_owned(),
        state_key: Some(state_key.to_owned()),
        depth: n as i64 + 1,
        origin_server_ts: 1000 + n as i64,
        prev_events: prev.map(|id| vec![id.to_owned()]).unwrap_or_default(),
        membership,
        txn: None,
        redaction: None,
        redacted_on_arrival: None,
        new_room_version: (n == 0).then(|| "12".to_owned()),
        push_actions: Vec::new(),
        fence: None,
        snapshots: None,
        resolved_state: None,
        opens_gap: false,
    }
}

/// A room with the given state after its create event, each event after the last.
pub(super) async fn room(store: &dyn Store, room_id: &str, state: &[(&str, &str, &str)]) {
    let mut events = vec![state_event(room_id, 0, "m.room.create", "", "{}", None)];
    for (n, (event_type, state_key, content)) in state.iter().enumerate() {
        let prev = events.last().map(|event| event.event_id.clone());
        events.push(state_event(
            room_id,
            n + 1,
            event_type,
            state_key,
            content,
            prev.as_deref(),
        ));
    }
    for event in events {
        match store.persist_event(event).await.expect("persist") {
            PersistOutcome::Persisted(_) => {}
            other => panic!("expected a new event, got {other:?}"),
        }
    }
}

/// Accounts for `users`, without passwords.
pub(super) async fn create_users(store: &dyn Store, users: &[&str]) {
    for user_id in users {
        store
            .create_user(NewUser {
                user_id: (*user_id).to_owned(),
                password_hash: None,
                is_admin: false,
                created_ts: 1,
            })
            .await
            .expect("create user");
    }
}

pub(super) const JOIN: &str = r#"{"membership":"join"}"#;

/// The search finds users sharing a room with the searcher and users in
/// public rooms, by user ID or display name, case-insensitively; the
/// widest scope finds every active user.
pub(super) async fn user_search_follows_shared_and_public_rooms(store: &dyn Store) {
    let users = [
        "@udsearcher:test",
        "@udshared:test",
        "@udpublic:test",
        "@udworld:test",
        "@udstranger:test",
        "@udgone:test",
        "@udleft:test",
    ];
    create_users(store, &users).await;
    store
        .update_profile(
            "@udstranger:test",
            ProfileUpdate {
                displayname: Some(Some("Zebra UDX".to_owned())),
                avatar_url: Some(Some("mxc://test/zebra".to_owned())),
            },
        )
        .await
        .expect("profile");
    store.deactivate_user("@udgone:test").await.expect("gone");
    room(
        store,
        "!ud-private:test",
        &[
            ("m.room.join_rules", "", r#"{"join_rule":"invite"}"#),
            ("m.room.member", "@udsearcher:test", JOIN),
            ("m.room.member", "@udshared:test", JOIN),
            ("m.room.member", "@udgone:test", JOIN),
            ("m.room.member", "@udleft:test", JOIN),
            ("m.room.member", "@udleft:test", r#"{"membership":"leave"}"#),
        ],
    )
    .await;
    room(
        store,
        "!ud-public:test",
        &[
            ("m.room.join_rules", "", r#"{"join_rule":"public"}"#),
            ("m.room.member", "@udpublic:test", JOIN),
        ],
    )
    .await;
    room(
        store,
        "!ud-world:test",
        &[
            ("m.room.join_rules", "", r#"{"join_rule":"invite"}"#),
            (
                "m.room.history_visibility",
                "",
                r#"{"history_visibility":"world_readable"}"#,
            ),
            ("m.room.member", "@udworld:test", JOIN),
        ],
    )
    .await;
    room(
        store,
        "!ud-other:test",
        &[
            ("m.room.join_rules", "", r#"{"join_rule":"invite"}"#),
            ("m.room.member", "@udstranger:test", JOIN),
        ],
    )
    .await;

    let found = |scope, term: &'static str, limit| async move {
        store
            .search_users("@udsearcher:test", term, scope, limit)
            .await
            .expect("search")
            .into_iter()
            .map(|user| user.user_id)
            .collect::<Vec<_>>()
    };
    let shared = DirectoryScope::SharedAndPublicRooms;
    assert_eq!(
        found(shared, "@ud", 10).await,
        vec![
            "@udpublic:test",
            "@udsearcher:test",
            "@udshared:test",
            "@udworld:test"
        ],
        "shared and public rooms, not the deactivated, the departed or strangers"
    );
    assert_eq!(found(shared, "@ud", 2).await.len(), 2, "the limit holds");
    assert!(found(shared, "zebra", 10).await.is_empty());
    assert_eq!(
        found(DirectoryScope::AllUsers, "zebra", 10).await,
        vec!["@udstranger:test"],
        "display names match, lowercased"
    );
    let stranger = store
        .search_users("@udsearcher:test", "udx", DirectoryScope::AllUsers, 10)
        .await
        .expect("search");
    assert_eq!(stranger.len(), 1);
    assert_eq!(stranger[0].displayname.as_deref(), Some("Zebra UDX"));
    assert_eq!(stranger[0].avatar_url.as_deref(), Some("mxc://test/zebra"));
    assert_eq!(
        found(DirectoryScope::AllUsers, "@ud", 10).await.len(),
        6,
        "every active user but the deactivated one"
    );
    assert!(found(shared, "100%_", 10).await.is_empty(), "no wildcards");
}
