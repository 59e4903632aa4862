//! Synapse as the peer: a real `matrix-synapse` from the interop venv,
//! named `127.0.0.1:<port>` with federation on that port over TLS.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{
    Certificates, FAST_RETRIES, LOOPBACK_FEDERATION, SHARED_DIRECTORY, check_remote_keys,
    displayname_seen, federating_myelin, federating_myelin_with, user_with_name,
};
use crate::client::{Client, message_bodies};
use crate::harness::{TempDir, free_port};
use crate::interop::{SCRIPT_TIMEOUT, run, venv};

/// Generous: on a busy two-core machine a split server may be starting beside it.
const START_TIMEOUT: Duration = Duration::from_secs(240);

/// A running Synapse; killed when dropped.
pub(crate) struct Synapse {
    child: Child,
    python: std::path::PathBuf,
    config: std::path::PathBuf,
    dir: TempDir,
    pub(crate) server_name: String,
    pub(crate) client_url: String,
}

fn spawn(python: &std::path::Path, config: &std::path::Path, dir: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("synapse.out"))
        .expect("log file");
    Command::new(python)
        .args(["-m", "synapse.app.homeserver", "--config-path"])
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start Synapse")
}

impl Synapse {
    pub(crate) async fn start(certificates: &Certificates) -> Synapse {
        let venv = venv().await;
        let python = venv.join("bin").join("python");
        let dir = TempDir::new("synapse");
        let federation_port = free_port();
        let client_port = free_port();
        let server_name = format!("127.0.0.1:{federation_port}");
        let config = dir.path().join("homeserver.yaml");
        let mut generate = Command::new(&python);
        generate
            .args(["-m", "synapse.app.homeserver", "--generate-config"])
            .args(["--report-stats", "no", "--server-name", &server_name])
            .arg("--config-path")
            .arg(&config)
            .arg("--data-directory")
            .arg(dir.path())
            // The log config it writes names a file in the working directory.
            .current_dir(dir.path());
        let generated = run(generate, SCRIPT_TIMEOUT, "synapse --generate-config").await;
        assert_eq!(generated.code, Some(0), "{}", generated.describe());
        // Later keys win in Synapse's YAML loader: the test's settings go last.
        // Synapse checks server names that are IP literals against its
        // blacklist without the whitelist, so loopback must leave the list.
        let settings = format!(
            "\nlisteners:\n  - port: {federation_port}\n    tls: true\n    type: http\n    \
             bind_addresses: ['127.0.0.1']\n    resources: [{{names: [federation], compress: false}}]\n  \
             - port: {client_port}\n    tls: false\n    type: http\n    \
             bind_addresses: ['127.0.0.1']\n    resources: [{{names: [client], compress: false}}]\n\
             tls_certificate_path: \"{certificate}\"\ntls_private_key_path: \"{key}\"\n\
             {LOOPBACK_FEDERATION}{FAST_RETRIES}{SHARED_DIRECTORY}ip_range_blacklist: []\n\
             suppress_key_server_warning: true\n\
             room_list_publication_rules: [{{action: allow}}]\n\
             enable_registration: true\nenable_registration_without_verification: true\n\
             rc_registration: {{per_second: 1000, burst_count: 1000}}\n\
             rc_message: {{per_second: 1000, burst_count: 1000}}\n\
             rc_login:\n  address: {{per_second: 1000, burst_count: 1000}}\n  \
             account: {{per_second: 1000, burst_count: 1000}}\n",
            certificate = certificates.certificate,
            key = certificates.key,
        );
        let mut yaml = std::fs::read_to_string(&config).expect("read Synapse's config");
        yaml.push_str(&settings);
        std::fs::write(&config, yaml).expect("write Synapse's config");

        let child = spawn(&python, &config, dir.path());
        let synapse = Synapse {
            child,
            python,
            config,
            dir,
            server_name,
            client_url: format!("http://127.0.0.1:{client_port}"),
        };
        synapse.wait_ready().await;
        synapse
    }

    /// Stops Synapse at once, as a crash would.
    pub(crate) async fn kill(&mut self) {
        self.child.kill().await.expect("kill Synapse");
    }

    /// Starts the stopped Synapse again, on the same ports and database.
    pub(crate) async fn restart(&mut self) {
        self.child = spawn(&self.python, &self.config, self.dir.path());
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let versions = format!("{}/_matrix/client/versions", self.client_url);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(&versions).await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("Synapse did not start:\n{}", self.log_tail());
    }

    /// Synapse's signing key file.
    pub(crate) fn signing_key_path(&self) -> std::path::PathBuf {
        super::signing_key_path(&self.config)
    }

    /// Synapse's own log, whole.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("homeserver.log")).unwrap_or_default()
    }

    /// The end of Synapse's own log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let mut text = String::new();
        for name in ["synapse.out", "homeserver.log"] {
            let log = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&lines[lines.len().saturating_sub(30)..].join("\n"));
            text.push('\n');
        }
        text
    }
}

/// A Myelin and a Synapse federating, with a user on each: Alice on
/// Myelin, Sam on Synapse.
pub(crate) struct Peers {
    /// Kept for the servers' lifetime (their TLS files).
    pub(crate) _certificates: Certificates,
    pub(crate) myelin: crate::harness::Server,
    pub(crate) synapse: Synapse,
    pub(crate) alice: Client,
    pub(crate) sam: Client,
}

impl Peers {
    pub(crate) async fn start() -> Peers {
        let certificates = Certificates::new();
        let myelin = federating_myelin(&certificates).await;
        let synapse = Synapse::start(&certificates).await;
        let alice = user_with_name(&myelin.url(), "alice", "Alice on Myelin").await;
        let sam = user_with_name(&synapse.client_url, "sam", "Sam on Synapse").await;
        Peers {
            _certificates: certificates,
            myelin,
            synapse,
            alice,
            sam,
        }
    }
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn synapse_and_myelin_read_each_others_profiles() {
    let Peers {
        // Kept running to the end, though not asked directly.
        myelin: _myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    assert!(sam.user_id.ends_with(&synapse.server_name));

    // Myelin asks Synapse: Synapse checks Myelin's signature with the key
    // it fetches from Myelin.
    let seen = displayname_seen(&alice, &sam.user_id).await;
    assert_eq!(seen.status, 200, "{}\n{}", seen.text, synapse.log_tail());
    assert_eq!(seen.body["displayname"], "Sam on Synapse");

    // Synapse asks Myelin: Myelin checks Synapse's signature the same way.
    let seen = displayname_seen(&sam, &alice.user_id).await;
    assert_eq!(seen.status, 200, "{}\n{}", seen.text, synapse.log_tail());
    assert_eq!(seen.body["displayname"], "Alice on Myelin");

    // Encryption keys both ways.
    check_remote_keys(&alice, &sam).await;
    check_remote_keys(&sam, &alice).await;

    // A Synapse user who does not exist: Synapse's 404 reaches the client.
    let nobody = format!("@nobody:{}", synapse.server_name);
    displayname_seen(&alice, &nobody)
        .await
        .assert_error(404, "M_NOT_FOUND");
}

/// Polls `/messages` (newest first) until a message with `body` shows up.
pub(crate) async fn wait_for_message(reader: &Client, room_id: &str, body: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let reply = reader
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                crate::client::encode(room_id)
            ))
            .await;
        if reply.status == 200
            && message_bodies(&reply.body["chunk"])
                .iter()
                .any(|seen| seen == body)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The users `reader`'s server holds as joined to the room.
pub(crate) async fn joined_members(reader: &Client, room_id: &str) -> Vec<String> {
    let reply = reader
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            crate::client::encode(room_id)
        ))
        .await;
    let mut members: Vec<String> = reply.body["joined"]
        .as_object()
        .map(|joined| joined.keys().cloned().collect())
        .unwrap_or_default();
    members.sort();
    members
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn a_synapse_user_joins_a_myelin_room_by_alias_and_talks_in_it() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = alice
        .create_room(&json!({"preset": "public_chat", "room_alias_name": "meet", "name": "Meet"}))
        .await;
    alice.send_text(&room_id, "before Sam joined").await;

    // Synapse finds the room by its alias (`/query/directory`), asks for a
    // template (`make_join`), signs it and sends it back (`send_join`), and
    // checks the state and auth chain it gets.
    let alias = format!("#meet:{}", myelin.server_name());
    let joined = sam.join(&alias).await;
    assert_eq!(
        joined.status,
        200,
        "{}\n{}",
        joined.text,
        synapse.log_tail()
    );
    assert_eq!(joined.body["room_id"], room_id.as_str());
    let mut both = vec![alice.user_id.clone(), sam.user_id.clone()];
    both.sort();
    assert_eq!(
        joined_members(&alice, &room_id).await,
        both,
        "{}",
        myelin.logs()
    );
    assert_eq!(joined_members(&sam, &room_id).await, both);
    let name = sam
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.name/",
            crate::client::encode(&room_id)
        ))
        .await;
    assert_eq!(name.body["name"], "Meet", "{}", name.text);

    // History from before the join reaches Synapse by backfill from Myelin.
    assert!(
        wait_for_message(&sam, &room_id, "before Sam joined").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );

    // Sam's message reaches Myelin in a transaction (`/send`).
    sam.send_text(&room_id, "hello from Synapse").await;
    assert!(
        wait_for_message(&alice, &room_id, "hello from Synapse").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );

    // Sam's typing, read receipt and a to-device message reach Alice as
    // EDUs of Synapse's transactions.
    let alice_message = alice.send_text(&room_id, "did it arrive?").await;
    assert!(wait_for_message(&sam, &room_id, "did it arrive?").await);
    send_edus(&sam, &room_id, &alice_message, &alice).await;
    let (typing_seen, receipt_seen, to_device_seen, presence_seen) =
        wait_for_edus(&alice, &room_id, &sam.user_id, &alice_message).await;
    assert!(presence_seen, "presence\n{}", myelin.logs());
    assert!(typing_seen, "typing\n{}", synapse.log_tail());
    assert!(receipt_seen, "receipt\n{}", myelin.logs());
    assert!(to_device_seen, "to-device\n{}", synapse.log_tail());

    // Sam uploads keys: Synapse tells Myelin (`m.device_list_update`), and
    // Alice's sync lists Sam among the users whose devices changed.
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    crate::keys::upload_device_keys(&sam, 6).await;
    assert!(
        wait_for_device_change(&alice, &since, &sam.user_id).await,
        "{}",
        myelin.logs()
    );

    // Alice's answer reaches Synapse from Myelin's federation sender.
    alice.send_text(&room_id, "hello from Myelin").await;
    assert!(
        wait_for_message(&sam, &room_id, "hello from Myelin").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );

    // A room nobody may join without an invite: Myelin refuses the template.
    let private = alice.create_room(&json!({"preset": "private_chat"})).await;
    let refused = sam
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                crate::client::encode(&private),
                crate::client::encode(myelin.server_name())
            ),
            &json!({}),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(
        joined_members(&alice, &private).await,
        vec![alice.user_id.clone()]
    );
}

/// A public room of `owner` with alias `#<local>:<server>`, joined by
/// `joiner` on Synapse through the alias; returns the room ID.
pub(crate) async fn room_joined_over_federation(
    owner: &Client,
    owner_server: &str,
    local: &str,
    joiner: &Client,
) -> String {
    let room_id = owner
        .create_room(&json!({"preset": "public_chat", "room_alias_name": local}))
        .await;
    let joined = joiner.join(&format!("#{local}:{owner_server}")).await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    room_id
}

/// The bodies of the room's last `limit` messages as `reader` sees them,
/// oldest first.
pub(crate) async fn bodies_in_order(reader: &Client, room_id: &str, limit: u32) -> Vec<String> {
    let page = reader
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}",
            crate::client::encode(room_id)
        ))
        .await;
    let mut bodies = message_bodies(&page.body["chunk"]);
    bodies.reverse();
    bodies
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn synapse_catches_up_on_every_message_sent_while_it_was_down() {
    let Peers {
        myelin,
        mut synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = room_joined_over_federation(&alice, myelin.server_name(), "catchup", &sam).await;
    alice.send_text(&room_id, "while up").await;
    assert!(
        wait_for_message(&sam, &room_id, "while up").await,
        "{}",
        synapse.log_tail()
    );

    // Synapse goes away; Myelin keeps every message for it and backs off.
    synapse.kill().await;
    let missed: Vec<String> = (0..30).map(|n| format!("missed {n}")).collect();
    for body in &missed {
        alice.send_text(&room_id, body).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    synapse.restart().await;

    // Every missed message arrives, in the order it was sent.
    assert!(
        wait_for_message(&sam, &room_id, "missed 29").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );
    let seen = bodies_in_order(&sam, &room_id, 40).await;
    let seen_missed: Vec<&String> = seen
        .iter()
        .filter(|body| body.starts_with("missed"))
        .collect();
    assert_eq!(seen_missed, missed.iter().collect::<Vec<_>>(), "{seen:?}");
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn a_myelin_user_joins_a_synapse_room_by_alias_and_talks_in_it() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = room_joined_over_federation(&sam, &synapse.server_name, "lounge", &alice).await;

    // Myelin holds the room's state from the join.
    let mut both = vec![alice.user_id.clone(), sam.user_id.clone()];
    both.sort();
    assert_eq!(
        joined_members(&alice, &room_id).await,
        both,
        "{}",
        myelin.logs()
    );
    assert_eq!(joined_members(&sam, &room_id).await, both);
    assert!(alice.joined_rooms().await.contains(&room_id));

    // Messages both ways.
    alice.send_text(&room_id, "hello from Myelin").await;
    assert!(
        wait_for_message(&sam, &room_id, "hello from Myelin").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );
    let sam_message = sam.send_text(&room_id, "hello from Synapse").await;
    assert!(
        wait_for_message(&alice, &room_id, "hello from Synapse").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );

    // Alice's typing, read receipt and a to-device message reach Sam as
    // EDUs of Myelin's transactions.
    send_edus(&alice, &room_id, &sam_message, &sam).await;
    let (typing, receipt, to_device, presence) =
        wait_for_edus(&sam, &room_id, &alice.user_id, &sam_message).await;
    assert!(
        typing && receipt && to_device && presence,
        "typing {typing}, receipt {receipt}, to-device {to_device}, presence {presence}\n{}",
        myelin.logs()
    );

    // Alice uploads keys: Myelin tells Synapse (`m.device_list_update`),
    // Synapse fetches her devices again, Sam's sync lists her among the
    // users whose devices changed and his key query shows the new key.
    let since = sam.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let keys = crate::keys::upload_device_keys(&alice, 7).await;
    assert!(
        wait_for_device_change(&sam, &since, &alice.user_id).await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );
    let queried = sam
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {&alice.user_id: []}}),
        )
        .await;
    let device_id = keys["device_id"].as_str().expect("device_id");
    assert_eq!(
        queried.body["device_keys"][&alice.user_id][device_id]["keys"], keys["keys"],
        "{}",
        queried.text
    );

    // A room of Synapse's that needs an invite: Synapse refuses Alice.
    let private = sam.create_room(&json!({"preset": "private_chat"})).await;
    let refused = alice
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                crate::client::encode(&private),
                crate::client::encode(&synapse.server_name)
            ),
            &json!({}),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(!alice.joined_rooms().await.contains(&private));

    // Alice logs out her only device: Myelin tells Synapse it was deleted,
    // and Sam's key query stops showing it.
    let logged_out = alice.post("/_matrix/client/v3/logout", &json!({})).await;
    assert_eq!(logged_out.status, 200, "{}", logged_out.text);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queried = sam
            .post(
                "/_matrix/client/v3/keys/query",
                &json!({"device_keys": {&alice.user_id: []}}),
            )
            .await;
        if queried.body["device_keys"][&alice.user_id]
            .get(device_id)
            .is_none()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\n{}\n{}",
            queried.text,
            myelin.logs(),
            synapse.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `owner` redacts `event_id` of `room_id` for `reason`.
async fn redact(owner: &Client, room_id: &str, event_id: &str, reason: &str) {
    let redacted = owner
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/take-back",
                crate::client::encode(room_id),
                crate::client::encode(event_id)
            ),
            &json!({ "reason": reason }),
        )
        .await;
    assert_eq!(redacted.status, 200, "{}", redacted.text);
}

/// `reader` sees `event_id` of `room_id` pruned, with the redaction that
/// gave `reason`.
pub(crate) async fn assert_redacted(reader: &Client, room_id: &str, event_id: &str, reason: &str) {
    let event = reader
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            crate::client::encode(room_id),
            crate::client::encode(event_id)
        ))
        .await;
    assert_eq!(event.status, 200, "{}", event.text);
    assert_eq!(event.body["content"], json!({}), "{}", event.text);
    assert_eq!(
        event.body["unsigned"]["redacted_because"]["content"]["reason"], reason,
        "{}",
        event.text
    );
}

/// What `reader`'s search for `term` finds in the rooms (all when `None`).
pub(crate) async fn search_rooms(reader: &Client, term: &str, rooms: Option<&[&str]>) -> Value {
    let mut criteria = json!({ "search_term": term });
    if let Some(rooms) = rooms {
        criteria["filter"] = json!({ "rooms": rooms });
    }
    let found = reader
        .post(
            "/_matrix/client/v3/search",
            &json!({"search_categories": {"room_events": criteria}}),
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    found.body["search_categories"]["room_events"].clone()
}

/// History from before a join arrives by backfill: `owner` sends 12
/// messages in a new public room named by `alias` (and one more it redacts
/// after them), then `joiner` joins by the alias and pages back through all
/// of them, in order. The fetched history is searchable, and the redaction,
/// fetched before its target, is applied to it. Then the same for history
/// from while the joiner's server was away ([`check_history_while_away`]).
pub(crate) async fn check_backfill(
    owner: &Client,
    owner_server: &str,
    alias: &str,
    joiner: &Client,
    logs: &dyn Fn() -> String,
) {
    let room_id = owner
        .create_room(&json!({"preset": "public_chat", "room_alias_name": alias}))
        .await;
    let past: Vec<String> = (0..12).map(|n| format!("{alias} {n}")).collect();
    let mut secret_id = String::new();
    for body in &past {
        owner.send_text(&room_id, body).await;
        if secret_id.is_empty() {
            secret_id = owner.send_text(&room_id, "a confidential remark").await;
        }
    }
    redact(owner, &room_id, &secret_id, "said too much").await;
    let joined = joiner.join(&format!("#{alias}:{owner_server}")).await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    assert_eq!(
        page_back_all(joiner, &room_id, 5, 20).await,
        past,
        "{}",
        logs()
    );

    let room = [room_id.as_str()];
    let found = search_rooms(joiner, alias, Some(&room)).await;
    assert_eq!(found["count"], past.len(), "{found}\n{}", logs());
    let found = search_rooms(joiner, "confidential", Some(&room)).await;
    assert_eq!(found["count"], 0, "{found}\n{}", logs());
    assert_redacted(joiner, &room_id, &secret_id, "said too much").await;

    let away = format!("{alias}-away");
    check_history_while_away(owner, owner_server, &away, joiner, logs).await;
}

/// History sent while nobody of the joiner's server was in the room is
/// fetched when paging back reaches the gap it left: `joiner` joins
/// `owner`'s new room named by `alias`, leaves, `owner` sends 12 messages,
/// `joiner` joins again and pages back through everything in order, the
/// messages from while away in their place. Search finds them too.
async fn check_history_while_away(
    owner: &Client,
    owner_server: &str,
    alias: &str,
    joiner: &Client,
    logs: &dyn Fn() -> String,
) {
    let room_id = owner
        .create_room(&json!({"preset": "public_chat", "room_alias_name": alias}))
        .await;
    let address = format!("#{alias}:{owner_server}");
    let mut expected: Vec<String> = vec!["earlier 0".to_owned(), "earlier 1".to_owned()];
    for body in &expected {
        owner.send_text(&room_id, body).await;
    }
    let joined = joiner.join(&address).await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    owner.send_text(&room_id, "together").await;
    expected.push("together".to_owned());
    assert!(
        wait_for_message(joiner, &room_id, "together").await,
        "{}",
        logs()
    );
    let left = joiner.leave(&room_id).await;
    assert_eq!(left.status, 200, "{}", left.text);
    assert_eq!(
        wait_for_membership(owner, &room_id, &joiner.user_id, "leave").await,
        "leave"
    );
    let away: Vec<String> = (0..12).map(|n| format!("{alias} {n}")).collect();
    for body in &away {
        owner.send_text(&room_id, body).await;
    }
    expected.extend(away.iter().cloned());
    let rejoined = joiner.join(&address).await;
    assert_eq!(rejoined.status, 200, "{}", rejoined.text);
    owner.send_text(&room_id, "back again").await;
    expected.push("back again".to_owned());
    assert!(
        wait_for_message(joiner, &room_id, "back again").await,
        "{}",
        logs()
    );

    // A first sync's timeline does not run across the gap: it starts at the
    // rejoin, and paging back from its `prev_batch` fills the gap.
    let filter = crate::client::encode(r#"{"room":{"timeline":{"limit":40}}}"#);
    let sync = joiner
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .await;
    assert_eq!(sync.status, 200, "{}", sync.text);
    let timeline = &sync.body["rooms"]["join"][&room_id]["timeline"];
    assert_eq!(
        message_bodies(&timeline["events"]),
        ["back again"],
        "{timeline}"
    );
    assert_eq!(timeline["limited"], true, "{timeline}");
    let prev_batch = timeline["prev_batch"].as_str().expect("prev_batch");
    let mut through_sync = page_back_from(joiner, &room_id, Some(prev_batch), 5, 30).await;
    through_sync.push("back again".to_owned());
    assert_eq!(through_sync, expected, "{}", logs());
    // Paging from the live end reads it all, in order, as kept now.
    assert_eq!(
        page_back_all(joiner, &room_id, 5, 30).await,
        expected,
        "{}",
        logs()
    );
    let room = [room_id.as_str()];
    let found = search_rooms(joiner, alias, Some(&room)).await;
    assert_eq!(found["count"], away.len(), "{found}\n{}", logs());
}

/// Every message body `reader` can page back to, oldest first, following
/// `end` tokens (at most `pages` pages of `limit`).
pub(crate) async fn page_back_all(
    reader: &Client,
    room_id: &str,
    limit: u32,
    pages: usize,
) -> Vec<String> {
    page_back_from(reader, room_id, None, limit, pages).await
}

/// The same from the point `from` names (the live end when `None`).
async fn page_back_from(
    reader: &Client,
    room_id: &str,
    from: Option<&str>,
    limit: u32,
    pages: usize,
) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut from: Option<String> = from.map(str::to_owned);
    for _ in 0..pages {
        let from_part = from
            .as_deref()
            .map(|token| format!("&from={}", crate::client::encode(token)))
            .unwrap_or_default();
        let page = reader
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}{from_part}",
                crate::client::encode(room_id)
            ))
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        bodies.extend(message_bodies(&page.body["chunk"]));
        match page.body["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    bodies.reverse();
    bodies
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn a_myelin_user_pages_back_into_a_synapse_rooms_history_from_before_the_join() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = sam
        .create_room(&json!({"preset": "public_chat", "room_alias_name": "archive"}))
        .await;
    let mut early: Vec<String> = (0..25).map(|n| format!("early {n}")).collect();
    let mut first_id = String::new();
    let mut secret_id = String::new();
    for body in &early {
        let event_id = sam.send_text(&room_id, body).await;
        if first_id.is_empty() {
            first_id = event_id;
            secret_id = sam.send_text(&room_id, "a secret taken back").await;
        }
    }
    // Redacted a page of history later: paging back fetches the redaction
    // before its target.
    redact(&sam, &room_id, &secret_id, "oops").await;
    // A thread on the first message, in the history fetched later.
    let reply = sam
        .send_reply(
            &room_id,
            "m.room.message",
            "thread-reply",
            &json!({
                "msgtype": "m.text",
                "body": "early reply in a thread",
                "m.relates_to": {"rel_type": "m.thread", "event_id": first_id},
            }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    early.push("early reply in a thread".to_owned());
    // Then only members from now on may read: the rest stays Sam's.
    let hidden = sam
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility/",
                crate::client::encode(&room_id)
            ),
            &json!({"history_visibility": "joined"}),
        )
        .await;
    assert_eq!(hidden.status, 200, "{}", hidden.text);
    for n in 0..3 {
        sam.send_text(&room_id, &format!("members only {n}")).await;
    }
    let joined = alice
        .join(&format!("#archive:{}", synapse.server_name))
        .await;
    assert_eq!(joined.status, 200, "{}", joined.text);

    // Paging back from the join fetches the history from Synapse, page by
    // page, in order, and shows what was open to everyone.
    let seen = page_back_all(&alice, &room_id, 10, 20).await;
    assert_eq!(seen, early, "{}\n{}", myelin.logs(), synapse.log_tail());
    // Paging again reads what is kept here now.
    assert_eq!(page_back_all(&alice, &room_id, 50, 5).await, early);
    // The fetched history is indexed as live events are: search finds the
    // messages open to everyone (not the members-only ones), and the
    // thread's reply is found through its root.
    let threaded = search_rooms(&alice, "early thread", None).await;
    assert_eq!(threaded["count"], 1, "{threaded}");
    assert_eq!(
        threaded["results"][0]["result"]["content"]["body"],
        "early reply in a thread"
    );
    for (term, count) in [("early", early.len()), ("members", 0), ("secret", 0)] {
        let found = search_rooms(&alice, term, None).await;
        assert_eq!(found["count"], count, "{term}: {found}");
    }
    assert_redacted(&alice, &room_id, &secret_id, "oops").await;
    let thread = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/relations/{}/m.thread",
            crate::client::encode(&room_id),
            crate::client::encode(&first_id)
        ))
        .await;
    assert_eq!(thread.status, 200, "{}", thread.text);
    assert_eq!(
        message_bodies(&thread.body["chunk"]),
        ["early reply in a thread"],
        "{}",
        thread.text
    );
    let root = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            crate::client::encode(&room_id),
            crate::client::encode(&first_id)
        ))
        .await;
    assert_eq!(
        root.body["unsigned"]["m.relations"]["m.thread"]["count"], 1,
        "{}",
        root.text
    );
    // Messages after the join still come live.
    sam.send_text(&room_id, "after the join").await;
    assert!(wait_for_message(&alice, &room_id, "after the join").await);

    let logs = || format!("{}\n{}", myelin.logs(), synapse.log_tail());
    check_history_while_away(&sam, &synapse.server_name, "whileaway", &alice, &logs).await;
}

/// A public space with `alias` holding a public room named `child_name` and
/// an invite-only one, both reached through `server`; returns the space's
/// ID.
pub(crate) async fn space_with_children(
    owner: &Client,
    alias: &str,
    child_name: &str,
    server: &str,
) -> String {
    let space = owner
        .create_room(&json!({
            "preset": "public_chat",
            "room_alias_name": alias,
            "creation_content": {"type": "m.space"},
        }))
        .await;
    let open = owner
        .create_room(&json!({"preset": "public_chat", "name": child_name}))
        .await;
    let closed = owner
        .create_room(&json!({"preset": "private_chat", "name": "Closed child"}))
        .await;
    for child in [&open, &closed] {
        let added = owner
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
                    crate::client::encode(&space),
                    crate::client::encode(child)
                ),
                &json!({"via": [server]}),
            )
            .await;
        assert_eq!(added.status, 200, "{}", added.text);
    }
    space
}

/// The names of the rooms `reader` sees walking the space, after waiting
/// (up to 30 s) for `wanted` among them.
pub(crate) async fn hierarchy_names(reader: &Client, space: &str, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let walked = reader
            .get(&format!(
                "/_matrix/client/v1/rooms/{}/hierarchy",
                crate::client::encode(space)
            ))
            .await;
        let names: Vec<String> = walked.body["rooms"]
            .as_array()
            .map(|rooms| {
                rooms
                    .iter()
                    .filter_map(|room| room["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if names.iter().any(|name| name == wanted) || Instant::now() > deadline {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn spaces_are_walked_across_servers() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    // Sam's space on Synapse, walked by Alice: Myelin is in the space, not
    // in its children, and asks Synapse for them; then the other way.
    for (owner, walker, owner_server, alias, child) in [
        (
            &sam,
            &alice,
            synapse.server_name.as_str(),
            "sams-space",
            "Synapse child",
        ),
        (
            &alice,
            &sam,
            myelin.server_name(),
            "alices-space",
            "Myelin child",
        ),
    ] {
        let space = space_with_children(owner, alias, child, owner_server).await;
        let joined = walker.join(&format!("#{alias}:{owner_server}")).await;
        assert_eq!(joined.status, 200, "{}", joined.text);
        let names = hierarchy_names(walker, &space, child).await;
        assert!(
            names.contains(&child.to_owned()),
            "{names:?}\n{}\n{}",
            myelin.logs(),
            synapse.log_tail()
        );
        assert!(!names.contains(&"Closed child".to_owned()), "{names:?}");
    }
}

/// Polls `/sync` until `room_id` is among the user's invites.
pub(crate) async fn wait_for_invite(user: &Client, room_id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Incremental after the first: Synapse answers a repeated initial sync
    // from a cache.
    let mut since: Option<String> = None;
    while Instant::now() < deadline {
        let synced = user.sync(since.as_deref(), 1000).await;
        if synced["rooms"]["invite"].get(room_id).is_some() {
            return true;
        }
        since = synced["next_batch"].as_str().map(str::to_owned).or(since);
    }
    false
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn a_myelin_user_invites_a_synapse_user_who_joins() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = alice
        .create_room(&json!({"preset": "private_chat", "name": "Invite only"}))
        .await;

    // Without the invite, Synapse cannot get Sam in.
    let refused = sam
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                crate::client::encode(&room_id),
                crate::client::encode(myelin.server_name())
            ),
            &json!({}),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);

    // Sam declines a first invite: Synapse is not in the room, so his
    // leave goes through Myelin (`make_leave`, `send_leave`).
    let invited = alice.invite(&room_id, &sam.user_id).await;
    assert_eq!(invited.status, 200, "{}", invited.text);
    assert!(
        wait_for_invite(&sam, &room_id).await,
        "{}",
        synapse.log_tail()
    );
    let declined = sam.leave(&room_id).await;
    assert_eq!(
        declined.status,
        200,
        "{}\n{}",
        declined.text,
        synapse.log_tail()
    );
    assert_eq!(
        wait_for_membership(&alice, &room_id, &sam.user_id, "leave").await,
        "leave"
    );

    // The invite goes to Synapse (`/v2/invite`); Sam sees it and joins.
    let invited = alice.invite(&room_id, &sam.user_id).await;
    assert_eq!(
        invited.status,
        200,
        "{}\n{}",
        invited.text,
        synapse.log_tail()
    );
    assert!(
        wait_for_invite(&sam, &room_id).await,
        "{}",
        synapse.log_tail()
    );
    let joined = sam.join(&room_id).await;
    assert_eq!(
        joined.status,
        200,
        "{}\n{}",
        joined.text,
        synapse.log_tail()
    );
    let mut both = vec![alice.user_id.clone(), sam.user_id.clone()];
    both.sort();
    assert_eq!(joined_members(&alice, &room_id).await, both);
    sam.send_text(&room_id, "thanks for the invite").await;
    assert!(
        wait_for_message(&alice, &room_id, "thanks for the invite").await,
        "{}",
        synapse.log_tail()
    );
}

/// A private room of Sam's named `name`, to which he invites Alice;
/// returns once her sync shows the invite.
async fn sam_invites_alice(
    sam: &Client,
    alice: &Client,
    myelin: &crate::harness::Server,
    name: &str,
) -> String {
    let room_id = sam
        .create_room(&json!({"preset": "private_chat", "name": name}))
        .await;
    let invited = sam.invite(&room_id, &alice.user_id).await;
    assert_eq!(invited.status, 200, "{}\n{}", invited.text, myelin.logs());
    assert!(wait_for_invite(alice, &room_id).await, "{}", myelin.logs());
    room_id
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn a_synapse_user_invites_a_myelin_user_who_joins() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    // Synapse sends the invite (`/v2/invite`); Alice's sync shows it with
    // the room's name from the stripped state.
    let room_id = sam_invites_alice(&sam, &alice, &myelin, "Sam's room").await;
    let synced = alice.sync(None, 0).await;
    let invite_state = &synced["rooms"]["invite"][&room_id]["invite_state"]["events"];
    let name = invite_state
        .as_array()
        .and_then(|events| events.iter().find(|event| event["type"] == "m.room.name"))
        .map(|event| event["content"]["name"].clone());
    assert_eq!(name, Some(json!("Sam's room")), "{invite_state}");

    // Alice accepts: Myelin joins through Synapse.
    let joined = alice.join(&room_id).await;
    assert_eq!(joined.status, 200, "{}\n{}", joined.text, myelin.logs());
    let mut both = vec![alice.user_id.clone(), sam.user_id.clone()];
    both.sort();
    assert_eq!(joined_members(&sam, &room_id).await, both);
    alice.send_text(&room_id, "thanks, Sam").await;
    assert!(
        wait_for_message(&sam, &room_id, "thanks, Sam").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn a_myelin_user_rejects_a_synapse_users_invite() {
    let Peers {
        myelin,
        mut synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = sam_invites_alice(&sam, &alice, &myelin, "Declined").await;

    // Myelin is not in the room: the leave goes through Synapse
    // (make_leave, signed here, send_leave).
    let left = alice.leave(&room_id).await;
    assert_eq!(
        left.status,
        200,
        "{}\n{}\n{}",
        left.text,
        myelin.logs(),
        synapse.log_tail()
    );
    let member_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        crate::client::encode(&room_id),
        crate::client::encode(&alice.user_id)
    );
    let seen_by_sam = sam.get(&member_path).await;
    assert_eq!(
        seen_by_sam.body["membership"], "leave",
        "{}",
        seen_by_sam.text
    );
    let synced = alice.sync(None, 0).await;
    assert!(
        synced["rooms"]["invite"].get(&room_id).is_none(),
        "the declined invite is still offered: {}",
        synced["rooms"]
    );

    // A second invite still reaches her, and she can take that one.
    let again = sam.invite(&room_id, &alice.user_id).await;
    assert_eq!(again.status, 200, "{}\n{}", again.text, synapse.log_tail());
    assert!(wait_for_invite(&alice, &room_id).await, "{}", myelin.logs());
    let joined = alice.join(&room_id).await;
    assert_eq!(joined.status, 200, "{}\n{}", joined.text, myelin.logs());
    let mut both = vec![alice.user_id.clone(), sam.user_id.clone()];
    both.sort();
    assert_eq!(joined_members(&sam, &room_id).await, both);

    // An invite whose server is gone can still be declined: the leave is
    // kept here only.
    let stranded = sam_invites_alice(&sam, &alice, &myelin, "Stranded").await;
    synapse.kill().await;
    let left = alice.leave(&stranded).await;
    assert_eq!(left.status, 200, "{}\n{}", left.text, myelin.logs());
    let synced = alice.sync(None, 0).await;
    assert!(
        synced["rooms"]["invite"].get(&stranded).is_none(),
        "the stranded invite is still offered: {}",
        synced["rooms"]
    );
}

/// The names of the rooms `asker`'s server lists for `server` (`POST
/// /publicRooms?server=`), searched for `term`; the answer when it fails.
async fn listed_names(asker: &Client, server: &str, term: &str) -> Result<Vec<String>, String> {
    let listed = asker
        .post(
            &format!(
                "/_matrix/client/v3/publicRooms?server={}",
                crate::client::encode(server)
            ),
            &json!({"filter": {"generic_search_term": term}, "limit": 10}),
        )
        .await;
    if listed.status != 200 {
        return Err(format!("{} {}", listed.status, listed.text));
    }
    Ok(listed.body["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|room| room["name"].as_str().map(str::to_owned))
        .collect())
}

/// Alice's server and Synapse each read the other's room directory,
/// searched.
pub(crate) async fn check_directories(
    alice: &Client,
    myelin_name: &str,
    sam: &Client,
    synapse: &Synapse,
) {
    let lobby = format!("Myelin lobby of {}", alice.user_id);
    alice
        .create_room(&json!({"preset": "public_chat", "visibility": "public", "name": lobby}))
        .await;
    sam.create_room(
        &json!({"preset": "public_chat", "visibility": "public", "name": "Synapse lounge"}),
    )
    .await;

    let from_synapse = listed_names(sam, myelin_name, "lobby").await;
    assert_eq!(from_synapse, Ok(vec![lobby]), "{}", synapse.log_tail());
    assert_eq!(
        listed_names(sam, myelin_name, "nothing like it").await,
        Ok(vec![])
    );
    // Synapse lists a new room once its room statistics caught up (and
    // only because its test settings let users publish rooms).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut from_myelin = listed_names(alice, &synapse.server_name, "lounge").await;
    while from_myelin == Ok(vec![]) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        from_myelin = listed_names(alice, &synapse.server_name, "lounge").await;
    }
    assert_eq!(
        from_myelin,
        Ok(vec!["Synapse lounge".to_owned()]),
        "{}",
        synapse.log_tail()
    );
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn room_directories_are_read_across_servers() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: certificates,
    } = Peers::start().await;
    check_directories(&alice, myelin.server_name(), &sam, &synapse).await;

    // A server that keeps its directory to itself refuses other servers.
    let private = federating_myelin_with(&certificates, "").await;
    let quiet = user_with_name(&private.url(), "quiet", "Quiet").await;
    quiet
        .create_room(&json!({"preset": "public_chat", "visibility": "public", "name": "Hidden"}))
        .await;
    let refused = listed_names(&alice, private.server_name(), "").await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|answer| answer.starts_with("403")),
        "{refused:?}"
    );
    assert_eq!(
        listed_names(&quiet, private.server_name(), "").await,
        Ok(vec!["Hidden".to_owned()])
    );
}

/// `reader`'s view of `user_id`'s membership of the room, waiting up to
/// 30 s for it to become `want`; what it was last.
pub(crate) async fn wait_for_membership(
    reader: &Client,
    room_id: &str,
    user_id: &str,
    want: &str,
) -> String {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        crate::client::encode(room_id),
        crate::client::encode(user_id)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = reader.get(&path).await;
        let seen = reply.body["membership"]
            .as_str()
            .map_or_else(|| format!("none: {}", reply.text), str::to_owned);
        if seen == want || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether `user`'s sync lists the room among those left with a ban of
/// them in its timeline (a banned user may read nothing else of it).
async fn wait_for_own_ban(user: &Client, room_id: &str) -> bool {
    // Incremental syncs: Synapse answers a repeated initial sync from a cache.
    let filter = crate::client::encode(r#"{"room":{"include_leave":true}}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut since = String::new();
    while Instant::now() < deadline {
        let mut path = format!("/_matrix/client/v3/sync?timeout=1000&filter={filter}");
        if !since.is_empty() {
            path.push_str(&format!("&since={}", crate::client::encode(&since)));
        }
        let synced = user.get(&path).await.body;
        let events = synced["rooms"]["leave"][room_id]["timeline"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if events.iter().any(|event| {
            event["type"] == "m.room.member"
                && event["state_key"] == user.user_id.as_str()
                && event["content"]["membership"] == "ban"
        }) {
            return true;
        }
        if let Some(next) = synced["next_batch"].as_str() {
            since = next.to_owned();
        }
    }
    false
}

/// `joiner` joins `room_id` through `server` (Synapse asks for one).
pub(crate) async fn join_via(joiner: &Client, room_id: &str, server: &str) -> crate::client::Reply {
    joiner
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                crate::client::encode(room_id),
                crate::client::encode(server)
            ),
            &json!({}),
        )
        .await
}

/// `actor` kicks, bans or unbans `target` (`action`).
async fn moderate(actor: &Client, action: &str, room_id: &str, target: &str) {
    let done = actor
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/{action}",
                crate::client::encode(room_id)
            ),
            &json!({"user_id": target, "reason": "testing"}),
        )
        .await;
    assert_eq!(done.status, 200, "{action}: {}", done.text);
}

/// `actor` sets the room's power levels to give `user_id` `level`.
async fn set_power(actor: &Client, room_id: &str, user_id: &str, level: i64) {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
        crate::client::encode(room_id)
    );
    let mut levels = actor.get(&path).await.ok();
    levels["users"][user_id] = json!(level);
    let set = actor.put(&path, &levels).await;
    assert_eq!(set.status, 200, "{}", set.text);
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn power_levels_kicks_bans_and_rejoins_agree_on_both_sides() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let logs = || format!("{}\n{}", myelin.logs(), synapse.log_tail());
    check_moderation(
        &alice,
        myelin.server_name(),
        &sam,
        &synapse.server_name,
        &logs,
    )
    .await;
}

/// Power levels, kicks, bans and rejoins between Alice's server and
/// Synapse, in a room of each; both sides agree at each step.
pub(crate) async fn check_moderation(
    alice: &Client,
    myelin_name: &str,
    sam: &Client,
    synapse_name: &str,
    logs: &dyn Fn() -> String,
) {
    // In Alice's room: Sam gets power and uses it; Myelin accepts it.
    let room_id = room_joined_over_federation(alice, myelin_name, "court", sam).await;
    set_power(alice, &room_id, &sam.user_id, 50).await;
    let topic_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
        crate::client::encode(&room_id)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut topic = sam.put(&topic_path, &json!({"topic": "set by Sam"})).await;
    while topic.status == 403 && Instant::now() < deadline {
        // Synapse has not seen the new power levels yet.
        tokio::time::sleep(Duration::from_millis(250)).await;
        topic = sam.put(&topic_path, &json!({"topic": "set by Sam"})).await;
    }
    assert_eq!(topic.status, 200, "{}\n{}", topic.text, logs());
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice.get(&topic_path).await.body["topic"] != "set by Sam" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        alice.get(&topic_path).await.body["topic"],
        "set by Sam",
        "{}",
        logs()
    );

    // Alice kicks Sam; both servers agree; he may come back.
    moderate(alice, "kick", &room_id, &sam.user_id).await;
    assert_eq!(
        wait_for_membership(sam, &room_id, &sam.user_id, "leave").await,
        "leave",
        "{}",
        logs()
    );
    let rejoined = join_via(sam, &room_id, myelin_name).await;
    assert_eq!(rejoined.status, 200, "{}\n{}", rejoined.text, logs());
    assert_eq!(
        wait_for_membership(alice, &room_id, &sam.user_id, "join").await,
        "join"
    );

    // Alice bans Sam: he may not come back until unbanned.
    moderate(alice, "ban", &room_id, &sam.user_id).await;
    assert!(wait_for_own_ban(sam, &room_id).await, "{}", logs());
    let refused = join_via(sam, &room_id, myelin_name).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    moderate(alice, "unban", &room_id, &sam.user_id).await;
    let rejoined = join_via(sam, &room_id, myelin_name).await;
    assert_eq!(rejoined.status, 200, "{}\n{}", rejoined.text, logs());
    assert_eq!(
        wait_for_membership(alice, &room_id, &sam.user_id, "join").await,
        "join"
    );

    // In Sam's room: Sam kicks Alice, and Myelin rejoins through Synapse.
    let sams_room = room_joined_over_federation(sam, synapse_name, "hall", alice).await;
    moderate(sam, "kick", &sams_room, &alice.user_id).await;
    assert_eq!(
        wait_for_membership(alice, &sams_room, &alice.user_id, "leave").await,
        "leave",
        "{}",
        logs()
    );
    assert!(!alice.joined_rooms().await.contains(&sams_room));
    let rejoined = alice.join(&sams_room).await;
    assert_eq!(rejoined.status, 200, "{}\n{}", rejoined.text, logs());
    assert_eq!(
        wait_for_membership(sam, &sams_room, &alice.user_id, "join").await,
        "join"
    );

    // Sam bans Alice: Myelin's join through Synapse is refused.
    moderate(sam, "ban", &sams_room, &alice.user_id).await;
    assert!(wait_for_own_ban(alice, &sams_room).await, "{}", logs());
    let refused = alice.join(&sams_room).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
}

/// A room of `owner`'s that asks to be knocked on, named `name`.
pub(crate) async fn knock_room(owner: &Client, name: &str) -> String {
    owner
        .create_room(&json!({
            "preset": "private_chat",
            "room_version": "10",
            "name": name,
            "initial_state": [{
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {"join_rule": "knock"},
            }],
        }))
        .await
}

/// `knocker` knocks on `room_id` through `server`.
pub(crate) async fn knock_via(
    knocker: &Client,
    room_id: &str,
    server: &str,
) -> crate::client::Reply {
    knocker
        .post(
            &format!(
                "/_matrix/client/v3/knock/{}?via={server}&server_name={server}",
                crate::client::encode(room_id),
                server = crate::client::encode(server)
            ),
            &json!({"reason": "may I come in?"}),
        )
        .await
}

/// The room's name as `user`'s sync shows it among their knocks.
async fn knocked_room_name(user: &Client, room_id: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let synced = user.sync(None, 0).await;
        let name = synced["rooms"]["knock"][room_id]["knock_state"]["events"]
            .as_array()
            .and_then(|events| events.iter().find(|event| event["type"] == "m.room.name"))
            .and_then(|event| event["content"]["name"].as_str().map(str::to_owned));
        if name.is_some() {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    None
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn knocks_cross_servers_and_end_in_a_join() {
    let Peers {
        myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let logs = || format!("{}\n{}", myelin.logs(), synapse.log_tail());
    let mut both = vec![alice.user_id.clone(), sam.user_id.clone()];
    both.sort();

    // Alice knocks on Sam's room (make_knock/send_knock to Synapse).
    let sams_room = knock_room(&sam, "Sam's door").await;
    let knocked = knock_via(&alice, &sams_room, &synapse.server_name).await;
    assert_eq!(knocked.status, 200, "{}\n{}", knocked.text, logs());
    assert_eq!(
        wait_for_membership(&sam, &sams_room, &alice.user_id, "knock").await,
        "knock"
    );
    assert_eq!(
        knocked_room_name(&alice, &sams_room).await.as_deref(),
        Some("Sam's door")
    );
    let invited = sam.invite(&sams_room, &alice.user_id).await;
    assert_eq!(invited.status, 200, "{}", invited.text);
    assert!(wait_for_invite(&alice, &sams_room).await, "{}", logs());
    let joined = alice.join(&sams_room).await;
    assert_eq!(joined.status, 200, "{}\n{}", joined.text, logs());
    assert_eq!(joined_members(&sam, &sams_room).await, both);

    // Sam knocks on Alice's room (Synapse asks Myelin).
    let alices_room = knock_room(&alice, "Alice's door").await;
    let knocked = knock_via(&sam, &alices_room, myelin.server_name()).await;
    assert_eq!(knocked.status, 200, "{}\n{}", knocked.text, logs());
    assert_eq!(
        wait_for_membership(&alice, &alices_room, &sam.user_id, "knock").await,
        "knock"
    );
    assert_eq!(
        knocked_room_name(&sam, &alices_room).await.as_deref(),
        Some("Alice's door"),
        "{}",
        logs()
    );
    let invited = alice.invite(&alices_room, &sam.user_id).await;
    assert_eq!(invited.status, 200, "{}", invited.text);
    assert!(wait_for_invite(&sam, &alices_room).await, "{}", logs());
    let joined = join_via(&sam, &alices_room, myelin.server_name()).await;
    assert_eq!(joined.status, 200, "{}\n{}", joined.text, logs());
    assert_eq!(joined_members(&alice, &alices_room).await, both);

    // A knock on a version 12 room (its ID names no server) is withdrawn
    // through a server of the room's state the knock brought back.
    let v12_door = sam
        .create_room(&json!({
            "preset": "private_chat",
            "room_version": "12",
            "initial_state": [{
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {"join_rule": "knock"},
            }],
        }))
        .await;
    let knocked = knock_via(&alice, &v12_door, &synapse.server_name).await;
    assert_eq!(knocked.status, 200, "{}\n{}", knocked.text, logs());
    assert_eq!(
        wait_for_membership(&sam, &v12_door, &alice.user_id, "knock").await,
        "knock"
    );
    let withdrawn = alice.leave(&v12_door).await;
    assert_eq!(withdrawn.status, 200, "{}\n{}", withdrawn.text, logs());
    assert_eq!(
        wait_for_membership(&sam, &v12_door, &alice.user_id, "leave").await,
        "leave"
    );

    // A room that is not for knocking refuses, on both sides.
    let closed = sam.create_room(&json!({"preset": "private_chat"})).await;
    let refused = knock_via(&alice, &closed, &synapse.server_name).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let closed = alice.create_room(&json!({"preset": "private_chat"})).await;
    let refused = knock_via(&sam, &closed, myelin.server_name()).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
}

/// `GET /_matrix/client/v1/media/{kind}/{server}/{id}{query}` as `client`.
pub(crate) async fn fetch_media(
    client: &Client,
    kind: &str,
    mxc: &str,
    query: &str,
) -> crate::media::Bytes {
    let path = mxc.strip_prefix("mxc://").expect("an mxc URI");
    crate::media::send(
        client,
        reqwest::Method::GET,
        &format!("/_matrix/client/v1/media/{kind}/{path}{query}"),
        None,
        Vec::new(),
    )
    .await
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn media_crosses_servers_byte_for_byte() {
    let Peers {
        myelin,
        mut synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let alices_picture = crate::media::png(640, 480);
    let sams_picture = crate::media::png(300, 200);
    let alices_mxc = crate::media::upload_mxc(
        &alice,
        "?filename=picture.png",
        "image/png",
        &alices_picture,
    )
    .await;
    let sams_mxc =
        crate::media::upload_mxc(&sam, "?filename=picture.png", "image/png", &sams_picture).await;

    // Synapse fetches Alice's picture from Myelin (`/federation/v1/media/download`).
    let seen_by_sam = fetch_media(&sam, "download", &alices_mxc, "").await;
    assert_eq!(seen_by_sam.status, 200, "{}", synapse.log_tail());
    assert!(
        seen_by_sam.body == alices_picture,
        "Synapse served other bytes"
    );
    let thumbnail = fetch_media(
        &sam,
        "thumbnail",
        &alices_mxc,
        "?width=64&height=64&method=scale",
    )
    .await;
    assert_eq!(thumbnail.status, 200, "{}", synapse.log_tail());
    let (width, height) = crate::media::dimensions(&thumbnail.body);
    assert!(
        width <= 640 && height <= 480 && width < 640,
        "{width}x{height}"
    );

    // Myelin fetches Sam's picture from Synapse, keeps it, and thumbnails
    // come from Synapse and are kept too.
    let seen_by_alice = fetch_media(&alice, "download", &sams_mxc, "").await;
    assert_eq!(seen_by_alice.status, 200, "{}", myelin.logs());
    assert!(
        seen_by_alice.body == sams_picture,
        "Myelin served other bytes"
    );
    let thumbnail = fetch_media(
        &alice,
        "thumbnail",
        &sams_mxc,
        "?width=32&height=32&method=crop",
    )
    .await;
    assert_eq!(
        thumbnail.status,
        200,
        "{}",
        String::from_utf8_lossy(&thumbnail.body)
    );
    crate::media::dimensions(&thumbnail.body);
    let (_, unknown_id) = sams_mxc.rsplit_once('/').expect("a media ID");
    let unknown = sams_mxc.replace(unknown_id, "NoSuchMediaHere");
    let missing = fetch_media(&alice, "download", &unknown, "").await;
    assert_eq!(
        missing.status,
        404,
        "{}",
        String::from_utf8_lossy(&missing.body)
    );
    let missing = fetch_media(
        &sam,
        "download",
        &alices_mxc.replace(
            alices_mxc.rsplit_once('/').expect("id").1,
            "NoSuchMediaHere",
        ),
        "",
    )
    .await;
    assert_eq!(
        missing.status,
        404,
        "{}",
        String::from_utf8_lossy(&missing.body)
    );

    // With Synapse gone, the kept copies still serve.
    synapse.kill().await;
    let kept = fetch_media(&alice, "download", &sams_mxc, "").await;
    assert_eq!(kept.status, 200, "{}", myelin.logs());
    assert!(kept.body == sams_picture, "the kept copy differs");
    let kept_thumbnail = fetch_media(
        &alice,
        "thumbnail",
        &sams_mxc,
        "?width=32&height=32&method=crop",
    )
    .await;
    assert_eq!(kept_thumbnail.status, 200, "{}", myelin.logs());
    assert!(
        kept_thumbnail.body == thumbnail.body,
        "the kept thumbnail differs"
    );
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn other_servers_media_expires_after_its_lifetime() {
    let Peers {
        mut synapse,
        sam,
        _certificates: certificates,
        ..
    } = Peers::start().await;
    let mut keeper_server = federating_myelin_with(
        &certificates,
        "media_retention:\n  remote_media_lifetime: 1s\n",
    )
    .await;
    let keeper = user_with_name(&keeper_server.url(), "keeper", "Keeper").await;
    let picture = crate::media::png(40, 30);
    let mxc = crate::media::upload_mxc(&sam, "", "image/png", &picture).await;
    let fetched = fetch_media(&keeper, "download", &mxc, "").await;
    assert_eq!(fetched.status, 200, "{}", keeper_server.logs());
    assert!(fetched.body == picture);

    // Past its lifetime the copy is forgotten (the media role expires
    // media as it starts, then every ten minutes): with Synapse gone,
    // nothing serves it any more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    keeper_server.kill();
    keeper_server.start_again().await;
    synapse.kill().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gone = fetch_media(&keeper, "download", &mxc, "").await;
        if gone.status != 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", keeper_server.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The ephemeral events a sync gave for the room (none when it gave none).
pub(crate) fn ephemeral_events(synced: &Value, room_id: &str) -> Vec<Value> {
    synced["rooms"]["join"][room_id]["ephemeral"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Syncs `reader` until `from`'s typing notice and read receipt for
/// `event_id` show in the room, a to-device `org.example.note` arrived and
/// `from`'s presence is known; which of the four did, within 30 s.
async fn wait_for_edus(
    reader: &Client,
    room_id: &str,
    from: &str,
    event_id: &str,
) -> (bool, bool, bool, bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut typing, mut receipt, mut to_device, mut presence) = (false, false, false, false);
    let mut since: Option<String> = None;
    while Instant::now() < deadline && !(typing && receipt && to_device && presence) {
        let synced = reader.sync(since.as_deref(), 1000).await;
        since = synced["next_batch"].as_str().map(str::to_owned);
        let ephemeral = ephemeral_events(&synced, room_id);
        for event in &ephemeral {
            if event["type"] == "m.typing"
                && event["content"]["user_ids"]
                    .as_array()
                    .is_some_and(|users| users.iter().any(|user| user == from))
            {
                typing = true;
            }
            if event["type"] == "m.receipt"
                && event["content"][event_id]["m.read"].get(from).is_some()
            {
                receipt = true;
            }
        }
        if synced["to_device"]["events"]
            .as_array()
            .is_some_and(|events| {
                events
                    .iter()
                    .any(|event| event["type"] == "org.example.note" && event["sender"] == from)
            })
        {
            to_device = true;
        }
        if synced["presence"]["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|event| event["sender"] == from))
        {
            presence = true;
        }
    }
    (typing, receipt, to_device, presence)
}

/// `reader` marks `event_id` read in the room.
pub(crate) async fn mark_read(reader: &Client, room_id: &str, event_id: &str) {
    let marked = reader
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                crate::client::encode(room_id),
                crate::client::encode(event_id)
            ),
            &json!({}),
        )
        .await;
    assert_eq!(marked.status, 200, "{}", marked.text);
}

/// `sender` starts typing in the room, marks `event_id` read, sends
/// `recipient`'s device an `org.example.note` to-device message and sets
/// a status message.
async fn send_edus(sender: &Client, room_id: &str, event_id: &str, recipient: &Client) {
    let room = crate::client::encode(room_id);
    let typing = sender
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room}/typing/{}",
                crate::client::encode(&sender.user_id)
            ),
            &json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(typing.status, 200, "{}", typing.text);
    mark_read(sender, room_id, event_id).await;
    let device = recipient.whoami().await.ok()["device_id"]
        .as_str()
        .expect("a device")
        .to_owned();
    let mut messages = serde_json::Map::new();
    messages.insert(
        recipient.user_id.clone(),
        json!({device: {"note": "straight to your device"}}),
    );
    let sent = sender
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.note/edu-1",
            &json!({"messages": messages}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let presence = sender
        .put(
            &format!(
                "/_matrix/client/v3/presence/{}/status",
                crate::client::encode(&sender.user_id)
            ),
            &json!({"presence": "online", "status_msg": "federating"}),
        )
        .await;
    assert_eq!(presence.status, 200, "{}", presence.text);
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn myelin_catches_up_on_a_synapse_room_after_being_down() {
    let Peers {
        mut myelin,
        synapse,
        alice,
        sam,
        _certificates: _keep,
    } = Peers::start().await;
    let room_id = room_joined_over_federation(&sam, &synapse.server_name, "gap", &alice).await;
    sam.send_text(&room_id, "while Myelin is up").await;
    assert!(wait_for_message(&alice, &room_id, "while Myelin is up").await);

    // Myelin goes away; Synapse keeps talking. When Myelin is back, Synapse
    // sends what it has, and Myelin asks for the gap (`/get_missing_events`).
    myelin.kill();
    let missed: Vec<String> = (0..8)
        .map(|n| format!("while Myelin is down {n}"))
        .collect();
    for body in &missed {
        sam.send_text(&room_id, body).await;
    }
    myelin.start_again().await;
    sam.send_text(&room_id, "Myelin is back").await;
    assert!(
        wait_for_message(&alice, &room_id, "Myelin is back").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );
    let seen = bodies_in_order(&alice, &room_id, 40).await;
    let seen_missed: Vec<&String> = seen
        .iter()
        .filter(|body| body.contains("is down"))
        .collect();
    assert_eq!(seen_missed, missed.iter().collect::<Vec<_>>(), "{seen:?}");

    // A longer outage: every message sent meanwhile is in Myelin's
    // timeline, in order, whether Synapse's transactions carry it or Myelin
    // fetches it (`/get_missing_events`, see the split federation test for
    // a gap longer than one answer), and the room goes on both ways.
    myelin.kill();
    let long: Vec<String> = (0..120).map(|n| format!("long gap {n}")).collect();
    for body in &long {
        sam.send_text(&room_id, body).await;
    }
    myelin.start_again().await;
    sam.send_text(&room_id, "after the long gap").await;
    assert!(
        wait_for_message(&alice, &room_id, "after the long gap").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );
    let seen = page_back_all(&alice, &room_id, 50, 10).await;
    let seen_long: Vec<&String> = seen
        .iter()
        .filter(|body| body.starts_with("long gap"))
        .collect();
    assert_eq!(seen_long, long.iter().collect::<Vec<_>>(), "{seen:?}");
    alice.send_text(&room_id, "still talking").await;
    assert!(
        wait_for_message(&sam, &room_id, "still talking").await,
        "{}\n{}",
        myelin.logs(),
        synapse.log_tail()
    );
}

/// Syncs `reader` from `since` until `user_id` shows in
/// `device_lists.changed`, within 30 s.
pub(crate) async fn wait_for_device_change(reader: &Client, since: &str, user_id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut since = since.to_owned();
    while Instant::now() < deadline {
        let synced = reader.sync(Some(&since), 1000).await;
        if synced["device_lists"]["changed"]
            .as_array()
            .is_some_and(|users| users.iter().any(|user| user == user_id))
        {
            return true;
        }
        if let Some(next) = synced["next_batch"].as_str() {
            since = next.to_owned();
        }
    }
    false
}
