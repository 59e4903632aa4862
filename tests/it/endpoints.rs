//! Client-Server endpoints around rooms and calls: TURN credentials,
//! content reports, OpenID tokens, third-party identifiers, jumping to a
//! date and space hierarchies.

use serde_json::{Value, json};

use crate::client::encode;
use crate::harness::Server;

const PASSWORD: &str = "pw-endpoints";

/// The TURN REST API's password for `username`, computed here.
fn turn_password(secret: &str, username: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn turn_credentials_come_from_the_shared_secret() {
    let server = Server::builder()
        .open_registration()
        .edit_config(
            "report_stats:",
            "turn_uris: ['turn:turn.it.test?transport=udp', 'turns:turn.it.test']\nturn_user_lifetime: 1d\nreport_stats:",
        )
        .env("MYELIN_TURN_SHARED_SECRET", "turn-secret")
        .start()
        .await;
    let anonymous = server.client();
    anonymous
        .get("/_matrix/client/v3/voip/turnServer")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let alice = anonymous.register("turnalice", PASSWORD).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let answer = alice.get("/_matrix/client/v3/voip/turnServer").await.ok();
    assert_eq!(answer["ttl"], 86400);
    assert_eq!(
        answer["uris"],
        json!(["turn:turn.it.test?transport=udp", "turns:turn.it.test"])
    );
    let username = answer["username"].as_str().expect("username");
    let (expiry, user_id) = username.split_once(':').expect("<expiry>:<user>");
    assert_eq!(user_id, alice.user_id);
    let expiry: u64 = expiry.parse().expect("expiry in seconds");
    assert!(
        (before + 86400..=before + 86400 + 60).contains(&expiry),
        "{expiry} is a day from {before}"
    );
    assert_eq!(answer["password"], turn_password("turn-secret", username));
}

#[tokio::test]
async fn turn_without_uris_answers_an_empty_object() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("noturn", PASSWORD).await;
    let answer: Value = alice.get("/_matrix/client/v3/voip/turnServer").await.ok();
    assert_eq!(answer, json!({}));
}

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

/// A server admin, through shared-secret registration.
async fn register_admin(server: &Server, user: &str) -> crate::client::Client {
    use hmac::Mac;
    let anonymous = server.client();
    let issued = anonymous.get("/_synapse/admin/v1/register").await.ok();
    let nonce = issued["nonce"].as_str().expect("nonce");
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(server.shared_secret().as_bytes())
        .expect("any key length");
    for part in [nonce, user, PASSWORD] {
        mac.update(part.as_bytes());
        mac.update(b"\x00");
    }
    mac.update(b"admin");
    let registered = anonymous
        .post(
            "/_synapse/admin/v1/register",
            &json!({
                "nonce": nonce,
                "username": user,
                "password": PASSWORD,
                "admin": true,
                "mac": hex::encode(mac.finalize().into_bytes()),
            }),
        )
        .await
        .ok();
    anonymous.with_token(registered["access_token"].as_str())
}

/// Reports of events and rooms are kept, and server admins read them back
/// newest first, a page at a time; nobody else may.
#[tokio::test]
async fn reports_are_kept_for_admins() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("repalice", PASSWORD).await;
    let bob = anonymous.register("repbob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room).await.ok();
    let event_id = alice.send_text(&room, "rude words").await;
    let answer = bob
        .post(
            &room_path(&room, &format!("report/{}", encode(&event_id))),
            &json!({"reason": "rude", "score": -100}),
        )
        .await
        .ok();
    assert_eq!(answer, json!({}));
    bob.post(
        &room_path(&room, "report"),
        &json!({"reason": "a rude room"}),
    )
    .await
    .ok();
    // The unstable path reaches the same endpoint.
    bob.post(
        &format!(
            "/_matrix/client/unstable/org.matrix.msc4151/rooms/{}/report",
            encode(&room)
        ),
        &json!({"reason": "again"}),
    )
    .await
    .ok();

    let listing = "/_synapse/admin/v1/event_reports";
    bob.get(listing).await.assert_error(403, "M_FORBIDDEN");
    anonymous
        .get(listing)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let admin = register_admin(&server, "repadmin").await;
    let all = admin.get(listing).await.ok();
    let reports = all["event_reports"].as_array().expect("event_reports");
    assert_eq!(reports.len(), 3, "{all}");
    assert_eq!(reports[0]["reason"], "again");
    assert_eq!(reports[1]["reason"], "a rude room");
    assert!(reports[1]["event_id"].is_null());
    assert_eq!(reports[2]["reason"], "rude");
    assert_eq!(reports[2]["event_id"], event_id);
    assert_eq!(reports[2]["room_id"], room);
    assert_eq!(reports[2]["user_id"], bob.user_id);
    assert!(all.get("next_token").is_none());
    let first = admin.get(&format!("{listing}?limit=2")).await.ok();
    assert_eq!(first["event_reports"].as_array().expect("page").len(), 2);
    let next = first["next_token"].as_i64().expect("next_token");
    let rest = admin
        .get(&format!("{listing}?limit=2&from={next}"))
        .await
        .ok();
    assert_eq!(rest["event_reports"][0]["reason"], "rude");
    admin
        .get(&format!("{listing}?from=soon"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

/// The event nearest a time in each direction, among those the user sees.
#[tokio::test]
async fn timestamp_to_event_finds_the_nearest_visible_event() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("tsalice", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;
    let first = alice.send_text(&room, "first").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let middle_ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = alice.send_text(&room, "second").await;
    let path = |ts: u128, dir: &str| {
        format!(
            "/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir={dir}",
            encode(&room)
        )
    };
    let forward = alice.get(&path(middle_ts, "f")).await.ok();
    assert_eq!(forward["event_id"], second, "{forward}");
    assert!(forward["origin_server_ts"].as_u64().expect("ts") as u128 >= middle_ts);
    let backward = alice.get(&path(middle_ts, "b")).await.ok();
    assert_eq!(backward["event_id"], first, "{backward}");
    alice
        .get(&path(middle_ts + 3_600_000, "f"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let earliest = alice.get(&path(0, "f")).await.ok();
    assert!(earliest["event_id"].as_str().is_some_and(|id| id != first));
}

/// An OpenID token names its user to whoever holds it, through the
/// federation endpoint, and nothing else does.
pub async fn openid_cases(anonymous: &crate::client::Client) {
    let alice = anonymous.register("oidalice", PASSWORD).await;
    let server_name = alice.user_id.split_once(':').expect("user ID").1.to_owned();
    let token = alice
        .post(
            &format!(
                "/_matrix/client/v3/user/{}/openid/request_token",
                encode(&alice.user_id)
            ),
            &json!({}),
        )
        .await
        .ok();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], server_name);
    assert_eq!(token["expires_in"], 3600);
    let access_token = token["access_token"].as_str().expect("access_token");
    let userinfo = anonymous
        .get(&format!(
            "/_matrix/federation/v1/openid/userinfo?access_token={}",
            encode(access_token)
        ))
        .await
        .ok();
    assert_eq!(userinfo, json!({"sub": alice.user_id}));
    anonymous
        .get("/_matrix/federation/v1/openid/userinfo?access_token=nonsense")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    // The client access token is not an OpenID token.
    let client_token = alice.access_token.clone().expect("session");
    anonymous
        .get(&format!(
            "/_matrix/federation/v1/openid/userinfo?access_token={}",
            encode(&client_token)
        ))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn openid_tokens_name_their_user() {
    let server = Server::builder().open_registration().start().await;
    openid_cases(&server.client()).await;
}

/// No third-party identifiers: an honest empty list, and changes absent.
#[tokio::test]
async fn third_party_identifiers_are_an_empty_list() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("tpidalice", PASSWORD).await;
    let listed = alice.get("/_matrix/client/v3/account/3pid").await.ok();
    assert_eq!(listed, json!({"threepids": []}));
    for path in [
        "/_matrix/client/v3/account/3pid/add",
        "/_matrix/client/v3/account/3pid/bind",
        "/_matrix/client/v3/account/3pid/delete",
        "/_matrix/client/v3/account/3pid/unbind",
        "/_matrix/client/v3/account/3pid/email/requestToken",
    ] {
        alice
            .post(path, &json!({}))
            .await
            .assert_error(404, "M_UNRECOGNIZED");
    }
}

async fn add_child(client: &crate::client::Client, space: &str, child: &str, content: Value) {
    client
        .put(
            &room_path(space, &format!("state/m.space.child/{}", encode(child))),
            &content,
        )
        .await
        .ok();
}

fn hierarchy_rooms(page: &Value) -> Vec<String> {
    page["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms: {page}"))
        .iter()
        .map(|room| room["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

/// A space's rooms breadth first, with the depth, page size, suggested
/// filter and the rooms a user may not see left out.
#[tokio::test]
async fn space_hierarchy_walks_visible_children() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("spalice", PASSWORD).await;
    let bob = anonymous.register("spbob", PASSWORD).await;
    let space = alice
        .create_room(&json!({
            "preset": "public_chat",
            "name": "Top",
            "creation_content": {"type": "m.space"},
        }))
        .await;
    let public_child = alice
        .create_room(&json!({"preset": "public_chat", "name": "Open"}))
        .await;
    let private_child = alice
        .create_room(&json!({"preset": "private_chat", "name": "Closed"}))
        .await;
    let subspace = alice
        .create_room(&json!({
            "preset": "public_chat",
            "name": "Sub",
            "creation_content": {"type": "m.space"},
        }))
        .await;
    let grandchild = alice
        .create_room(&json!({"preset": "public_chat", "name": "Deep"}))
        .await;
    let via = json!({"via": ["it.test"]});
    add_child(
        &alice,
        &space,
        &public_child,
        json!({"via": ["it.test"], "order": "a"}),
    )
    .await;
    add_child(&alice, &space, &private_child, via.clone()).await;
    add_child(
        &alice,
        &space,
        &subspace,
        json!({"via": ["it.test"], "suggested": true}),
    )
    .await;
    add_child(&alice, &subspace, &grandchild, via.clone()).await;
    // A removed child (no via) and an unknown room are left out.
    add_child(&alice, &space, "!gone:it.test", via.clone()).await;
    let old = alice.create_room(&json!({"preset": "public_chat"})).await;
    add_child(&alice, &space, &old, json!({})).await;

    let path = |query: &str| {
        format!(
            "/_matrix/client/v1/rooms/{}/hierarchy{query}",
            encode(&space)
        )
    };
    let whole = alice.get(&path("")).await.ok();
    assert_eq!(
        hierarchy_rooms(&whole),
        vec![
            space.clone(),
            public_child.clone(),
            private_child.clone(),
            subspace.clone(),
            grandchild.clone()
        ],
        "{whole}"
    );
    let top = &whole["rooms"][0];
    assert_eq!(top["name"], "Top");
    assert_eq!(top["room_type"], "m.space");
    assert_eq!(top["num_joined_members"], 1);
    let children: Vec<&str> = top["children_state"]
        .as_array()
        .expect("children_state")
        .iter()
        .map(|event| event["state_key"].as_str().expect("state_key"))
        .collect();
    assert_eq!(children.len(), 4, "{top}");
    assert!(top["children_state"][0]["origin_server_ts"].is_u64());

    // Bob sees what he may join or peek into, not the private room.
    let for_bob = bob.get(&path("")).await.ok();
    assert_eq!(
        hierarchy_rooms(&for_bob),
        vec![
            space.clone(),
            public_child.clone(),
            subspace.clone(),
            grandchild.clone()
        ]
    );
    assert_eq!(
        hierarchy_rooms(&bob.get(&path("?max_depth=1")).await.ok()),
        vec![space.clone(), public_child.clone(), subspace.clone()]
    );
    assert_eq!(
        hierarchy_rooms(&bob.get(&path("?suggested_only=true")).await.ok()),
        vec![space.clone(), subspace.clone()],
        "suggested children only, at every level"
    );
    // Pages of two follow one another.
    let first = bob.get(&path("?limit=2")).await.ok();
    assert_eq!(
        hierarchy_rooms(&first),
        vec![space.clone(), public_child.clone()]
    );
    let from = first["next_batch"].as_str().expect("next_batch");
    let second = bob
        .get(&path(&format!("?limit=2&from={}", encode(from))))
        .await
        .ok();
    assert_eq!(hierarchy_rooms(&second), vec![subspace, grandchild]);
    assert!(second.get("next_batch").is_none(), "{second}");
}

/// Knocking on a `knock` room: the knocker sees it under `rooms.knock`,
/// the room's members see the knock, an invite lets the knocker in.
#[tokio::test]
async fn knocks_reach_the_room_and_the_knocker_sync() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("knalice", PASSWORD).await;
    let bob = anonymous.register("knbob", PASSWORD).await;
    let carol = anonymous.register("kncarol", PASSWORD).await;
    let room = alice
        .create_room(&json!({
            "preset": "private_chat",
            "name": "Knock here",
            "room_alias_name": "knockroom",
            "initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        }))
        .await;
    let knocked = bob
        .post(
            &format!("/_matrix/client/v3/knock/{}", encode(&room)),
            &json!({"reason": "let me in"}),
        )
        .await
        .ok();
    assert_eq!(knocked, json!({"room_id": room}));
    let sync = bob.sync(None, 0).await;
    let knock_state = &sync["rooms"]["knock"][&room]["knock_state"]["events"];
    let events = knock_state.as_array().unwrap_or_else(|| panic!("{sync}"));
    assert!(
        events
            .iter()
            .any(|event| event["type"] == "m.room.name" && event["content"]["name"] == "Knock here")
    );
    let own = events.last().expect("the knock itself");
    assert_eq!(
        (own["type"].as_str(), own["state_key"].as_str()),
        (Some("m.room.member"), Some(bob.user_id.as_str()))
    );
    assert_eq!(own["content"]["membership"], "knock");
    assert!(sync["rooms"]["join"].get(&room).is_none());

    // The room sees the knock, and an invite answers it.
    let member = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            encode(&room),
            encode(&bob.user_id)
        ))
        .await
        .ok();
    assert_eq!(member["membership"], "knock");
    assert_eq!(member["reason"], "let me in");
    alice.invite(&room, &bob.user_id).await.ok();
    bob.join(&room).await.ok();

    // Knocking through the alias, then taking the knock back.
    carol
        .post("/_matrix/client/v3/knock/%23knockroom:it.test", &json!({}))
        .await
        .ok();
    carol.leave(&room).await.ok();
    let member = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            encode(&room),
            encode(&carol.user_id)
        ))
        .await
        .ok();
    assert_eq!(member["membership"], "leave");
}
