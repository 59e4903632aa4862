//! Other servers' users' device lists kept by Myelin: filled from their
//! server's `/user/devices`, moved on by the `m.device_list_update`s that
//! follow on from the kept position, fetched whole again after a gap, and
//! answered from while their server is down.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::rooms::{Peer, myelin_with_a_peer};
use super::synapse::{
    Peers, join_via, room_joined_over_federation, wait_for_device_change, wait_for_message,
};
use super::{PASSWORD, TwoMyelins, user_with_name};
use crate::client::{Client, encode};
use crate::harness::metric_sum;

/// What `asker`'s server answers for `user_id`'s keys.
pub(crate) async fn keys_of(asker: &Client, user_id: &str) -> Value {
    asker
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {user_id: []}}),
        )
        .await
        .ok()
}

/// The device IDs of `user_id` in a key query's answer, sorted.
pub(crate) fn devices_in(answer: &Value, user_id: &str) -> Vec<String> {
    let mut devices: Vec<String> = answer["device_keys"][user_id]
        .as_object()
        .map(|devices| devices.keys().cloned().collect())
        .unwrap_or_default();
    devices.sort();
    devices
}

/// Queries until the answer lists exactly `wanted` for `user_id`, within
/// 30 s; the last answer.
async fn wait_for_devices(asker: &Client, user_id: &str, wanted: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = keys_of(asker, user_id).await;
        if devices_in(&answer, user_id) == wanted || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether `asker` sees a master key of `owner` within 30 s.
async fn master_key_seen(asker: &Client, owner: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while keys_of(asker, owner).await["master_keys"][owner].is_null() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    true
}

/// A transaction of EDUs only, taken (`200`) once the peer's real server
/// is not sending one of its own.
async fn send_edus(peer: &Peer, txn_id: &str, edus: Value) {
    let body = json!({"origin": peer.name(), "origin_server_ts": 1, "pdus": [], "edus": edus});
    let uri = format!("/_matrix/federation/v1/send/{txn_id}");
    for _ in 0..50 {
        let (status, answer) = peer.request("PUT", &uri, Some(&body)).await;
        if status != 429 {
            assert_eq!(status, 200, "{answer}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the peer never had its turn");
}

fn device_update(user_id: &str, device_id: &str, stream_id: i64, prev_id: i64) -> Value {
    json!({
        "edu_type": "m.device_list_update",
        "content": {
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": stream_id,
            "prev_id": [prev_id],
            "keys": {
                "user_id": user_id,
                "device_id": device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": {format!("curve25519:{device_id}"): "Y3VydmU", format!("ed25519:{device_id}"): "ZWQyNTUxOQ"},
                "signatures": {user_id: {format!("ed25519:{device_id}"): "c2lnbmF0dXJl"}},
            },
        },
    })
}

/// Dana, a user of the peer's server, joins Alice's `room_id`, and Alice's
/// first query for her keys fetches her list whole: her server lists no
/// device of hers (she has no account there). Dana's user ID.
pub(crate) async fn dana_joins(peer: &Peer, alice: &Client, room_id: &str) -> String {
    let dana = format!("@dana:{}", peer.name());
    peer.join(room_id, &dana).await;
    let first = keys_of(alice, &dana).await;
    assert_eq!(devices_in(&first, &dana), Vec::<String>::new(), "{first}");
    assert!(
        first["failures"]
            .as_object()
            .is_none_or(|failures| failures.is_empty()),
        "{first}"
    );
    dana
}

/// With Dana's list kept at `at` (her server's device-list position):
/// an update that follows on is applied, signing keys are taken, an
/// update about another server's user changes nothing, an update that
/// does not follow on has the list fetched whole again, and one citing an
/// update from before the fetched position follows on.
pub(crate) async fn check_device_list_chain(peer: &Peer, alice: &Client, dana: &str, at: i64) {
    // The device shows though her server never lists it: it came from
    // the update, applied to the kept list.
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    send_edus(
        peer,
        "dl-1",
        json!([device_update(dana, "DANA1", at + 1, at)]),
    )
    .await;
    assert!(wait_for_device_change(alice, &since, dana).await);
    let applied = keys_of(alice, dana).await;
    assert_eq!(devices_in(&applied, dana), ["DANA1"], "{applied}");
    assert_eq!(
        applied["device_keys"][dana]["DANA1"]["keys"]["ed25519:DANA1"], "ZWQyNTUxOQ",
        "{applied}"
    );

    // Her new cross-signing keys come in an `m.signing_key_update`.
    let master =
        json!({"user_id": dana, "usage": ["master"], "keys": {"ed25519:bWFzdGVy": "bWFzdGVy"}});
    let signing = json!({"edu_type": "m.signing_key_update", "content": {"user_id": dana, "master_key": master}});
    send_edus(peer, "dl-2", json!([signing])).await;
    let with_master = keys_of(alice, dana).await;
    assert_eq!(with_master["master_keys"][dana], master, "{with_master}");
    assert_eq!(devices_in(&with_master, dana), ["DANA1"]);

    // A server speaks only for its own users: an update naming Alice
    // changes nothing.
    let forged = device_update(&alice.user_id, "FORGED", at + 2, at + 1);
    send_edus(peer, "dl-3", json!([forged])).await;
    let own = keys_of(alice, &alice.user_id).await;
    assert!(
        own["device_keys"][&alice.user_id]["FORGED"].is_null(),
        "{own}"
    );

    // An update that does not follow on (one was missed) drops the kept
    // list and fetches it whole: her server lists no device and no key.
    send_edus(
        peer,
        "dl-4",
        json!([device_update(dana, "DANA2", at + 5, at + 4)]),
    )
    .await;
    let fetched = wait_for_devices(alice, dana, &[]).await;
    assert_eq!(
        devices_in(&fetched, dana),
        Vec::<String>::new(),
        "{fetched}"
    );
    assert!(fetched["master_keys"][dana].is_null(), "{fetched}");

    // An update whose previous one is before the position the list was
    // fetched at (Synapse gives its whole stream's position) follows on.
    let before = (at - 1).max(0);
    send_edus(
        peer,
        "dl-5",
        json!([device_update(dana, "DANA3", at + 10, before)]),
    )
    .await;
    let followed = wait_for_devices(alice, dana, &["DANA3"]).await;
    assert_eq!(devices_in(&followed, dana), ["DANA3"], "{followed}");
}

#[tokio::test]
async fn device_list_updates_follow_their_chain_and_a_gap_fetches_the_list_again() {
    let ((_certificates, target, origin), alice, peer) = myelin_with_a_peer().await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let dana = dana_joins(&peer, &alice, &room_id).await;
    // The position her server's answer gave: it asks it the same way.
    let to_origin = Peer::between(&target, &origin);
    let (status, listed) = to_origin
        .request(
            "GET",
            &format!("/_matrix/federation/v1/user/devices/{}", encode(&dana)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let at = listed["stream_id"].as_i64().expect("stream_id");
    check_device_list_chain(&peer, &alice, &dana, at).await;
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn a_synapse_users_devices_are_answered_while_synapse_is_down() {
    let Peers {
        mut myelin,
        mut synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let joined = join_via(&sam, &room_id, myelin.server_name()).await;
    assert_eq!(
        joined.status,
        200,
        "{}\n{}",
        joined.text,
        synapse.log_tail()
    );

    // Sam's keys, then another Synapse user's, while Myelin is down:
    // Alice's query fetches Sam's list at a position of Synapse's stream
    // past Sam's own last change.
    myelin.kill();
    crate::keys::upload_device_keys(&sam, 6).await;
    let sid = user_with_name(&synapse.client_url, "sid", "Sid on Synapse").await;
    crate::keys::upload_device_keys(&sid, 8).await;
    myelin.start_again().await;
    let laptop = sam.device_id.clone();
    let listed = wait_for_devices(&alice, &sam.user_id, &[&laptop]).await;
    assert_eq!(
        devices_in(&listed, &sam.user_id),
        std::slice::from_ref(&laptop),
        "{listed}"
    );
    // Synapse's update for Sam's keys, sent once it hears from Myelin
    // again, is already in the list fetched.
    alice.send_text(&room_id, "wake up").await;
    assert!(
        wait_for_message(&sam, &room_id, "wake up").await,
        "{}",
        synapse.log_tail()
    );

    // Sam signs in on a second device: Synapse tells Myelin, and the kept
    // list takes the new device from the updates, without asking Synapse
    // for the list again (Synapse's log counts the asks).
    let log_of = &synapse;
    let fetches = move || async move {
        let log = log_of.log();
        log.matches("/_matrix/federation/v1/user/devices/").count() as u64
    };
    let fetched = settled(fetches).await;
    assert!(fetched >= 1, "Myelin never asked Synapse for Sam's list");
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let phone = Client::new(&synapse.client_url)
        .login("sam", PASSWORD)
        .await;
    crate::keys::upload_device_keys(&phone, 7).await;
    assert!(
        wait_for_device_change(&alice, &since, &sam.user_id).await,
        "{}",
        myelin.logs()
    );
    let mut both = vec![laptop, phone.device_id.clone()];
    both.sort();
    let wanted: Vec<&str> = both.iter().map(String::as_str).collect();
    let listed = wait_for_devices(&alice, &sam.user_id, &wanted).await;
    assert_eq!(
        devices_in(&listed, &sam.user_id),
        both,
        "{listed}\n{}",
        myelin.logs()
    );
    assert_eq!(settled(fetches).await, fetched, "{}", myelin.logs());

    // Synapse goes down: Alice's client still gets both devices' keys,
    // and no failure.
    synapse.kill().await;
    let answer = keys_of(&alice, &sam.user_id).await;
    assert_eq!(devices_in(&answer, &sam.user_id), both, "{answer}");
    assert!(
        answer["failures"]
            .as_object()
            .is_none_or(|failures| failures.is_empty()),
        "{answer}"
    );
}

/// The devices `asker` sees of `owner`, waited for until they are
/// `owner`'s devices `wanted` (in any order).
async fn wait_for_device_ids(asker: &Client, owner: &str, wanted: &[&String]) -> Value {
    let mut wanted: Vec<&str> = wanted.iter().map(|id| id.as_str()).collect();
    wanted.sort_unstable();
    wait_for_devices(asker, owner, &wanted).await
}

/// A count, once it stays the same for a second (at most ten).
async fn settled<F, Fut>(count: F) -> u64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let mut last = count().await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = count().await;
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// How many times other servers fetched a device list whole from
/// `server`, once the count settles.
async fn settled_fetches(server: &crate::harness::Server) -> u64 {
    let url = server.url();
    settled(|| metric_sum(&url, "myelin_http_requests_total", "user/devices")).await
}

/// Two Myelins: Alice's device changes reach Bob's server as updates that
/// follow on from the list it keeps (new keys, new cross-signing keys, a
/// device signed out), and it applies each without fetching her list again.
#[tokio::test]
async fn a_myelin_applies_another_myelins_device_changes_without_fetching_the_list() {
    let two = TwoMyelins::start().await;
    let (first, alice, bob) = (&two.first, &two.alice, &two.bob);
    // Alice's first keys come before the room is shared: nobody is told.
    crate::keys::upload_device_keys(alice, 31).await;
    room_joined_over_federation(alice, first.server_name(), "devices", bob).await;
    let listed = wait_for_device_ids(bob, &alice.user_id, &[&alice.device_id]).await;
    assert_eq!(
        devices_in(&listed, &alice.user_id),
        std::slice::from_ref(&alice.device_id),
        "{listed}"
    );
    // Bob's server fetched Alice's list to keep it (twice if her sender
    // was slow enough to tell it of her first keys after the join).
    let fetched = settled_fetches(first).await;
    assert!(fetched >= 1, "Bob's server never fetched Alice's list");

    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let phone = Client::new(&first.url()).login("alice", PASSWORD).await;
    crate::keys::upload_device_keys(&phone, 32).await;
    assert!(
        wait_for_device_change(bob, &since, &alice.user_id).await,
        "{}",
        two.logs()
    );
    let both =
        wait_for_device_ids(bob, &alice.user_id, &[&alice.device_id, &phone.device_id]).await;
    assert_eq!(
        devices_in(&both, &alice.user_id).len(),
        2,
        "{both}\n{}",
        two.logs()
    );

    // A renamed device is a change too; the name stays on Alice's server
    // (`allow_device_name_lookup_over_federation` is off, as in Synapse).
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let renamed = alice
        .put(
            &format!("/_matrix/client/v3/devices/{}", encode(&alice.device_id)),
            &json!({"display_name": "Alice's laptop"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert!(
        wait_for_device_change(bob, &since, &alice.user_id).await,
        "{}",
        two.logs()
    );
    let own = keys_of(alice, &alice.user_id).await;
    let own_name = &own["device_keys"][&alice.user_id][&alice.device_id]["unsigned"];
    assert_eq!(own_name["device_display_name"], "Alice's laptop", "{own}");
    let seen = keys_of(bob, &alice.user_id).await;
    let seen_keys = &seen["device_keys"][&alice.user_id][&alice.device_id];
    assert!(seen_keys.is_object(), "{seen}");
    assert!(
        seen_keys["unsigned"]["device_display_name"].is_null(),
        "{seen}"
    );

    let master = ed25519_dalek::SigningKey::from_bytes(&[33; 32]);
    crate::keys::upload_cross_signing(alice, &master, None)
        .await
        .ok();
    assert!(master_key_seen(bob, &alice.user_id).await, "{}", two.logs());

    let signed_out = phone.post("/_matrix/client/v3/logout", &json!({})).await;
    assert_eq!(signed_out.status, 200, "{}", signed_out.text);
    let one = wait_for_device_ids(bob, &alice.user_id, &[&alice.device_id]).await;
    assert_eq!(
        devices_in(&one, &alice.user_id),
        std::slice::from_ref(&alice.device_id),
        "{one}"
    );
    assert!(one["master_keys"][&alice.user_id].is_object(), "{one}");
    assert_eq!(
        settled_fetches(first).await,
        fetched,
        "every change followed on: no fetch"
    );
}

/// Synapse takes a Myelin user's device changes as updates that follow on
/// from what it fetched (its log says no resync was needed), and her new
/// cross-signing keys from an `m.signing_key_update`.
#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn synapse_follows_a_myelin_users_device_changes_without_a_resync() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    crate::keys::upload_device_keys(&alice, 41).await;
    room_joined_over_federation(&alice, myelin.server_name(), "chain", &sam).await;
    let listed = wait_for_device_ids(&sam, &alice.user_id, &[&alice.device_id]).await;
    assert_eq!(
        devices_in(&listed, &alice.user_id),
        std::slice::from_ref(&alice.device_id),
        "{listed}"
    );

    let phone = Client::new(&myelin.url()).login("alice", PASSWORD).await;
    crate::keys::upload_device_keys(&phone, 42).await;
    let both =
        wait_for_device_ids(&sam, &alice.user_id, &[&alice.device_id, &phone.device_id]).await;
    assert_eq!(
        devices_in(&both, &alice.user_id).len(),
        2,
        "{both}\n{}",
        synapse.log_tail()
    );
    let applied = format!(
        "Received device list update for {}, requiring resync: False",
        alice.user_id
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = synapse.log();
        if log.contains(&applied) {
            break;
        }
        let about_devices: Vec<&str> = log.lines().filter(|line| line.contains("evice")).collect();
        assert!(Instant::now() < deadline, "{}", about_devices.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let master = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
    crate::keys::upload_cross_signing(&alice, &master, None)
        .await
        .ok();
    assert!(
        master_key_seen(&sam, &alice.user_id).await,
        "{}",
        synapse.log_tail()
    );
}
