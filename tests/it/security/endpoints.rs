//! Reports, `/timestamp_to_event`, OpenID tokens, TURN credentials and
//! `/account/3pid`: other users' rooms, events and tokens stay out of
//! reach, and bad input is refused with a Matrix error.

use reqwest::Method;
use serde_json::json;

use crate::client::encode;
use crate::harness::Server;

const PASSWORD: &str = "pw-endpoint-security";

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

fn timestamp_path(room_id: &str, query: &str) -> String {
    format!(
        "/_matrix/client/v1/rooms/{}/timestamp_to_event?{query}",
        encode(room_id)
    )
}

#[tokio::test]
async fn reports_refuse_what_the_reporter_cannot_see() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let owner = anonymous.register("rsowner", PASSWORD).await;
    let outsider = anonymous.register("rsoutsider", PASSWORD).await;
    let room = owner.create_room(&json!({"preset": "private_chat"})).await;
    let event_id = owner.send_text(&room, "private words").await;
    let report = room_path(&room, &format!("report/{}", encode(&event_id)));

    // Another user's private event: the same 404 as a missing one.
    outsider
        .post(&report, &json!({"reason": "curious"}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    outsider
        .post(
            &room_path(&room, &format!("report/{}", encode("$missing:it.test"))),
            &json!({}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    // The event named under another room is not found there.
    let other_room = outsider
        .create_room(&json!({"preset": "private_chat"}))
        .await;
    outsider
        .post(
            &room_path(&other_room, &format!("report/{}", encode(&event_id))),
            &json!({}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    outsider
        .post(
            &room_path("!nosuch:it.test", "report"),
            &json!({"reason": "x"}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    anonymous
        .post(&report, &json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");

    owner
        .raw_json(Method::POST, &report, "not json")
        .await
        .assert_error(400, "M_NOT_JSON");
    owner
        .raw_json(Method::POST, &report, r#"{"reason": 12}"#)
        .await
        .assert_error(400, "M_BAD_JSON");
    owner
        .post(&report, &json!({"reason": "x".repeat(2001)}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    owner
        .raw_json(Method::POST, &room_path(&room, "report"), "[")
        .await
        .assert_error(400, "M_NOT_JSON");
    owner
        .post(
            &room_path(&room, "report"),
            &json!({"reason": "y".repeat(2001)}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    owner.post(&report, &json!({"reason": "fine"})).await.ok();
}

#[tokio::test]
async fn timestamp_to_event_keeps_to_the_users_rooms() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let owner = anonymous.register("tsowner", PASSWORD).await;
    let outsider = anonymous.register("tsoutsider", PASSWORD).await;
    let room = owner.create_room(&json!({"preset": "private_chat"})).await;
    owner.send_text(&room, "hidden").await;

    outsider
        .get(&timestamp_path(&room, "ts=0&dir=f"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    owner
        .get(&timestamp_path("!nosuch:it.test", "ts=0&dir=f"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    owner
        .get(&timestamp_path(&room, "dir=f"))
        .await
        .assert_error(400, "M_MISSING_PARAM");
    owner
        .get(&timestamp_path(&room, "ts=0"))
        .await
        .assert_error(400, "M_MISSING_PARAM");
    owner
        .get(&timestamp_path(&room, "ts=soon&dir=f"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    owner
        .get(&timestamp_path(&room, "ts=0&dir=sideways"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    anonymous
        .get(&timestamp_path(&room, "ts=0&dir=f"))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    owner.get(&timestamp_path(&room, "ts=0&dir=f")).await.ok();

    // A former member finds nothing sent after they left.
    let leaver = anonymous.register("tsleaver", PASSWORD).await;
    owner.invite(&room, &leaver.user_id).await.ok();
    leaver.join(&room).await.ok();
    leaver.leave(&room).await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let after_leave = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    owner.send_text(&room, "after the leave").await;
    leaver
        .get(&timestamp_path(&room, &format!("ts={after_leave}&dir=f")))
        .await
        .assert_error(404, "M_NOT_FOUND");
    owner
        .get(&timestamp_path(&room, &format!("ts={after_leave}&dir=f")))
        .await
        .ok();
}

#[tokio::test]
async fn openid_tokens_are_only_for_yourself() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("osalice", PASSWORD).await;
    let bob = anonymous.register("osbob", PASSWORD).await;
    let path = |user_id: &str| {
        format!(
            "/_matrix/client/v3/user/{}/openid/request_token",
            encode(user_id)
        )
    };
    bob.post(&path(&alice.user_id), &json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    anonymous
        .post(&path(&alice.user_id), &json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    alice
        .raw_json(Method::POST, &path(&alice.user_id), "{nope")
        .await
        .assert_error(400, "M_NOT_JSON");
    alice
        .post(&path("not-a-user-id"), &json!({}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    anonymous
        .get("/_matrix/federation/v1/openid/userinfo")
        .await
        .assert_error(400, "M_MISSING_PARAM");
    anonymous
        .get(&format!(
            "/_matrix/federation/v1/openid/userinfo?access_token={}",
            "a".repeat(300)
        ))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn turn_and_threepids_need_a_session() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    anonymous
        .get("/_matrix/client/v3/voip/turnServer")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    anonymous
        .get("/_matrix/client/v3/account/3pid")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    anonymous
        .with_token(Some("forged"))
        .get("/_matrix/client/v3/account/3pid")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn space_hierarchy_keeps_private_spaces_private() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let owner = anonymous.register("hsowner", PASSWORD).await;
    let outsider = anonymous.register("hsoutsider", PASSWORD).await;
    let space = owner
        .create_room(&json!({
            "preset": "private_chat",
            "creation_content": {"type": "m.space"},
        }))
        .await;
    let path = |room: &str, query: &str| {
        format!("/_matrix/client/v1/rooms/{}/hierarchy{query}", encode(room))
    };
    outsider
        .get(&path(&space, ""))
        .await
        .assert_error(403, "M_FORBIDDEN");
    owner
        .get(&path("!nosuch:it.test", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    anonymous
        .get(&path(&space, ""))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    owner
        .get(&path(&space, "?from=not-a-token"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    owner
        .get(&path(&space, "?limit=lots"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    owner
        .get(&path(&space, "?max_depth=-2"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    owner
        .get(&path(&space, "?suggested_only=maybe"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let own = owner.get(&path(&space, "?limit=0")).await.ok();
    assert_eq!(
        own["rooms"][0]["room_id"], space,
        "a limit of 0 still gives one room"
    );
}

#[tokio::test]
async fn knocks_follow_the_join_rules() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let owner = anonymous.register("ksowner", PASSWORD).await;
    let stranger = anonymous.register("ksstranger", PASSWORD).await;
    let invite_only = owner.create_room(&json!({"preset": "private_chat"})).await;
    let knockable = owner
        .create_room(&json!({
            "preset": "private_chat",
            "initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        }))
        .await;
    let knock = |room: &str| format!("/_matrix/client/v3/knock/{}", encode(room));

    stranger
        .post(&knock(&invite_only), &json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    owner
        .post(&knock(&knockable), &json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    stranger
        .post(&knock("!nosuch:it.test"), &json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    stranger
        .post(&knock("#nosuch:it.test"), &json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    anonymous
        .post(&knock(&knockable), &json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    stranger
        .raw_json(Method::POST, &knock(&knockable), "not json")
        .await
        .assert_error(400, "M_NOT_JSON");
    stranger
        .raw_json(Method::POST, &knock(&knockable), r#"{"reason": []}"#)
        .await
        .assert_error(400, "M_BAD_JSON");
    stranger
        .post(&knock(&knockable), &json!({"reason": "z".repeat(2001)}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    stranger
        .post(&knock("not-a-room"), &json!({}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // A banned user cannot knock.
    let banned = anonymous.register("ksbanned", PASSWORD).await;
    owner
        .post(
            &room_path(&knockable, "ban"),
            &json!({"user_id": banned.user_id}),
        )
        .await
        .ok();
    banned
        .post(&knock(&knockable), &json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    stranger.post(&knock(&knockable), &json!({})).await.ok();
}
