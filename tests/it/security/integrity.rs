//! Writes refused whole: a room creation refused part-way leaves no room,
//! and the spec's limits on identifiers hold on every write path.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{Client, Reply, encode};
use crate::harness::Server;
use crate::split::{Split, register_users, send_path, settings, try_request};

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
    // A user of a server that cannot be reached: the invite endpoint fails
    // and leaves no invite behind; createRoom makes the room without one.
    let carol = "@carol:remote.example";
    let direct = alice.invite(&room_id, carol).await;
    assert!(direct.status >= 400, "{}", direct.text);
    let member = alice
        .get(&state_path(&room_id, "m.room.member", carol))
        .await;
    assert_eq!(member.status, 404, "{}", member.text);
    let made = alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"invite": [carol], "name": "made anyway"}),
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.text);
    let made_id = made.body["room_id"].as_str().expect("room_id");
    let member = alice
        .get(&state_path(made_id, "m.room.member", carol))
        .await;
    assert_eq!(member.status, 404, "{}", member.text);
    for invitee in [server.user_id("nobody")] {
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
/// Equal creations in the same millisecond would derive the same room ID
/// from equal create events; every one still gets a room of its own.
#[tokio::test]
async fn equal_room_creations_at_once_each_get_a_room() {
    let (_server, alice, _bob) = server_with_alice_and_bob().await;
    let creations = (0..40).map(|_| {
        let alice = alice.clone();
        async move {
            alice
                .post("/_matrix/client/v3/createRoom", &json!({}))
                .await
                .ok()["room_id"]
                .as_str()
                .expect("a room ID")
                .to_owned()
        }
    });
    let rooms: BTreeSet<String> = futures::future::join_all(creations)
        .await
        .into_iter()
        .collect();
    assert_eq!(rooms.len(), 40, "{rooms:?}");
}

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

    for (body, status, errcode) in [
        (
            json!({"room_alias_name": "a".repeat(300)}),
            400,
            "M_INVALID_PARAM",
        ),
        (
            json!({"initial_state": [{"type": long, "state_key": "", "content": {}}]}),
            413,
            "M_TOO_LARGE",
        ),
    ] {
        assert_creation_refused_whole(&alice, &bob, &body, status, errcode).await;
    }
    let long_alias = format!("#{}:{}", "a".repeat(300), "it.test");
    alice
        .put(
            &format!("/_matrix/client/v3/directory/room/{}", encode(&long_alias)),
            &json!({"room_id": room_id}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // User IDs: a 300-byte username is refused at registration, and a
    // 300-byte user ID is never invited.
    alice
        .register_reply(&"u".repeat(300), "pw-long")
        .await
        .assert_error(400, "M_INVALID_USERNAME");
    let long_user = format!("@{}:it.test", "u".repeat(300));
    let invited = alice.invite(&room_id, &long_user).await;
    assert_eq!(invited.status, 400, "{}", invited.text);
    let members = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/members",
            encode(&room_id)
        ))
        .await
        .ok();
    assert!(!members.to_string().contains(&long_user), "{members}");
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
    // ruma's user ID grammar refuses a NUL while it reads the body.
    for (body, errcode) in [
        (json!({"room_alias_name": "a\u{0}b"}), "M_INVALID_PARAM"),
        (
            json!({"initial_state": [{"type": "m.custom", "state_key": "a\u{0}b", "content": {}}]}),
            "M_INVALID_PARAM",
        ),
        (json!({"invite": ["@a\u{0}b:it.test"]}), "M_BAD_JSON"),
    ] {
        assert_creation_refused_whole(&alice, &bob, &body, 400, errcode).await;
    }

    // A NUL inside content is data: stored escaped, read back as sent.
    let body = "before\u{0}after";
    let event_id = alice.send_text(&room_id, body).await;
    assert_eq!(body_of(&alice, &room_id, &event_id).await, body);
}

#[tokio::test]
async fn a_nul_device_name_is_refused_before_the_account_exists() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let challenge = anonymous.register_start("dana", "pw-dana").await;
    let session = challenge.body["session"]
        .as_str()
        .unwrap_or_else(|| panic!("a UIA challenge: {}", challenge.text))
        .to_owned();
    anonymous
        .post(
            "/_matrix/client/v3/register",
            &json!({
                "username": "dana", "password": "pw-dana",
                "initial_device_display_name": "a\u{0}b",
                "auth": {"type": "m.login.dummy", "session": session},
            }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let available = anonymous
        .get("/_matrix/client/v3/register/available?username=dana")
        .await
        .ok();
    assert_eq!(
        available["available"], true,
        "the refused registration left an account"
    );

    anonymous.register("dana", "pw-dana").await;
    anonymous
        .post(
            "/_matrix/client/v3/login",
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "dana"},
                "password": "pw-dana",
                "device_id": "a\u{0}b",
            }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

/// `content.body` of an event, as `GET /rooms/{room}/event/{event}` shows it.
async fn body_of(client: &Client, room_id: &str, event_id: &str) -> Value {
    let event = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(room_id),
            encode(event_id)
        ))
        .await
        .ok();
    event["content"]["body"].clone()
}

/// Creates rooms as `creator` until `stop` is set, counting those answered;
/// a killed persister's requests time out and are not retried.
async fn create_rooms_until(creator: Client, stop: Arc<AtomicBool>, created: Arc<AtomicUsize>) {
    // A long initial state makes each creation one large batch, so a kill
    // has good odds of landing inside one.
    let initial_state: Vec<Value> = (0..40)
        .map(|n| json!({"type": "m.split.note", "state_key": format!("k{n}"), "content": {"n": n}}))
        .collect();
    let body = json!({"name": "batch", "topic": "t", "initial_state": initial_state});
    while !stop.load(Ordering::Relaxed) {
        let result = try_request(
            &creator,
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&body),
            Duration::from_secs(60),
        )
        .await;
        if result.is_ok() {
            created.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// SIGKILL of an event persister while rooms are being created: each room
/// the store holds has every initial event, whether its creation was
/// answered or cut off, and no event belongs to a room that is not there.
/// A NUL inside content is kept on PostgreSQL as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_persister_killed_mid_creation_leaves_whole_rooms_or_none() {
    let Some(settings) = settings() else { return };
    let split = Split::up_with(
        &settings,
        &[
            ("CLIENT_APIS", "1"),
            ("SYNCHROTRONS", "1"),
            ("PERSISTERS", "2"),
            ("GATEWAYS", "1"),
        ],
    )
    .await;
    let creators = register_users(&split, "creator", 3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = creators
        .iter()
        .map(|creator| {
            tokio::spawn(create_rooms_until(
                creator.clone(),
                Arc::clone(&stop),
                Arc::clone(&created),
            ))
        })
        .collect();
    wait_for_count(&created, 6, "rooms created before the kill").await;
    let (name, _, pid) = split.processes("EVENT_PERSISTER")[0].clone();
    split.kill9(&name, pid).await;
    let after_kill = created.load(Ordering::Relaxed);
    wait_for_count(&created, after_kill + 6, "rooms created after the kill").await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a creator task");
    }

    let database = split.database().await;
    let per_room: Vec<(String, i64)> = database
        .query(
            "SELECT r.room_id, count(e.event_id) FROM rooms r \
             LEFT JOIN events e ON e.room_id = r.room_id GROUP BY r.room_id",
            &[],
        )
        .await
        .expect("count events per room")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(per_room.len() >= 12, "{per_room:?}");
    // create, the creator's join, power levels, join rules, history
    // visibility, guest access, 40 notes, name and topic.
    let whole = 48;
    let partial: Vec<_> = per_room.iter().filter(|(_, n)| *n != whole).collect();
    assert!(partial.is_empty(), "rooms left half made: {partial:?}");
    let orphans: i64 = database
        .query_one(
            "SELECT count(*) FROM events WHERE room_id NOT IN (SELECT room_id FROM rooms)",
            &[],
        )
        .await
        .expect("count orphan events")
        .get(0);
    assert_eq!(orphans, 0, "events without their room");
    for creator in &creators {
        for room_id in creator.joined_rooms().await {
            assert!(per_room.iter().any(|(id, _)| *id == room_id), "{room_id}");
        }
    }

    let room_id = creators[0].joined_rooms().await[0].clone();
    let body = "before\u{0}after";
    let event_id = send_with_txn_retrying(&creators[0], &room_id, "nul-body", body).await;
    assert_eq!(body_of(&creators[0], &room_id, &event_id).await, body);
}

/// Waits until `count` reaches `at_least`; fails after a generous deadline.
async fn wait_for_count(count: &AtomicUsize, at_least: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while count.load(Ordering::Relaxed) < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} {what}, wanted {at_least}",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a text under one transaction ID until it is acknowledged: the
/// room's partition may still be on its way to a live persister.
async fn send_with_txn_retrying(
    client: &Client,
    room_id: &str,
    txn_id: &str,
    body: &str,
) -> String {
    let content = json!({"msgtype": "m.text", "body": body});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let result = try_request(
            client,
            reqwest::Method::PUT,
            &send_path(room_id, txn_id),
            Some(&content),
            Duration::from_secs(30),
        )
        .await;
        match result {
            Ok(sent) => return crate::client::event_id_of(&sent),
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "the send was never acknowledged: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
