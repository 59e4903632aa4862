//! Notification counts: computed for every member when an event is
//! persisted, shown in `/sync`, lowered by read receipts, per thread when
//! asked; and `GET /notifications`.

use serde_json::{Value, json};

use crate::client::{Client, encode};
use crate::harness::Server;

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

/// `(notification_count, highlight_count)` of a room in a sync response.
fn counts(sync: &Value, room_id: &str) -> (u64, u64) {
    let unread = &sync["rooms"]["join"][room_id]["unread_notifications"];
    (
        unread["notification_count"].as_u64().unwrap_or(0),
        unread["highlight_count"].as_u64().unwrap_or(0),
    )
}

async fn first_sync_counts(client: &Client, room_id: &str) -> (u64, u64) {
    counts(&client.sync(None, 0).await, room_id)
}

async fn send(client: &Client, room_id: &str, content: Value) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    client
        .send_reply(room_id, "m.room.message", &format!("n{n}"), &content)
        .await
        .ok()["event_id"]
        .as_str()
        .expect("an event ID")
        .to_owned()
}

#[tokio::test]
async fn counts_rise_with_messages_and_fall_with_receipts() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    for n in 0..3 {
        bob.send_text(&room_id, &format!("plain {n}")).await;
    }
    let mention = send(
        &bob,
        &room_id,
        json!({"msgtype": "m.text", "body": "alice!", "m.mentions": {"user_ids": [alice.user_id]}}),
    )
    .await;
    send(
        &bob,
        &room_id,
        json!({"msgtype": "m.notice", "body": "a notice does not notify"}),
    )
    .await;
    // The incremental sync that carries the events carries their counts.
    let update = alice.sync(Some(&since), 10_000).await;
    assert_eq!(counts(&update, &room_id), (4, 1), "{update}");
    assert_eq!(first_sync_counts(&alice, &room_id).await, (4, 1));
    assert_eq!(
        first_sync_counts(&bob, &room_id).await,
        (0, 0),
        "their own messages do not count for the sender"
    );

    // GET /notifications, newest first, with the highlight and paging.
    let listed = alice.get("/_matrix/client/v3/notifications").await.ok();
    let notifications = listed["notifications"].as_array().expect("a list");
    assert_eq!(notifications.len(), 4, "{listed}");
    assert_eq!(notifications[0]["event"]["event_id"], mention.as_str());
    assert_eq!(notifications[0]["read"], false);
    assert_eq!(notifications[0]["room_id"], room_id.as_str());
    assert!(
        notifications[0]["actions"]
            .to_string()
            .contains("highlight")
    );
    let highlights = alice
        .get("/_matrix/client/v3/notifications?only=highlight")
        .await
        .ok();
    assert_eq!(highlights["notifications"].as_array().unwrap().len(), 1);
    let page = alice
        .get("/_matrix/client/v3/notifications?limit=3")
        .await
        .ok();
    assert_eq!(page["notifications"].as_array().unwrap().len(), 3);
    let next = page["next_token"].as_str().expect("a next token");
    let rest = alice
        .get(&format!(
            "/_matrix/client/v3/notifications?limit=3&from={}",
            encode(next)
        ))
        .await
        .ok();
    assert_eq!(rest["notifications"].as_array().unwrap().len(), 1);
    assert!(rest["next_token"].is_null(), "{rest}");

    // A receipt on the mention reads everything up to it.
    let after_events = update["next_batch"].as_str().unwrap().to_owned();
    alice
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", encode(&mention))),
            &json!({}),
        )
        .await
        .ok();
    let read = alice.sync(Some(&after_events), 10_000).await;
    assert_eq!(counts(&read, &room_id), (0, 0), "{read}");
    assert_eq!(
        read["rooms"]["join"][&room_id]["unread_notifications"]["notification_count"], 0,
        "the count is sent, as zero"
    );
    let listed = alice.get("/_matrix/client/v3/notifications").await.ok();
    assert_eq!(listed["notifications"][0]["read"], true);

    // Muting everything with the master rule stops new counts.
    alice
        .put(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled",
            &json!({"enabled": true}),
        )
        .await
        .ok();
    // The writer drops its copy of the rules on the change's announcement.
    let mut muted = false;
    for _ in 0..20 {
        bob.send_text(&room_id, "muted?").await;
        let latest = first_sync_counts(&alice, &room_id).await;
        if latest == (0, 0) {
            muted = true;
            break;
        }
        let newest = alice
            .get("/_matrix/client/v3/notifications?limit=1")
            .await
            .ok();
        let id = newest["notifications"][0]["event"]["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        alice
            .post(
                &room_path(&room_id, &format!("receipt/m.read/{}", encode(&id))),
                &json!({}),
            )
            .await
            .ok();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(muted, "messages still count with the master rule on");
}

#[tokio::test]
async fn thread_counts_are_kept_apart_when_asked() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    let root = bob.send_text(&room_id, "root").await;
    let reply = send(
        &bob,
        &room_id,
        json!({
            "msgtype": "m.text", "body": "in the thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        }),
    )
    .await;
    let filter = encode(r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#);
    let threaded = alice
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .await
        .ok();
    let room = &threaded["rooms"]["join"][&room_id];
    assert_eq!(
        room["unread_notifications"]["notification_count"], 1,
        "{room}"
    );
    assert_eq!(
        room["unread_thread_notifications"][&root]["notification_count"], 1,
        "{room}"
    );
    assert_eq!(first_sync_counts(&alice, &room_id).await, (2, 0));
    // A receipt in the thread reads the thread only.
    alice
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", encode(&reply))),
            &json!({"thread_id": root}),
        )
        .await
        .ok();
    assert_eq!(first_sync_counts(&alice, &room_id).await, (1, 0));
}

#[tokio::test]
async fn notification_requests_with_bad_parameters_are_refused() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    alice
        .get("/_matrix/client/v3/notifications?only=everything")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .get("/_matrix/client/v3/notifications?from=not-a-token")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let bad_limit = alice.get("/_matrix/client/v3/notifications?limit=-1").await;
    assert_eq!(bad_limit.status, 400, "{}", bad_limit.text);
    server
        .client()
        .get("/_matrix/client/v3/notifications")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let empty = alice.get("/_matrix/client/v3/notifications").await.ok();
    assert_eq!(empty["notifications"], json!([]));
}
