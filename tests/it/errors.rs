//! The error surface: status codes and `errcode`s a client can rely on, the
//! edge (body limit, CORS, the static page) and the limits.

use reqwest::Method;
use serde_json::json;

use crate::client::{Client, Reply, encode};
use crate::harness::Server;

/// A server with registration open and alice registered in a room of her own.
async fn server_with_alice() -> (Server, Client, String) {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let room_id = alice.create_room(&json!({"preset": "private_chat"})).await;
    (server, alice, room_id)
}

/// Sends `body` as-is, with an optional Content-Type.
async fn raw(
    client: &Client,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = client.http().request(method, client.url(path)).body(body);
    if let Some(token) = &client.access_token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    Reply::read(request.send().await.expect("the server answers")).await
}

#[tokio::test]
async fn unknown_endpoints_are_404_unrecognized() {
    let server = Server::builder().start().await;
    let client = server.client();
    for path in [
        "/_matrix/client/v3/no_such_endpoint",
        "/_matrix/client/v3/rooms/!r:it.test/no_such_thing",
        "/_matrix/client/unstable/org.example.nothing",
    ] {
        client.get(path).await.assert_error(404, "M_UNRECOGNIZED");
    }
    client
        .post("/_matrix/client/v3/no_such_endpoint", &json!({}))
        .await
        .assert_error(404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn wrong_method_on_a_known_path_is_405_unrecognized() {
    let server = Server::builder().start().await;
    let client = server.client();
    client
        .request(Method::DELETE, "/_matrix/client/v3/login", None)
        .await
        .assert_error(405, "M_UNRECOGNIZED");
    client
        .put("/_matrix/client/versions", &json!({}))
        .await
        .assert_error(405, "M_UNRECOGNIZED");
    client
        .request(Method::POST, "/_matrix/client/v3/sync", Some(&json!({})))
        .await
        .assert_error(405, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_not_json() {
    let (server, alice, room_id) = server_with_alice().await;
    let anonymous = server.client();
    for content_type in [Some("application/json"), None] {
        raw(
            &anonymous,
            Method::POST,
            "/_matrix/client/v3/login",
            content_type,
            "this is not json",
        )
        .await
        .assert_error(400, "M_NOT_JSON");
        raw(
            &alice,
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/not-json",
                encode(&room_id)
            ),
            content_type,
            "{\"body\": ",
        )
        .await
        .assert_error(400, "M_NOT_JSON");
    }
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_400() {
    let (server, alice, room_id) = server_with_alice().await;
    // A required field is missing: M_MISSING_PARAM.
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/kick", encode(&room_id)),
            &json!({"reason": "no user_id"}),
        )
        .await
        .assert_error(400, "M_MISSING_PARAM");
    alice
        .post("/_matrix/client/v3/account/password", &json!({}))
        .await
        .assert_error(400, "M_MISSING_PARAM");
    let login = server
        .client()
        .post(
            "/_matrix/client/v3/login",
            &json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}}),
        )
        .await;
    assert_eq!(login.status, 400, "{}", login.text);
    assert!(
        ["M_MISSING_PARAM", "M_BAD_JSON"].contains(&login.body["errcode"].as_str().unwrap_or("")),
        "login without a password: {}",
        login.text
    );
    // Valid JSON with a field of the wrong type: M_BAD_JSON.
    alice
        .post("/_matrix/client/v3/createRoom", &json!({"name": 5}))
        .await
        .assert_error(400, "M_BAD_JSON");
    // Event content must be an object.
    alice
        .send_reply(&room_id, "m.room.message", "array", &json!([1, 2]))
        .await
        .assert_error(400, "M_BAD_JSON");
}

/// `"type"` is required in a login body; leaving it out must get an error
/// answer, not a dropped connection.
#[tokio::test]
async fn login_without_a_type_is_answered_with_400() {
    let server = Server::builder().open_registration().start().await;
    server.client().register("alice", "pw-alice").await;
    let client = server.client();
    let answer = client
        .http()
        .post(client.url("/_matrix/client/v3/login"))
        .json(
            &json!({"identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw-alice"}),
        )
        .send()
        .await;
    let health = client.get("/health").await;
    assert_eq!(health.status, 200, "the server is not healthy afterwards");
    let answer = match answer {
        Ok(response) => Reply::read(response).await,
        Err(error) => panic!(
            "POST /login without \"type\" got no HTTP answer (the connection was dropped): {error}\n\
             server log tail:\n{}",
            server
                .logs()
                .lines()
                .filter(|line| line.contains("panicked") || line.contains("no entry found"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        ["M_MISSING_PARAM", "M_BAD_JSON", "M_UNKNOWN"]
            .contains(&answer.body["errcode"].as_str().unwrap_or("")),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn access_tokens_missing_unknown_and_in_the_query() {
    let (server, alice, _) = server_with_alice().await;
    let whoami = "/_matrix/client/v3/account/whoami";
    server
        .client()
        .get(whoami)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let unknown = alice
        .with_token(Some("myl_not_a_real_token"))
        .get(whoami)
        .await;
    unknown.assert_error(401, "M_UNKNOWN_TOKEN");

    let token = alice.access_token.clone().expect("token");
    let in_query = server
        .client()
        .get(&format!("{whoami}?access_token={}", encode(&token)))
        .await
        .ok();
    assert_eq!(in_query["user_id"], json!(alice.user_id));
    server
        .client()
        .get(&format!("{whoami}?access_token=nope"))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");

    // A token that logged out is unknown from then on.
    alice
        .post("/_matrix/client/v3/logout", &json!({}))
        .await
        .ok();
    alice.get(whoami).await.assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn a_body_over_max_request_size_is_413_too_large() {
    let server = Server::builder()
        .open_registration()
        .env("MYELIN_MAX_REQUEST_SIZE", "1024")
        .start()
        .await;
    let alice = server.client().register("alice", "pw-alice").await;
    let big = json!({"type": "m.login.password", "password": "x".repeat(2000),
        "identifier": {"type": "m.id.user", "user": "alice"}});
    server
        .client()
        .post("/_matrix/client/v3/login", &big)
        .await
        .assert_error(413, "M_TOO_LARGE");
    let room_id = alice.create_room(&json!({})).await;
    alice
        .send_reply(
            &room_id,
            "m.room.message",
            "big",
            &json!({"msgtype": "m.text", "body": "y".repeat(1500)}),
        )
        .await
        .assert_error(413, "M_TOO_LARGE");
    // Below the limit all is well.
    alice.send_text(&room_id, "small").await;
}

#[tokio::test]
async fn event_content_over_64k_is_413_too_large() {
    let (_server, alice, room_id) = server_with_alice().await;
    let refused = alice
        .send_reply(
            &room_id,
            "m.room.message",
            "huge",
            &json!({"msgtype": "m.text", "body": "z".repeat(70_000)}),
        )
        .await;
    refused.assert_error(413, "M_TOO_LARGE");
    let history = alice.messages(&room_id, "b", None, 100).await;
    assert!(
        !history["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .any(|event| event["content"]["body"]
                .as_str()
                .is_some_and(|body| body.starts_with("zzz"))),
        "the refused event is in history"
    );
    // Comfortably under the limit is accepted.
    alice
        .send_reply(
            &room_id,
            "m.room.message",
            "large",
            &json!({"msgtype": "m.text", "body": "z".repeat(60_000)}),
        )
        .await
        .ok();
}

#[tokio::test]
async fn sending_too_fast_is_429_with_retry_after() {
    let server = Server::builder()
        .open_registration()
        .env("MYELIN_RC_MESSAGE__PER_SECOND", "0.1")
        .env("MYELIN_RC_MESSAGE__BURST_COUNT", "2")
        .start()
        .await;
    let alice = server.client().register("alice", "pw-alice").await;
    let room_id = alice.create_room(&json!({})).await;
    let content = json!({"msgtype": "m.text", "body": "spam"});
    let first = alice
        .send_reply(&room_id, "m.room.message", "t1", &content)
        .await
        .ok();
    alice
        .send_reply(&room_id, "m.room.message", "t2", &content)
        .await
        .ok();
    let third = alice
        .send_reply(&room_id, "m.room.message", "t3", &content)
        .await;
    third.assert_error(429, "M_LIMIT_EXCEEDED");
    let retry_after = third.body["retry_after_ms"].as_u64();
    assert!(
        retry_after.is_some_and(|ms| ms > 0),
        "429 without a positive integer retry_after_ms: {}",
        third.text
    );
    // Retrying a transaction that already went through is not a new send.
    let retried = alice
        .send_reply(&room_id, "m.room.message", "t1", &content)
        .await
        .ok();
    assert_eq!(retried["event_id"], first["event_id"]);
    // The limit is per user.
    let bob = server.client().register("bob", "pw-bob").await;
    let bobs_room = bob.create_room(&json!({})).await;
    bob.send_text(&bobs_room, "not limited").await;
}

fn assert_cors(reply: &Reply) {
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("*"),
        "{:?}",
        reply.headers
    );
    let methods = reply
        .header("access-control-allow-methods")
        .unwrap_or_default();
    for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(
            methods.contains(method),
            "allow-methods lacks {method}: {methods}"
        );
    }
    let headers = reply
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in ["authorization", "content-type", "x-requested-with"] {
        assert!(
            headers.contains(header),
            "allow-headers lacks {header}: {headers}"
        );
    }
}

#[tokio::test]
async fn cors_headers_and_preflight() {
    let server = Server::builder().start().await;
    let client = server.client();
    let versions = client.get("/_matrix/client/versions").await;
    assert_eq!(versions.status, 200);
    assert_cors(&versions);
    // Errors carry them too, or browsers cannot read the errcode.
    let error = client.get("/_matrix/client/v3/account/whoami").await;
    error.assert_error(401, "M_MISSING_TOKEN");
    assert_cors(&error);

    for path in [
        "/_matrix/client/v3/login",
        "/_matrix/client/v3/rooms/%21room%3Ait.test/send/m.room.message/txn1",
    ] {
        let preflight = client
            .http()
            .request(Method::OPTIONS, client.url(path))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .await
            .expect("preflight answered");
        let preflight = Reply::read(preflight).await;
        assert_eq!(preflight.status, 204, "preflight of {path}: {preflight:?}");
        assert_cors(&preflight);
    }
}

#[tokio::test]
async fn static_page_says_running() {
    let server = Server::builder().start().await;
    for path in ["/_matrix/static/", "/_matrix/static"] {
        let page = server.client().get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert!(
            page.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}: {:?}",
            page.headers
        );
        assert!(page.text.contains("Myelin is running"), "{}", page.text);
    }
}

#[tokio::test]
async fn registration_is_closed_by_default() {
    let server = Server::builder().start().await;
    let client = server.client();
    client
        .register_start("alice", "pw-alice")
        .await
        .assert_error(403, "M_FORBIDDEN");
    client
        .post(
            "/_matrix/client/v3/register",
            &json!({"username": "alice", "password": "pw-alice", "auth": {"type": "m.login.dummy"}}),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    // And nobody was created.
    client
        .login_reply("alice", "pw-alice")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn registering_a_taken_or_invalid_username() {
    let server = Server::builder().open_registration().start().await;
    let client = server.client();
    client.register("alice", "pw-alice").await;
    client
        .register_reply("alice", "another password")
        .await
        .assert_error(400, "M_USER_IN_USE");
    client
        .get("/_matrix/client/v3/register/available?username=alice")
        .await
        .assert_error(400, "M_USER_IN_USE");
    let available = client
        .get("/_matrix/client/v3/register/available?username=carol")
        .await
        .ok();
    assert_eq!(available["available"], json!(true));

    for invalid in ["Not Valid", "bad!name", "émile"] {
        client
            .register_reply(invalid, "pw")
            .await
            .assert_error(400, "M_INVALID_USERNAME");
        client
            .get(&format!(
                "/_matrix/client/v3/register/available?username={}",
                encode(invalid)
            ))
            .await
            .assert_error(400, "M_INVALID_USERNAME");
    }
    // The original password still works: the second attempt changed nothing.
    client.login("alice", "pw-alice").await;
}

/// Synapse's `rc_registration` (default: burst 3) counts completed
/// registrations; the user-interactive-auth round trips before them are
/// free. So three users can register one after another from one address.
#[tokio::test]
async fn default_registration_limit_counts_registrations_not_uia_rounds() {
    let server = Server::builder()
        .open_registration()
        .unset("MYELIN_RC_REGISTRATION__PER_SECOND")
        .start()
        .await;
    let client = server.client();
    for name in ["first", "second", "third"] {
        let reply = client.register_reply(name, "pw-rate").await;
        assert_eq!(
            reply.status, 200,
            "registering {name} (two requests each, dummy UIA) under the default rc_registration: {}",
            reply.text
        );
    }
}

/// Endpoints whose body fields are all optional take an empty body, as
/// Synapse does and as clients send them (matrix-nio's `join` and
/// `room_leave` POST no body at all).
#[tokio::test]
async fn empty_bodies_where_every_field_is_optional() {
    let (server, alice, _) = server_with_alice().await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let bob = server.client().register("bob", "pw-bob").await;
    let room = encode(&room_id);
    for (content_type, path) in [
        (
            Some("application/json"),
            format!("/_matrix/client/v3/join/{room}"),
        ),
        (None, format!("/_matrix/client/v3/rooms/{room}/leave")),
        (None, format!("/_matrix/client/v3/join/{room}")),
        (
            Some("application/json"),
            format!("/_matrix/client/v3/rooms/{room}/leave"),
        ),
        (
            Some("application/json"),
            format!("/_matrix/client/v3/rooms/{room}/join"),
        ),
        (
            Some("application/json"),
            "/_matrix/client/v3/logout".to_owned(),
        ),
    ] {
        let reply = raw(&bob, Method::POST, &path, content_type, "").await;
        assert_eq!(
            reply.status, 200,
            "POST {path} with an empty body (content-type {content_type:?}): {}",
            reply.text
        );
    }
}
