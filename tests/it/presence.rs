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

/// Follows alice's sync until `user_id`'s presence is `state`; returns the
/// content and every state seen on the way.
async fn wait_for_state(
    alice: &Client,
    since: &mut String,
    user_id: &str,
    state: &str,
) -> (Value, Vec<String>) {
    let mut seen = Vec::new();
    for _ in 0..30 {
        let sync = alice.sync(Some(since), 2_000).await;
        *since = sync["next_batch"].as_str().unwrap().to_owned();
        if let Some(content) = presence_of(&sync, user_id) {
            let now = content["presence"].as_str().unwrap_or_default().to_owned();
            seen.push(now.clone());
            if now == state {
                return (content, seen);
            }
        }
    }
    panic!("{user_id} never became {state}; seen {seen:?}");
}

#[tokio::test]
async fn presence_lapses_when_the_user_goes_quiet() {
    let server = Server::builder()
        .open_registration()
        .env("MYELIN_PRESENCE__IDLE_AFTER", "4s")
        .env("MYELIN_PRESENCE__OFFLINE_AFTER", "2s")
        .start()
        .await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    let mut since = sync_with(&alice, None, "online").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob syncs without pause: he never goes offline, but with nothing done
    // for longer than idle_after he shows as unavailable.
    let syncing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let bob_syncs = {
        let (bob, syncing) = (bob.clone(), std::sync::Arc::clone(&syncing));
        tokio::spawn(async move {
            let mut since: Option<String> = None;
            while syncing.load(std::sync::atomic::Ordering::SeqCst) {
                let sync = bob.sync(since.as_deref(), 1_000).await;
                since = sync["next_batch"].as_str().map(str::to_owned);
            }
        })
    };
    let (online, _) = wait_for_state(&alice, &mut since, &bob.user_id, "online").await;
    assert_eq!(online["currently_active"], true, "{online}");
    let (idle, seen) = wait_for_state(&alice, &mut since, &bob.user_id, "unavailable").await;
    assert!(!seen.iter().any(|state| state == "offline"), "{seen:?}");
    assert_eq!(idle["currently_active"], false, "{idle}");
    assert!(idle["last_active_ago"].as_u64().unwrap() >= 4_000, "{idle}");

    // Sending a message is activity: back online, currently active.
    bob.send_text(&room_id, "back").await;
    let (back, seen) = wait_for_state(&alice, &mut since, &bob.user_id, "online").await;
    assert!(!seen.iter().any(|state| state == "offline"), "{seen:?}");
    assert_eq!(back["currently_active"], true, "{back}");

    // His client stops syncing: offline soon after, and his next sync
    // brings him back.
    syncing.store(false, std::sync::atomic::Ordering::SeqCst);
    bob_syncs.await.unwrap();
    wait_for_state(&alice, &mut since, &bob.user_id, "offline").await;
    assert_eq!(
        alice.get(&status_path(&bob.user_id)).await.ok()["presence"],
        "offline"
    );
    sync_with(&bob, None, "online").await;
    wait_for_state(&alice, &mut since, &bob.user_id, "online").await;
}
