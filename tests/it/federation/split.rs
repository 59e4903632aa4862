//! The split shape federating: traefik serves `/_matrix/federation` and
//! `/_matrix/key` over TLS, the gateway passes them to the federation-api
//! replicas, and client-api replicas send requests of their own; the peers
//! are a single-process Myelin and Synapse.

use serde_json::json;

use super::synapse::{
    Synapse, bodies_in_order, check_backfill, check_directories, check_moderation,
    ephemeral_events, fetch_media, knock_room, knock_via, mark_read, page_back_all,
    room_joined_over_federation, wait_for_device_change, wait_for_invite, wait_for_membership,
    wait_for_message,
};
use super::{
    Certificates, LOOPBACK_FEDERATION, check_remote_keys, displayname_seen, federating_myelin,
    signing_key_path, user_with_name,
};
use crate::client::Client;
use crate::harness::{TempDir, free_port};
use crate::split::{Split, settings};

/// The environment file that makes a split server federate on loopback:
/// the settings of [`LOOPBACK_FEDERATION`], quick retries and a room
/// directory shared with other servers.
fn federation_env() -> (TempDir, std::path::PathBuf) {
    let env_dir = TempDir::new("split-federation-env");
    let env_file = env_dir.path().join("myelin.env");
    let env: String = LOOPBACK_FEDERATION
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(key, value)| format!("MYELIN_{}={value}\n", key.to_ascii_uppercase()))
        .chain([
            "MYELIN_FEDERATION__DESTINATION_MIN_RETRY_INTERVAL=500\n".to_owned(),
            "MYELIN_FEDERATION__DESTINATION_MAX_RETRY_INTERVAL=2000\n".to_owned(),
            "MYELIN_ALLOW_PUBLIC_ROOMS_OVER_FEDERATION=true\n".to_owned(),
        ])
        .collect();
    std::fs::write(&env_file, env).expect("write the env file");
    (env_dir, env_file)
}

/// A split server named `127.0.0.1:<port>` with federation on that port
/// over TLS, with `counts` of each role; its name, and the folder of its
/// environment file (kept while it runs).
async fn federating_split(
    settings: &(String, String),
    certificates: &Certificates,
    counts: &[(&str, &str)],
) -> (Split, String, TempDir) {
    let federation_port = free_port();
    let server_name = format!("127.0.0.1:{federation_port}");
    let (env_dir, env_file) = federation_env();
    let port = federation_port.to_string();
    let mut options: Vec<(&str, &str)> = counts.to_vec();
    options.extend([
        ("SPLIT_SERVER_NAME", server_name.as_str()),
        ("SPLIT_FEDERATION_PORT", port.as_str()),
        ("SPLIT_TLS_CERTIFICATE", certificates.certificate.as_str()),
        ("SPLIT_TLS_KEY", certificates.key.as_str()),
        ("SPLIT_ENV_FILE", env_file.to_str().expect("UTF-8 path")),
    ]);
    let split = Split::up_with(settings, &options).await;
    (split, server_name, env_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3), not(myelin_node)),
    ignore = "needs python3, node and npm (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn split_myelin_federates_with_myelin_and_synapse() {
    let Some(settings) = settings() else { return };
    let certificates = Certificates::new();
    let (mut split, server_name, _env_dir) = federating_split(
        &settings,
        &certificates,
        &[
            ("CLIENT_APIS", "2"),
            ("SYNCHROTRONS", "1"),
            ("PERSISTERS", "1"),
            ("GATEWAYS", "1"),
            ("FEDERATION_APIS", "2"),
        ],
    )
    .await;
    let mut single = federating_myelin(&certificates).await;
    let mut synapse = Synapse::start(&certificates).await;

    let anonymous = split.client();
    let alice = user_with_name(&anonymous.url(""), "alice", "Alice").await;
    let bob = user_with_name(&single.url(), "bob", "Bob of the single").await;
    let sam = user_with_name(&synapse.client_url, "sam", "Sam on Synapse").await;

    // Both ways with each peer, through whichever replicas answer.
    for (asker, user_id, name) in [
        (&alice, &bob.user_id, "Bob of the single"),
        (&alice, &sam.user_id, "Sam on Synapse"),
        (&bob, &alice.user_id, "Alice"),
        (&sam, &alice.user_id, "Alice"),
    ] {
        let seen = displayname_seen(asker, user_id).await;
        assert_eq!(
            (seen.status, seen.body["displayname"].as_str()),
            (200, Some(name)),
            "{} asks for {user_id}: {}\n{}",
            asker.user_id,
            seen.text,
            synapse.log_tail()
        );
    }

    // Encryption keys with Synapse, through the client-api and
    // federation-api replicas.
    check_remote_keys(&alice, &sam).await;
    check_remote_keys(&sam, &alice).await;

    // Sam joins a room of the split server by its alias, through the
    // federation-api replicas and the room's writer; messages cross both
    // ways, Alice's through the federation-sender.
    let room_id = room_joined_over_federation(&alice, &server_name, "splitroom", &sam).await;
    sam.send_text(&room_id, "from Synapse to the split").await;
    assert!(
        wait_for_message(&alice, &room_id, "from Synapse to the split").await,
        "{}",
        synapse.log_tail()
    );
    alice.send_text(&room_id, "from the split to Synapse").await;
    assert!(
        wait_for_message(&sam, &room_id, "from the split to Synapse").await,
        "{}",
        synapse.log_tail()
    );

    // Media both ways: the gateway passes `/federation/v1/media` to the
    // media replicas, and they fetch Synapse's.
    let picture = crate::media::png(120, 90);
    let alices = crate::media::upload_mxc(&alice, "", "image/png", &picture).await;
    let sams = crate::media::upload_mxc(&sam, "", "image/png", &picture).await;
    let seen_by_sam = fetch_media(&sam, "download", &alices, "").await;
    assert_eq!(seen_by_sam.status, 200, "{}", synapse.log_tail());
    assert!(seen_by_sam.body == picture, "Synapse served other bytes");
    let seen_by_alice = fetch_media(&alice, "download", &sams, "").await;
    assert_eq!(
        seen_by_alice.status,
        200,
        "{}",
        String::from_utf8_lossy(&seen_by_alice.body)
    );
    assert!(
        seen_by_alice.body == picture,
        "the split served other bytes"
    );

    // Declining Sam's invite goes through Synapse; a knock on Sam's room too.
    let invited_to = sam
        .create_room(&json!({"preset": "private_chat", "name": "Declined by the split"}))
        .await;
    let invited = sam.invite(&invited_to, &alice.user_id).await;
    assert_eq!(invited.status, 200, "{}", invited.text);
    assert!(wait_for_invite(&alice, &invited_to).await);
    let declined = alice.leave(&invited_to).await;
    assert_eq!(declined.status, 200, "{}", declined.text);
    assert_eq!(
        wait_for_membership(&sam, &invited_to, &alice.user_id, "leave").await,
        "leave"
    );
    let door = knock_room(&sam, "Knocked on by the split").await;
    let knocked = knock_via(&alice, &door, &synapse.server_name).await;
    assert_eq!(knocked.status, 200, "{}", knocked.text);
    assert_eq!(
        wait_for_membership(&sam, &door, &alice.user_id, "knock").await,
        "knock"
    );

    // History from before Alice joined a room of Synapse's and of the
    // single server is fetched when she pages back (`/backfill`), in order.
    for (owner, owner_server, alias) in [
        (&sam, synapse.server_name.as_str(), "splitpast"),
        (&bob, single.server_name(), "singlepast"),
    ] {
        check_backfill(owner, owner_server, alias, &alice, &|| synapse.log_tail()).await;
    }

    // Room directories both ways, and power levels, kicks, bans and
    // rejoins in a room of each server.
    check_directories(&alice, &server_name, &sam, &synapse).await;
    let logs = || synapse.log_tail();
    check_moderation(&alice, &server_name, &sam, &synapse.server_name, &logs).await;

    // A device-list change made while no federation sender runs reaches
    // Synapse once one runs again: senders read the store's stream.
    let since = sam.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    split.kill9_role("FEDERATION_SENDER").await;
    let second = anonymous.login("alice", super::PASSWORD).await;
    crate::keys::upload_device_keys(&second, 11).await;
    split.add("federation-sender").await;
    assert!(
        wait_for_device_change(&sam, &since, &alice.user_id).await,
        "{}",
        synapse.log_tail()
    );

    // An encrypted conversation with matrix-js-sdk, Alice on the split server.
    crate::js_sdk::run_e2ee_across(&anonymous.url(""), &alice, &synapse.client_url, &sam).await;
    // And with the matrix-sdk crate, between two new users.
    user_with_name(&anonymous.url(""), "sdkalice", "Alice's SDK").await;
    user_with_name(&synapse.client_url, "sdksam", "Sam's SDK").await;
    crate::rust_sdk::run_encrypted_conversation(
        (&anonymous.url(""), "sdkalice"),
        (&synapse.client_url, "sdksam"),
        super::PASSWORD,
    )
    .await;

    // A gap of many `/get_missing_events` answers: while the single
    // server is down, Alice sends 600 messages, and the split server's
    // queue for it keeps only the newest (as Synapse's catch-up sends only
    // a room's newest event). The single server walks back round after
    // round until the gap closes: Bob reads every message, in order, after
    // the one before the gap (history fetched later would sit below it).
    let database = split.database().await;
    let gap_room = room_joined_over_federation(&alice, &server_name, "gaproom", &bob).await;
    alice.send_text(&gap_room, "before the split gap").await;
    assert!(wait_for_message(&bob, &gap_room, "before the split gap").await);
    single.kill();
    let gap: Vec<String> = (0..600).map(|n| format!("split gap {n}")).collect();
    for body in &gap {
        alice.send_text(&gap_room, body).await;
    }
    let destination = single.server_name().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let queued: i64 = database
            .query_one(
                "SELECT COUNT(*) FROM federation_outbox WHERE destination = $1",
                &[&destination],
            )
            .await
            .expect("count the queue")
            .get(0);
        if queued >= 600 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {queued} queued for {destination}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    split.kill9_role("FEDERATION_SENDER").await;
    database
        .execute(
            "DELETE FROM federation_outbox WHERE destination = $1
               AND seq < (SELECT MAX(seq) FROM federation_outbox WHERE destination = $1)",
            &[&destination],
        )
        .await
        .expect("drop all but the newest");
    database
        .execute(
            "UPDATE federation_destinations
             SET txn_id = NULL, txn_upto = NULL, failures = 0, retry_at = NULL
             WHERE destination = $1",
            &[&destination],
        )
        .await
        .expect("forget the transaction in flight");
    single.start_again().await;
    split.add("federation-sender").await;
    assert!(
        wait_for_message(&bob, &gap_room, "split gap 599").await,
        "{}",
        single.logs()
    );
    let seen: Vec<String> = page_back_all(&bob, &gap_room, 100, 10)
        .await
        .into_iter()
        .filter(|body| body.contains("split gap"))
        .collect();
    let expected: Vec<String> = std::iter::once("before the split gap".to_owned())
        .chain(gap)
        .collect();
    assert_eq!(seen, expected, "{}", single.logs());

    // Room traffic from the single server, good and bad, through traefik,
    // the gateway, the federation-api replicas and the room's writer.
    let peer = super::rooms::Peer::new(
        &format!("https://{server_name}"),
        &server_name,
        single.server_name(),
        &signing_key_path(single.config_path()),
    );
    super::rooms::check_room_traffic(&peer, &alice).await;

    // Events side by side from the single server: the split writer cites
    // at most twenty of them per event.
    super::rooms::check_wide_branches(&peer, &alice).await;
    // Redactions that come before their targets, applied (or not) by the
    // split writer as the targets land.
    super::rooms::check_redactions_before_their_targets(&peer, &alice).await;

    // While another replica has the single server's turn at its
    // transactions, every replica answers it 429; once given back, 200.
    let origin = single.server_name().to_owned();
    let in_a_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
        + 60_000;
    database
        .execute(
            "INSERT INTO inbound_turns (origin, holder, expires_at) VALUES ($1, 'elsewhere', $2)",
            &[&origin, &in_a_minute],
        )
        .await
        .expect("hold a turn");
    for n in 0..4 {
        let (status, body) = peer.send(&format!("while-busy-{n}"), &[]).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (429, Some("M_LIMIT_EXCEEDED")),
            "{body}"
        );
    }
    database
        .execute("DELETE FROM inbound_turns WHERE origin = $1", &[&origin])
        .await
        .expect("give the turn back");
    let (status, body) = peer.send("after-the-turn", &[]).await;
    assert_eq!(status, 200, "{body}");

    // A version 1 room of Synapse's: joined through the client-api
    // replicas, which give the join an ID of this server's; messages cross.
    let old_room = sam
        .create_room(&json!({"preset": "public_chat", "room_version": "1"}))
        .await;
    let joined = super::synapse::join_via(&alice, &old_room, &synapse.server_name).await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    sam.send_text(&old_room, "version 1 from Synapse").await;
    assert!(wait_for_message(&alice, &old_room, "version 1 from Synapse").await);
    alice.send_text(&old_room, "version 1 from the split").await;
    assert!(
        wait_for_message(&sam, &old_room, "version 1 from the split").await,
        "{}",
        synapse.log_tail()
    );

    // Device lists of the single server's users, kept by the split
    // server: updates through the federation-api replicas follow their
    // chain, and a gap has the list fetched whole again.
    let dana_room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let dana = super::device_lists::dana_joins(&peer, &alice, &dana_room).await;
    let at: i64 = database
        .query_one(
            "SELECT stream_id FROM remote_device_lists WHERE user_id = $1",
            &[&dana],
        )
        .await
        .expect("Dana's list is kept")
        .get(0);
    super::device_lists::check_device_list_chain(&peer, &alice, &dana, at).await;

    // Synapse goes down: Alice's client still gets Sam's devices' keys,
    // from the list the split server keeps, and no failure.
    let before = super::device_lists::keys_of(&alice, &sam.user_id).await;
    let devices = super::device_lists::devices_in(&before, &sam.user_id);
    assert!(!devices.is_empty(), "{before}");
    synapse.kill().await;
    let after = super::device_lists::keys_of(&alice, &sam.user_id).await;
    assert_eq!(
        super::device_lists::devices_in(&after, &sam.user_id),
        devices,
        "{after}"
    );
    assert!(
        after["failures"]
            .as_object()
            .is_none_or(|failures| failures.is_empty()),
        "{after}"
    );

    // Forged and broken requests through traefik and the gateway.
    crate::security::federation::check_forged_requests(
        &format!("https://{server_name}"),
        &server_name,
        &alice,
        single.server_name(),
        &signing_key_path(single.config_path()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn split_federation_sender_killed_mid_stream_loses_nothing() {
    let Some(settings) = settings() else { return };
    let certificates = Certificates::new();
    let (split, server_name, _env_dir) = federating_split(
        &settings,
        &certificates,
        &[
            ("CLIENT_APIS", "1"),
            ("SYNCHROTRONS", "1"),
            ("PERSISTERS", "1"),
            ("GATEWAYS", "1"),
            ("FEDERATION_APIS", "1"),
            ("FEDERATION_SENDERS", "2"),
        ],
    )
    .await;
    let mut split = split;
    let synapse = Synapse::start(&certificates).await;
    let alice = user_with_name(&split.client().url(""), "alice", "Alice").await;
    let sam = user_with_name(&synapse.client_url, "sam", "Sam on Synapse").await;
    let room_id = room_joined_over_federation(&alice, &server_name, "killroom", &sam).await;

    // A third of the way in, both senders die with SIGKILL, whichever held
    // Synapse's partition, in the middle of whatever they were sending; a
    // new sender takes the partitions over from the store. Alice's read
    // receipt made while no sender runs goes out too.
    let sent: Vec<String> = (0..30).map(|n| format!("stream {n}")).collect();
    let senders = split.processes("FEDERATION_SENDER");
    assert_eq!(senders.len(), 2);
    // Two thirds in, a second sender joins and takes a share of the
    // partitions from the running one; later the first is stopped and the
    // second takes them all, each while messages flow.
    let database = split.database().await;
    let mut read_upto = String::new();
    let mut first = None;
    for (n, body) in sent.iter().enumerate() {
        if n == 10 {
            for (name, _, pid) in &senders {
                split.kill9(name, *pid).await;
            }
            mark_read(&alice, &room_id, &read_upto).await;
            first = Some(split.add("federation-sender").await);
        }
        if n == 20 {
            split.add("federation-sender").await;
            assert!(
                wait_for_sender_holders(&database, 2).await,
                "the partitions were not shared by two senders"
            );
        }
        if n == 25 {
            let first = first.take().expect("the first sender added");
            split.terminate(&first.name, first.pid).await;
            assert!(
                wait_for_sender_holders(&database, 1).await,
                "the partitions were not all taken by the sender left"
            );
        }
        read_upto = alice.send_text(&room_id, body).await;
    }
    assert!(
        wait_for_message(&sam, &room_id, "stream 29").await,
        "{}",
        synapse.log_tail()
    );
    let seen = bodies_in_order(&sam, &room_id, 60).await;
    let streamed: Vec<&String> = seen
        .iter()
        .filter(|body| body.starts_with("stream"))
        .collect();
    assert_eq!(streamed, sent.iter().collect::<Vec<_>>(), "{seen:?}");
    assert!(
        wait_for_receipt(&sam, &room_id, &alice.user_id).await,
        "{}",
        synapse.log_tail()
    );
}

/// Waits up to 60 s until the sender partitions' leases (all of them) are
/// held by `holders` database sessions, one per sender.
async fn wait_for_sender_holders(database: &tokio_postgres::Client, holders: i64) -> bool {
    // The senders' lease keys: "fs" and the partition (see the sender).
    const FIRST_KEY: i64 = 0x6673_0000;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let row = database
            .query_one(
                "SELECT COUNT(*), COUNT(DISTINCT pid) FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND classid = 0 AND objsubid = 1
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND objid::text::bigint BETWEEN $1 AND $1 + 63",
                &[&FIRST_KEY],
            )
            .await
            .expect("read the leases");
        let (held, by): (i64, i64) = (row.get(0), row.get(1));
        if held == 64 && by == holders {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    false
}

/// Syncs `reader` until a read receipt of `from` shows in the room, within
/// 30 s.
async fn wait_for_receipt(reader: &Client, room_id: &str, from: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut since: Option<String> = None;
    while std::time::Instant::now() < deadline {
        let synced = reader.sync(since.as_deref(), 1000).await;
        since = synced["next_batch"].as_str().map(str::to_owned);
        let ephemeral = ephemeral_events(&synced, room_id);
        let read = ephemeral.iter().any(|event| {
            event["type"] == "m.receipt"
                && event["content"].as_object().is_some_and(|by_event| {
                    by_event
                        .values()
                        .any(|types| types["m.read"].get(from).is_some())
                })
        });
        if read {
            return true;
        }
    }
    false
}
