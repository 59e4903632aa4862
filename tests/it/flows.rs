//! The end-to-end flow: two users, a room, an invite, a join, a message
//! that reaches a waiting long-poll, history in both directions, members,
//! leaving. The same flow runs on PostgreSQL (`postgres.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{Client, encode, event_id_of, message_bodies, message_id_and_body};
use crate::harness::Server;

pub const ALICE_PASSWORD: &str = "alice-correct-horse";
pub const BOB_PASSWORD: &str = "bob-battery-staple";

/// What the flow leaves behind, for checks after a restart.
pub struct FlowOutcome {
    pub alice: Client,
    pub bob: Client,
    pub room_id: String,
    /// The messages alice sent, oldest first: (event ID, body).
    pub messages: Vec<(String, String)>,
    /// Alice's `next_batch` once everything was sent.
    pub alice_next_batch: String,
}

/// The timeline events of `room_id` in a sync response.
pub fn timeline<'a>(sync: &'a Value, room_id: &str) -> &'a Value {
    &sync["rooms"]["join"][room_id]["timeline"]["events"]
}

pub fn next_batch(sync: &Value) -> String {
    sync["next_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("sync without next_batch: {sync}"))
        .to_owned()
}

/// `state_key -> membership` of the `m.room.member` events in a list.
pub fn memberships(events: &Value) -> BTreeMap<String, String> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("not a list of events: {events}"))
        .iter()
        .filter(|event| event["type"] == "m.room.member")
        .map(|event| {
            (
                event["state_key"].as_str().unwrap_or_default().to_owned(),
                event["content"]["membership"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn event_ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|event| event["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the whole flow against a server with open registration.
pub async fn end_to_end(server: &Server) -> FlowOutcome {
    let anonymous = server.client();
    let alice = anonymous.register("alice", ALICE_PASSWORD).await;
    let bob = anonymous.register("bob", BOB_PASSWORD).await;
    assert_eq!(alice.user_id, server.user_id("alice"));
    assert_eq!(bob.user_id, server.user_id("bob"));

    // Logging in makes a second device for the same user.
    let alice_again = anonymous.login("alice", ALICE_PASSWORD).await;
    assert_eq!(alice_again.user_id, alice.user_id);
    assert_ne!(alice_again.device_id, alice.device_id);
    let whoami = alice_again.whoami().await.ok();
    assert_eq!(whoami["user_id"], json!(alice.user_id));
    assert_eq!(whoami["device_id"], json!(alice_again.device_id));

    let room_id = alice
        .create_room(&json!({"preset": "private_chat", "name": "Flow room"}))
        .await;
    assert!(alice.joined_rooms().await.contains(&room_id));
    assert!(!bob.joined_rooms().await.contains(&room_id));

    alice.invite(&room_id, &bob.user_id).await.ok();
    let bob_initial = bob.sync(None, 0).await;
    let invite = &bob_initial["rooms"]["invite"][&room_id];
    assert!(
        invite.is_object(),
        "bob's initial sync does not show the invite: {bob_initial}"
    );
    let invite_state = &invite["invite_state"]["events"];
    assert!(
        invite_state.as_array().is_some_and(|events| events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Flow room")),
        "the invite's stripped state lacks the room name: {invite}"
    );

    let joined = bob.join(&room_id).await.ok();
    assert_eq!(joined["room_id"], json!(room_id));
    assert!(bob.joined_rooms().await.contains(&room_id));
    let bob_after_join = bob.sync(Some(&next_batch(&bob_initial)), 0).await;
    assert!(
        bob_after_join["rooms"]["join"][&room_id].is_object(),
        "bob's incremental sync after joining does not list the room as joined: {bob_after_join}"
    );

    // Bob waits for news before alice sends anything.
    let since = next_batch(&bob_after_join);
    let poller = bob.clone();
    let waiting = tokio::spawn(async move { poller.sync(Some(&since), 10_000).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "an incremental /sync with nothing new answered instead of waiting: {:?}",
        waiting.await
    );
    let hello = alice.send_text(&room_id, "hello bob").await;
    let woken = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("bob's long-poll /sync never answered")
        .expect("bob's long-poll task");
    let events = timeline(&woken, &room_id);
    let delivered = events
        .as_array()
        .and_then(|events| events.iter().find(|e| e["event_id"] == json!(hello)))
        .unwrap_or_else(|| panic!("bob's long-poll /sync lacks alice's message {hello}: {woken}"));
    assert_eq!(delivered["sender"], json!(alice.user_id));
    assert_eq!(delivered["type"], "m.room.message");
    assert_eq!(delivered["content"]["body"], "hello bob");

    let mut messages = vec![(hello, "hello bob".to_owned())];
    for body in ["one", "two", "three"] {
        messages.push((alice.send_text(&room_id, body).await, body.to_owned()));
    }
    let oldest_first: Vec<String> = messages.iter().map(|(_, body)| body.clone()).collect();
    let newest_first: Vec<String> = oldest_first.iter().rev().cloned().collect();

    // Backwards from the end: newest first.
    let back = bob.messages(&room_id, "b", None, 50).await;
    assert_eq!(message_bodies(&back["chunk"]), newest_first, "{back}");
    // Forwards from the start: the create event, then the messages in order.
    let forward = bob.messages(&room_id, "f", None, 50).await;
    assert_eq!(
        forward["chunk"][0]["type"], "m.room.create",
        "forward history does not start at the create event: {forward}"
    );
    assert_eq!(message_bodies(&forward["chunk"]), oldest_first, "{forward}");
    let forward_ids = event_ids(&forward["chunk"]);
    let mut deduplicated = forward_ids.clone();
    deduplicated.sort();
    deduplicated.dedup();
    assert_eq!(
        deduplicated.len(),
        forward_ids.len(),
        "duplicate events in history"
    );

    // Paging backwards two events at a time: no gaps, no repeats.
    let page_one = bob.messages(&room_id, "b", None, 2).await;
    assert_eq!(message_bodies(&page_one["chunk"]), ["three", "two"]);
    let end = page_one["end"]
        .as_str()
        .unwrap_or_else(|| panic!("a full page without `end`: {page_one}"));
    let page_two = bob.messages(&room_id, "b", Some(end), 2).await;
    assert_eq!(
        message_bodies(&page_two["chunk"]),
        ["one", "hello bob"],
        "{page_two}"
    );

    let fetched = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(&room_id),
            encode(&messages[1].0)
        ))
        .await
        .ok();
    assert_eq!(fetched["content"]["body"], "one");

    let members_path = format!("/_matrix/client/v3/rooms/{}/members", encode(&room_id));
    let members = alice.get(&members_path).await.ok();
    let both_joined = BTreeMap::from([
        (alice.user_id.clone(), "join".to_owned()),
        (bob.user_id.clone(), "join".to_owned()),
    ]);
    assert_eq!(memberships(&members["chunk"]), both_joined, "{members}");
    let joined_members = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            encode(&room_id)
        ))
        .await
        .ok();
    let mut joined_ids: Vec<&String> = joined_members["joined"]
        .as_object()
        .unwrap_or_else(|| panic!("joined_members without `joined`: {joined_members}"))
        .keys()
        .collect();
    joined_ids.sort();
    assert_eq!(joined_ids, [&alice.user_id, &bob.user_id]);

    bob.leave(&room_id).await.ok();
    assert!(
        !bob.joined_rooms().await.contains(&room_id),
        "bob still lists the room after leaving"
    );
    assert!(alice.joined_rooms().await.contains(&room_id));
    let members = alice.get(&members_path).await.ok();
    assert_eq!(
        memberships(&members["chunk"])
            .get(&bob.user_id)
            .map(String::as_str),
        Some("leave"),
        "{members}"
    );

    let alice_next_batch = next_batch(&alice.sync(None, 0).await);
    FlowOutcome {
        alice,
        bob,
        room_id,
        messages,
        alice_next_batch,
    }
}

/// After a restart: the old tokens work, the room and its history are
/// there, and the event stream carries on from where it was.
pub async fn check_after_restart(server: &Server, outcome: &FlowOutcome) {
    let alice = outcome.alice.at(&server.url());
    let whoami = alice.whoami().await.ok();
    assert_eq!(whoami["user_id"], json!(alice.user_id));
    assert_eq!(whoami["device_id"], json!(alice.device_id));
    let bob = outcome.bob.at(&server.url());
    assert_eq!(bob.whoami().await.ok()["user_id"], json!(bob.user_id));

    assert!(alice.joined_rooms().await.contains(&outcome.room_id));
    assert!(!bob.joined_rooms().await.contains(&outcome.room_id));

    let back = alice.messages(&outcome.room_id, "b", None, 50).await;
    let chunk = back["chunk"].as_array().expect("chunk");
    let sent: Vec<(String, String)> = chunk
        .iter()
        .rev()
        .filter(|event| event["type"] == "m.room.message")
        .map(message_id_and_body)
        .collect();
    assert_eq!(sent, outcome.messages, "history after restart: {back}");
    let members = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/members",
            encode(&outcome.room_id)
        ))
        .await
        .ok();
    assert_eq!(
        memberships(&members["chunk"])
            .get(&bob.user_id)
            .map(String::as_str),
        Some("leave")
    );

    // Passwords survived too.
    server.client().login("bob", BOB_PASSWORD).await;

    // A token from before the restart still means "after everything so far".
    let fresh = alice.send_text(&outcome.room_id, "after restart").await;
    let synced = alice.sync(Some(&outcome.alice_next_batch), 10_000).await;
    let ids = event_ids(timeline(&synced, &outcome.room_id));
    assert!(
        ids.contains(&fresh),
        "an incremental sync from a pre-restart token misses the new message: {synced}"
    );
    for (old, body) in &outcome.messages {
        assert!(
            !ids.contains(old),
            "an incremental sync from a pre-restart token repeats {body:?}: {synced}"
        );
    }
    let sent_again = alice
        .send_reply(
            &outcome.room_id,
            "m.room.message",
            "after-restart-check",
            &json!({"msgtype": "m.text", "body": "still writable"}),
        )
        .await
        .ok();
    assert!(!event_id_of(&sent_again).is_empty());
}

#[tokio::test]
async fn end_to_end_flow() {
    let server = Server::builder().open_registration().start().await;
    end_to_end(&server).await;
}

/// Incremental syncs read timelines from the synchrotron's cache, and a
/// redaction reaches events already cached: a later sync shows them pruned.
#[tokio::test]
async fn cached_timelines_follow_redactions() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", ALICE_PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "private_chat"})).await;
    let start = next_batch(&alice.sync(None, 0).await);
    let first = alice.send_text(&room_id, "kept").await;
    let second = alice.send_text(&room_id, "to be redacted").await;

    let before = next_batch(&alice.sync(Some(&start), 0).await);
    let url = server.url();
    let cache_reads =
        || crate::harness::metric_sum(&url, "myelin_sync_timeline_reads_total", "source=\"cache\"");
    let cached_before = cache_reads().await;
    let redaction = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/redact-1",
                encode(&room_id),
                encode(&second)
            ),
            &json!({"reason": "test"}),
        )
        .await
        .ok();
    let redaction_id = event_id_of(&redaction);

    let news = alice.sync(Some(&before), 0).await;
    assert_eq!(event_ids(timeline(&news, &room_id)), vec![redaction_id]);
    let again = alice.sync(Some(&start), 0).await;
    let events = timeline(&again, &room_id);
    assert_eq!(
        event_ids(events)[..2],
        [first.clone(), second.clone()],
        "{again}"
    );
    assert_eq!(events[0]["content"]["body"], "kept");
    assert_eq!(
        events[1]["content"],
        json!({}),
        "the redacted message still shows its content: {again}"
    );
    assert!(
        cache_reads().await > cached_before,
        "incremental syncs did not read the timeline cache"
    );
}

/// A redacted event carries its redaction as `unsigned.redacted_because`
/// wherever it is served: `/event`, `/messages`, `/context`, and `/sync`
/// both from the store (initial) and from the synchrotron's cache.
#[tokio::test]
async fn redacted_events_carry_their_redaction_everywhere() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", ALICE_PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "private_chat"})).await;
    let start = next_batch(&alice.sync(None, 0).await);
    let kept = alice.send_text(&room_id, "kept").await;
    let target = alice.send_text(&room_id, "to be redacted").await;
    // Served once before the redaction, so the synchrotron caches it intact.
    let cached = alice.sync(Some(&start), 0).await;
    assert_eq!(
        event_ids(timeline(&cached, &room_id)),
        vec![kept.clone(), target.clone()]
    );
    let redaction = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/redact-because-1",
                encode(&room_id),
                encode(&target)
            ),
            &json!({"reason": "off topic"}),
        )
        .await
        .ok();
    let redaction_id = event_id_of(&redaction);
    let alice_id = server.user_id("alice");
    let check = |where_: &str, event: &Value| {
        assert_eq!(event["event_id"], target.as_str(), "{where_}: {event}");
        assert_eq!(event["content"], json!({}), "{where_}: not pruned: {event}");
        let because = &event["unsigned"]["redacted_because"];
        assert_eq!(
            because["event_id"],
            redaction_id.as_str(),
            "{where_}: {event}"
        );
        assert_eq!(because["type"], "m.room.redaction", "{where_}: {event}");
        assert_eq!(because["room_id"], room_id.as_str(), "{where_}: {event}");
        assert_eq!(because["sender"], alice_id.as_str(), "{where_}: {event}");
        assert_eq!(because["redacts"], target.as_str(), "{where_}: {event}");
        assert_eq!(
            because["content"]["reason"], "off topic",
            "{where_}: {event}"
        );
        assert!(because["origin_server_ts"].is_i64(), "{where_}: {event}");
        assert!(because.get("signatures").is_none(), "{where_}: {event}");
    };

    let event = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(&room_id),
            encode(&target)
        ))
        .await
        .ok();
    check("/event", &event);

    let messages = alice.messages(&room_id, "b", None, 20).await;
    check("/messages", &find_id(&messages["chunk"], &target));

    let context = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=4",
            encode(&room_id),
            encode(&target)
        ))
        .await
        .ok();
    check("/context", &context["event"]);
    let kept_event = find_id(&context["events_before"], &kept);
    assert!(
        kept_event["unsigned"].get("redacted_because").is_none(),
        "an intact event carries a redaction: {context}"
    );

    let initial = alice.sync(None, 0).await;
    check(
        "initial /sync",
        &find_id(timeline(&initial, &room_id), &target),
    );
    let incremental = alice.sync(Some(&start), 0).await;
    check(
        "incremental /sync",
        &find_id(timeline(&incremental, &room_id), &target),
    );
}

fn find_id(events: &Value, event_id: &str) -> Value {
    events
        .as_array()
        .and_then(|events| events.iter().find(|event| event["event_id"] == event_id))
        .cloned()
        .unwrap_or_else(|| panic!("{event_id} missing from {events}"))
}

/// `default_identity_server` in homeserver.yaml is advertised in the client
/// `.well-known` as `m.identity_server`, next to `m.homeserver`.
#[tokio::test]
async fn well_known_advertises_the_default_identity_server() {
    let server = Server::builder()
        .edit_config(
            "listeners:\n",
            "public_baseurl: \"https://matrix.it.test/\"\n\
             default_identity_server: \"https://id.it.test\"\n\
             listeners:\n",
        )
        .start()
        .await;
    let well_known = server.client().get("/.well-known/matrix/client").await.ok();
    assert_eq!(
        well_known,
        json!({
            "m.homeserver": {"base_url": "https://matrix.it.test/"},
            "m.identity_server": {"base_url": "https://id.it.test"},
        })
    );
    assert!(
        !server.logs().contains("default_identity_server"),
        "the key was reported as unknown: {}",
        server.logs()
    );
}

/// `/members?at=` answers with the members at that point, not now.
#[tokio::test]
async fn members_at_a_token_are_the_members_then() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", ALICE_PASSWORD).await;
    let bob = server.client().register("bob", BOB_PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let before_bob = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();
    bob.join(&room_id).await.ok();
    let members = |body: Value| -> Vec<String> {
        let mut ids: Vec<String> = body["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter(|event| event["content"]["membership"] == "join")
            .map(|event| event["state_key"].as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let path = format!("/_matrix/client/v3/rooms/{}/members", encode(&room_id));
    let now = members(alice.get(&path).await.ok());
    assert_eq!(now, vec![alice.user_id.clone(), bob.user_id.clone()]);
    let then = members(alice.get(&format!("{path}?at={before_bob}")).await.ok());
    assert_eq!(
        then,
        vec![alice.user_id.clone()],
        "bob joined after the token"
    );
    alice
        .get(&format!("{path}?at=nonsense"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

/// Filters are stored per user and read back by ID; other users' filters
/// and unknown IDs are refused.
#[tokio::test]
async fn filters_round_trip_for_their_owner_only() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    let alice_id = server.user_id("alice");
    let filters = format!("/_matrix/client/v3/user/{}/filter", encode(&alice_id));
    let definition = json!({"room": {"timeline": {"limit": 7, "types": ["m.room.message"]}}});
    let created = alice.post(&filters, &definition).await.ok();
    let filter_id = created["filter_id"].as_str().expect("a filter_id");
    let stored = alice
        .get(&format!("{filters}/{}", encode(filter_id)))
        .await
        .ok();
    assert_eq!(stored["room"]["timeline"]["limit"], 7);
    assert_eq!(
        stored["room"]["timeline"]["types"],
        json!(["m.room.message"])
    );
    bob.get(&format!("{filters}/{}", encode(filter_id)))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.post(&filters, &definition)
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .get(&format!("{filters}/nope"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let not_json = alice
        .request_builder(reqwest::Method::POST, &filters)
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(not_json.status().as_u16(), 400);
}
