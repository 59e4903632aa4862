//! Room traffic from another server, signed here with that server's real
//! key as the spec builds it: a join through `make_join`/`send_join`, PDUs
//! in transactions (good, forged, tampered, unauthorized, too many), and
//! state reads by a server outside and inside the room. Nothing forged
//! appears in the room, and real traffic keeps flowing.

use std::collections::BTreeSet;
use std::path::Path;

use ruma::CanonicalJsonObject;
use ruma::room_version_rules::RoomVersionRules;
use serde_json::{Value, json};

use super::signing::KeyFile;
use super::{
    Certificates, federating_myelin, federation_url, reqwest_insecure, signing_key_path,
    user_with_name,
};
use crate::client::{Client, encode, message_bodies};
use crate::harness::Server;

/// Another server as the target sees it: its name, and its real key.
pub(crate) struct Peer {
    name: String,
    key_file: KeyFile,
    key: myelin_room::ServerKey,
    target_url: String,
    target_name: String,
    http: reqwest::Client,
}

impl Peer {
    pub(crate) fn new(target_url: &str, target_name: &str, origin: &str, key_path: &Path) -> Peer {
        let file = myelin_config::read_signing_key(key_path).expect("the origin's key");
        Peer {
            name: origin.to_owned(),
            key_file: KeyFile::read(key_path),
            key: myelin_room::ServerKey::from_file(origin, &file).expect("a key"),
            target_url: target_url.to_owned(),
            target_name: target_name.to_owned(),
            http: reqwest_insecure(),
        }
    }

    /// `origin`, a Myelin of these tests, as `target` (another) sees it.
    pub(crate) fn between(origin: &Server, target: &Server) -> Peer {
        Peer::new(
            &federation_url(target),
            target.server_name(),
            origin.server_name(),
            &signing_key_path(origin.config_path()),
        )
    }

    /// This server's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A request signed as this server; the body in canonical form.
    pub(crate) async fn request(
        &self,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let content = body.map(|body| serde_json::to_string(body).expect("json"));
        let authorization = self.key_file.authorization_with(
            method,
            uri,
            &self.name,
            &self.target_name,
            content.as_deref(),
        );
        let url = format!("{}{uri}", self.target_url);
        let request = match method {
            "PUT" => self.http.put(url),
            "POST" => self.http.post(url),
            _ => self.http.get(url),
        }
        .header("authorization", authorization);
        let request = match content {
            Some(content) => request
                .header("content-type", "application/json")
                .body(content),
            None => request,
        };
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Hashes and signs `pdu` as this server; returns its event ID.
    fn sign(&self, rules: &RoomVersionRules, pdu: Value) -> (String, Value) {
        sign_with(&self.name, self.key.key_pair(), rules, pdu)
    }

    /// A transaction of `pdus` under `txn_id`.
    pub(crate) async fn send(&self, txn_id: &str, pdus: &[Value]) -> (u16, Value) {
        let body = json!({
            "origin": self.name,
            "origin_server_ts": 1,
            "pdus": pdus,
        });
        self.request(
            "PUT",
            &format!("/_matrix/federation/v1/send/{txn_id}"),
            Some(&body),
        )
        .await
    }
}

/// A user of the peer's server, joined to a room of the target.
pub(crate) struct Joined {
    rules: RoomVersionRules,
    join_id: String,
    depth: i64,
    /// The room's state at the join, as `send_join` returned it.
    state: Value,
}

impl Peer {
    /// The template `make_join` gives `user_id` for `room_id` (versions 10 to 12).
    async fn make_join(&self, room_id: &str, user_id: &str) -> (RoomVersionRules, Value) {
        let uri = format!(
            "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
            encode(room_id),
            encode(user_id)
        );
        let (status, made) = self.request("GET", &uri, None).await;
        assert_eq!(status, 200, "{made}");
        let version: ruma::RoomVersionId = made["room_version"]
            .as_str()
            .expect("room_version")
            .try_into()
            .expect("a version");
        (version.rules().expect("known rules"), made["event"].clone())
    }

    /// Signs and sends a join; returns `send_join`'s answer.
    async fn send_join(&self, room_id: &str, event_id: &str, join: &Value) -> (u16, Value) {
        let uri = format!(
            "/_matrix/federation/v2/send_join/{}/{}",
            encode(room_id),
            encode(event_id)
        );
        self.request("PUT", &uri, Some(join)).await
    }

    /// Joins `user_id` to `room_id` through `make_join` and `send_join`.
    pub(crate) async fn join(&self, room_id: &str, user_id: &str) -> Joined {
        let (rules, template) = self.make_join(room_id, user_id).await;
        let (join_id, join) = self.sign(&rules, template.clone());
        let (status, joined) = self.send_join(room_id, &join_id, &join).await;
        assert_eq!(status, 200, "{joined}");
        Joined {
            rules,
            join_id,
            depth: template["depth"].as_i64().expect("depth"),
            state: joined["state"].clone(),
        }
    }
}

impl Peer {
    /// [`Peer::send`], waiting its turn while the peer's real server has a
    /// transaction of its own in progress (`429`), as a server would.
    pub(crate) async fn send_in_turn(&self, txn_id: &str, pdus: &[Value]) -> (u16, Value) {
        for _ in 0..30 {
            let (status, body) = self.send(txn_id, pdus).await;
            if status != 429 {
                return (status, body);
            }
            let wait = body["retry_after_ms"].as_u64().unwrap_or(200).min(2_000);
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        panic!("the target never gave this server its turn");
    }
}

fn sign_with(
    server: &str,
    key_pair: &ruma::signatures::Ed25519KeyPair,
    rules: &RoomVersionRules,
    pdu: Value,
) -> (String, Value) {
    let mut object: CanonicalJsonObject = serde_json::from_value(pdu).expect("canonical JSON");
    ruma::signatures::hash_and_sign_event(server, key_pair, &mut object, &rules.redaction)
        .expect("sign");
    (
        event_id_of(rules, &object),
        serde_json::to_value(&object).expect("json"),
    )
}

fn event_id_of(rules: &RoomVersionRules, object: &CanonicalJsonObject) -> String {
    format!(
        "${}",
        ruma::signatures::reference_hash(object, rules).expect("reference hash")
    )
}

/// The ID of the state event of `event_type` among `pdus`.
fn state_id(rules: &RoomVersionRules, pdus: &Value, event_type: &str) -> String {
    let pdu = pdus
        .as_array()
        .and_then(|pdus| pdus.iter().find(|pdu| pdu["type"] == event_type))
        .unwrap_or_else(|| panic!("no {event_type} in {pdus}"));
    event_id_of(
        rules,
        &serde_json::from_value(pdu.clone()).expect("canonical JSON"),
    )
}

async fn bodies(reader: &Client, room_id: &str) -> Vec<String> {
    let page = reader
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
            encode(room_id)
        ))
        .await;
    message_bodies(&page.body["chunk"])
}

/// A Myelin with `alice` on it, and another Myelin as a [`Peer`] of it;
/// both run while the first value lives.
pub(crate) async fn myelin_with_a_peer() -> ((Certificates, Server, Server), Client, Peer) {
    let certificates = Certificates::new();
    let target = federating_myelin(&certificates).await;
    let origin = federating_myelin(&certificates).await;
    let alice = user_with_name(&target.url(), "alice", "Alice").await;
    let peer = Peer::between(&origin, &target);
    ((certificates, target, origin), alice, peer)
}

#[tokio::test]
async fn a_room_with_many_branches_is_cited_twenty_at_a_time() {
    let (_servers, alice, peer) = myelin_with_a_peer().await;
    check_wide_branches(&peer, &alice).await;
}

#[tokio::test]
async fn a_redaction_that_comes_before_its_target_applies_when_the_target_lands() {
    let (_servers, alice, peer) = myelin_with_a_peer().await;
    check_redactions_before_their_targets(&peer, &alice).await;
}

/// The display name `user_id`'s member event in `room_id` holds, as
/// `reader` sees it.
async fn displayname_in(reader: &Client, room_id: &str, user_id: &str) -> Value {
    let member = reader
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            encode(room_id),
            encode(user_id)
        ))
        .await
        .ok();
    member["displayname"].clone()
}

/// The `prev_events` of an event of `room_id`, as another server reads it.
async fn prev_events_of(peer: &Peer, event_id: &str) -> BTreeSet<String> {
    let uri = format!("/_matrix/federation/v1/event/{}", encode(event_id));
    let (status, body) = peer.request("GET", &uri, None).await;
    assert_eq!(status, 200, "{body}");
    body["pdus"][0]["prev_events"]
        .as_array()
        .expect("prev_events")
        .iter()
        .map(|prev| prev.as_str().expect("an event ID").to_owned())
        .collect()
}

/// A user of `origin` joins a public room of `alice` and sends 25 events
/// side by side, each citing only the join: the room has 25 forward
/// extremities. Alice's next event cites the deepest 20, the one after it
/// the rest, and the state on the branches left waiting still counts.
pub(crate) async fn check_wide_branches(peer: &Peer, alice: &Client) {
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let mallory = format!("@mallory:{}", peer.name);
    let joined = peer.join(&room_id, &mallory).await;
    let power_levels = state_id(&joined.rules, &joined.state, "m.room.power_levels");
    let join_rules = state_id(&joined.rules, &joined.state, "m.room.join_rules");
    // The shallowest branch renames Mallory; the others are messages.
    // Each is newer than the join, so resolution keeps the rename.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    let branches: Vec<(String, Value)> = (1..=25)
        .map(|n: i64| {
            let mut pdu = json!({
                "type": "m.room.message",
                "room_id": room_id,
                "sender": mallory,
                "content": {"msgtype": "m.text", "body": format!("branch {n}")},
                "origin_server_ts": now + n,
                "depth": joined.depth + n,
                "prev_events": [joined.join_id],
                "auth_events": [power_levels, joined.join_id],
            });
            if n == 1 {
                pdu["type"] = json!("m.room.member");
                pdu["state_key"] = json!(mallory);
                pdu["content"] = json!({"membership": "join", "displayname": "Branchy"});
                pdu["auth_events"] = json!([power_levels, joined.join_id, join_rules]);
            }
            peer.sign(&joined.rules, pdu)
        })
        .collect();
    let pdus: Vec<Value> = branches.iter().map(|(_, pdu)| pdu.clone()).collect();
    let (status, answer) = peer.send_in_turn("side-by-side", &pdus).await;
    assert_eq!(status, 200, "{answer}");
    for (event_id, _) in &branches {
        assert_eq!(answer["pdus"][event_id], json!({}), "{answer}");
    }
    let branch_ids: Vec<String> = branches.into_iter().map(|(id, _)| id).collect();

    let first = alice.send_text(&room_id, "after the branches").await;
    let cited_first = prev_events_of(peer, &first).await;
    let deepest: BTreeSet<String> = branch_ids[5..].iter().cloned().collect();
    assert_eq!(cited_first, deepest, "the deepest twenty");
    let second = alice.send_text(&room_id, "and the rest").await;
    let mut rest: BTreeSet<String> = branch_ids[..5].iter().cloned().collect();
    rest.insert(first.clone());
    assert_eq!(prev_events_of(peer, &second).await, rest);
    let third = alice.send_text(&room_id, "one branch again").await;
    assert_eq!(prev_events_of(peer, &third).await, BTreeSet::from([second]));

    // A message and its redaction in one transaction: the redaction finds
    // the message it follows, written just before it.
    let later_citing = |n: i64, pdu: Value, auth_events: Value| {
        let mut pdu = pdu;
        pdu["room_id"] = json!(room_id);
        pdu["sender"] = json!(mallory);
        pdu["origin_server_ts"] = json!(now + 100 + n);
        pdu["depth"] = json!(joined.depth + 100 + n);
        pdu["auth_events"] = auth_events;
        peer.sign(&joined.rules, pdu)
    };
    let later = |n: i64, pdu: Value| later_citing(n, pdu, json!([power_levels, branch_ids[0]]));
    let (doomed_id, doomed) = later(
        1,
        json!({
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "soon redacted"},
            "prev_events": [third],
        }),
    );
    let (redaction_id, redaction) = later(
        2,
        json!({
            "type": "m.room.redaction",
            "redacts": doomed_id,
            "content": {"redacts": doomed_id},
            "prev_events": [doomed_id],
        }),
    );
    let (status, answer) = peer
        .send_in_turn("message-and-redaction", &[doomed, redaction])
        .await;
    assert_eq!(status, 200, "{answer}");
    for event_id in [&doomed_id, &redaction_id] {
        assert_eq!(answer["pdus"][event_id], json!({}), "{answer}");
    }

    // The rename sat on a branch the first event did not cite; it holds.
    assert_eq!(displayname_in(alice, &room_id, &mallory).await, "Branchy");
    let seen = bodies(alice, &room_id).await;
    for body in [
        "branch 2",
        "branch 25",
        "after the branches",
        "one branch again",
    ] {
        assert!(seen.iter().any(|seen| seen == body), "{body}: {seen:?}");
    }
    assert!(!seen.iter().any(|body| body == "soon redacted"), "{seen:?}");

    // A chain on a branch in one transaction (a server catching up while
    // the room moved on here): each event is judged on the state after the
    // one before it, written with it, a rename among them.
    alice.send_text(&room_id, "the room moved on").await;
    let message = |body: &str| json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}});
    let mut first = message("chain 1");
    first["prev_events"] = json!([redaction_id]);
    let (first_id, first) = later(3, first);
    let (rename_id, rename) = later_citing(
        4,
        json!({
            "type": "m.room.member",
            "state_key": mallory,
            "content": {"membership": "join", "displayname": "Chained"},
            "prev_events": [first_id],
        }),
        json!([power_levels, branch_ids[0], join_rules]),
    );
    let mut last = message("chain 3");
    last["prev_events"] = json!([rename_id]);
    let (last_id, last) = later_citing(5, last, json!([power_levels, rename_id]));
    let (status, answer) = peer
        .send_in_turn("a-chain-on-a-branch", &[first, rename, last])
        .await;
    assert_eq!(status, 200, "{answer}");
    for event_id in [&first_id, &rename_id, &last_id] {
        assert_eq!(answer["pdus"][event_id], json!({}), "{answer}");
    }
    assert_eq!(displayname_in(alice, &room_id, &mallory).await, "Chained");
    let seen = bodies(alice, &room_id).await;
    for body in ["the room moved on", "chain 1", "chain 3"] {
        assert!(seen.iter().any(|seen| seen == body), "{body}: {seen:?}");
    }
}

/// Redactions that arrive before their targets, as when a transaction is
/// lost and its events come again later: Mallory's own redaction applies
/// when her message lands, Trudy's (who may not redact others' events)
/// never does. Both are users of `origin`, in a new public room of `alice`.
pub(crate) async fn check_redactions_before_their_targets(peer: &Peer, alice: &Client) {
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let mallory = format!("@mallory:{}", peer.name);
    let trudy = format!("@trudy:{}", peer.name);
    let mallory_joined = peer.join(&room_id, &mallory).await;
    let trudy_joined = peer.join(&room_id, &trudy).await;
    let rules = &trudy_joined.rules;
    let power_levels = state_id(rules, &trudy_joined.state, "m.room.power_levels");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    // Every event follows Trudy's join, side by side.
    let after_joins = |n: i64, sender: &str, member: &str, pdu: Value| {
        let mut pdu = pdu;
        pdu["room_id"] = json!(room_id);
        pdu["sender"] = json!(sender);
        pdu["origin_server_ts"] = json!(now + n);
        pdu["depth"] = json!(trudy_joined.depth + n);
        pdu["prev_events"] = json!([trudy_joined.join_id]);
        pdu["auth_events"] = json!([power_levels, member]);
        peer.sign(rules, pdu)
    };
    let message = |body: &str| json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}});
    let redaction_of = |target: &str| {
        json!({
            "type": "m.room.redaction",
            "redacts": target,
            "content": {"redacts": target, "reason": "sent before its target"},
        })
    };
    let mallory_says =
        |n: i64, body: &str| after_joins(n, &mallory, &mallory_joined.join_id, message(body));
    let (taken_back_id, taken_back) = mallory_says(1, "taken back before it arrived");
    let (kept_id, kept) = mallory_says(2, "Trudy cannot take this back");
    let (own_redaction_id, own_redaction) = after_joins(
        3,
        &mallory,
        &mallory_joined.join_id,
        redaction_of(&taken_back_id),
    );
    let (trudy_redaction_id, trudy_redaction) =
        after_joins(4, &trudy, &trudy_joined.join_id, redaction_of(&kept_id));

    let (status, answer) = peer
        .send_in_turn("redactions-first", &[own_redaction, trudy_redaction])
        .await;
    assert_eq!(status, 200, "{answer}");
    for event_id in [&own_redaction_id, &trudy_redaction_id] {
        assert_eq!(answer["pdus"][event_id], json!({}), "{answer}");
    }
    let (status, answer) = peer
        .send_in_turn("targets-later", &[taken_back, kept])
        .await;
    assert_eq!(status, 200, "{answer}");
    for event_id in [&taken_back_id, &kept_id] {
        assert_eq!(answer["pdus"][event_id], json!({}), "{answer}");
    }

    super::synapse::assert_redacted(alice, &room_id, &taken_back_id, "sent before its target")
        .await;
    let seen = bodies(alice, &room_id).await;
    assert!(
        !seen
            .iter()
            .any(|body| body == "taken back before it arrived"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|body| body == "Trudy cannot take this back"),
        "{seen:?}"
    );
    let found = super::synapse::search_rooms(alice, "arrived", Some(&[room_id.as_str()])).await;
    assert_eq!(found["count"], 0, "{found}");
    let found = super::synapse::search_rooms(alice, "Trudy", Some(&[room_id.as_str()])).await;
    assert_eq!(found["count"], 1, "{found}");
}

/// Joins a public room of `alice` (on the server at `target_url`) as a
/// user of `origin`, whose key is at `key_path`, and sends it transactions
/// good and bad; checks what `alice` sees.
pub(crate) async fn check_room_traffic(peer: &Peer, alice: &Client) {
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let before = alice.send_text(&room_id, "before anyone joined").await;
    let mallory = format!("@mallory:{}", peer.name);
    let room = encode(&room_id);
    let (status, body) = peer
        .request("GET", "/_matrix/federation/v1/version", None)
        .await;
    assert_eq!(
        (status, body["server"]["name"].as_str()),
        (200, Some("Myelin")),
        "{body}"
    );

    // Not in the room yet: no state, no events.
    let state_ids = format!(
        "/_matrix/federation/v1/state_ids/{room}?event_id={}",
        encode(&before)
    );
    let (status, body) = peer.request("GET", &state_ids, None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let state_uri = format!(
        "/_matrix/federation/v1/state/{room}?event_id={}",
        encode(&before)
    );
    let (status, _) = peer.request("GET", &state_uri, None).await;
    assert_eq!(status, 403);
    let event_uri = format!("/_matrix/federation/v1/event/{}", encode(&before));
    let (status, _) = peer.request("GET", &event_uri, None).await;
    assert_eq!(status, 403);
    let backfill_uri = format!(
        "/_matrix/federation/v1/backfill/{room}?v={}&limit=10",
        encode(&before)
    );
    let (status, _) = peer.request("GET", &backfill_uri, None).await;
    assert_eq!(status, 403);
    let missing_uri = format!("/_matrix/federation/v1/get_missing_events/{room}");
    let missing_body = json!({"earliest_events": [], "latest_events": [before], "limit": 10});
    let (status, _) = peer
        .request("POST", &missing_uri, Some(&missing_body))
        .await;
    assert_eq!(status, 403);
    // A space walk sees the public room, a private one not at all, and
    // an unknown one is not found; a room ID that is none is refused.
    let private = alice.create_room(&json!({"preset": "private_chat"})).await;
    let hierarchy = |room: &str| format!("/_matrix/federation/v1/hierarchy/{}", encode(room));
    let (status, body) = peer.request("GET", &hierarchy(&room_id), None).await;
    assert_eq!(
        (status, body["room"]["room_id"].as_str()),
        (200, Some(room_id.as_str())),
        "{body}"
    );
    for hidden in [private.as_str(), "!unknown:elsewhere.example"] {
        let (status, body) = peer.request("GET", &hierarchy(hidden), None).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (404, Some("M_NOT_FOUND")),
            "{body}"
        );
    }
    let (status, _) = peer.request("GET", &hierarchy("not-a-room"), None).await;
    assert_eq!(status, 400);
    // Of a space's two public children, the one whose server ACL shuts the
    // peer's server out (an IP literal) is listed as inaccessible.
    let space = alice
        .create_room(&json!({"preset": "public_chat", "creation_content": {"type": "m.space"}}))
        .await;
    let open_child = alice.create_room(&json!({"preset": "public_chat"})).await;
    let shut_child = alice.create_room(&json!({"preset": "public_chat"})).await;
    let put_state = |room: &str, event_type: &str, state_key: &str, content: Value| {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{event_type}/{}",
            encode(room),
            encode(state_key)
        );
        async move {
            let put = alice.put(&path, &content).await;
            assert_eq!(put.status, 200, "{}", put.text);
        }
    };
    put_state(
        &shut_child,
        "m.room.server_acl",
        "",
        json!({"allow": ["*"], "allow_ip_literals": false}),
    )
    .await;
    let own_server = peer.target_name.clone();
    for child in [&open_child, &shut_child] {
        put_state(&space, "m.space.child", child, json!({"via": [own_server]})).await;
    }
    let (status, body) = peer.request("GET", &hierarchy(&space), None).await;
    assert_eq!(status, 200, "{body}");
    let shown: Vec<&str> = body["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|child| child["room_id"].as_str())
        .collect();
    assert_eq!(shown, [open_child.as_str()], "{body}");
    assert_eq!(body["inaccessible_children"], json!([shut_child]), "{body}");
    // Someone else's leave, or an invite that is not for this server.
    let make_leave = format!(
        "/_matrix/federation/v1/make_leave/{room}/{}",
        encode("@eve:elsewhere.example")
    );
    let (status, body) = peer.request("GET", &make_leave, None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );

    // A template for a user of another server, or without a common version.
    let make_join = |user: &str, ver: &str| {
        format!(
            "/_matrix/federation/v1/make_join/{room}/{}{ver}",
            encode(user)
        )
    };
    let (status, body) = peer
        .request("GET", &make_join("@eve:elsewhere.example", "?ver=12"), None)
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, body) = peer.request("GET", &make_join(&mallory, ""), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INCOMPATIBLE_ROOM_VERSION")),
        "{body}"
    );
    let (rules, template) = peer.make_join(&room_id, &mallory).await;
    let (join_id, join) = peer.sign(&rules, template.clone());

    // A join signed by another key, or sent under another event ID.
    let impostor = myelin_room::ServerKey::from_file(
        &peer.name,
        &myelin_config::SigningKeyFile {
            version: peer
                .key_file
                .key_id
                .trim_start_matches("ed25519:")
                .to_owned(),
            seed: [9; 32],
        },
    )
    .expect("a key");
    let (forged_join_id, forged_join) =
        sign_with(&peer.name, impostor.key_pair(), &rules, template.clone());
    let (status, body) = peer
        .send_join(&room_id, &forged_join_id, &forged_join)
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, body) = peer.send_join(&room_id, &before, &join).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_JSON")),
        "{body}"
    );
    assert_eq!(
        super::synapse::joined_members(alice, &room_id).await,
        vec![alice.user_id.clone()]
    );

    // The real join: the state before it and its auth chain come back.
    let (status, joined) = peer.send_join(&room_id, &join_id, &join).await;
    assert_eq!(status, 200, "{joined}");
    let state = &joined["state"];
    let power_levels = state_id(&rules, state, "m.room.power_levels");
    state_id(&rules, state, "m.room.create");
    assert!(joined["auth_chain"].is_array(), "{joined}");
    let mut members = vec![alice.user_id.clone(), mallory.clone()];
    members.sort();
    assert_eq!(
        super::synapse::joined_members(alice, &room_id).await,
        members
    );
    let (status, body) = peer.request("GET", &state_ids, None).await;
    assert_eq!(status, 200, "{body}");
    let pdu_ids = body["pdu_ids"].as_array().expect("pdu_ids").clone();
    assert!(!pdu_ids.is_empty());
    // The same state whole (`/state`): the events the IDs name.
    let (status, body) = peer.request("GET", &state_uri, None).await;
    assert_eq!(status, 200, "{body}");
    let pdus = body["pdus"].as_array().expect("pdus");
    assert_eq!(pdus.len(), pdu_ids.len(), "{body}");
    assert!(
        pdus.iter().any(|pdu| pdu["type"] == "m.room.create"),
        "{body}"
    );
    assert!(body["auth_chain"].is_array(), "{body}");
    let (status, body) = peer.request("GET", &event_uri, None).await;
    assert_eq!(
        (status, body["origin"].as_str()),
        (200, Some(peer.target_name.as_str())),
        "{body}"
    );
    // History from before the join: shared, so the joined server sees it.
    let (status, body) = peer.request("GET", &backfill_uri, None).await;
    assert_eq!(status, 200, "{body}");
    let backfilled = body["pdus"].as_array().expect("pdus");
    assert!(
        backfilled
            .iter()
            .any(|pdu| pdu["content"]["body"] == "before anyone joined"),
        "{body}"
    );
    let (status, body) = peer
        .request("POST", &missing_uri, Some(&missing_body))
        .await;
    assert_eq!(status, 200, "{body}");

    // Transactions: a good message, one forged, one tampered with after
    // signing, one the rules refuse (Mallory making herself admin), and one
    // from a user who never joined.
    let depth = template["depth"].as_i64().expect("depth");
    let event = |event_type: &str, state_key: Option<&str>, content: Value, prev: &str, n: i64| {
        let mut pdu = json!({
            "type": event_type,
            "room_id": room_id,
            "sender": mallory,
            "content": content,
            "origin_server_ts": 1_700_000_000_000_i64 + n,
            "depth": depth + n,
            "prev_events": [prev],
            "auth_events": [power_levels, join_id],
        });
        if let Some(state_key) = state_key {
            pdu["state_key"] = Value::from(state_key);
        }
        pdu
    };
    let text = |body: &str| json!({"msgtype": "m.text", "body": body});
    let (good_id, good) = peer.sign(
        &rules,
        event(
            "m.room.message",
            None,
            text("hello from mallory"),
            &join_id,
            1,
        ),
    );
    let (forged_id, forged) = sign_with(
        &peer.name,
        impostor.key_pair(),
        &rules,
        event("m.room.message", None, text("forged"), &good_id, 2),
    );
    let (tampered_id, mut tampered) = peer.sign(
        &rules,
        event("m.room.message", None, text("as signed"), &good_id, 2),
    );
    tampered["content"]["body"] = Value::from("tampered");
    let (coup_id, coup) = peer.sign(
        &rules,
        event(
            "m.room.power_levels",
            Some(""),
            json!({"users": {mallory.clone(): 100}}),
            &tampered_id,
            3,
        ),
    );
    let mut stranger = event(
        "m.room.message",
        None,
        text("from a stranger"),
        &tampered_id,
        3,
    );
    stranger["sender"] = Value::from(format!("@stranger:{}", peer.name));
    let (stranger_id, stranger) = peer.sign(&rules, stranger);

    // More than 50 PDUs or 100 EDUs, or another origin in the body:
    // refused whole.
    let many: Vec<Value> = (0..51).map(|_| good.clone()).collect();
    let (status, body) = peer.send("too-many", &many).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_JSON")),
        "{body}"
    );
    let typing = json!({
        "edu_type": "m.typing",
        "content": {"room_id": room_id, "user_id": mallory, "typing": true},
    });
    let many_edus: Vec<Value> = (0..101).map(|_| typing.clone()).collect();
    let (status, body) = peer
        .request(
            "PUT",
            "/_matrix/federation/v1/send/too-many-edus",
            Some(&json!({
                "origin": peer.name,
                "origin_server_ts": 1,
                "pdus": [good],
                "edus": many_edus,
            })),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_JSON")),
        "{body}"
    );
    let (status, _) = peer
        .request(
            "PUT",
            "/_matrix/federation/v1/send/other-origin",
            Some(&json!({"origin": "elsewhere.example", "origin_server_ts": 1, "pdus": [good]})),
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        !bodies(alice, &room_id)
            .await
            .contains(&"hello from mallory".to_owned())
    );

    let pdus = [good.clone(), forged, tampered, coup, stranger];
    let (status, answer) = peer.send("txn-1", &pdus).await;
    assert_eq!(status, 200, "{answer}");
    let outcome = |event_id: &str| answer["pdus"][event_id].clone();
    assert_eq!(outcome(&good_id), json!({}), "{answer}");
    assert_eq!(outcome(&tampered_id), json!({}), "{answer}");
    for refused in [&forged_id, &coup_id, &stranger_id] {
        assert!(outcome(refused)["error"].is_string(), "{refused}: {answer}");
    }

    // Alice sees the good message and the tampered one emptied by
    // redaction; nothing forged or refused, and she is still the only admin.
    let seen = bodies(alice, &room_id).await;
    assert!(seen.contains(&"hello from mallory".to_owned()), "{seen:?}");
    for absent in ["forged", "tampered", "as signed", "from a stranger"] {
        assert!(
            !seen.iter().any(|body| body == absent),
            "{absent}: {seen:?}"
        );
    }
    let levels = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"
        ))
        .await
        .ok();
    assert!(levels["users"].get(&mallory).is_none(), "{levels}");

    // The same transaction again (a retry) gets the same answer and
    // changes nothing; real traffic flows on.
    let (status, again) = peer.send("txn-1", &pdus).await;
    assert_eq!((status, &again), (200, &answer));
    let count = bodies(alice, &room_id)
        .await
        .iter()
        .filter(|body| *body == "hello from mallory")
        .count();
    assert_eq!(count, 1);
    let (next_id, next) = peer.sign(
        &rules,
        event(
            "m.room.message",
            None,
            text("still flowing"),
            &tampered_id,
            4,
        ),
    );
    let (status, answer_2) = peer.send("txn-2", &[next]).await;
    assert_eq!(
        (status, &answer_2["pdus"][&next_id]),
        (200, &json!({})),
        "{answer_2}"
    );
    assert!(
        bodies(alice, &room_id)
            .await
            .contains(&"still flowing".to_owned())
    );
    // A transaction ID answered already is answered from what was kept:
    // what else a retry under it carries is not processed.
    let (reused_id, reused) = peer.sign(
        &rules,
        event(
            "m.room.message",
            None,
            text("under a used transaction ID"),
            &next_id,
            5,
        ),
    );
    let (status, again) = peer.send("txn-2", &[reused]).await;
    assert_eq!(
        (status, &again["pdus"]),
        (200, &answer_2["pdus"]),
        "{again}"
    );
    assert!(again["pdus"].get(&reused_id).is_none(), "{again}");
    assert!(
        !bodies(alice, &room_id)
            .await
            .contains(&"under a used transaction ID".to_owned())
    );

    // An event citing another room's event as its prev: that room's state
    // must not stand in for this one's.
    let elsewhere = alice.create_room(&json!({"preset": "public_chat"})).await;
    let elsewhere_event = alice.send_text(&elsewhere, "in another room").await;
    let (crossed_id, crossed) = peer.sign(
        &rules,
        event(
            "m.room.message",
            None,
            text("crossed rooms"),
            &elsewhere_event,
            5,
        ),
    );
    let (status, answer) = peer.send("txn-crossed", &[crossed]).await;
    assert_eq!(status, 200, "{answer}");
    let why = answer["pdus"][&crossed_id]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("another room"), "{answer}");
    assert!(
        !bodies(alice, &room_id)
            .await
            .contains(&"crossed rooms".to_owned())
    );

    // Device lists: Alice's (no keys uploaded, so no devices listed), and
    // never another server's user.
    let (status, body) = peer
        .request(
            "GET",
            &format!(
                "/_matrix/federation/v1/user/devices/{}",
                encode(&alice.user_id)
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, body["user_id"].as_str()),
        (200, Some(alice.user_id.as_str())),
        "{body}"
    );
    assert!(
        body["stream_id"].is_u64() && body["devices"].is_array(),
        "{body}"
    );
    let (status, body) = peer
        .request(
            "GET",
            &format!("/_matrix/federation/v1/user/devices/{}", encode(&mallory)),
            None,
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{body}"
    );

    // Soft-fail: once Alice has banned Mallory, an event of hers citing a
    // prev from before the ban passes against the state before it but not
    // against the room's current state. It is taken (the answer holds
    // nothing against it) and kept from clients.
    let ban = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/ban"),
            &json!({"user_id": mallory, "reason": "testing soft-fail"}),
        )
        .await;
    assert_eq!(ban.status, 200, "{}", ban.text);
    let (late_id, late) = peer.sign(
        &rules,
        event("m.room.message", None, text("after the ban"), &next_id, 5),
    );
    let (status, answer) = peer.send("txn-soft-failed", &[late]).await;
    assert_eq!(
        (status, &answer["pdus"][&late_id]),
        (200, &json!({})),
        "{answer}"
    );
    assert!(
        !bodies(alice, &room_id)
            .await
            .contains(&"after the ban".to_owned())
    );

    // A server ACL that leaves IP literals out shuts Mallory's server out:
    // its events, reads and EDUs are refused from then on.
    let acl = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.server_acl/"),
            &json!({"allow": ["*"], "allow_ip_literals": false}),
        )
        .await;
    assert_eq!(acl.status, 200, "{}", acl.text);
    let (banned_id, banned) = peer.sign(
        &rules,
        event("m.room.message", None, text("after the ACL"), &next_id, 5),
    );
    let (status, answer) = peer.send("txn-3", &[banned]).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["pdus"][&banned_id]["error"].is_string(), "{answer}");
    let (status, _) = peer.request("GET", &state_ids, None).await;
    assert_eq!(status, 403);
    let (status, _) = peer.request("GET", &backfill_uri, None).await;
    assert_eq!(status, 403);
    assert!(
        !bodies(alice, &room_id)
            .await
            .contains(&"after the ACL".to_owned())
    );
}
