//! End-to-end encryption keys and to-device messages, over HTTP: what one
//! device publishes another claims once, and messages wait in each device's
//! inbox until its sync acknowledges them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

use crate::client::{Client, encode};
use crate::harness::Server;

const PASSWORD: &str = "pw-keys";

/// Canonical JSON (sorted keys, no spaces) of a value without its
/// `signatures` and `unsigned`: what a device signs.
fn signing_form(value: &Value) -> String {
    fn canonical(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let parts: Vec<String> = keys
                    .iter()
                    .map(|key| format!("{}:{}", Value::from(key.as_str()), canonical(&map[*key])))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(canonical).collect();
                format!("[{}]", parts.join(","))
            }
            other => other.to_string(),
        }
    }
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    canonical(&value)
}

/// The device keys of `client`'s device, signed by `key`.
pub(crate) fn device_keys(client: &Client, key: &SigningKey) -> Value {
    let device = &client.device_id;
    let mut keys = json!({
        "user_id": client.user_id,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): STANDARD_NO_PAD.encode([9u8; 32]),
            format!("ed25519:{device}"): STANDARD_NO_PAD.encode(key.verifying_key().to_bytes()),
        },
    });
    let signature = key.sign(signing_form(&keys).as_bytes());
    keys["signatures"] = json!({
        client.user_id.clone(): { format!("ed25519:{device}"): STANDARD_NO_PAD.encode(signature.to_bytes()) }
    });
    keys
}

/// Uploads device keys for `client`'s device, signed by a key made from
/// `seed`, and returns them.
pub(crate) async fn upload_device_keys(client: &Client, seed: u8) -> Value {
    let keys = device_keys(client, &SigningKey::from_bytes(&[seed; 32]));
    let uploaded = client
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": keys}),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.text);
    keys
}

pub(crate) fn one_time_keys(names: &[&str]) -> Value {
    let mut keys = serde_json::Map::new();
    for name in names {
        keys.insert(
            format!("signed_curve25519:{name}"),
            json!({"key": STANDARD_NO_PAD.encode(name.as_bytes()), "signatures": {}}),
        );
    }
    Value::Object(keys)
}

pub(crate) fn claim_body(client: &Client) -> Value {
    json!({"one_time_keys": {client.user_id.clone(): {client.device_id.clone(): "signed_curve25519"}}})
}

/// The one key a claim of `owner`'s device gave, by key ID.
pub(crate) fn claimed_key_id(answer: &Value, owner: &Client) -> Option<String> {
    answer["one_time_keys"][&owner.user_id][&owner.device_id]
        .as_object()?
        .keys()
        .next()
        .cloned()
}

async fn sync(client: &Client, since: Option<&str>, timeout_ms: u64) -> Value {
    client.sync(since, timeout_ms).await
}

fn to_device_bodies(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|event| event["content"]["body"].clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn keys_are_published_and_each_one_time_key_claimed_once() {
    let server = Server::builder().open_registration().start().await;
    keys_cases(&server.client(), "").await;
}

pub(crate) async fn keys_cases(anonymous: &Client, names: &str) {
    let alice = anonymous
        .register(&format!("{names}keyalice"), PASSWORD)
        .await;
    let bob = anonymous
        .register(&format!("{names}keybob"), PASSWORD)
        .await;
    let signing = SigningKey::from_bytes(&[3; 32]);

    let uploaded = alice
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({
                "device_keys": device_keys(&alice, &signing),
                "one_time_keys": one_time_keys(&["AAAA", "AAAB", "AAAC"]),
                "fallback_keys": {"signed_curve25519:FALL": {"key": "ZmFsbA", "fallback": true, "signatures": {}}},
            }),
        )
        .await
        .ok();
    assert_eq!(
        uploaded["one_time_key_counts"]["signed_curve25519"], 3,
        "{uploaded}"
    );

    // Anyone may read the device keys, with the device's name.
    alice
        .put(
            &format!("/_matrix/client/v3/devices/{}", encode(&alice.device_id)),
            &json!({"display_name": "alice's laptop"}),
        )
        .await
        .ok();
    let queried = bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {alice.user_id.clone(): []}}),
        )
        .await
        .ok();
    let published = &queried["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(
        published["keys"],
        device_keys(&alice, &signing)["keys"],
        "{queried}"
    );
    assert_eq!(
        published["unsigned"]["device_display_name"],
        "alice's laptop"
    );
    assert!(published["signatures"][&alice.user_id].is_object());
    let remote = bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {"@someone:elsewhere.example": [], bob.user_id.clone(): []}}),
        )
        .await
        .ok();
    assert!(
        remote["failures"]["elsewhere.example"].is_object(),
        "{remote}"
    );
    assert!(
        remote["device_keys"].get(&bob.user_id).is_none(),
        "bob published nothing"
    );

    // Each claim takes another key; then the fallback, again and again.
    let mut handed = Vec::new();
    for _ in 0..5 {
        let answer = bob
            .post("/_matrix/client/v3/keys/claim", &claim_body(&alice))
            .await
            .ok();
        handed.push(claimed_key_id(&answer, &alice).unwrap_or_else(|| panic!("no key: {answer}")));
    }
    assert_eq!(
        handed,
        [
            "signed_curve25519:AAAA",
            "signed_curve25519:AAAB",
            "signed_curve25519:AAAC",
            "signed_curve25519:FALL",
            "signed_curve25519:FALL"
        ]
    );
    let first = sync(&alice, None, 0).await;
    assert_eq!(
        first["device_one_time_keys_count"]["signed_curve25519"], 0,
        "{first}"
    );
    assert_eq!(
        first["device_unused_fallback_key_types"],
        json!([]),
        "{first}"
    );
    // Unknown users and devices are left out; other servers are failures.
    let nobody = bob
        .post(
            "/_matrix/client/v3/keys/claim",
            &json!({"one_time_keys": {
                "@nobody:localhost": {"DEV": "signed_curve25519"},
                alice.user_id.clone(): {"NOSUCHDEVICE": "signed_curve25519"},
                "@far:elsewhere.example": {"DEV": "signed_curve25519"},
            }}),
        )
        .await
        .ok();
    assert_eq!(nobody["one_time_keys"], json!({}), "{nobody}");
    assert!(
        nobody["failures"]["elsewhere.example"].is_object(),
        "{nobody}"
    );

    // Refusals: someone else's keys, a bad signature, a key ID taken with
    // other content; none of them changes what is stored.
    let refuse = |body: Value| {
        let alice = alice.clone();
        async move { alice.post("/_matrix/client/v3/keys/upload", &body).await }
    };
    let bobs_keys = device_keys(&bob, &signing);
    refuse(json!({"device_keys": bobs_keys}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let mut forged = device_keys(&alice, &signing);
    forged["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    refuse(json!({"device_keys": forged}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    refuse(json!({"one_time_keys": one_time_keys(&["NEW1"])}))
        .await
        .ok();
    let mut clash = one_time_keys(&["NEW1"]);
    clash["signed_curve25519:NEW1"]["key"] = json!("b3RoZXI");
    refuse(json!({"one_time_keys": clash}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let malformed = refuse(json!({"one_time_keys": {"no-colon": {"key": "x"}}})).await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    let counts = refuse(json!({})).await.ok();
    assert_eq!(
        counts["one_time_key_counts"]["signed_curve25519"], 1,
        "{counts}"
    );
    anonymous
        .post("/_matrix/client/v3/keys/upload", &json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");

    // Claims at once (across replicas in the split shape) never share a key.
    let race_names: Vec<String> = (0..10).map(|n| format!("RACE{n:02}")).collect();
    let racing: Vec<&str> = race_names.iter().map(String::as_str).collect();
    alice
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"one_time_keys": one_time_keys(&racing)}),
        )
        .await
        .ok();
    let claims: Vec<_> = (0..16)
        .map(|_| {
            let (bob, body) = (bob.clone(), claim_body(&alice));
            tokio::spawn(async move { bob.post("/_matrix/client/v3/keys/claim", &body).await.ok() })
        })
        .collect();
    let mut handed = Vec::new();
    for claim in claims {
        if let Some(key_id) = claimed_key_id(&claim.await.unwrap(), &alice) {
            handed.push(key_id);
        }
    }
    let mut one_time: Vec<&String> = handed.iter().filter(|id| id.contains("RACE")).collect();
    assert_eq!(one_time.len(), 10, "every key once: {handed:?}");
    one_time.sort();
    one_time.dedup();
    assert_eq!(one_time.len(), 10, "no key twice: {handed:?}");

    // A deleted device's keys go with it.
    let second = anonymous.login(&format!("{names}keyalice"), PASSWORD).await;
    second
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": device_keys(&second, &SigningKey::from_bytes(&[4; 32]))}),
        )
        .await
        .ok();
    let both = bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {alice.user_id.clone(): []}}),
        )
        .await
        .ok();
    assert_eq!(
        both["device_keys"][&alice.user_id]
            .as_object()
            .map(|d| d.len()),
        Some(2)
    );
    second
        .post("/_matrix/client/v3/logout", &json!({}))
        .await
        .ok();
    let after = bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {alice.user_id.clone(): [second.device_id.clone()]}}),
        )
        .await
        .ok();
    assert!(
        after["device_keys"].get(&alice.user_id).is_none(),
        "{after}"
    );
}

#[tokio::test]
async fn to_device_messages_wait_until_the_device_acknowledges_them() {
    let server = Server::builder().open_registration().start().await;
    to_device_cases(&server.client(), "").await;
}

fn send_path(event_type: &str, txn: &str) -> String {
    format!(
        "/_matrix/client/v3/sendToDevice/{}/{}",
        encode(event_type),
        encode(txn)
    )
}

pub(crate) async fn to_device_cases(anonymous: &Client, names: &str) {
    let alice = anonymous
        .register(&format!("{names}tdalice"), PASSWORD)
        .await;
    let phone = anonymous.login(&format!("{names}tdalice"), PASSWORD).await;
    let bob = anonymous.register(&format!("{names}tdbob"), PASSWORD).await;
    let start = sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // A long-polling receiver wakes for a message sent to its device.
    let waiting = {
        let (alice, start) = (alice.clone(), start.clone());
        tokio::spawn(async move { sync(&alice, Some(&start), 10_000).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let message = |body: &str| json!({"body": body});
    bob.put(
        &send_path("m.test.ping", "t1"),
        &json!({"messages": {alice.user_id.clone(): {alice.device_id.clone(): message("one")}}}),
    )
    .await
    .ok();
    let woken = waiting.await.unwrap();
    assert_eq!(to_device_bodies(&woken), ["one"], "{woken}");
    let event = &woken["to_device"]["events"][0];
    assert_eq!(event["sender"], json!(bob.user_id));
    assert_eq!(event["type"], "m.test.ping");

    // A retried transaction delivers nothing more; `*` reaches every device.
    bob.put(
        &send_path("m.test.ping", "t1"),
        &json!({"messages": {alice.user_id.clone(): {alice.device_id.clone(): message("again")}}}),
    )
    .await
    .ok();
    bob.put(
        &send_path("m.test.ping", "t2"),
        &json!({"messages": {alice.user_id.clone(): {"*": message("everyone")}}}),
    )
    .await
    .ok();
    // A lost response: syncing from the same token shows the same messages.
    let again = sync(&alice, Some(&start), 0).await;
    assert_eq!(to_device_bodies(&again), ["one", "everyone"], "{again}");
    let next = again["next_batch"].as_str().unwrap().to_owned();
    let acknowledged = sync(&alice, Some(&next), 0).await;
    assert!(to_device_bodies(&acknowledged).is_empty(), "{acknowledged}");
    // The inbox is emptied behind the sync that acknowledged it, within a
    // second or so.
    let mut gone = false;
    for _ in 0..50 {
        if to_device_bodies(&sync(&alice, Some(&start), 0).await).is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "acknowledged messages are never removed");
    assert_eq!(to_device_bodies(&sync(&phone, None, 0).await), ["everyone"]);

    // More than a page: 100 now, the rest next.
    for n in 0..130 {
        bob.put(
            &send_path("m.test.ping", &format!("bulk{n}")),
            &json!({"messages": {alice.user_id.clone(): {alice.device_id.clone(): message(&n.to_string())}}}),
        )
        .await
        .ok();
    }
    let page = sync(&alice, Some(&next), 0).await;
    let bodies = to_device_bodies(&page);
    assert_eq!(bodies.len(), 100);
    assert_eq!(bodies[0], "0");
    let rest = sync(&alice, page["next_batch"].as_str(), 0).await;
    let bodies = to_device_bodies(&rest);
    assert_eq!(bodies.len(), 30, "{rest}");
    assert_eq!(bodies[0], "100");
    assert_eq!(bodies[29], "129");

    // Refusals; unknown users and devices are dropped without an error.
    bob.put(
        &send_path("m.test.ping", "t3"),
        &json!({"messages": {"@nobody:localhost": {"DEV": message("lost")}, alice.user_id.clone(): {"NODEVICE": message("lost")}}}),
    )
    .await
    .ok();
    let big = "x".repeat(70 * 1024);
    bob.put(
        &send_path("m.test.ping", "t4"),
        &json!({"messages": {alice.user_id.clone(): {alice.device_id.clone(): {"body": big}}}}),
    )
    .await
    .assert_error(413, "M_TOO_LARGE");
    let not_object = bob
        .put(
            &send_path("m.test.ping", "t5"),
            &json!({"messages": {alice.user_id.clone(): {alice.device_id.clone(): [1]}}}),
        )
        .await;
    assert_eq!(not_object.status, 400, "{}", not_object.text);
    let missing = bob.put(&send_path("m.test.ping", "t6"), &json!({})).await;
    assert_eq!(missing.status, 400, "{}", missing.text);
    anonymous
        .put(&send_path("m.test.ping", "t7"), &json!({"messages": {}}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let quiet = sync(&alice, rest["next_batch"].as_str(), 0).await;
    assert!(to_device_bodies(&quiet).is_empty(), "{quiet}");
}

#[tokio::test]
async fn device_list_changes_reach_those_who_share_a_room() {
    let server = Server::builder().open_registration().start().await;
    device_list_cases(&server.client(), "").await;
}

fn device_lists(sync: &Value, part: &str) -> Vec<String> {
    sync["device_lists"][part]
        .as_array()
        .map(|users| {
            users
                .iter()
                .filter_map(|user| user.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Follows `client`'s sync until `part` of `device_lists` names `user`.
async fn wait_for_device_list(client: &Client, since: &mut String, part: &str, user: &str) {
    for _ in 0..10 {
        let sync = sync(client, Some(since), 5_000).await;
        *since = sync["next_batch"].as_str().unwrap().to_owned();
        if device_lists(&sync, part).iter().any(|seen| seen == user) {
            return;
        }
    }
    panic!("{user} never appeared in device_lists.{part}");
}

pub(crate) async fn device_list_cases(anonymous: &Client, names: &str) {
    let alice = anonymous
        .register(&format!("{names}dlalice"), PASSWORD)
        .await;
    let bob = anonymous.register(&format!("{names}dlbob"), PASSWORD).await;
    let carol = anonymous
        .register(&format!("{names}dlcarol"), PASSWORD)
        .await;
    let dave = anonymous
        .register(&format!("{names}dldave"), PASSWORD)
        .await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    let start = sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut since = start.clone();

    // A stranger's keys are not alice's business; bob's are.
    carol
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": device_keys(&carol, &SigningKey::from_bytes(&[5; 32]))}),
        )
        .await
        .ok();
    bob.post(
        "/_matrix/client/v3/keys/upload",
        &json!({"device_keys": device_keys(&bob, &SigningKey::from_bytes(&[6; 32]))}),
    )
    .await
    .ok();
    wait_for_device_list(&alice, &mut since, "changed", &bob.user_id).await;
    let changes = alice
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={}&to={}",
            encode(&start),
            encode(&since)
        ))
        .await
        .ok();
    assert!(
        changes["changed"]
            .as_array()
            .unwrap()
            .contains(&json!(bob.user_id)),
        "{changes}"
    );
    assert!(
        !changes["changed"]
            .as_array()
            .unwrap()
            .contains(&json!(carol.user_id)),
        "{changes}"
    );

    // A new device logged out again is a change too.
    let second = anonymous.login(&format!("{names}dlbob"), PASSWORD).await;
    second
        .post("/_matrix/client/v3/logout", &json!({}))
        .await
        .ok();
    wait_for_device_list(&alice, &mut since, "changed", &bob.user_id).await;

    // Someone joining is news; someone leaving who shares no other room
    // has left.
    dave.join(&room_id).await.ok();
    wait_for_device_list(&alice, &mut since, "changed", &dave.user_id).await;
    let before_leave = since.clone();
    bob.leave(&room_id).await.ok();
    wait_for_device_list(&alice, &mut since, "left", &bob.user_id).await;
    let changes = alice
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={}&to={}",
            encode(&before_leave),
            encode(&since)
        ))
        .await
        .ok();
    assert_eq!(changes["left"], json!([bob.user_id]), "{changes}");
    alice
        .get("/_matrix/client/v3/keys/changes?from=garbage&to=s1")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let missing = alice.get("/_matrix/client/v3/keys/changes?from=s1").await;
    assert_eq!(missing.status, 400, "{}", missing.text);
}

/// Adds `user`'s signature by `key` (named `key_id`) to the object.
fn sign(value: &mut Value, user: &str, key_id: &str, key: &SigningKey) {
    let signature = STANDARD_NO_PAD.encode(key.sign(signing_form(value).as_bytes()).to_bytes());
    if !value["signatures"].is_object() {
        value["signatures"] = json!({});
    }
    if !value["signatures"][user].is_object() {
        value["signatures"][user] = json!({});
    }
    value["signatures"][user][key_id] = json!(signature);
}

fn public(key: &SigningKey) -> String {
    STANDARD_NO_PAD.encode(key.verifying_key().to_bytes())
}

/// A cross-signing key of `usage` for the user, signed by `master` unless
/// it is the master key itself.
fn cross_signing_key(user: &str, usage: &str, key: &SigningKey, master: &SigningKey) -> Value {
    let mut value = json!({
        "user_id": user,
        "usage": [usage],
        "keys": { format!("ed25519:{}", public(key)): public(key) },
    });
    if usage != "master" {
        sign(
            &mut value,
            user,
            &format!("ed25519:{}", public(master)),
            master,
        );
    }
    value
}

pub(crate) async fn upload_cross_signing(
    client: &Client,
    master: &SigningKey,
    auth: Option<Value>,
) -> crate::client::Reply {
    let user = client.user_id.as_str();
    let mut body = json!({
        "master_key": cross_signing_key(user, "master", master, master),
        "self_signing_key": cross_signing_key(user, "self_signing", &SigningKey::from_bytes(&[21; 32]), master),
        "user_signing_key": cross_signing_key(user, "user_signing", &SigningKey::from_bytes(&[22; 32]), master),
    });
    if let Some(auth) = auth {
        body["auth"] = auth;
    }
    client
        .post("/_matrix/client/v3/keys/device_signing/upload", &body)
        .await
}

#[tokio::test]
async fn cross_signing_keys_and_signatures_are_checked_and_served() {
    let server = Server::builder().open_registration().start().await;
    cross_signing_cases(&server.client(), "").await;
}

pub(crate) async fn cross_signing_cases(anonymous: &Client, names: &str) {
    let alice = anonymous
        .register(&format!("{names}xsalice"), PASSWORD)
        .await;
    let bob = anonymous.register(&format!("{names}xsbob"), PASSWORD).await;
    let device_key = SigningKey::from_bytes(&[20; 32]);
    let self_signing = SigningKey::from_bytes(&[21; 32]);
    let user_signing = SigningKey::from_bytes(&[22; 32]);
    let (alice_master, bob_master) = (
        SigningKey::from_bytes(&[23; 32]),
        SigningKey::from_bytes(&[24; 32]),
    );
    alice
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": device_keys(&alice, &device_key)}),
        )
        .await
        .ok();

    // The first upload needs no password; a key not signed by the master
    // key, or someone else's, is refused.
    let mut unsigned = json!({
        "master_key": cross_signing_key(&alice.user_id, "master", &alice_master, &alice_master),
        "self_signing_key": cross_signing_key(&alice.user_id, "self_signing", &self_signing, &bob_master),
    });
    alice
        .post("/_matrix/client/v3/keys/device_signing/upload", &unsigned)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    unsigned["master_key"] =
        cross_signing_key(&bob.user_id, "master", &alice_master, &alice_master);
    alice
        .post("/_matrix/client/v3/keys/device_signing/upload", &unsigned)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    upload_cross_signing(&alice, &alice_master, None).await.ok();
    upload_cross_signing(&alice, &alice_master, None).await.ok();
    upload_cross_signing(&bob, &bob_master, None).await.ok();

    // Everyone sees master and self-signing keys; the user-signing key only
    // its owner.
    let query = |client: &Client, user: &str| {
        let (client, user) = (client.clone(), user.to_owned());
        async move {
            client
                .post(
                    "/_matrix/client/v3/keys/query",
                    &json!({"device_keys": {user: []}}),
                )
                .await
                .ok()
        }
    };
    let seen_by_bob = query(&bob, &alice.user_id).await;
    assert_eq!(
        seen_by_bob["master_keys"][&alice.user_id]["keys"],
        json!({format!("ed25519:{}", public(&alice_master)): public(&alice_master)}),
        "{seen_by_bob}"
    );
    assert!(seen_by_bob["self_signing_keys"][&alice.user_id].is_object());
    assert!(
        seen_by_bob
            .get("user_signing_keys")
            .is_none_or(|keys| keys.get(&alice.user_id).is_none()),
        "{seen_by_bob}"
    );
    let seen_by_alice = query(&alice, &alice.user_id).await;
    assert!(
        seen_by_alice["user_signing_keys"][&alice.user_id].is_object(),
        "{seen_by_alice}"
    );

    // Alice signs her device with her self-signing key, her master key with
    // her device, and bob's master key with her user-signing key.
    let ssk_id = format!("ed25519:{}", public(&self_signing));
    let mut device = seen_by_alice["device_keys"][&alice.user_id][&alice.device_id].clone();
    device.as_object_mut().unwrap().remove("unsigned");
    sign(&mut device, &alice.user_id, &ssk_id, &self_signing);
    let mut master = seen_by_alice["master_keys"][&alice.user_id].clone();
    sign(
        &mut master,
        &alice.user_id,
        &format!("ed25519:{}", alice.device_id),
        &device_key,
    );
    let mut bobs_master = query(&alice, &bob.user_id).await["master_keys"][&bob.user_id].clone();
    let usk_id = format!("ed25519:{}", public(&user_signing));
    sign(&mut bobs_master, &alice.user_id, &usk_id, &user_signing);
    let mut forged = device.clone();
    forged["signatures"][&alice.user_id][&ssk_id] = json!(STANDARD_NO_PAD.encode([1u8; 64]));
    let uploaded = alice
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({
                alice.user_id.clone(): {
                    alice.device_id.clone(): device,
                    public(&alice_master): master,
                },
                bob.user_id.clone(): { public(&bob_master): bobs_master },
            }),
        )
        .await
        .ok();
    assert_eq!(uploaded["failures"], json!({}), "{uploaded}");
    let refused = alice
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({
                alice.user_id.clone(): { alice.device_id.clone(): forged, "NODEVICE": {"a": 1} },
                bob.user_id.clone(): { "not-his-master": {"a": 1} },
            }),
        )
        .await
        .ok();
    assert_eq!(
        refused["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE",
        "{refused}"
    );
    assert!(
        refused["failures"][&alice.user_id]["NODEVICE"].is_object(),
        "{refused}"
    );
    assert!(
        refused["failures"][&bob.user_id]["not-his-master"].is_object(),
        "{refused}"
    );

    let seen_by_bob = query(&bob, &alice.user_id).await;
    assert!(
        seen_by_bob["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id]
            [&ssk_id]
            .is_string(),
        "the device carries the self-signing signature: {seen_by_bob}"
    );
    assert!(
        seen_by_bob["master_keys"][&alice.user_id]["signatures"][&alice.user_id]
            [format!("ed25519:{}", alice.device_id)]
        .is_string(),
        "{seen_by_bob}"
    );
    let bobs_own = query(&bob, &bob.user_id).await;
    assert!(
        bobs_own["master_keys"][&bob.user_id]["signatures"]
            .get(&alice.user_id)
            .is_none(),
        "alice's user-signing signature is hers alone: {bobs_own}"
    );
    let alices_view = query(&alice, &bob.user_id).await;
    assert!(
        alices_view["master_keys"][&bob.user_id]["signatures"][&alice.user_id][&usk_id].is_string(),
        "{alices_view}"
    );

    // Replacing the keys takes the password.
    let new_master = SigningKey::from_bytes(&[25; 32]);
    let challenge = upload_cross_signing(&alice, &new_master, None).await;
    assert_eq!(challenge.status, 401, "{}", challenge.text);
    let session = challenge.body["session"].as_str().map(str::to_owned);
    let auth = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD,
        "session": session,
    });
    upload_cross_signing(&alice, &new_master, Some(auth))
        .await
        .ok();
    let replaced = query(&bob, &alice.user_id).await;
    assert_eq!(
        replaced["master_keys"][&alice.user_id]["keys"],
        json!({format!("ed25519:{}", public(&new_master)): public(&new_master)})
    );
}

#[tokio::test]
async fn key_backups_keep_the_better_key_in_the_current_version() {
    let server = Server::builder().open_registration().start().await;
    key_backup_cases(&server.client(), "").await;
}

fn backed_up(index: u64, verified: bool, ciphertext: &str) -> Value {
    json!({
        "first_message_index": index,
        "forwarded_count": 0,
        "is_verified": verified,
        "session_data": {"ephemeral": "ZXBo", "ciphertext": ciphertext, "mac": "bWFj"},
    })
}

pub(crate) async fn key_backup_cases(anonymous: &Client, names: &str) {
    let alice = anonymous
        .register(&format!("{names}kbalice"), PASSWORD)
        .await;
    let bob = anonymous.register(&format!("{names}kbbob"), PASSWORD).await;
    let algorithm = "m.megolm_backup.v1.curve25519-aes-sha2";
    alice
        .get("/_matrix/client/v3/room_keys/version")
        .await
        .assert_error(404, "M_NOT_FOUND");
    let create = |auth: Value| {
        let alice = alice.clone();
        async move {
            alice
                .post(
                    "/_matrix/client/v3/room_keys/version",
                    &json!({"algorithm": algorithm, "auth_data": auth}),
                )
                .await
                .ok()["version"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let old = create(json!({"public_key": "b2xk"})).await;
    let version = create(json!({"public_key": "bmV3"})).await;
    let current = alice.get("/_matrix/client/v3/room_keys/version").await.ok();
    assert_eq!(current["version"], json!(version), "{current}");
    assert_eq!(current["algorithm"], algorithm);
    assert_eq!(current["auth_data"]["public_key"], "bmV3");
    assert_eq!(current["count"], 0);

    let keys_path = |rest: &str, version: &str| {
        format!(
            "/_matrix/client/v3/room_keys/keys{rest}?version={}",
            encode(version)
        )
    };
    let room = "!backed:localhost";
    let put = alice
        .put(
            &keys_path("", &version),
            &json!({"rooms": {room: {"sessions": {
                "s1": backed_up(5, false, "b25l"),
                "s2": backed_up(0, false, "dHdv"),
            }}}}),
        )
        .await
        .ok();
    assert_eq!(put["count"], 2, "{put}");
    let etag = put["etag"].as_str().unwrap().to_owned();
    // A worse key is not kept; a verified one is.
    let worse = alice
        .put(
            &keys_path(&format!("/{}/s1", encode(room)), &version),
            &backed_up(9, false, "d29yc2U"),
        )
        .await
        .ok();
    assert_eq!(worse["etag"], json!(etag), "nothing changed: {worse}");
    alice
        .put(
            &keys_path(&format!("/{}/s1", encode(room)), &version),
            &backed_up(9, true, "YmV0dGVy"),
        )
        .await
        .ok();
    let session = alice
        .get(&keys_path(&format!("/{}/s1", encode(room)), &version))
        .await
        .ok();
    assert_eq!(
        session["session_data"]["ciphertext"], "YmV0dGVy",
        "{session}"
    );
    let all = alice.get(&keys_path("", &version)).await.ok();
    assert_eq!(
        all["rooms"][room]["sessions"].as_object().map(|s| s.len()),
        Some(2),
        "{all}"
    );
    let in_room = alice
        .get(&keys_path(&format!("/{}", encode(room)), &version))
        .await
        .ok();
    assert!(in_room["sessions"]["s2"].is_object(), "{in_room}");

    // Only the current version takes keys; others' backups are not ours.
    let wrong = alice
        .put(
            &keys_path(&format!("/{}/s3", encode(room)), &old),
            &backed_up(0, false, "eA"),
        )
        .await;
    wrong.assert_error(403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(wrong.body["current_version"], json!(version));
    bob.get(&keys_path("", &version))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&keys_path("", "999"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&keys_path(&format!("/{}/nosuch", encode(room)), &version))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let bad = alice
        .put(
            &keys_path(&format!("/{}/s4", encode(room)), &version),
            &json!({"first_message_index": -1}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);

    // auth_data may change, the algorithm not.
    let version_path = format!("/_matrix/client/v3/room_keys/version/{}", encode(&version));
    alice
        .put(
            &version_path,
            &json!({"algorithm": algorithm, "auth_data": {"public_key": "Y2hhbmdlZA"}}),
        )
        .await
        .ok();
    assert_eq!(
        alice.get(&version_path).await.ok()["auth_data"]["public_key"],
        "Y2hhbmdlZA"
    );
    alice
        .put(
            &version_path,
            &json!({"algorithm": "org.example.other", "auth_data": {}}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // Deleting keys, then the version: the one before is current again.
    let deleted = alice
        .delete(&keys_path(&format!("/{}", encode(room)), &version))
        .await
        .ok();
    assert_eq!(deleted["count"], 0, "{deleted}");
    alice.delete(&version_path).await.ok();
    alice
        .get(&version_path)
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(
        alice.get("/_matrix/client/v3/room_keys/version").await.ok()["version"],
        json!(old)
    );
}
