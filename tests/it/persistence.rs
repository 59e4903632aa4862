//! What survives a restart (SIGTERM, then `run` again on the same data).

use serde_json::json;

use crate::client::event_id_of;
use crate::flows::{check_after_restart, end_to_end};
use crate::harness::Server;

#[tokio::test]
async fn restart_keeps_tokens_rooms_and_history() {
    let mut server = Server::builder().open_registration().start().await;
    let outcome = end_to_end(&server).await;
    server.restart().await;
    check_after_restart(&server, &outcome).await;
}

#[tokio::test]
async fn transaction_ids_are_idempotent_across_a_restart() {
    let mut server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice-1").await;
    let room_id = alice.create_room(&json!({"preset": "private_chat"})).await;
    let content = json!({"msgtype": "m.text", "body": "exactly once"});

    let first = event_id_of(
        &alice
            .send_reply(&room_id, "m.room.message", "txn-X", &content)
            .await
            .ok(),
    );
    let retried = event_id_of(
        &alice
            .send_reply(&room_id, "m.room.message", "txn-X", &content)
            .await
            .ok(),
    );
    assert_eq!(
        retried, first,
        "a retry before the restart made a new event"
    );

    server.restart().await;
    let alice = alice.at(&server.url());
    let after_restart = event_id_of(
        &alice
            .send_reply(&room_id, "m.room.message", "txn-X", &content)
            .await
            .ok(),
    );
    assert_eq!(
        after_restart, first,
        "a retry after the restart made a new event"
    );

    let history = alice.messages(&room_id, "b", None, 100).await;
    let copies: Vec<&serde_json::Value> = history["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|event| event["content"]["body"] == "exactly once")
        .collect();
    assert_eq!(copies.len(), 1, "txn-X made more than one event: {history}");
    assert_eq!(copies[0]["event_id"], json!(first));
    assert_eq!(
        copies[0]["unsigned"]["transaction_id"], "txn-X",
        "the sending device sees its transaction ID in unsigned: {}",
        copies[0]
    );

    // The same transaction ID from another device is another transaction.
    let other_device = server.client().login("alice", "pw-alice-1").await;
    let other = event_id_of(
        &other_device
            .send_reply(&room_id, "m.room.message", "txn-X", &content)
            .await
            .ok(),
    );
    assert_ne!(other, first);
}
