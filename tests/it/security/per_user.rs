//! Per-user data and ephemeral events: account data, tags, push rules,
//! receipts, read markers, typing, presence and notifications. Another
//! user's data is out of reach, a room the caller is not in is refused,
//! broken bodies get a Matrix error, and nothing is written by a refusal.

use reqwest::Method;
use serde_json::json;

use crate::client::{Reply, encode};
use crate::harness::Server;

const PASSWORD: &str = "pw-per-user";

fn user_path(user_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/user/{}/{rest}", encode(user_id))
}

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

#[track_caller]
fn assert_refused(reply: &Reply, statuses: &[u16], what: &str) {
    assert!(
        statuses.contains(&reply.status) && reply.body["errcode"].is_string(),
        "{what}: {} {}",
        reply.status,
        reply.text
    );
}

#[tokio::test]
async fn another_users_data_is_out_of_reach() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let owner = anonymous.register("puowner", PASSWORD).await;
    let other = anonymous.register("puother", PASSWORD).await;
    let room_id = owner.create_room(&json!({"preset": "private_chat"})).await;
    let event_id = owner.send_text(&room_id, "private").await;
    owner
        .put(
            &user_path(&owner.user_id, "account_data/org.example.secret"),
            &json!({"secret": 1}),
        )
        .await
        .ok();

    // Writes and reads through the owner's user ID.
    let owned = [
        (
            Method::GET,
            user_path(&owner.user_id, "account_data/org.example.secret"),
        ),
        (
            Method::PUT,
            user_path(&owner.user_id, "account_data/org.example.secret"),
        ),
        (
            Method::GET,
            user_path(
                &owner.user_id,
                &format!("rooms/{}/account_data/x.y", encode(&room_id)),
            ),
        ),
        (
            Method::PUT,
            user_path(
                &owner.user_id,
                &format!("rooms/{}/account_data/x.y", encode(&room_id)),
            ),
        ),
        (
            Method::GET,
            user_path(&owner.user_id, &format!("rooms/{}/tags", encode(&room_id))),
        ),
        (
            Method::PUT,
            user_path(
                &owner.user_id,
                &format!("rooms/{}/tags/m.favourite", encode(&room_id)),
            ),
        ),
        (
            Method::DELETE,
            user_path(
                &owner.user_id,
                &format!("rooms/{}/tags/m.favourite", encode(&room_id)),
            ),
        ),
        (
            Method::PUT,
            format!(
                "/_matrix/client/v3/presence/{}/status",
                encode(&owner.user_id)
            ),
        ),
        (
            Method::PUT,
            room_path(&room_id, &format!("typing/{}", encode(&owner.user_id))),
        ),
    ];
    for (method, path) in &owned {
        let body = json!({"secret": 2, "presence": "offline", "typing": true, "timeout": 1000});
        let reply = other.request(method.clone(), path, Some(&body)).await;
        assert_refused(&reply, &[403], &format!("{method} {path}"));
    }
    assert_eq!(
        owner
            .get(&user_path(
                &owner.user_id,
                "account_data/org.example.secret"
            ))
            .await
            .ok(),
        json!({"secret": 1}),
        "a refused write changed nothing"
    );

    // The owner's room, from outside it.
    let outside = [
        (
            Method::POST,
            room_path(&room_id, &format!("receipt/m.read/{}", encode(&event_id))),
        ),
        (Method::POST, room_path(&room_id, "read_markers")),
        (
            Method::PUT,
            room_path(&room_id, &format!("typing/{}", encode(&other.user_id))),
        ),
        (
            Method::PUT,
            user_path(
                &other.user_id,
                &format!("rooms/{}/account_data/x.y", encode(&room_id)),
            ),
        ),
        (
            Method::PUT,
            user_path(
                &other.user_id,
                &format!("rooms/{}/tags/m.favourite", encode(&room_id)),
            ),
        ),
    ];
    for (method, path) in &outside {
        let body = json!({"m.fully_read": event_id, "typing": true, "timeout": 1000});
        let reply = other.request(method.clone(), path, Some(&body)).await;
        assert_refused(&reply, &[403], &format!("outsider {method} {path}"));
    }
    let presence = other
        .get(&format!(
            "/_matrix/client/v3/presence/{}/status",
            encode(&owner.user_id)
        ))
        .await;
    assert_refused(&presence, &[403], "presence of a stranger");

    // Push rules and notifications are the caller's own: the other user's
    // rule is not found, and no notification of the owner's room is listed.
    owner
        .put(
            "/_matrix/client/v3/pushrules/global/content/secretword",
            &json!({"pattern": "secretword", "actions": ["notify"]}),
        )
        .await
        .ok();
    other
        .get("/_matrix/client/v3/pushrules/global/content/secretword")
        .await
        .assert_error(404, "M_NOT_FOUND");
    let listed = other.get("/_matrix/client/v3/notifications").await.ok();
    assert!(
        !listed.to_string().contains(&room_id),
        "another user's room in /notifications: {listed}"
    );
    let sync = other.sync(None, 0).await;
    let text = sync.to_string();
    for leak in ["org.example.secret", "secretword", room_id.as_str()] {
        assert!(
            !text.contains(leak),
            "{leak} in another user's sync: {text}"
        );
    }
}

#[tokio::test]
async fn broken_bodies_and_unknown_targets_get_matrix_errors() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let user = anonymous.register("pubroken", PASSWORD).await;
    let room_id = user.create_room(&json!({"preset": "private_chat"})).await;
    let event_id = user.send_text(&room_id, "hello").await;
    let account_data = user_path(&user.user_id, "account_data/org.example.x");
    let typing = room_path(&room_id, &format!("typing/{}", encode(&user.user_id)));
    let presence = format!(
        "/_matrix/client/v3/presence/{}/status",
        encode(&user.user_id)
    );
    let read_markers = room_path(&room_id, "read_markers");
    let rule = "/_matrix/client/v3/pushrules/global/override/mine".to_owned();
    for (method, path) in [
        (Method::PUT, &account_data),
        (Method::PUT, &typing),
        (Method::PUT, &presence),
        (Method::POST, &read_markers),
        (Method::PUT, &rule),
    ] {
        for body in ["{", "[1,2]", "\"text\""] {
            let reply = user.raw_json(method.clone(), path, body).await;
            assert_refused(&reply, &[400], &format!("{method} {path} with {body}"));
        }
        // Fields of the wrong kind, where the endpoint has fields.
        if path != &account_data {
            let body = r#"{"typing": "yes", "presence": 7, "m.fully_read": 3, "actions": 1}"#;
            let reply = user.raw_json(method.clone(), path, body).await;
            assert_refused(&reply, &[400], &format!("{method} {path} with {body}"));
        }
    }
    let unknown_room = "!nowhere:it.test";
    let stranger_paths = [
        room_path(
            unknown_room,
            &format!("receipt/m.read/{}", encode(&event_id)),
        ),
        room_path(unknown_room, "read_markers"),
    ];
    for path in &stranger_paths {
        let reply = user.post(path, &json!({"m.fully_read": event_id})).await;
        assert_refused(&reply, &[403, 404], &format!("POST {path}"));
    }
    let reply = user
        .put(
            &room_path(unknown_room, &format!("typing/{}", encode(&user.user_id))),
            &json!({"typing": true, "timeout": 1000}),
        )
        .await;
    assert_refused(&reply, &[403, 404], "typing in an unknown room");
    // Oversized identifiers and values.
    let long_type = "t".repeat(300);
    let reply = user
        .put(
            &user_path(&user.user_id, &format!("account_data/{long_type}")),
            &json!({}),
        )
        .await;
    assert!(
        reply.status == 200 || (400..500).contains(&reply.status),
        "{} {}",
        reply.status,
        reply.text
    );
    let reply = user
        .put(
            &presence,
            &json!({"presence": "online", "status_msg": "x".repeat(5000)}),
        )
        .await;
    assert_refused(&reply, &[413], "a 5000-byte status message");
    let reply = user
        .put(
            &user_path(
                &user.user_id,
                &format!("rooms/{}/tags/{}", encode(&room_id), "t".repeat(300)),
            ),
            &json!({}),
        )
        .await;
    assert_refused(&reply, &[400], "a 300-byte tag");
}
