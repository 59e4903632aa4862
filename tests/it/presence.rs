//! Presence: set by the user or by their syncs, seen by those who share a
//! room, refused to others, and off entirely with `presence.enabled: false`.

use serde_json::{Value, json};

use crate::client::{Client, encode};
use crate::harness::Server;

fn status_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", encode(user_id))
}

/// The content of `user_id`'s presence event in a sync response, if any.
fn presence_of(sync: &Value, user_id: &str) -> Option<Value> {
    sync["presence"]["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|event| event["type"] == "m.presence" && event["sender"] == user_id)
        .map(|event| event["content"].clone())
}

async fn sync_with(client: &Client, since: Option<&str>, set_presence: &str) -> Value {
    let mut path = format!("/_matrix/client/v3/sync?timeout=0&set_presence={set_presence}");
    if let Some(since) = since {
        path.push_str(&format!("&since={}", encode(since)));
    }
    client.get(&path).await.ok()
}

#[tokio::test]
async fn presence_reaches_those_who_share_a_room() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    let carol = server.client().register("carol", "pw-carol").await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    let since = sync_with(&alice, None, "offline").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    bob.put(
        &status_path(&bob.user_id),
        &json!({"presence": "online", "status_msg": "at lunch"}),
    )
    .await
    .ok();
    let mut seen = None;
    let mut since = since;
    for _ in 0..10 {
        let sync = alice.sync(Some(&since), 5_000).await;
        since = sync["next_batch"].as_str().unwrap().to_owned();
        if let Some(content) = presence_of(&sync, &bob.user_id) {
            seen = Some(content);
            break;
        }
    }
    let content = seen.expect("bob's presence never reached alice");
    assert_eq!(content["presence"], "online");
    assert_eq!(content["status_msg"], "at lunch");
    assert_eq!(content["currently_active"], true);

    let read = alice.get(&status_path(&bob.user_id)).await.ok();
    assert_eq!(read["presence"], "online");
    assert_eq!(read["status_msg"], "at lunch");
    assert!(read["last_active_ago"].as_u64().is_some(), "{read}");

    // A sync marks its user; `offline` leaves them alone.
    sync_with(&carol, None, "unavailable").await;
    assert_eq!(
        carol.get(&status_path(&carol.user_id)).await.ok()["presence"],
        "unavailable"
    );
    let dave = server.client().register("dave", "pw-dave").await;
    sync_with(&dave, None, "offline").await;
    assert_eq!(
        dave.get(&status_path(&dave.user_id)).await.ok()["presence"],
        "offline"
    );
    // Carol shares no room with alice: neither sees the other.
    let first = sync_with(&alice, None, "online").await;
    assert!(presence_of(&first, &carol.user_id).is_none(), "{first}");
    assert!(presence_of(&first, &bob.user_id).is_some(), "{first}");

    // Refusals.
    carol
        .get(&status_path(&bob.user_id))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .put(&status_path(&bob.user_id), &json!({"presence": "offline"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let bad = bob
        .put(&status_path(&bob.user_id), &json!({"presence": "asleep"}))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let missing = bob.put(&status_path(&bob.user_id), &json!({})).await;
    assert_eq!(missing.status, 400, "{}", missing.text);
    alice
        .get(&status_path(&server.user_id("nobody")))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn presence_can_be_switched_off() {
    let server = Server::builder()
        .open_registration()
        .env("MYELIN_PRESENCE__ENABLED", "false")
        .start()
        .await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    bob.put(
        &status_path(&bob.user_id),
        &json!({"presence": "online", "status_msg": "here"}),
    )
    .await
    .ok();
    sync_with(&bob, None, "online").await;
    let sync = sync_with(&alice, None, "online").await;
    assert!(
        sync["presence"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{sync}"
    );
    assert_eq!(
        alice.get(&status_path(&bob.user_id)).await.ok()["presence"],
        "offline"
    );
}
