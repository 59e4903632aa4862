//! Relations, threads and search: strangers, former members and later
//! joiners learn nothing they may not read, and bad input is refused.

use serde_json::json;

use crate::client::encode;
use crate::harness::Server;
use crate::relations::{edit, in_thread, relations_path, result_ids, search, send, threads_path};

const PASSWORD: &str = "pw-relations-security";

#[tokio::test]
async fn relations_threads_and_search_stay_inside_what_the_user_may_read() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("alice", PASSWORD).await;
    let mallory = anonymous.register("mallory", PASSWORD).await;
    let bob = anonymous.register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility/",
                encode(&room)
            ),
            &json!({"history_visibility": "joined"}),
        )
        .await
        .ok();
    let root = alice.send_text(&room, "confidential plans").await;
    send(
        &alice,
        &room,
        "m.room.message",
        in_thread(&root, "more confidential"),
    )
    .await;

    // A stranger: the event does not exist, the room is not theirs.
    mallory
        .get(&relations_path(&room, &root, ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    mallory
        .get(&relations_path(&room, &root, "/m.thread"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    mallory
        .get(&threads_path(&room, ""))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let found = search(
        &mallory,
        "confidential",
        json!({"filter": {"rooms": [room]}}),
    )
    .await;
    assert_eq!(result_ids(&found), Vec::<String>::new(), "{found}");
    assert_eq!(found["count"], json!(0));

    // Unknown rooms and events.
    alice
        .get(&relations_path("!nowhere:localhost", &root, ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&relations_path(&room, "$missing", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&threads_path("!nowhere:localhost", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Joined later under "joined" visibility: the old root stays unseen,
    // and so does its thread, even with replies sent after the join.
    alice.invite(&room, &server.user_id("bob")).await.ok();
    bob.join(&room).await.ok();
    send(
        &alice,
        &room,
        "m.room.message",
        in_thread(&root, "after bob joined"),
    )
    .await;
    bob.get(&relations_path(&room, &root, ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let threads = bob.get(&threads_path(&room, "")).await.ok();
    assert_eq!(threads["chunk"], json!([]), "{threads}");
    let found = search(&bob, "confidential", json!({})).await;
    assert_eq!(result_ids(&found), Vec::<String>::new(), "{found}");
    assert_eq!(found["count"], json!(0), "the count tells nothing either");
    let after_join = search(&bob, "after", json!({})).await;
    assert_eq!(after_join["count"], json!(1), "{after_join}");

    // A former member: edits after their leave are not bundled for them.
    let visible_root = alice.send_text(&room, "seen by bob").await;
    let early_edit = send(
        &alice,
        &room,
        "m.room.message",
        edit(&visible_root, "fixed"),
    )
    .await;
    bob.leave(&room).await.ok();
    send(
        &alice,
        &room,
        "m.room.message",
        edit(&visible_root, "fixed after"),
    )
    .await;
    let event_path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode(&room),
        encode(&visible_root)
    );
    let seen = bob.get(&event_path).await.ok();
    assert_eq!(
        seen["unsigned"]["m.relations"]["m.replace"]["event_id"],
        json!(early_edit),
        "{seen}"
    );
    let related = bob
        .get(&relations_path(&room, &visible_root, ""))
        .await
        .ok();
    assert_eq!(
        related["chunk"].as_array().map(Vec::len),
        Some(1),
        "{related}"
    );

    // Thread replies sent while a member was away are neither counted nor
    // shown to them once they are back.
    send(
        &alice,
        &room,
        "m.room.message",
        in_thread(&visible_root, "while bob is away"),
    )
    .await;
    alice.invite(&room, &server.user_id("bob")).await.ok();
    bob.join(&room).await.ok();
    let back = send(
        &alice,
        &room,
        "m.room.message",
        in_thread(&visible_root, "bob is back"),
    )
    .await;
    let thread = &bob.get(&event_path).await.ok()["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], json!(1), "{thread}");
    assert_eq!(thread["latest_event"]["event_id"], json!(back), "{thread}");
    let thread = &alice.get(&event_path).await.ok()["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], json!(2), "{thread}");
}

#[tokio::test]
async fn relations_threads_and_search_refuse_bad_input() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    let root = alice.send_text(&room, "hello").await;

    for query in [
        "?from=garbage",
        "?to=x",
        "?limit=abc",
        "?dir=sideways",
        "?limit=-1",
    ] {
        alice
            .get(&relations_path(&room, &root, query))
            .await
            .assert_error(400, "M_INVALID_PARAM");
    }
    for query in ["?include=everything", "?from=nope", "?limit=many"] {
        alice
            .get(&threads_path(&room, query))
            .await
            .assert_error(400, "M_INVALID_PARAM");
    }
    // Out-of-range limits are bounded, not refused.
    let page = alice
        .get(&relations_path(&room, &root, "?limit=1000000"))
        .await
        .ok();
    assert_eq!(page["chunk"], json!([]));

    let search_path = "/_matrix/client/v3/search";
    let criteria =
        |criteria: serde_json::Value| json!({"search_categories": {"room_events": criteria}});
    for (body, errcode) in [
        (criteria(json!({"search_term": ""})), "M_INVALID_PARAM"),
        (criteria(json!({"search_term": " ?! "})), "M_INVALID_PARAM"),
        (
            criteria(json!({"search_term": "a".repeat(513)})),
            "M_INVALID_PARAM",
        ),
        (
            criteria(json!({"search_term": "hi", "order_by": "random"})),
            "M_INVALID_PARAM",
        ),
        (
            criteria(json!({"search_term": "hi", "keys": ["content.secret"]})),
            "M_INVALID_PARAM",
        ),
        (
            criteria(json!({"search_term": "hi", "groupings": {"group_by": [{"key": "type"}]}})),
            "M_INVALID_PARAM",
        ),
        (criteria(json!({})), "M_MISSING_PARAM"),
        (json!({"search_categories": 5}), "M_BAD_JSON"),
    ] {
        alice
            .post(search_path, &body)
            .await
            .assert_error(400, errcode);
    }
    alice
        .post(
            &format!("{search_path}?next_batch=abc"),
            &criteria(json!({"search_term": "hello"})),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .post(
            &format!("{search_path}?next_batch=99999999"),
            &criteria(json!({"search_term": "hello"})),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let found = search(&alice, "hello", json!({"filter": {"limit": 100000}})).await;
    assert_eq!(result_ids(&found), vec![root]);
}
