//! The streams beside room events, end to end: account data and tags,
//! receipts and read markers, typing. Each change reaches `/sync` once,
//! wakes long-polls, and (split) crosses replicas and survives a killed
//! synchrotron.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{Client, encode};
use crate::harness::Server;
use crate::split::{Split, settings};

const PASSWORD: &str = "pw-streams";

fn user_path(user_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/user/{}/{rest}", encode(user_id))
}

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("a sync without next_batch: {sync}"))
        .to_owned()
}

/// Events of one type in a section (`account_data.events`, ...).
fn of_type<'a>(events: &'a Value, event_type: &str) -> Vec<&'a Value> {
    events
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|event| event["type"] == event_type)
                .collect()
        })
        .unwrap_or_default()
}

fn ephemeral<'a>(sync: &'a Value, room_id: &str, event_type: &str) -> Vec<&'a Value> {
    of_type(
        &sync["rooms"]["join"][room_id]["ephemeral"]["events"],
        event_type,
    )
}

/// Long-polls from `since` until `found` picks something out of a response;
/// returns it and the token after it.
async fn sync_until<T>(
    client: &Client,
    since: &str,
    what: &str,
    found: impl Fn(&Value) -> Option<T>,
) -> (T, String) {
    let mut since = since.to_owned();
    for _ in 0..10 {
        let sync = client.sync(Some(&since), 10_000).await;
        since = next_batch(&sync);
        if let Some(value) = found(&sync) {
            return (value, since);
        }
    }
    panic!("{what} never reached /sync");
}

async fn alice_and_bob_in_a_room(anonymous: &Client, names: &str) -> (Client, Client, String) {
    let alice = anonymous.register(&format!("{names}alice"), PASSWORD).await;
    let bob = anonymous.register(&format!("{names}bob"), PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    (alice, bob, room_id)
}

async fn account_data_and_tags(anonymous: &Client) {
    let (alice, bob, room_id) = alice_and_bob_in_a_room(anonymous, "ad").await;
    let since = next_batch(&alice.sync(None, 0).await);
    let direct = user_path(&alice.user_id, "account_data/m.direct");
    alice
        .put(&direct, &json!({"@x:example.org": ["!r:example.org"]}))
        .await
        .ok();
    assert_eq!(
        alice.get(&direct).await.ok(),
        json!({"@x:example.org": ["!r:example.org"]})
    );
    let (content, since) = sync_until(&alice, &since, "m.direct", |sync| {
        of_type(&sync["account_data"]["events"], "m.direct")
            .first()
            .map(|event| event["content"].clone())
    })
    .await;
    assert_eq!(content, json!({"@x:example.org": ["!r:example.org"]}));
    // Delivered once: the next sync from the new token does not repeat it.
    let again = alice.sync(Some(&since), 0).await;
    assert!(
        of_type(&again["account_data"]["events"], "m.direct").is_empty(),
        "{again}"
    );

    let room_data = user_path(
        &alice.user_id,
        &format!("rooms/{}/account_data/org.example.note", encode(&room_id)),
    );
    alice.put(&room_data, &json!({"note": "hi"})).await.ok();
    let tag = user_path(
        &alice.user_id,
        &format!("rooms/{}/tags/m.favourite", encode(&room_id)),
    );
    alice.put(&tag, &json!({"order": 0.5})).await.ok();
    let tags = alice
        .get(&user_path(
            &alice.user_id,
            &format!("rooms/{}/tags", encode(&room_id)),
        ))
        .await
        .ok();
    assert_eq!(tags["tags"]["m.favourite"]["order"], 0.5);
    let (types, since) = sync_until(&alice, &since, "room account data", |sync| {
        let events = &sync["rooms"]["join"][&room_id]["account_data"]["events"];
        let tag = of_type(events, "m.tag");
        (!tag.is_empty() && !of_type(events, "org.example.note").is_empty())
            .then(|| tag[0]["content"].clone())
    })
    .await;
    assert_eq!(types["tags"]["m.favourite"]["order"], 0.5);
    alice
        .request(reqwest::Method::DELETE, &tag, None)
        .await
        .ok();
    let (emptied, _) = sync_until(&alice, &since, "the tag's removal", |sync| {
        of_type(
            &sync["rooms"]["join"][&room_id]["account_data"]["events"],
            "m.tag",
        )
        .first()
        .map(|event| event["content"]["tags"].clone())
    })
    .await;
    assert_eq!(emptied, json!({}));

    // An initial sync holds the current values.
    let fresh = alice.sync(None, 0).await;
    assert_eq!(
        of_type(&fresh["account_data"]["events"], "m.direct")[0]["content"],
        json!({"@x:example.org": ["!r:example.org"]})
    );

    // Refusals.
    bob.get(&direct).await.assert_error(403, "M_FORBIDDEN");
    bob.put(&direct, &json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .get(&user_path(&alice.user_id, "account_data/m.never_set"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .put(
            &user_path(&alice.user_id, "account_data/m.push_rules"),
            &json!({}),
        )
        .await
        .assert_error(405, "M_BAD_JSON");
    alice
        .put(
            &user_path(
                &alice.user_id,
                &format!("rooms/{}/account_data/m.fully_read", encode(&room_id)),
            ),
            &json!({"event_id": "$x"}),
        )
        .await
        .assert_error(405, "M_BAD_JSON");
    let not_object = alice.put(&direct, &json!([1, 2])).await;
    assert_eq!(not_object.status, 400, "{}", not_object.text);
    let stranger_room = bob.create_room(&json!({"preset": "private_chat"})).await;
    alice
        .put(
            &user_path(
                &alice.user_id,
                &format!("rooms/{}/account_data/x.y", encode(&stranger_room)),
            ),
            &json!({}),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
}

async fn receipts_and_markers(anonymous: &Client) {
    let (alice, bob, room_id) = alice_and_bob_in_a_room(anonymous, "rc").await;
    let event_id = alice.send_text(&room_id, "read me").await;
    let since = next_batch(&alice.sync(None, 0).await);
    bob.post(
        &room_path(&room_id, &format!("receipt/m.read/{}", encode(&event_id))),
        &json!({}),
    )
    .await
    .ok();
    let (receipt, since) = sync_until(&alice, &since, "bob's receipt", |sync| {
        ephemeral(sync, &room_id, "m.receipt")
            .first()
            .map(|event| event["content"].clone())
    })
    .await;
    assert!(
        receipt[&event_id]["m.read"][&bob.user_id]["ts"].is_i64(),
        "{receipt}"
    );
    let again = alice.sync(Some(&since), 0).await;
    assert!(
        ephemeral(&again, &room_id, "m.receipt").is_empty(),
        "a receipt is delivered once: {again}"
    );

    // A private receipt is seen by its owner only; a threaded one carries
    // its thread.
    let bob_since = next_batch(&bob.sync(None, 0).await);
    bob.post(
        &room_path(
            &room_id,
            &format!("receipt/m.read.private/{}", encode(&event_id)),
        ),
        &json!({}),
    )
    .await
    .ok();
    let (own, _) = sync_until(&bob, &bob_since, "bob's private receipt", |sync| {
        ephemeral(sync, &room_id, "m.receipt")
            .into_iter()
            .find(|event| !event["content"][&event_id]["m.read.private"].is_null())
            .cloned()
    })
    .await;
    assert!(own["content"][&event_id]["m.read.private"][&bob.user_id].is_object());
    let seen_by_alice = alice.sync(None, 0).await;
    assert!(
        !seen_by_alice.to_string().contains("m.read.private"),
        "alice sees bob's private receipt: {seen_by_alice}"
    );
    bob.post(
        &room_path(&room_id, &format!("receipt/m.read/{}", encode(&event_id))),
        &json!({"thread_id": "main"}),
    )
    .await
    .ok();
    let initial = alice.sync(None, 0).await;
    let receipts = ephemeral(&initial, &room_id, "m.receipt");
    assert!(
        receipts.iter().any(
            |event| event["content"][&event_id]["m.read"][&bob.user_id]["thread_id"] == "main"
        ),
        "{initial}"
    );

    // Read markers: the fully-read marker is room account data.
    bob.post(
        &room_path(&room_id, "read_markers"),
        &json!({"m.fully_read": event_id, "m.read": event_id}),
    )
    .await
    .ok();
    let marker = bob
        .get(&user_path(
            &bob.user_id,
            &format!("rooms/{}/account_data/m.fully_read", encode(&room_id)),
        ))
        .await
        .ok();
    assert_eq!(marker["event_id"], event_id.as_str());

    // Refusals.
    bob.post(
        &room_path(
            &room_id,
            &format!("receipt/m.unknown/{}", encode(&event_id)),
        ),
        &json!({}),
    )
    .await
    .assert_error(400, "M_INVALID_PARAM");
    bob.post(
        &room_path(&room_id, "receipt/m.read/$nope:example.org"),
        &json!({}),
    )
    .await
    .assert_error(404, "M_NOT_FOUND");
    let outsider = anonymous.register("rcoutsider", PASSWORD).await;
    outsider
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", encode(&event_id))),
            &json!({}),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    outsider
        .post(
            &room_path(&room_id, "read_markers"),
            &json!({"m.fully_read": event_id}),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    // An event of another room is not a target here.
    let elsewhere = bob.create_room(&json!({})).await;
    let other_event = bob.send_text(&elsewhere, "elsewhere").await;
    bob.post(
        &room_path(
            &room_id,
            &format!("receipt/m.read/{}", encode(&other_event)),
        ),
        &json!({}),
    )
    .await
    .assert_error(404, "M_NOT_FOUND");
}

/// Typing through `typist` (which may be another replica than the one the
/// watcher long-polls on) wakes the watcher's long-poll.
async fn typing_wakes_long_polls(watcher: &Client, typist: &Client, room_id: &str) {
    let since = next_batch(&watcher.sync(None, 0).await);
    let poll = {
        let (watcher, since) = (watcher.clone(), since.clone());
        tokio::spawn(async move { watcher.sync(Some(&since), 30_000).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let typing = room_path(room_id, &format!("typing/{}", encode(&typist.user_id)));
    typist
        .put(&typing, &json!({"typing": true, "timeout": 60_000}))
        .await
        .ok();
    let woken = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .expect("the long-poll was not woken by the typing notice")
        .expect("the poll task");
    let mut since = next_batch(&woken);
    let mut typers = ephemeral(&woken, room_id, "m.typing")
        .first()
        .map(|event| event["content"]["user_ids"].clone());
    if typers.is_none() {
        let (found, after) = sync_until(watcher, &since, "typing", |sync| {
            ephemeral(sync, room_id, "m.typing")
                .first()
                .map(|event| event["content"]["user_ids"].clone())
        })
        .await;
        typers = Some(found);
        since = after;
    }
    assert_eq!(typers, Some(json!([typist.user_id])));
    typist.put(&typing, &json!({"typing": false})).await.ok();
    let (stopped, _) = sync_until(watcher, &since, "typing's end", |sync| {
        ephemeral(sync, room_id, "m.typing")
            .first()
            .map(|event| event["content"]["user_ids"].clone())
    })
    .await;
    assert_eq!(stopped, json!([]));
}

async fn typing_cases(anonymous: &Client) {
    let (alice, bob, room_id) = alice_and_bob_in_a_room(anonymous, "ty").await;
    typing_wakes_long_polls(&alice, &bob, &room_id).await;

    // A notice ends by itself after its timeout.
    let since = next_batch(&alice.sync(None, 0).await);
    let typing = room_path(&room_id, &format!("typing/{}", encode(&bob.user_id)));
    bob.put(&typing, &json!({"typing": true, "timeout": 1_000}))
        .await
        .ok();
    let (started, since) = sync_until(&alice, &since, "a short notice", |sync| {
        ephemeral(sync, &room_id, "m.typing")
            .first()
            .map(|event| event["content"]["user_ids"].clone())
    })
    .await;
    assert_eq!(started, json!([bob.user_id]));
    let (ended, _) = sync_until(&alice, &since, "the notice's expiry", |sync| {
        ephemeral(sync, &room_id, "m.typing")
            .first()
            .map(|event| event["content"]["user_ids"].clone())
    })
    .await;
    assert_eq!(ended, json!([]));

    // Refusals.
    alice
        .put(&typing, &json!({"typing": true, "timeout": 1_000}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let outsider = anonymous.register("tyoutsider", PASSWORD).await;
    outsider
        .put(
            &room_path(&room_id, &format!("typing/{}", encode(&outsider.user_id))),
            &json!({"typing": true, "timeout": 1_000}),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    let missing = bob.put(&typing, &json!({"timeout": 1_000})).await;
    assert_eq!(missing.status, 400, "{}", missing.text);
}

#[tokio::test]
async fn account_data_and_tags_reach_sync_once() {
    let server = Server::builder().open_registration().start().await;
    account_data_and_tags(&server.client()).await;
}

#[tokio::test]
async fn receipts_and_read_markers_reach_sync_once() {
    let server = Server::builder().open_registration().start().await;
    receipts_and_markers(&server.client()).await;
}

#[tokio::test]
async fn typing_notices_wake_long_polls_and_run_out() {
    let server = Server::builder().open_registration().start().await;
    typing_cases(&server.client()).await;
}

/// Split: typing through one client-api replica wakes a long-poll on a
/// synchrotron, and a synchrotron started after the others were killed
/// still knows the receipts, account data and running typing notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_streams_cross_replicas_and_survive_a_killed_synchrotron() {
    let Some(settings) = settings() else { return };
    let mut split = Split::up_with(
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
    account_data_and_tags(&anonymous).await;
    receipts_and_markers(&anonymous).await;
    crate::keys::keys_cases(&anonymous, "sp").await;
    crate::keys::to_device_cases(&anonymous, "sp").await;
    crate::keys::device_list_cases(&anonymous, "sp").await;
    crate::keys::cross_signing_cases(&anonymous, "sp").await;
    crate::keys::key_backup_cases(&anonymous, "sp").await;

    let (alice, bob, room_id) = alice_and_bob_in_a_room(&anonymous, "sp").await;
    let replicas = split.processes("CLIENT_API");
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    let bob_on_second = bob.at(&replicas[1].1);
    typing_wakes_long_polls(&alice, &bob_on_second, &room_id).await;

    let event_id = alice.send_text(&room_id, "before the kill").await;
    bob.post(
        &room_path(&room_id, &format!("receipt/m.read/{}", encode(&event_id))),
        &json!({}),
    )
    .await
    .ok();
    alice
        .put(
            &user_path(&alice.user_id, "account_data/org.example.kept"),
            &json!({"kept": true}),
        )
        .await
        .ok();
    bob_on_second
        .put(
            &room_path(&room_id, &format!("typing/{}", encode(&bob.user_id))),
            &json!({"typing": true, "timeout": 120_000}),
        )
        .await
        .ok();
    bob_on_second
        .put(
            &format!(
                "/_matrix/client/v3/sendToDevice/m.test.ping/{}",
                encode("before-the-kill")
            ),
            &json!({"messages": {alice.user_id.clone(): {"*": {"body": "kept"}}}}),
        )
        .await
        .ok();
    for (name, _, pid) in split.processes("SYNCHROTRON") {
        split.kill9(&name, pid).await;
    }
    let added = split.add("synchrotron").await;
    let alice_on_new = alice.at(&added.url);
    let sync = alice_on_new.sync(None, 0).await;
    let receipts = ephemeral(&sync, &room_id, "m.receipt");
    assert!(
        receipts
            .iter()
            .any(|event| event["content"][&event_id]["m.read"][&bob.user_id].is_object()),
        "the receipt is lost: {sync}"
    );
    assert_eq!(
        of_type(&sync["account_data"]["events"], "org.example.kept")[0]["content"],
        json!({"kept": true})
    );
    assert_eq!(
        ephemeral(&sync, &room_id, "m.typing")[0]["content"]["user_ids"],
        json!([bob.user_id])
    );
    assert_eq!(
        sync["to_device"]["events"][0]["content"]["body"], "kept",
        "the to-device message is lost: {sync}"
    );
}
