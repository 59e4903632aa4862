//! Who may read what: history visibility and former members, on every path
//! that serves events (`/messages`, `/event`, `/context`, `/sync`) and on
//! the state paths a former member still reads.

use serde_json::{Value, json};

use crate::client::{Client, encode, message_bodies};
use crate::harness::Server;
use crate::split::{self, Split};

const PASSWORD: &str = "pw-privacy";

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

async fn user_id(client: &Client) -> String {
    client.whoami().await.ok()["user_id"]
        .as_str()
        .expect("whoami names the user")
        .to_owned()
}

async fn set_state(client: &Client, room_id: &str, event_type: &str, content: Value) {
    client
        .put(
            &room_path(room_id, &format!("state/{event_type}/")),
            &content,
        )
        .await
        .ok();
}

async fn set_history_visibility(client: &Client, room_id: &str, visibility: &str) {
    set_state(
        client,
        room_id,
        "m.room.history_visibility",
        json!({"history_visibility": visibility}),
    )
    .await;
}

/// Message bodies the user reads going back from the room's end.
async fn bodies_by_messages(client: &Client, room_id: &str) -> Vec<String> {
    let page = client.messages(room_id, "b", None, 100).await;
    let mut bodies = message_bodies(&page["chunk"]);
    bodies.reverse();
    bodies
}

/// Message bodies of the room's timeline in the user's first `/sync`.
async fn bodies_by_first_sync(client: &Client, room_id: &str) -> Vec<String> {
    let filter = encode(r#"{"room":{"timeline":{"limit":50}}}"#);
    let sync = client
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .await
        .ok();
    message_bodies(&sync["rooms"]["join"][room_id]["timeline"]["events"])
}

/// Message bodies around `event_id` in `/context`, the event itself included.
async fn context(client: &Client, room_id: &str, event_id: &str) -> Value {
    client
        .get(&room_path(
            room_id,
            &format!("context/{}?limit=50", encode(event_id)),
        ))
        .await
        .ok()
}

fn bodies_in_context(context: &Value) -> Vec<String> {
    let mut before = message_bodies(&context["events_before"]);
    before.reverse();
    let mut bodies = before;
    bodies.extend(message_bodies(&json!([context["event"]])));
    bodies.extend(message_bodies(&context["events_after"]));
    bodies
}

async fn get_event(client: &Client, room_id: &str, event_id: &str) -> crate::client::Reply {
    client
        .get(&room_path(room_id, &format!("event/{}", encode(event_id))))
        .await
}

/// A room whose setting moves from `shared` to `visibility` before Bob is
/// invited; Bob joins later. The rule is judged at each event: what was
/// sent while the room was `shared` stays readable to him, what was sent
/// under `visibility` only as that setting allows.
async fn visibility_is_judged_at_each_event(
    anonymous: &Client,
    names: &str,
    visibility: &str,
    expected_for_bob: &[&str],
) {
    let alice = anonymous.register(&format!("{names}alice"), PASSWORD).await;
    let bob = anonymous.register(&format!("{names}bob"), PASSWORD).await;
    let bob_id = user_id(&bob).await;
    let room_id = alice
        .create_room(&json!({"preset": "private_chat", "name": "visibility"}))
        .await;
    set_history_visibility(&alice, &room_id, "shared").await;
    alice.send_text(&room_id, "while-shared").await;
    set_history_visibility(&alice, &room_id, visibility).await;
    let hidden = alice.send_text(&room_id, "before-the-invite").await;
    alice.invite(&room_id, &bob_id).await.ok();
    alice.send_text(&room_id, "while-invited").await;
    bob.join(&room_id).await.ok();
    let after_join = alice.send_text(&room_id, "after-the-join").await;

    let expected: Vec<String> = expected_for_bob.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        bodies_by_messages(&bob, &room_id).await,
        expected,
        "/messages under {visibility}"
    );
    assert_eq!(
        bodies_by_first_sync(&bob, &room_id).await,
        expected,
        "first /sync under {visibility}"
    );
    assert_eq!(
        bodies_in_context(&context(&bob, &room_id, &after_join).await),
        expected,
        "/context under {visibility}"
    );
    let direct = get_event(&bob, &room_id, &hidden).await;
    if expected.iter().any(|body| body == "before-the-invite") {
        direct.ok();
    } else {
        direct.assert_error(404, "M_NOT_FOUND");
    }
    // Paging back from the first sync's prev_batch finds nothing more.
    let sync = bob.sync(None, 0).await;
    let timeline = &sync["rooms"]["join"][&room_id]["timeline"];
    if let Some(prev_batch) = timeline["prev_batch"].as_str() {
        let older = bob.messages(&room_id, "b", Some(prev_batch), 100).await;
        let older = message_bodies(&older["chunk"]);
        assert!(
            older.iter().all(|body| expected.contains(body)),
            "paging back from prev_batch under {visibility} found {older:?}"
        );
    }
    // Alice, joined throughout, sees everything.
    assert_eq!(
        bodies_by_messages(&alice, &room_id).await,
        [
            "while-shared",
            "before-the-invite",
            "while-invited",
            "after-the-join"
        ]
    );
}

async fn history_visibility_cases(anonymous: &Client) {
    visibility_is_judged_at_each_event(
        anonymous,
        "j",
        "joined",
        &["while-shared", "after-the-join"],
    )
    .await;
    visibility_is_judged_at_each_event(
        anonymous,
        "i",
        "invited",
        &["while-shared", "while-invited", "after-the-join"],
    )
    .await;
    visibility_is_judged_at_each_event(
        anonymous,
        "s",
        "shared",
        &[
            "while-shared",
            "before-the-invite",
            "while-invited",
            "after-the-join",
        ],
    )
    .await;
}

/// A stranger reads a `world_readable` room without joining it, and nothing
/// of a room that is not.
async fn strangers_read_only_world_readable_rooms(anonymous: &Client) {
    let alice = anonymous.register("wralice", PASSWORD).await;
    let stranger = anonymous.register("wrstranger", PASSWORD).await;
    let open = alice.create_room(&json!({"preset": "public_chat"})).await;
    set_history_visibility(&alice, &open, "world_readable").await;
    let readable = alice.send_text(&open, "for-anyone").await;
    assert_eq!(bodies_by_messages(&stranger, &open).await, ["for-anyone"]);
    get_event(&stranger, &open, &readable).await.ok();

    let closed = alice.create_room(&json!({"preset": "public_chat"})).await;
    set_history_visibility(&alice, &closed, "shared").await;
    let secret = alice.send_text(&closed, "members-only").await;
    get_event(&stranger, &closed, &secret)
        .await
        .assert_error(404, "M_NOT_FOUND");
    let listing = stranger
        .get(&room_path(&closed, "messages?dir=b&limit=10"))
        .await;
    assert_eq!(
        listing.status, 403,
        "/messages of a closed room: {}",
        listing.text
    );
    let around = stranger
        .get(&room_path(&closed, &format!("context/{}", encode(&secret))))
        .await;
    assert!(
        around.status == 403 || around.status == 404,
        "/context of a closed room: {} {}",
        around.status,
        around.text
    );
    assert!(
        !around.text.contains("members-only"),
        "/context leaked: {}",
        around.text
    );
    // Once the room becomes world-readable, the stranger still does not see
    // what was sent before, when it was not.
    set_history_visibility(&alice, &closed, "world_readable").await;
    alice.send_text(&closed, "now-public").await;
    assert_eq!(bodies_by_messages(&stranger, &closed).await, ["now-public"]);
    get_event(&stranger, &closed, &secret)
        .await
        .assert_error(404, "M_NOT_FOUND");
}

/// A member who left sees events and state up to the leave and nothing
/// after it.
async fn former_members_see_the_room_as_they_left_it(anonymous: &Client) {
    let alice = anonymous.register("fmalice", PASSWORD).await;
    let bob = anonymous.register("fmbob", PASSWORD).await;
    let carol = anonymous.register("fmcarol", PASSWORD).await;
    let carol_id = user_id(&carol).await;
    let room_id = alice
        .create_room(&json!({"preset": "public_chat", "name": "name-at-leave"}))
        .await;
    bob.join(&room_id).await.ok();
    let while_member = alice.send_text(&room_id, "while-member").await;
    bob.leave(&room_id).await.ok();
    set_state(
        &alice,
        &room_id,
        "m.room.name",
        json!({"name": "name-later"}),
    )
    .await;
    set_state(
        &alice,
        &room_id,
        "m.room.topic",
        json!({"topic": "topic-later"}),
    )
    .await;
    carol.join(&room_id).await.ok();
    let after_leave = alice.send_text(&room_id, "after-leave").await;

    assert_eq!(bodies_by_messages(&bob, &room_id).await, ["while-member"]);
    get_event(&bob, &room_id, &after_leave)
        .await
        .assert_error(404, "M_NOT_FOUND");
    get_event(&bob, &room_id, &while_member).await.ok();

    let around = context(&bob, &room_id, &while_member).await;
    assert_eq!(bodies_in_context(&around), ["while-member"]);
    let later = around.to_string();
    for leak in [
        "name-later",
        "topic-later",
        carol_id.as_str(),
        "after-leave",
    ] {
        assert!(!later.contains(leak), "/context shows {leak}: {later}");
    }

    let state = bob.get(&room_path(&room_id, "state")).await.ok();
    let state_text = state.to_string();
    assert!(
        state_text.contains("name-at-leave"),
        "state at leave: {state}"
    );
    for leak in ["name-later", "topic-later", carol_id.as_str()] {
        assert!(!state_text.contains(leak), "/state shows {leak}: {state}");
    }
    let name = bob
        .get(&room_path(&room_id, "state/m.room.name/"))
        .await
        .ok();
    assert_eq!(name["name"], "name-at-leave");
    bob.get(&room_path(&room_id, "state/m.room.topic/"))
        .await
        .assert_error(404, "M_NOT_FOUND");

    bob.get(&room_path(&room_id, "joined_members"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let members = alice.get(&room_path(&room_id, "joined_members")).await.ok();
    let joined = members["joined"]
        .as_object()
        .unwrap_or_else(|| panic!("joined_members without joined: {members}"));
    assert!(joined.contains_key(&carol_id), "{members}");
    assert_eq!(joined.len(), 2, "Alice and Carol: {members}");
    for (member, profile) in joined {
        let profile = profile.as_object().expect("a profile object");
        for (field, value) in profile {
            assert!(!value.is_null(), "{member}'s {field} is null: {members}");
        }
        assert!(
            !profile.contains_key("avatar_url"),
            "{member} has no avatar: {members}"
        );
    }

    // A paging token of any form, however far it points, stops at the leave.
    for from in [
        "t9223372036854775807_9223372036854775807",
        "s9223372036854775807",
    ] {
        let page = bob
            .get(&room_path(
                &room_id,
                &format!("messages?dir=b&limit=50&from={from}"),
            ))
            .await
            .ok();
        assert_eq!(message_bodies(&page["chunk"]), ["while-member"], "{from}");
    }
    let forward = bob
        .get(&room_path(
            &room_id,
            "messages?dir=f&limit=50&from=t-9223372036854775808_-9223372036854775808",
        ))
        .await
        .ok();
    assert_eq!(message_bodies(&forward["chunk"]), ["while-member"]);

    // A stranger gets nothing of it either.
    let stranger = anonymous.register("fmstranger", PASSWORD).await;
    get_event(&stranger, &room_id, &while_member)
        .await
        .assert_error(404, "M_NOT_FOUND");
}

/// Paging tokens this server does not hand out are refused with a Matrix
/// error on each path that takes one.
async fn foreign_paging_tokens_are_refused(anonymous: &Client) {
    let alice = anonymous.register("tokalice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "private_chat"})).await;
    for token in [
        "t",
        "t5",
        "t_5",
        "tx_1",
        "t1_y",
        "t99999999999999999999_1",
        "u5",
        "5",
    ] {
        for query in [
            format!("messages?dir=b&from={token}"),
            format!("messages?dir=b&to={token}"),
            format!("members?at={token}"),
        ] {
            alice
                .get(&room_path(&room_id, &query))
                .await
                .assert_error(400, "M_INVALID_PARAM");
        }
    }
}

/// A filter asking for more timeline events than any response carries is
/// capped at the server's limit.
async fn sync_timeline_limits_are_capped(anonymous: &Client) {
    let alice = anonymous.register("capalice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "private_chat"})).await;
    for n in 0..110 {
        alice.send_text(&room_id, &format!("m{n}")).await;
    }
    let filter = encode(r#"{"room":{"timeline":{"limit":9007199254740991}}}"#);
    let sync = alice
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .await
        .ok();
    let timeline = &sync["rooms"]["join"][&room_id]["timeline"];
    let events = timeline["events"].as_array().expect("a timeline");
    assert_eq!(events.len(), 100, "capped at 100 events");
    assert_eq!(timeline["limited"], true);
    assert_eq!(message_bodies(&timeline["events"]).last().unwrap(), "m109");
}

#[tokio::test]
async fn history_visibility_is_enforced_at_each_event() {
    let server = Server::builder().open_registration().start().await;
    history_visibility_cases(&server.client()).await;
}

#[tokio::test]
async fn world_readable_rooms_are_readable_by_strangers_and_no_others() {
    let server = Server::builder().open_registration().start().await;
    strangers_read_only_world_readable_rooms(&server.client()).await;
}

#[tokio::test]
async fn former_members_see_events_and_state_up_to_their_leave() {
    let server = Server::builder().open_registration().start().await;
    former_members_see_the_room_as_they_left_it(&server.client()).await;
}

#[tokio::test]
async fn paging_tokens_of_other_making_are_refused() {
    let server = Server::builder().open_registration().start().await;
    foreign_paging_tokens_are_refused(&server.client()).await;
}

#[tokio::test]
async fn sync_filters_cannot_ask_for_a_whole_room_at_once() {
    let server = Server::builder().open_registration().start().await;
    sync_timeline_limits_are_capped(&server.client()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_history_visibility_and_former_members() {
    let Some(settings) = split::settings() else {
        return;
    };
    let split = Split::up_with(
        &settings,
        &[
            ("CLIENT_APIS", "2"),
            ("SYNCHROTRONS", "1"),
            ("PERSISTERS", "1"),
            ("GATEWAYS", "1"),
        ],
    )
    .await;
    let anonymous = split.client();
    history_visibility_cases(&anonymous).await;
    strangers_read_only_world_readable_rooms(&anonymous).await;
    former_members_see_the_room_as_they_left_it(&anonymous).await;
    foreign_paging_tokens_are_refused(&anonymous).await;
    sync_timeline_limits_are_capped(&anonymous).await;
}
