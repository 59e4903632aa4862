//! Rooms of version 1, which still federate: their events carry their own
//! IDs and cite others with hashes, and forks are resolved with state
//! resolution v1.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::rooms::Peer;
use super::synapse::{Peers, wait_for_message};
use super::{federation_url, hold_inbound_turn};
use crate::client::{Client, encode};

/// Sets the room's topic as `user`; the event's ID.
async fn set_topic(user: &Client, room_id: &str, topic: &str) -> String {
    let set = user
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
                encode(room_id)
            ),
            &json!({"topic": topic}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    set.body["event_id"].as_str().expect("event_id").to_owned()
}

/// The room's topic as `reader`'s server holds it.
async fn topic(reader: &Client, room_id: &str) -> Value {
    reader
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
            encode(room_id)
        ))
        .await
        .body["topic"]
        .clone()
}

/// A version 1 (and 2) room of Sam's on Synapse forks: Myelin is down while Sam
/// sets the topic, and Alice sets it again as soon as Myelin is back,
/// before Synapse has told it of Sam's. Both servers resolve the fork with
/// v1 and agree on the topic, and messages cross both ways after it.
#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn version_one_and_two_rooms_fork_and_both_servers_resolve_them_alike() {
    // Version 1 resolves with v1, version 2 (the same event format) with v2.
    for version in ["1", "2"] {
        fork_and_resolve(version).await;
    }
}

async fn fork_and_resolve(version: &str) {
    let Peers {
        mut myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = sam
        .create_room(&json!({"preset": "public_chat", "room_version": version}))
        .await;
    let joined = super::synapse::join_via(&alice, &room_id, &synapse.server_name).await;
    assert_eq!(joined.status, 200, "{}\n{}", joined.text, myelin.logs());
    let levels_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
        encode(&room_id)
    );
    let mut levels = sam.get(&levels_path).await.ok();
    levels["users"][&alice.user_id] = json!(100);
    let raised = sam.put(&levels_path, &levels).await;
    assert_eq!(raised.status, 200, "{}", raised.text);
    sam.send_text(&room_id, "before the fork").await;
    assert!(
        wait_for_message(&alice, &room_id, "before the fork").await,
        "{}",
        myelin.logs()
    );

    // While Myelin is down, Sam sets the topic; Myelin comes back with
    // Synapse's turn at its transactions held (they are answered 429), so
    // Alice's topic cannot follow Sam's.
    myelin.kill();
    let sams = set_topic(&sam, &room_id, "Sam's topic").await;
    hold_inbound_turn(&myelin, &synapse.server_name, true);
    myelin.start_again().await;
    let alices = set_topic(&alice, &room_id, "Alice's topic").await;
    hold_inbound_turn(&myelin, &synapse.server_name, false);

    // Alice's topic did not follow Sam's: the room forked.
    let as_synapse = Peer::new(
        &federation_url(&myelin),
        myelin.server_name(),
        &synapse.server_name,
        &synapse.signing_key_path(),
    );
    let (status, event) = as_synapse
        .request(
            "GET",
            &format!("/_matrix/federation/v1/event/{}", encode(&alices)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{event}");
    let cited = event["pdus"][0]["prev_events"].to_string();
    assert!(!cited.contains(&sams), "no fork: {cited}");

    // Messages after the fork cite both branches, on each side.
    alice
        .send_text(&room_id, "after the fork, from Myelin")
        .await;
    assert!(
        wait_for_message(&sam, &room_id, "after the fork, from Myelin").await,
        "{}",
        synapse.log_tail()
    );
    sam.send_text(&room_id, "after the fork, from Synapse")
        .await;
    assert!(
        wait_for_message(&alice, &room_id, "after the fork, from Synapse").await,
        "{}",
        myelin.logs()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (mine, theirs) = (topic(&alice, &room_id).await, topic(&sam, &room_id).await);
        if mine == theirs && mine.is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Myelin holds {mine}, Synapse {theirs}\n{}",
            myelin.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Synapse user joins a version 1 room of Myelin's, and messages cross
/// both ways.
#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn a_synapse_user_joins_a_version_one_room_of_myelins() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = alice
        .create_room(&json!({"preset": "public_chat", "room_version": "1"}))
        .await;
    alice.send_text(&room_id, "from before Sam").await;
    let joined = super::synapse::join_via(&sam, &room_id, myelin.server_name()).await;
    assert_eq!(
        joined.status,
        200,
        "{}\n{}",
        joined.text,
        synapse.log_tail()
    );
    assert!(
        wait_for_message(&sam, &room_id, "from before Sam").await,
        "{}",
        synapse.log_tail()
    );
    sam.send_text(&room_id, "from Synapse").await;
    assert!(
        wait_for_message(&alice, &room_id, "from Synapse").await,
        "{}",
        myelin.logs()
    );
    alice.send_text(&room_id, "from Myelin").await;
    assert!(
        wait_for_message(&sam, &room_id, "from Myelin").await,
        "{}",
        synapse.log_tail()
    );
}
