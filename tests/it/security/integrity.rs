//! Writes refused whole: a room creation refused part-way leaves no room,
//! and the spec's limits on identifiers hold on every write path.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::client::{Client, Reply, encode};
use crate::harness::Server;

/// A server with alice and bob registered; alice has one room already.
async fn server_with_alice_and_bob() -> (Server, Client, Client) {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    alice
        .create_room(&json!({"preset": "private_chat", "name": "before"}))
        .await;
    (server, alice, bob)
}

/// The rooms a full `/sync` lists for the client, joined and invited.
async fn synced_rooms(client: &Client) -> BTreeSet<String> {
    let sync = client.sync(None, 0).await;
    ["join", "invite"]
        .iter()
        .filter_map(|section| sync["rooms"][section].as_object())
        .flat_map(|rooms| rooms.keys().cloned())
        .collect()
}

/// Refuses `body` at createRoom with `status` and `errcode` and checks that
/// nothing of a room is left: alice's `joined_rooms` and both users'
/// `/sync` are as before.
async fn assert_creation_refused_whole(
    alice: &Client,
    bob: &Client,
    body: &Value,
    status: u16,
    errcode: &str,
) {
    let joined_before = alice.joined_rooms().await;
    let alice_before = synced_rooms(alice).await;
    let bob_before = synced_rooms(bob).await;
    alice
        .post("/_matrix/client/v3/createRoom", body)
        .await
        .assert_error(status, errcode);
    assert_eq!(
        alice.joined_rooms().await,
        joined_before,
        "a refused createRoom joined alice to a room: {body}"
    );
    assert_eq!(synced_rooms(alice).await, alice_before, "{body}");
    assert_eq!(synced_rooms(bob).await, bob_before, "{body}");
}

#[tokio::test]
async fn create_room_refused_part_way_leaves_no_room() {
    let (server, alice, bob) = server_with_alice_and_bob().await;
    let bob_id = server.user_id("bob");
    // Each one is refused after the create event and alice's join were
    // composed, so a write per event would have left a room behind.
    let cases = [
        (
            json!({"initial_state": [{"type": "m.room.member", "state_key": bob_id,
                                      "content": {"membership": "join"}}]}),
            403,
            "M_FORBIDDEN",
        ),
        (
            json!({"power_level_content_override": {"users_default": 1.5}}),
            400,
            "M_BAD_JSON",
        ),
        (
            json!({"power_level_content_override": {"ban": "fifty"}}),
            403,
            "M_FORBIDDEN",
        ),
        (json!({"name": "n".repeat(70_000)}), 413, "M_TOO_LARGE"),
        (
            json!({"initial_state": [{"type": "m.room.create", "state_key": "", "content": {}}]}),
            403,
            "M_FORBIDDEN",
        ),
        (
            json!({"invite": [bob_id], "initial_state": [{"type": "m.room.topic",
                                                          "content": {"topic": "t".repeat(70_000)}}]}),
            413,
            "M_TOO_LARGE",
        ),
        (
            json!({"initial_state": [{"type": "m.room.topic", "state_key": 5, "content": {}}]}),
            400,
            "M_BAD_JSON",
        ),
    ];
    for (body, status, errcode) in &cases {
        assert_creation_refused_whole(&alice, &bob, body, *status, errcode).await;
    }

    // What createRoom accepts still works after the refusals.
    let room_id = alice
        .create_room(&json!({
            "preset": "trusted_private_chat", "invite": [bob_id], "is_direct": true,
            "name": "after", "topic": "t", "room_alias_name": "after",
            "power_level_content_override": {"events_default": 10},
        }))
        .await;
    let alias = alice
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            encode(&server.user_id("after").replacen('@', "#", 1))
        ))
        .await
        .ok();
    assert_eq!(alias["room_id"], room_id.as_str());
    assert!(synced_rooms(&bob).await.contains(&room_id));
    let levels = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
            encode(&room_id)
        ))
        .await
        .ok();
    assert_eq!(levels["events_default"], 10);
}

#[tokio::test]
async fn create_room_invites_follow_the_invite_endpoint() {
    let (server, alice, bob) = server_with_alice_and_bob().await;
    let room_id = alice.create_room(&json!({})).await;
    for invitee in [server.user_id("nobody"), "@carol:remote.example".to_owned()] {
        let direct = alice.invite(&room_id, &invitee).await;
        let status = direct.status;
        let errcode = direct.body["errcode"]
            .as_str()
            .unwrap_or_else(|| panic!("the invite endpoint refuses {invitee}: {}", direct.text))
            .to_owned();
        assert_creation_refused_whole(
            &alice,
            &bob,
            &json!({"invite": [server.user_id("bob"), invitee], "name": "never"}),
            status,
            &errcode,
        )
        .await;
    }
}

fn state_path(room_id: &str, event_type: &str, state_key: &str) -> String {
    format!(
        "/_matrix/client/v3/rooms/{}/state/{}/{}",
        encode(room_id),
        encode(event_type),
        encode(state_key)
    )
}

/// The types of the room's newest events, as `/messages` shows them.
async fn recent_types(client: &Client, room_id: &str) -> Vec<String> {
    let page = client.messages(room_id, "b", None, 50).await;
    page["chunk"]
        .as_array()
        .expect("a chunk")
        .iter()
        .filter_map(|event| event["type"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn identifiers_over_255_bytes_are_refused() {
    let (_server, alice, bob) = server_with_alice_and_bob().await;
    let room_id = alice.create_room(&json!({})).await;
    let long = "x".repeat(300);

    alice
        .send_reply(&room_id, &long, "txn-long-type", &json!({}))
        .await
        .assert_error(413, "M_TOO_LARGE");
    alice
        .put(&state_path(&room_id, &long, ""), &json!({}))
        .await
        .assert_error(413, "M_TOO_LARGE");
    alice
        .put(&state_path(&room_id, "m.custom", &long), &json!({}))
        .await
        .assert_error(413, "M_TOO_LARGE");
    alice
        .send_reply(&room_id, "m.room.message", &long, &json!({"body": "b"}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let types = recent_types(&alice, &room_id).await;
    assert!(!types.contains(&long), "{types:?}");
    assert!(
        !types
            .iter()
            .any(|t| t == "m.custom" || t == "m.room.message")
    );

    // 255 bytes is still allowed.
    let longest = "y".repeat(255);
    alice
        .put(&state_path(&room_id, &longest, &longest), &json!({}))
        .await
        .ok();

    assert_creation_refused_whole(
        &alice,
        &bob,
        &json!({"room_alias_name": "a".repeat(300)}),
        400,
        "M_INVALID_PARAM",
    )
    .await;
    assert_creation_refused_whole(
        &alice,
        &bob,
        &json!({"initial_state": [{"type": long, "state_key": "", "content": {}}]}),
        413,
        "M_TOO_LARGE",
    )
    .await;
    let long_alias = format!("#{}:{}", "a".repeat(300), "it.test");
    alice
        .put(
            &format!("/_matrix/client/v3/directory/room/{}", encode(&long_alias)),
            &json!({"room_id": room_id}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn nul_is_refused_in_identifiers_and_kept_in_content() {
    let (_server, alice, bob) = server_with_alice_and_bob().await;
    let room_id = alice.create_room(&json!({})).await;

    let refusals: Vec<Reply> = vec![
        alice
            .send_reply(&room_id, "m.bad\u{0}type", "txn-nul-type", &json!({}))
            .await,
        alice
            .send_reply(&room_id, "m.room.message", "txn\u{0}nul", &json!({}))
            .await,
        alice
            .put(&state_path(&room_id, "m.custom", "a\u{0}b"), &json!({}))
            .await,
        alice
            .put(
                &format!(
                    "/_matrix/client/v3/directory/room/{}",
                    encode("#a\u{0}b:it.test")
                ),
                &json!({"room_id": room_id}),
            )
            .await,
        alice
            .put(
                &format!(
                    "/_matrix/client/v3/profile/{}/displayname",
                    encode(&alice.user_id)
                ),
                &json!({"displayname": "a\u{0}b"}),
            )
            .await,
    ];
    for refusal in &refusals {
        refusal.assert_error(400, "M_INVALID_PARAM");
    }
    assert_creation_refused_whole(
        &alice,
        &bob,
        &json!({"room_alias_name": "a\u{0}b"}),
        400,
        "M_INVALID_PARAM",
    )
    .await;
    assert_creation_refused_whole(
        &alice,
        &bob,
        &json!({"initial_state": [{"type": "m.custom", "state_key": "a\u{0}b", "content": {}}]}),
        400,
        "M_INVALID_PARAM",
    )
    .await;

    // A NUL inside content is data: stored escaped, read back as sent.
    let body = "before\u{0}after";
    let event_id = alice.send_text(&room_id, body).await;
    let event = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(&room_id),
            encode(&event_id)
        ))
        .await
        .ok();
    assert_eq!(event["content"]["body"], body);
}
