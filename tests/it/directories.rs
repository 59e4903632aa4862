//! The room directory (`/publicRooms`, `/directory/list/room`) and the user
//! directory, driven over HTTP on both shapes.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::client::{Client, encode};
use crate::harness::Server;
use crate::split::{self, Split};

const PASSWORD: &str = "pw-directories";

fn visibility_path(room_id: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", encode(room_id))
}

/// The room IDs of a `/publicRooms` chunk.
fn room_ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk: {page}"))
        .iter()
        .map(|room| room["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

fn entry<'a>(page: &'a Value, room_id: &str) -> &'a Value {
    page["chunk"]
        .as_array()
        .and_then(|chunk| chunk.iter().find(|room| room["room_id"] == room_id))
        .unwrap_or_else(|| panic!("{room_id} not listed: {page}"))
}

async fn search_rooms(client: &Client, filter: Value) -> Vec<String> {
    let page = client
        .post(
            "/_matrix/client/v3/publicRooms",
            &json!({"filter": filter, "limit": 100}),
        )
        .await
        .ok();
    room_ids(&page)
}

/// Every room of the directory, following `next_batch` one room at a time.
async fn every_listed_room(client: &Client) -> Vec<String> {
    let mut rooms = Vec::new();
    let mut since: Option<String> = None;
    for _ in 0..50 {
        let path = match &since {
            Some(token) => format!(
                "/_matrix/client/v3/publicRooms?limit=1&since={}",
                encode(token)
            ),
            None => "/_matrix/client/v3/publicRooms?limit=1".to_owned(),
        };
        let page = client.get(&path).await.ok();
        let ids = room_ids(&page);
        assert!(ids.len() <= 1, "limit 1 gave {page}");
        rooms.extend(ids);
        match page["next_batch"].as_str() {
            Some(token) => since = Some(token.to_owned()),
            None => return rooms,
        }
    }
    panic!("the directory never ended: {rooms:?}");
}

/// `createRoom` with `visibility: public` publishes; the entry tells the
/// room's state; search, room types and pagination; only those who may set
/// the canonical alias change the visibility.
pub async fn room_directory_cases(anonymous: &Client) {
    let alice = anonymous.register("diralice", PASSWORD).await;
    let server_name = alice.user_id.split_once(':').expect("user ID").1.to_owned();
    let bob = anonymous.register("dirbob", PASSWORD).await;
    let lounge = alice
        .create_room(&json!({
            "visibility": "public",
            "name": "Rustaceans Lounge",
            "topic": "All about crabs",
            "room_alias_name": "dirlounge",
        }))
        .await;
    let hidden = alice
        .create_room(&json!({"name": "Hidden Lounge", "preset": "private_chat"}))
        .await;
    let space = alice
        .create_room(&json!({
            "visibility": "public",
            "name": "Crab Space",
            "creation_content": {"type": "m.space"},
        }))
        .await;
    bob.join(&lounge).await.ok();

    // Listing needs a token unless allow_public_rooms_without_auth is set.
    anonymous
        .get("/_matrix/client/v3/publicRooms")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let page = bob.get("/_matrix/client/v3/publicRooms").await.ok();
    let listed: BTreeSet<String> = room_ids(&page).into_iter().collect();
    assert_eq!(
        listed,
        BTreeSet::from([lounge.clone(), space.clone()]),
        "{page}"
    );
    assert_eq!(page["total_room_count_estimate"], 2);
    let room = entry(&page, &lounge);
    assert_eq!(room["name"], "Rustaceans Lounge");
    assert_eq!(room["topic"], "All about crabs");
    assert_eq!(room["canonical_alias"], format!("#dirlounge:{server_name}"));
    assert_eq!(room["num_joined_members"], 2);
    assert_eq!(room["world_readable"], false);
    assert_eq!(room["guest_can_join"], false);
    // ruma leaves out the spec's default, `public`.
    assert!(
        room.get("join_rule").is_none_or(|rule| rule == "public"),
        "{room}"
    );
    assert!(room.get("room_type").is_none(), "{room}");
    assert_eq!(entry(&page, &space)["room_type"], "m.space");

    // Search over name, topic and alias, case-insensitively.
    assert_eq!(
        search_rooms(&alice, json!({"generic_search_term": "LOUNGE"})).await,
        vec![lounge.clone()],
        "the unpublished Hidden Lounge stays out"
    );
    assert_eq!(
        search_rooms(&alice, json!({"generic_search_term": "crabs"})).await,
        vec![lounge.clone()]
    );
    assert_eq!(
        search_rooms(&alice, json!({"generic_search_term": "dirlounge"})).await,
        vec![lounge.clone()]
    );
    assert!(
        search_rooms(&alice, json!({"generic_search_term": "no such room"}))
            .await
            .is_empty()
    );
    assert_eq!(
        search_rooms(&alice, json!({"room_types": ["m.space"]})).await,
        vec![space.clone()]
    );
    assert_eq!(
        search_rooms(&alice, json!({"room_types": [null]})).await,
        vec![lounge.clone()]
    );
    let networks = alice
        .post(
            "/_matrix/client/v3/publicRooms",
            &json!({"include_all_networks": true}),
        )
        .await
        .ok();
    assert_eq!(room_ids(&networks).len(), 2);

    // Pages of one room: each room once, then no next_batch.
    let mut paged = every_listed_room(&bob).await;
    paged.sort();
    let mut expected = vec![lounge.clone(), space.clone()];
    expected.sort();
    assert_eq!(paged, expected);

    // Visibility: read by anyone, changed by those who may set the alias.
    let visibility = |room: &str| {
        let path = visibility_path(room);
        async move { anonymous.get(&path).await }
    };
    assert_eq!(visibility(&lounge).await.ok()["visibility"], "public");
    assert_eq!(visibility(&hidden).await.ok()["visibility"], "private");
    bob.put(&visibility_path(&lounge), &json!({"visibility": "private"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .put(&visibility_path(&lounge), &json!({"visibility": "private"}))
        .await
        .ok();
    assert_eq!(visibility(&lounge).await.ok()["visibility"], "private");
    let page = bob.get("/_matrix/client/v3/publicRooms").await.ok();
    assert_eq!(room_ids(&page), vec![space.clone()]);

    // A published room that only invitees may join is not listed.
    alice
        .put(&visibility_path(&hidden), &json!({"visibility": "public"}))
        .await
        .ok();
    assert_eq!(visibility(&hidden).await.ok()["visibility"], "public");
    assert!(
        search_rooms(&alice, json!({"generic_search_term": "hidden"}))
            .await
            .is_empty()
    );
}

async fn set_displayname(client: &Client, name: &str) {
    client
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                encode(&client.user_id)
            ),
            &json!({"displayname": name}),
        )
        .await
        .ok();
}

async fn search_users(client: &Client, term: &str, limit: u64) -> Value {
    client
        .post(
            "/_matrix/client/v3/user_directory/search",
            &json!({"search_term": term, "limit": limit}),
        )
        .await
        .ok()
}

fn found_users(results: &Value) -> Vec<String> {
    results["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {results}"))
        .iter()
        .map(|user| user["user_id"].as_str().expect("user_id").to_owned())
        .collect()
}

/// Users sharing a room with the searcher and users in public rooms are
/// found, by ID or display name; a user alone in a private room is not.
pub async fn user_directory_cases(anonymous: &Client) {
    let alice = anonymous.register("udtalice", PASSWORD).await;
    let bob = anonymous.register("udtbob", PASSWORD).await;
    let carol = anonymous.register("udtcarol", PASSWORD).await;
    let dave = anonymous.register("udtdave", PASSWORD).await;
    set_displayname(&bob, "Bobby Tables").await;
    let shared = alice
        .create_room(&json!({"preset": "private_chat", "invite": [bob.user_id]}))
        .await;
    bob.join(&shared).await.ok();
    carol.create_room(&json!({"preset": "public_chat"})).await;
    dave.create_room(&json!({"preset": "private_chat"})).await;

    let results = search_users(&alice, "udt", 10).await;
    assert_eq!(
        found_users(&results),
        vec![
            alice.user_id.clone(),
            bob.user_id.clone(),
            carol.user_id.clone()
        ],
        "{results}"
    );
    assert_eq!(results["limited"], false);
    let results = search_users(&alice, "TABLES", 10).await;
    assert_eq!(found_users(&results), vec![bob.user_id.clone()]);
    assert_eq!(results["results"][0]["display_name"], "Bobby Tables");
    let results = search_users(&alice, "udt", 2).await;
    assert_eq!(found_users(&results).len(), 2);
    assert_eq!(results["limited"], true);
    assert!(found_users(&search_users(&alice, "udtdave", 10).await).is_empty());
    // Dave is found once he is in a public room.
    dave.join(
        &carol
            .create_room(&json!({"preset": "public_chat", "name": "open"}))
            .await,
    )
    .await
    .ok();
    assert_eq!(
        found_users(&search_users(&alice, "udtdave", 10).await),
        vec![dave.user_id.clone()]
    );
}

/// `/versions` and `/capabilities` offer what works: no unstable features,
/// no third-party identifier changes, password and profile changes left at
/// the spec's default (enabled).
#[tokio::test]
async fn discovery_advertises_what_works() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let versions = anonymous.get("/_matrix/client/versions").await.ok();
    let listed = versions["versions"].as_array().expect("versions");
    assert!(listed.contains(&json!("v1.6")), "{versions}");
    assert!(
        versions
            .get("unstable_features")
            .is_none_or(|features| features == &json!({})),
        "{versions}"
    );
    let alice = anonymous.register("capalice", PASSWORD).await;
    let capabilities =
        alice.get("/_matrix/client/v3/capabilities").await.ok()["capabilities"].clone();
    assert_eq!(capabilities["m.3pid_changes"]["enabled"], false);
    for enabled_by_default in ["m.change_password", "m.set_displayname", "m.set_avatar_url"] {
        assert!(
            capabilities
                .get(enabled_by_default)
                .is_none_or(|capability| capability["enabled"] == true),
            "{capabilities}"
        );
    }
    assert!(
        capabilities
            .get("m.get_login_token")
            .is_none_or(|capability| capability["enabled"] == false),
        "{capabilities}"
    );
    let versions = &capabilities["m.room_versions"];
    assert_eq!(
        versions["available"][versions["default"].as_str().expect("default")],
        "stable"
    );
}

#[tokio::test]
async fn room_directory_lists_published_rooms() {
    let server = Server::builder().open_registration().start().await;
    room_directory_cases(&server.client()).await;
}

#[tokio::test]
async fn public_rooms_may_be_listed_without_a_token_when_allowed() {
    let server = Server::builder()
        .open_registration()
        .env("MYELIN_ALLOW_PUBLIC_ROOMS_WITHOUT_AUTH", "true")
        .start()
        .await;
    let anonymous = server.client();
    let alice = anonymous.register("guestalice", PASSWORD).await;
    let lounge = alice
        .create_room(&json!({"visibility": "public", "name": "Open Lounge"}))
        .await;
    let page = anonymous.get("/_matrix/client/v3/publicRooms").await.ok();
    assert_eq!(room_ids(&page), vec![lounge], "{page}");
    // A token that is sent must still be good.
    let mut stranger = server.client();
    stranger.access_token = Some("not-a-token".to_owned());
    stranger
        .get("/_matrix/client/v3/publicRooms")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    // Searching stays for users, as the spec has it.
    anonymous
        .post("/_matrix/client/v3/publicRooms", &json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn user_directory_finds_shared_and_public_room_members() {
    let server = Server::builder().open_registration().start().await;
    user_directory_cases(&server.client()).await;
}

#[tokio::test]
async fn user_directory_can_search_all_users() {
    let server = Server::builder()
        .open_registration()
        .env("MYELIN_USER_DIRECTORY__SEARCH_ALL_USERS", "true")
        .start()
        .await;
    let anonymous = server.client();
    let alice = anonymous.register("allalice", PASSWORD).await;
    let loner = anonymous.register("allloner", PASSWORD).await;
    loner.create_room(&json!({"preset": "private_chat"})).await;
    assert_eq!(
        found_users(&search_users(&alice, "allloner", 10).await),
        vec![loner.user_id.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_directories_and_openid_userinfo() {
    let Some(settings) = split::settings() else {
        return;
    };
    let split = Split::up_with(
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
    room_directory_cases(&anonymous).await;
    user_directory_cases(&anonymous).await;
    // The federation-side userinfo check goes through the gateway to client-api.
    crate::endpoints::openid_cases(&anonymous).await;
}

/// Upgrading a published room lists its successor instead.
#[tokio::test]
async fn upgraded_rooms_hand_their_listing_on() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("upgalice", PASSWORD).await;
    let old = alice
        .create_room(&json!({"visibility": "public", "preset": "public_chat", "name": "Old"}))
        .await;
    let upgraded = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/upgrade", encode(&old)),
            &json!({"new_version": "11"}),
        )
        .await
        .ok();
    let new = upgraded["replacement_room"]
        .as_str()
        .expect("replacement_room");
    let page = alice.get("/_matrix/client/v3/publicRooms").await.ok();
    assert_eq!(room_ids(&page), vec![new.to_owned()], "{page}");
    assert_eq!(
        anonymous.get(&visibility_path(&old)).await.ok()["visibility"],
        "private"
    );
}
