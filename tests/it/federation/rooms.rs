//! Room traffic from another server, signed here with that server's real
//! key as the spec builds it: a join through `make_join`/`send_join`, PDUs
//! in transactions (good, forged, tampered, unauthorized, too many), and
//! state reads by a server outside and inside the room. Nothing forged
//! appears in the room, and real traffic keeps flowing.

use std::path::Path;

use ruma::CanonicalJsonObject;
use ruma::room_version_rules::RoomVersionRules;
use serde_json::{Value, json};

use super::forged::KeyFile;
use super::{Certificates, federating_myelin, federation_url, reqwest_insecure, user_with_name};
use crate::client::{Client, encode, message_bodies};

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

    /// A request signed as this server; the body in canonical form.
    async fn request(&self, method: &str, uri: &str, body: Option<&Value>) -> (u16, Value) {
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

#[tokio::test]
async fn room_traffic_from_another_server_is_checked_before_it_lands() {
    let certificates = Certificates::new();
    let target = federating_myelin(&certificates).await;
    let origin = federating_myelin(&certificates).await;
    let alice = user_with_name(&target.url(), "alice", "Alice").await;
    check_room_traffic(
        &federation_url(&target),
        target.server_name(),
        &alice,
        origin.server_name(),
        &super::signing_key_path(origin.config_path()),
    )
    .await;
}

/// Joins a public room of `alice` (on the server at `target_url`) as a
/// user of `origin`, whose key is at `key_path`, and sends it transactions
/// good and bad; checks what `alice` sees.
pub(crate) async fn check_room_traffic(
    target_url: &str,
    target_name: &str,
    alice: &Client,
    origin: &str,
    key_path: &Path,
) {
    let peer = Peer::new(target_url, target_name, origin, key_path);
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let before = alice.send_text(&room_id, "before anyone joined").await;
    let mallory = format!("@mallory:{}", peer.name);
    let room = encode(&room_id);

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
    let (status, made) = peer
        .request("GET", &make_join(&mallory, "?ver=10&ver=11&ver=12"), None)
        .await;
    assert_eq!(status, 200, "{made}");
    let version: ruma::RoomVersionId = made["room_version"]
        .as_str()
        .expect("room_version")
        .try_into()
        .expect("a version");
    let rules = version.rules().expect("known rules");
    let (join_id, join) = peer.sign(&rules, made["event"].clone());

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
    let (forged_join_id, forged_join) = sign_with(
        &peer.name,
        impostor.key_pair(),
        &rules,
        made["event"].clone(),
    );
    let send_join = |event_id: &str| {
        format!(
            "/_matrix/federation/v2/send_join/{room}/{}",
            encode(event_id)
        )
    };
    let (status, body) = peer
        .request("PUT", &send_join(&forged_join_id), Some(&forged_join))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, body) = peer.request("PUT", &send_join(&before), Some(&join)).await;
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
    let (status, joined) = peer.request("PUT", &send_join(&join_id), Some(&join)).await;
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
    assert!(!body["pdu_ids"].as_array().expect("pdu_ids").is_empty());
    let (status, body) = peer.request("GET", &event_uri, None).await;
    assert_eq!(
        (status, body["origin"].as_str()),
        (200, Some(target_name)),
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
    let depth = made["event"]["depth"].as_i64().expect("depth");
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

    // More than 50 PDUs, or another origin in the body: refused whole.
    let many: Vec<Value> = (0..51).map(|_| good.clone()).collect();
    let (status, body) = peer.send("too-many", &many).await;
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

    // The same transaction again changes nothing; real traffic flows on.
    let (status, _) = peer.send("txn-1", &pdus).await;
    assert_eq!(status, 200);
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
    let (status, answer) = peer.send("txn-2", &[next]).await;
    assert_eq!(
        (status, &answer["pdus"][&next_id]),
        (200, &json!({})),
        "{answer}"
    );
    assert!(
        bodies(alice, &room_id)
            .await
            .contains(&"still flowing".to_owned())
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
