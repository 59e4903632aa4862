//! Relations, bundled aggregations, threads and search, end to end.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::client::{Client, encode, event_id_of};
use crate::harness::Server;
use crate::split::{self, Split};

const PASSWORD: &str = "pw-relations";

pub(crate) fn relations_path(room_id: &str, event_id: &str, rest: &str) -> String {
    format!(
        "/_matrix/client/v1/rooms/{}/relations/{}{rest}",
        encode(room_id),
        encode(event_id)
    )
}

pub(crate) fn threads_path(room_id: &str, query: &str) -> String {
    format!(
        "/_matrix/client/v1/rooms/{}/threads{query}",
        encode(room_id)
    )
}

pub(crate) async fn send(
    client: &Client,
    room_id: &str,
    event_type: &str,
    content: Value,
) -> String {
    let txn = format!("rel-{}", rand_suffix());
    event_id_of(
        &client
            .send_reply(room_id, event_type, &txn, &content)
            .await
            .ok(),
    )
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn edit(of: &str, body: &str) -> Value {
    json!({"msgtype": "m.text", "body": format!("* {body}"),
           "m.new_content": {"msgtype": "m.text", "body": body},
           "m.relates_to": {"rel_type": "m.replace", "event_id": of}})
}

pub(crate) fn in_thread(root: &str, body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body,
           "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                            "m.in_reply_to": {"event_id": root}}})
}

fn ids(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {chunk}"))
        .iter()
        .map(|event| event["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn user_id(client: &Client) -> String {
    client.whoami().await.ok()["user_id"]
        .as_str()
        .expect("whoami")
        .to_owned()
}

fn find<'a>(events: &'a Value, event_id: &str) -> &'a Value {
    events
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .find(|event| event["event_id"].as_str() == Some(event_id))
        })
        .unwrap_or_else(|| panic!("{event_id} not in {events}"))
}

#[tokio::test]
async fn relations_paginate_and_aggregations_are_bundled_everywhere() {
    let server = Server::builder().open_registration().start().await;
    relations_cases(&server.client(), "").await;
}

#[tokio::test]
async fn search_finds_what_the_user_may_read() {
    let server = Server::builder().open_registration().start().await;
    search_cases(&server.client(), "").await;
}

/// Both scenarios on the split topology: PostgreSQL, the persister's index,
/// several client APIs and the synchrotron's bundling.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_relations_and_search() {
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
    relations_cases(&anonymous, "rel").await;
    search_cases(&anonymous, "find").await;
}

async fn relations_cases(anonymous: &Client, names: &str) {
    let alice = anonymous.register(&format!("{names}alice"), PASSWORD).await;
    let bob = anonymous.register(&format!("{names}bob"), PASSWORD).await;
    let carol = anonymous.register(&format!("{names}carol"), PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room).await.ok();
    carol.join(&room).await.ok();

    let root = alice.send_text(&room, "the original").await;
    let first_edit = send(&alice, &room, "m.room.message", edit(&root, "first fix")).await;
    let last_edit = send(&alice, &room, "m.room.message", edit(&root, "second fix")).await;
    // Edits by anyone but the sender never count.
    let forged = send(&bob, &room, "m.room.message", edit(&root, "bob's version")).await;
    let reply_one = send(&bob, &room, "m.room.message", in_thread(&root, "reply one")).await;
    let reply_two = send(&bob, &room, "m.room.message", in_thread(&root, "reply two")).await;
    let reaction = send(
        &carol,
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}),
    )
    .await;
    let reference = send(
        &carol,
        &room,
        "m.room.message",
        json!({"msgtype": "m.text", "body": "see above",
               "m.relates_to": {"rel_type": "m.reference", "event_id": root}}),
    )
    .await;
    let nested = send(
        &alice,
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": reply_one, "key": "!"}}),
    )
    .await;
    let unrelated = alice.send_text(&room, "unrelated").await;
    let newest_first = vec![
        reference.clone(),
        reaction.clone(),
        reply_two.clone(),
        reply_one.clone(),
        forged.clone(),
        last_edit.clone(),
        first_edit.clone(),
    ];

    let all = carol.get(&relations_path(&room, &root, "")).await.ok();
    assert_eq!(ids(&all["chunk"]), newest_first);
    assert!(all.get("next_batch").is_none(), "one page: {all}");

    // Backward in pages of three, then forward in pages of two.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..5 {
        let query = match &from {
            Some(token) => format!("?limit=3&from={}", encode(token)),
            None => "?limit=3".to_owned(),
        };
        let page = carol.get(&relations_path(&room, &root, &query)).await.ok();
        seen.extend(ids(&page["chunk"]));
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    let mut forward = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..6 {
        let query = match &from {
            Some(token) => format!("?dir=f&limit=2&from={}", encode(token)),
            None => "?dir=f&limit=2".to_owned(),
        };
        let page = carol.get(&relations_path(&room, &root, &query)).await.ok();
        forward.extend(ids(&page["chunk"]));
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
    }
    let mut oldest_first = newest_first.clone();
    oldest_first.reverse();
    assert_eq!(forward, oldest_first);

    let threads = carol
        .get(&relations_path(&room, &root, "/m.thread"))
        .await
        .ok();
    assert_eq!(
        ids(&threads["chunk"]),
        vec![reply_two.clone(), reply_one.clone()]
    );
    let reactions = carol
        .get(&relations_path(&room, &root, "/m.annotation/m.reaction"))
        .await
        .ok();
    assert_eq!(ids(&reactions["chunk"]), vec![reaction.clone()]);
    let none = carol
        .get(&relations_path(
            &room,
            &root,
            "/m.annotation/m.room.message",
        ))
        .await
        .ok();
    assert_eq!(ids(&none["chunk"]), Vec::<String>::new());
    let deep = carol
        .get(&relations_path(&room, &root, "?recurse=true"))
        .await
        .ok();
    assert_eq!(ids(&deep["chunk"])[0], nested);
    assert_eq!(deep["recursion_depth"], json!(3));
    assert!(!ids(&all["chunk"]).contains(&nested));
    assert!(!ids(&deep["chunk"]).contains(&unrelated));

    // The aggregations of the root, as each user sees them.
    let check = |event: &Value, participated: bool| {
        assert_eq!(
            event["content"]["body"], "the original",
            "edits are not applied: {event}"
        );
        let relations = &event["unsigned"]["m.relations"];
        assert_eq!(
            relations["m.replace"]["event_id"],
            json!(last_edit),
            "{event}"
        );
        assert_eq!(
            relations["m.replace"]["content"]["m.new_content"]["body"],
            "second fix"
        );
        assert_eq!(relations["m.thread"]["count"], json!(2));
        assert_eq!(
            relations["m.thread"]["latest_event"]["event_id"],
            json!(reply_two)
        );
        assert_eq!(
            relations["m.thread"]["current_user_participated"],
            json!(participated)
        );
        assert_eq!(
            relations["m.reference"]["chunk"],
            json!([{"event_id": reference}])
        );
    };
    let event_path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode(&room),
        encode(&root)
    );
    check(&alice.get(&event_path).await.ok(), true);
    check(&bob.get(&event_path).await.ok(), true);
    check(&carol.get(&event_path).await.ok(), false);
    let messages = carol.messages(&room, "b", None, 50).await;
    check(find(&messages["chunk"], &root), false);
    let plain = find(&messages["chunk"], &unrelated);
    assert!(plain["unsigned"].get("m.relations").is_none(), "{plain}");
    let context = carol
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=20",
            encode(&room),
            encode(&reply_one)
        ))
        .await
        .ok();
    check(find(&context["events_before"], &root), false);
    let context = carol
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}",
            encode(&room),
            encode(&root)
        ))
        .await
        .ok();
    check(&context["event"], false);
    let filter = encode(r#"{"room":{"timeline":{"limit":50}}}"#);
    let sync = carol
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .await
        .ok();
    check(
        find(&sync["rooms"]["join"][&room]["timeline"]["events"], &root),
        false,
    );

    // Threads: the root with its summary; "participated" by user.
    let listed = carol.get(&threads_path(&room, "")).await.ok();
    assert_eq!(ids(&listed["chunk"]), vec![root.clone()]);
    check(&listed["chunk"][0], false);
    let mine = carol
        .get(&threads_path(&room, "?include=participated"))
        .await
        .ok();
    assert_eq!(ids(&mine["chunk"]), Vec::<String>::new());
    let bobs = bob
        .get(&threads_path(&room, "?include=participated"))
        .await
        .ok();
    assert_eq!(ids(&bobs["chunk"]), vec![root.clone()]);

    // A newer thread comes first; pages of one reach both.
    let other_root = carol.send_text(&room, "another topic").await;
    send(
        &alice,
        &room,
        "m.room.message",
        in_thread(&other_root, "yes"),
    )
    .await;
    let first = carol.get(&threads_path(&room, "?limit=1")).await.ok();
    assert_eq!(ids(&first["chunk"]), vec![other_root.clone()]);
    let next = first["next_batch"].as_str().expect("a second page");
    let second = carol
        .get(&threads_path(
            &room,
            &format!("?limit=1&from={}", encode(next)),
        ))
        .await
        .ok();
    assert_eq!(ids(&second["chunk"]), vec![root.clone()]);
    let carols = carol
        .get(&threads_path(&room, "?include=participated"))
        .await
        .ok();
    assert_eq!(ids(&carols["chunk"]), vec![other_root]);

    // The thread's newest reply comes with its own edit.
    let reply_edit = send(
        &bob,
        &room,
        "m.room.message",
        edit(&reply_two, "reply two, fixed"),
    )
    .await;
    let event = carol.get(&event_path).await.ok();
    let latest = &event["unsigned"]["m.relations"]["m.thread"]["latest_event"];
    assert_eq!(latest["event_id"], json!(reply_two));
    assert_eq!(latest["content"]["body"], "reply two", "{latest}");
    assert_eq!(
        latest["unsigned"]["m.relations"]["m.replace"]["event_id"],
        json!(reply_edit)
    );

    // A redacted edit no longer counts: the one before it does.
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/undo-1",
                encode(&room),
                encode(&last_edit)
            ),
            &json!({}),
        )
        .await
        .ok();
    let event = carol.get(&event_path).await.ok();
    assert_eq!(
        event["unsigned"]["m.relations"]["m.replace"]["event_id"],
        json!(first_edit)
    );

    // A redacted original keeps no edit; its thread stays.
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/undo-2",
                encode(&room),
                encode(&root)
            ),
            &json!({}),
        )
        .await
        .ok();
    let event = carol.get(&event_path).await.ok();
    assert!(
        event["unsigned"]["m.relations"].get("m.replace").is_none(),
        "{event}"
    );
    assert_eq!(
        event["unsigned"]["m.relations"]["m.thread"]["count"],
        json!(2)
    );

    // A room left since the last sync: its timeline has its aggregations,
    // as they stood at the leave.
    let since = carol.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let parting = alice.send_text(&room, "before carol goes").await;
    let seen_edit = send(&alice, &room, "m.room.message", edit(&parting, "seen")).await;
    carol.leave(&room).await.ok();
    send(&alice, &room, "m.room.message", edit(&parting, "unseen")).await;
    let sync = carol.sync(Some(&since), 0).await;
    let left = &sync["rooms"]["leave"][&room]["timeline"]["events"];
    assert_eq!(
        find(left, &parting)["unsigned"]["m.relations"]["m.replace"]["event_id"],
        json!(seen_edit),
        "{left}"
    );
}

fn search_body(term: &str, extra: Value) -> Value {
    let mut criteria = json!({"search_term": term});
    if let (Some(criteria), Some(extra)) = (criteria.as_object_mut(), extra.as_object()) {
        criteria.extend(extra.clone());
    }
    json!({"search_categories": {"room_events": criteria}})
}

pub(crate) async fn search(client: &Client, term: &str, extra: Value) -> Value {
    client
        .post("/_matrix/client/v3/search", &search_body(term, extra))
        .await
        .ok()["search_categories"]["room_events"]
        .clone()
}

pub(crate) fn result_ids(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .map(|result| {
                    result["result"]["event_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn search_cases(anonymous: &Client, names: &str) {
    let alice = anonymous.register(&format!("{names}alice"), PASSWORD).await;
    let bob = anonymous.register(&format!("{names}bob"), PASSWORD).await;
    let alice_id = user_id(&alice).await;
    let shared = alice
        .create_room(&json!({"preset": "public_chat", "name": "Purple lounge"}))
        .await;
    let private = alice.create_room(&json!({"name": "Secret"})).await;
    bob.join(&shared).await.ok();
    let first = alice.send_text(&shared, "the purple elephant dances").await;
    let second = bob.send_text(&shared, "Purple? Really purple.").await;
    alice.send_text(&shared, "nothing to see").await;
    alice.send_text(&private, "purple secret").await;
    let third = alice.send_text(&shared, "purple again").await;

    let recent = search(&bob, "purple", json!({"order_by": "recent"})).await;
    let name_event = {
        let state = bob
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.name/",
                encode(&shared)
            ))
            .await
            .ok();
        assert_eq!(state["name"], "Purple lounge");
        recent["results"]
            .as_array()
            .and_then(|results| results.last())
            .map(|result| result["result"]["type"].clone())
    };
    assert_eq!(name_event, Some(json!("m.room.name")));
    let found = result_ids(&recent);
    assert_eq!(found.len(), 4, "{recent}");
    assert_eq!(found[..3], [third.clone(), second.clone(), first.clone()]);
    assert_eq!(recent["count"], json!(4));
    assert_eq!(recent["highlights"], json!(["purple"]));

    let ranked = search(&bob, "PURPLE", json!({"keys": ["content.body"]})).await;
    assert_eq!(
        result_ids(&ranked)[0],
        second,
        "two mentions rank first: {ranked}"
    );
    assert_eq!(result_ids(&ranked).len(), 3);
    let ranks: Vec<f64> = ranked["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| result["rank"].as_f64().expect("rank"))
        .collect();
    assert!(ranks.windows(2).all(|pair| pair[0] >= pair[1]), "{ranks:?}");

    // Pages of one with next_batch reach every result once.
    let mut paged = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..6 {
        let body = search_body(
            "purple",
            json!({"order_by": "recent", "filter": {"limit": 1}}),
        );
        let path = match &next {
            Some(token) => format!("/_matrix/client/v3/search?next_batch={}", encode(token)),
            None => "/_matrix/client/v3/search".to_owned(),
        };
        let page = bob.post(&path, &body).await.ok()["search_categories"]["room_events"].clone();
        paged.extend(result_ids(&page));
        match page["next_batch"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, found);

    // Filters: senders, types, rooms.
    let by_bob = search(
        &alice,
        "purple",
        json!({"filter": {"senders": [user_id(&bob).await]}}),
    )
    .await;
    assert_eq!(result_ids(&by_bob), vec![second.clone()]);
    let only_private = search(&alice, "purple", json!({"filter": {"rooms": [private]}})).await;
    assert_eq!(result_ids(&only_private).len(), 1);
    let not_names = search(
        &alice,
        "purple",
        json!({"filter": {"not_types": ["m.room.name"], "not_rooms": [private]}}),
    )
    .await;
    assert_eq!(result_ids(&not_names).len(), 3);
    let bob_private = search(&bob, "secret", json!({})).await;
    assert_eq!(
        result_ids(&bob_private),
        Vec::<String>::new(),
        "{bob_private}"
    );

    // Context, profiles and groups.
    let with_context = search(
        &bob,
        "elephant",
        json!({"event_context": {"before_limit": 1, "after_limit": 1, "include_profile": true},
               "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}}),
    )
    .await;
    let result = &with_context["results"][0];
    assert_eq!(result["result"]["event_id"], json!(first));
    assert_eq!(
        result["context"]["events_after"][0]["event_id"],
        json!(second)
    );
    assert_eq!(
        result["context"]["events_before"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(
        result["context"]["profile_info"].get(&alice_id).is_some(),
        "{result}"
    );
    assert_eq!(
        with_context["groups"]["room_id"][&shared]["results"],
        json!([first])
    );
    assert_eq!(
        with_context["groups"]["sender"][&alice_id]["order"],
        json!(1)
    );
    assert!(with_context.get("state").is_none(), "only when asked");
    let with_state = search(&bob, "elephant", json!({"include_state": true})).await;
    let names: Vec<&Value> = with_state["state"][&shared]
        .as_array()
        .expect("the room's state")
        .iter()
        .filter(|event| event["type"] == "m.room.name")
        .collect();
    assert_eq!(names.len(), 1, "{with_state}");

    // A former member finds what was sent before their leave only.
    bob.leave(&shared).await.ok();
    let late = alice.send_text(&shared, "purple after bob left").await;
    let after_leave = result_ids(&search(&bob, "purple", json!({"order_by": "recent"})).await);
    assert!(!after_leave.contains(&late));
    assert!(after_leave.contains(&first));
    assert!(
        result_ids(&search(&alice, "purple", json!({"order_by": "recent"})).await).contains(&late)
    );

    // A redacted message is no longer found.
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/gone-1",
                encode(&shared),
                encode(&first)
            ),
            &json!({}),
        )
        .await
        .ok();
    let gone = search(&alice, "elephant", json!({})).await;
    assert_eq!(result_ids(&gone), Vec::<String>::new());
    // A NUL in a body is stored, and separates words.
    let nul = alice.send_text(&shared, "zebra\u{0}crossing").await;
    let crossing = search(&alice, "crossing", json!({})).await;
    assert_eq!(result_ids(&crossing), vec![nul]);
    let distinct: HashSet<String> = found.into_iter().collect();
    assert_eq!(distinct.len(), 4);
}
