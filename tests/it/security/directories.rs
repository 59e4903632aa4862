//! The room and user directories: who may change a room's listing, what a
//! search may ask, and what it must not reveal.

use reqwest::Method;
use serde_json::json;

use crate::client::encode;
use crate::harness::Server;

const PASSWORD: &str = "pw-directory-security";

fn visibility_path(room_id: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", encode(room_id))
}

#[tokio::test]
async fn room_directory_refuses_strangers_and_bad_input() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let owner = anonymous.register("dsowner", PASSWORD).await;
    let stranger = anonymous.register("dsstranger", PASSWORD).await;
    let member = anonymous.register("dsmember", PASSWORD).await;
    let room = owner
        .create_room(&json!({"preset": "public_chat", "name": "secure"}))
        .await;
    member.join(&room).await.ok();
    let path = visibility_path(&room);

    // Wrong user: neither a stranger nor a member without power.
    stranger
        .put(&path, &json!({"visibility": "public"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    member
        .put(&path, &json!({"visibility": "public"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(anonymous.get(&path).await.ok()["visibility"], "private");
    anonymous
        .put(&path, &json!({"visibility": "public"}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");

    // Unknown room.
    let unknown = visibility_path("!nosuchroom:it.test");
    owner
        .put(&unknown, &json!({"visibility": "public"}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    anonymous
        .get(&unknown)
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Bad bodies and missing parameters.
    owner
        .raw_json(Method::PUT, &path, "not json")
        .await
        .assert_error(400, "M_NOT_JSON");
    owner
        .raw_json(Method::PUT, &path, r#"{"visibility": 5}"#)
        .await
        .assert_error(400, "M_BAD_JSON");
    owner
        .raw_json(Method::PUT, &path, "{}")
        .await
        .assert_error(400, "M_MISSING_PARAM");
    owner
        .raw_json(Method::POST, "/_matrix/client/v3/publicRooms", "[1")
        .await
        .assert_error(400, "M_NOT_JSON");
    owner
        .raw_json(
            Method::POST,
            "/_matrix/client/v3/publicRooms",
            r#"{"limit": "ten"}"#,
        )
        .await
        .assert_error(400, "M_BAD_JSON");
    assert_eq!(anonymous.get(&path).await.ok()["visibility"], "private");

    // Searching needs a session; tokens and terms are checked.
    anonymous
        .post("/_matrix/client/v3/publicRooms", &json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    owner
        .get("/_matrix/client/v3/publicRooms?since=bogus")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    owner
        .post(
            "/_matrix/client/v3/publicRooms",
            &json!({"filter": {"generic_search_term": "x".repeat(257)}}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // Another server's directory is asked over federation: one that cannot
    // be reached is a 502, a name that is no server name a 400.
    owner
        .get("/_matrix/client/v3/publicRooms?server=elsewhere.test")
        .await
        .assert_error(502, "M_UNKNOWN");
    owner
        .get("/_matrix/client/v3/publicRooms?server=not%20a%20server")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    owner
        .get("/_matrix/client/v3/publicRooms?limit=-1")
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn user_directory_hides_private_rooms_and_checks_input() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let searcher = anonymous.register("dssearcher", PASSWORD).await;
    let hermit = anonymous.register("dshermit", PASSWORD).await;
    let friend = anonymous.register("dsfriend", PASSWORD).await;
    let room = hermit
        .create_room(&json!({"preset": "private_chat", "invite": [friend.user_id]}))
        .await;
    friend.join(&room).await.ok();
    let search = "/_matrix/client/v3/user_directory/search";

    // Members of a private room the searcher is not in stay hidden.
    let results = searcher
        .post(search, &json!({"search_term": "dshermit"}))
        .await
        .ok();
    assert_eq!(results["results"], json!([]), "{results}");
    let results = friend
        .post(search, &json!({"search_term": "dshermit"}))
        .await
        .ok();
    assert_eq!(results["results"][0]["user_id"], hermit.user_id);

    anonymous
        .post(search, &json!({"search_term": "ds"}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    searcher
        .raw_json(Method::POST, search, "not json")
        .await
        .assert_error(400, "M_NOT_JSON");
    searcher
        .raw_json(Method::POST, search, "{}")
        .await
        .assert_error(400, "M_MISSING_PARAM");
    searcher
        .raw_json(Method::POST, search, r#"{"search_term": 7}"#)
        .await
        .assert_error(400, "M_BAD_JSON");
    searcher
        .post(search, &json!({"search_term": "x".repeat(257)}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // Asking for many gets at most the server's cap.
    let results = searcher
        .post(search, &json!({"search_term": "ds", "limit": 100000}))
        .await
        .ok();
    assert!(results["results"].as_array().expect("results").len() <= 50);
}
