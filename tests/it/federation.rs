//! Federation between real servers on loopback: Myelins whose names are
//! `127.0.0.1:<port>`, each with its federation listener on that port over
//! TLS (self-signed; certificate checks off for the test only), and
//! Synapse as the peer. Every request between them is signed with
//! `X-Matrix` and checked with keys fetched from the other server.

mod device_lists;
mod old_rooms;
pub(crate) mod rooms;
pub(crate) mod signing;
mod split;
pub(crate) mod synapse;
mod trust;

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::client::Client;
use crate::harness::{Server, TempDir, free_port};
use crate::tls::self_signed_certificate;

pub(crate) const PASSWORD: &str = "pw-federation";

/// A certificate for 127.0.0.1 shared by the servers of one test.
pub(crate) struct Certificates {
    _dir: TempDir,
    pub(crate) certificate: String,
    pub(crate) key: String,
}

impl Certificates {
    pub(crate) fn new() -> Certificates {
        let dir = TempDir::new("federation-certs");
        let (certificate, key) = self_signed_certificate(dir.path());
        Certificates {
            _dir: dir,
            certificate,
            key,
        }
    }
}

/// Settings every federating server of these tests shares: loopback is a
/// permitted destination, no notary (there is no internet), certificates
/// unchecked (they are self-signed).
pub(crate) const LOOPBACK_FEDERATION: &str = "trusted_key_servers: []\n\
     federation_verify_certificates: false\n\
     ip_range_whitelist: ['127.0.0.1/32']\n";

/// A failed destination is tried again within a second or two, so a peer
/// that comes back is caught up while the test waits (Synapse reads the
/// same keys).
pub(crate) const FAST_RETRIES: &str = "federation:\n  destination_min_retry_interval: 500\n  \
     destination_max_retry_interval: 2000\n";

/// A Myelin named `127.0.0.1:<port>` with federation on that port (TLS)
/// and its client listener elsewhere, sharing its room directory.
pub(crate) async fn federating_myelin(certificates: &Certificates) -> Server {
    federating_myelin_with(certificates, SHARED_DIRECTORY).await
}

/// Lets other servers read a server's room directory (Synapse reads the same key).
pub(crate) const SHARED_DIRECTORY: &str = "allow_public_rooms_over_federation: true\n";

/// [`federating_myelin`] with `settings` (YAML) instead of a shared directory.
pub(crate) async fn federating_myelin_with(certificates: &Certificates, settings: &str) -> Server {
    federating_myelin_configured(
        certificates,
        &format!("{LOOPBACK_FEDERATION}{FAST_RETRIES}{settings}"),
    )
    .await
}

/// A Myelin of [`federating_myelin`] with only `settings` (YAML) where the
/// others have [`LOOPBACK_FEDERATION`], for tests of those settings.
pub(crate) async fn federating_myelin_configured(
    certificates: &Certificates,
    settings: &str,
) -> Server {
    let port = free_port();
    let federation_listener = format!(
        "listeners:\n  - port: {port}\n    tls: true\n    type: http\n    \
         bind_addresses: ['127.0.0.1']\n    resources:\n      - names: [federation]\n"
    );
    Server::builder()
        .server_name(&format!("127.0.0.1:{port}"))
        .open_registration()
        .edit_config("listeners:\n", &federation_listener)
        .edit_config(
            "trusted_key_servers:\n  - server_name: \"matrix.org\"\n",
            settings,
        )
        .env("MYELIN_TLS_CERTIFICATE_PATH", &certificates.certificate)
        .env("MYELIN_TLS_PRIVATE_KEY_PATH", &certificates.key)
        .start()
        .await
}

/// Holds (or gives back) `origin`'s turn at its transactions in a single
/// process's database, as if another replica were processing one: its
/// transactions are answered `429` meanwhile. The server may be running.
pub(crate) fn hold_inbound_turn(server: &Server, origin: &str, hold: bool) {
    let database = server
        .config_path()
        .parent()
        .expect("config folder")
        .join("homeserver.db");
    let db = rusqlite::Connection::open(database).expect("open the database");
    db.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let in_a_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
        + 60_000;
    if hold {
        db.execute(
            "INSERT INTO inbound_turns (origin, holder, expires_at) VALUES (?1, 'elsewhere', ?2)
             ON CONFLICT (origin) DO UPDATE SET holder = 'elsewhere', expires_at = ?2",
            rusqlite::params![origin, in_a_minute],
        )
        .expect("hold the turn");
    } else {
        db.execute("DELETE FROM inbound_turns WHERE origin = ?1", [origin])
            .expect("give the turn back");
    }
}

/// `https://<server name>`: where a Myelin of [`federating_myelin`] serves
/// federation.
pub(crate) fn federation_url(server: &Server) -> String {
    format!("https://{}", server.server_name())
}

/// The signing key file of a server (`ed25519 <version> <seed>`).
pub(crate) fn signing_key_path(config_path: &Path) -> PathBuf {
    let yaml = std::fs::read_to_string(config_path).expect("read homeserver.yaml");
    let line = yaml
        .lines()
        .find_map(|line| line.strip_prefix("signing_key_path:"))
        .expect("homeserver.yaml names its signing key");
    PathBuf::from(line.trim().trim_matches('"'))
}

/// Two Myelins federating on loopback, with Alice on the first and Bob on
/// the second.
pub(crate) struct TwoMyelins {
    pub(crate) _certificates: Certificates,
    pub(crate) first: Server,
    pub(crate) second: Server,
    pub(crate) alice: Client,
    pub(crate) bob: Client,
}

impl TwoMyelins {
    pub(crate) async fn start() -> TwoMyelins {
        let certificates = Certificates::new();
        let first = federating_myelin(&certificates).await;
        let second = federating_myelin(&certificates).await;
        let alice = user_with_name(&first.url(), "alice", "Alice").await;
        let bob = user_with_name(&second.url(), "bob", "Bob").await;
        TwoMyelins {
            _certificates: certificates,
            first,
            second,
            alice,
            bob,
        }
    }

    /// Both servers' logs.
    pub(crate) fn logs(&self) -> String {
        format!("{}\n{}", self.first.logs(), self.second.logs())
    }
}

/// Registers `name` and gives it a display name.
pub(crate) async fn user_with_name(base_url: &str, name: &str, displayname: &str) -> Client {
    let user = Client::new(base_url).register(name, PASSWORD).await;
    let path = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        crate::client::encode(&user.user_id)
    );
    user.put(&path, &json!({"displayname": displayname}))
        .await
        .ok();
    user
}

/// The display name `asker` sees for `user_id` (through its server).
pub(crate) async fn displayname_seen(asker: &Client, user_id: &str) -> crate::client::Reply {
    asker
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            crate::client::encode(user_id)
        ))
        .await
}

#[tokio::test]
async fn two_myelins_read_each_others_profiles_over_signed_requests() {
    let certificates = Certificates::new();
    let first = federating_myelin(&certificates).await;
    let second = federating_myelin(&certificates).await;
    let alice = user_with_name(&first.url(), "alice", "Alice of the first").await;
    let bob = user_with_name(&second.url(), "bob", "Bob of the second").await;

    let seen = displayname_seen(&bob, &alice.user_id).await.ok();
    assert_eq!(seen["displayname"], "Alice of the first");
    let seen = displayname_seen(&alice, &bob.user_id).await.ok();
    assert_eq!(seen["displayname"], "Bob of the second");
    // One field, through the per-field endpoint.
    let name = bob
        .get(&format!(
            "/_matrix/client/v3/profile/{}/displayname",
            crate::client::encode(&alice.user_id)
        ))
        .await
        .ok();
    assert_eq!(name, json!({"displayname": "Alice of the first"}));

    // A user the other server does not have is its 404, passed on.
    let missing = format!("@nobody:{}", first.server_name());
    displayname_seen(&bob, &missing)
        .await
        .assert_error(404, "M_NOT_FOUND");
    // A server nobody serves: 502, not a hang or a 500.
    let unreachable = format!("@x:127.0.0.1:{}", free_port());
    displayname_seen(&bob, &unreachable)
        .await
        .assert_error(502, "M_UNKNOWN");

    // Each server now holds the other's key, fetched from it and checked.
    let keys = reqwest_insecure()
        .get(format!(
            "{}/_matrix/key/v2/query/{}",
            federation_url(&first),
            second.server_name()
        ))
        .send()
        .await
        .expect("notary answers")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let documents = keys["server_keys"].as_array().expect("server_keys");
    assert_eq!(documents.len(), 1, "{keys}");
    assert_eq!(documents[0]["server_name"], second.server_name());
    let signers = documents[0]["signatures"].as_object().expect("signatures");
    assert!(signers.contains_key(second.server_name()), "{keys}");
    assert!(signers.contains_key(first.server_name()), "{keys}");
}

/// A client for a federation listener's self-signed certificate.
pub(crate) fn reqwest_insecure() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

/// `asker` asks its server for the keys of `owner`, a user of another
/// server: the signed device keys `owner` uploaded come back, one-time keys
/// are claimed once each and then the fallback key, and a server nobody
/// serves is named in `failures` without holding up the rest.
pub(crate) async fn check_remote_keys(asker: &Client, owner: &Client) {
    use crate::keys::{claim_body, claimed_key_id, device_keys, one_time_keys};
    let signing = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let uploaded = device_keys(owner, &signing);
    owner
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": uploaded, "one_time_keys": one_time_keys(&["a1", "a2"])}),
        )
        .await
        .ok();
    let nowhere = format!("@x:127.0.0.1:{}", free_port());
    let query = asker
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {owner.user_id.clone(): [], nowhere.clone(): []}}),
        )
        .await
        .ok();
    let keys = &query["device_keys"][&owner.user_id][&owner.device_id];
    assert_eq!(keys["keys"], uploaded["keys"], "{query}");
    assert_eq!(keys["signatures"], uploaded["signatures"], "{query}");
    let nowhere_server = nowhere.split_once(':').expect("user ID").1;
    assert!(query["failures"][nowhere_server].is_object(), "{query}");
    assert!(
        query["failures"]
            .get(owner.user_id.split_once(':').expect("user ID").1)
            .is_none()
    );

    // A claim naming a user of a server nobody serves too: the owner's
    // key comes back, and the other server is listed as failed.
    let mut claimed = Vec::new();
    for _ in 0..2 {
        let mut body = claim_body(owner);
        body["one_time_keys"][&nowhere] = json!({"DEVICE": "signed_curve25519"});
        let answer = asker
            .post("/_matrix/client/v3/keys/claim", &body)
            .await
            .ok();
        claimed.push(claimed_key_id(&answer, owner).unwrap_or_else(|| panic!("{answer}")));
        assert!(answer["failures"][nowhere_server].is_object(), "{answer}");
    }
    claimed.sort();
    assert_eq!(claimed, ["signed_curve25519:a1", "signed_curve25519:a2"]);
    let empty = asker
        .post("/_matrix/client/v3/keys/claim", &claim_body(owner))
        .await
        .ok();
    assert_eq!(claimed_key_id(&empty, owner), None, "{empty}");
}

#[tokio::test]
async fn keys_of_users_on_another_myelin_are_queried_and_claimed() {
    let certificates = Certificates::new();
    let first = federating_myelin(&certificates).await;
    let second = federating_myelin(&certificates).await;
    let alice = Client::new(&first.url()).register("alice", PASSWORD).await;
    let bob = Client::new(&second.url()).register("bob", PASSWORD).await;
    check_remote_keys(&alice, &bob).await;
    check_remote_keys(&bob, &alice).await;
}

#[tokio::test]
async fn two_myelins_share_a_room_both_ways() {
    let TwoMyelins {
        first,
        second,
        alice,
        bob,
        _certificates,
    } = TwoMyelins::start().await;
    let room_id =
        synapse::room_joined_over_federation(&alice, first.server_name(), "shared", &bob).await;
    let mut both = vec![alice.user_id.clone(), bob.user_id.clone()];
    both.sort();
    assert_eq!(synapse::joined_members(&alice, &room_id).await, both);
    assert_eq!(synapse::joined_members(&bob, &room_id).await, both);

    alice.send_text(&room_id, "from the first").await;
    assert!(
        synapse::wait_for_message(&bob, &room_id, "from the first").await,
        "{}",
        second.logs()
    );
    bob.send_text(&room_id, "from the second").await;
    assert!(
        synapse::wait_for_message(&alice, &room_id, "from the second").await,
        "{}",
        first.logs()
    );

    // Catch-up: the second server is stopped while Alice talks on; once it
    // is back, her sender delivers every message it missed, in order.
    let mut second = second;
    second.kill();
    let missed: Vec<String> = (0..30).map(|n| format!("while away {n}")).collect();
    for body in &missed {
        alice.send_text(&room_id, body).await;
    }
    second.start_again().await;
    assert!(
        synapse::wait_for_message(&bob, &room_id, "while away 29").await,
        "{}\n{}",
        first.logs(),
        second.logs()
    );
    let seen = synapse::bodies_in_order(&bob, &room_id, 60).await;
    let caught_up: Vec<&String> = seen
        .iter()
        .filter(|body| body.starts_with("while away"))
        .collect();
    assert_eq!(caught_up, missed.iter().collect::<Vec<_>>(), "{seen:?}");

    // Bob leaves: the first server sees it and stops sending him the room.
    let left = bob.leave(&room_id).await;
    assert_eq!(left.status, 200, "{}", left.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while synapse::joined_members(&alice, &room_id).await != vec![alice.user_id.clone()] {
        assert!(std::time::Instant::now() < deadline, "{}", first.logs());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A user who joined a room on another server by invite hears of the
/// inviter's new device: the join over federation brings the room's
/// members, which the invite alone did not name.
#[tokio::test]
async fn an_invited_user_hears_of_the_inviters_new_device() {
    let two = TwoMyelins::start().await;
    let (first, _second, alice, bob) = (&two.first, &two.second, &two.alice, &two.bob);
    let logs = || two.logs();

    let room_id = alice
        .create_room(&json!({"preset": "private_chat", "invite": [bob.user_id]}))
        .await;
    assert!(synapse::wait_for_invite(bob, &room_id).await, "{}", logs());
    let joined = bob.join(&room_id).await;
    assert_eq!(joined.status, 200, "{}\n{}", joined.text, logs());
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let second_device = Client::new(&first.url()).login("alice", PASSWORD).await;
    crate::keys::upload_device_keys(&second_device, 13).await;
    assert!(
        synapse::wait_for_device_change(bob, &since, &alice.user_id).await,
        "{}",
        logs()
    );
}

/// Media of a server that predates federation media comes by the client
/// API's unauthenticated routes, and a federation answer that names a
/// location is followed; a file the peer does not have stays not found.
#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn media_of_older_servers_and_by_location_is_fetched() {
    use tokio::io::AsyncBufReadExt;
    let certificates = Certificates::new();
    let mut peer = tokio::process::Command::new("python3")
        .arg(crate::interop::interop_dir().join("older_media_peer.py"))
        .args([&certificates.certificate, &certificates.key])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start older_media_peer.py");
    let mut lines = tokio::io::BufReader::new(peer.stdout.take().expect("its stdout")).lines();
    let port = lines
        .next_line()
        .await
        .expect("read the peer's port")
        .expect("the peer printed its port");
    let peer_name = format!("127.0.0.1:{}", port.trim());
    let server = federating_myelin(&certificates).await;
    let alice = user_with_name(&server.url(), "alice", "Alice").await;

    let old = synapse::fetch_media(&alice, "download", &format!("mxc://{peer_name}/old"), "").await;
    assert_eq!(old.status, 200, "{}", server.logs());
    assert_eq!(
        old.body,
        b"bytes from a server that predates federation media"
    );
    let disposition = old
        .headers
        .get("content-disposition")
        .map(|value| value.to_str().unwrap_or_default());
    assert!(
        disposition.is_some_and(|value| value.contains("old.txt")),
        "{disposition:?}"
    );
    let thumbnail = synapse::fetch_media(
        &alice,
        "thumbnail",
        &format!("mxc://{peer_name}/old"),
        "?width=32&height=32&method=scale",
    )
    .await;
    assert_eq!(thumbnail.status, 200, "{}", server.logs());
    assert_eq!(
        thumbnail.body,
        b"a thumbnail from the unauthenticated route"
    );

    let moved =
        synapse::fetch_media(&alice, "download", &format!("mxc://{peer_name}/moved"), "").await;
    assert_eq!(moved.status, 200, "{}", server.logs());
    assert_eq!(moved.body, b"bytes handed out by location");

    // A location on a private address is not followed.
    let inside =
        synapse::fetch_media(&alice, "download", &format!("mxc://{peer_name}/inside"), "").await;
    assert_eq!(
        inside.status,
        403,
        "{}",
        String::from_utf8_lossy(&inside.body)
    );

    let gone =
        synapse::fetch_media(&alice, "download", &format!("mxc://{peer_name}/gone"), "").await;
    assert_eq!(gone.status, 404, "{}", server.logs());
}

/// The scenarios run against Synapse, between two Myelins: history from
/// before a join by backfill, power levels, kicks, bans and rejoins, an
/// invite, a knock, media and spaces, each way.
#[tokio::test]
async fn two_myelins_run_the_scenarios_both_ways() {
    let two = TwoMyelins::start().await;
    let (first, second, alice, bob) = (&two.first, &two.second, &two.alice, &two.bob);
    let logs = || two.logs();

    for (owner, joiner, owner_server, alias) in [
        (&alice, &bob, first.server_name(), "first-past"),
        (&bob, &alice, second.server_name(), "second-past"),
    ] {
        synapse::check_backfill(owner, owner_server, alias, joiner, &logs).await;

        // An invite to a private room, taken.
        let private = owner.create_room(&json!({"preset": "private_chat"})).await;
        let invited = owner.invite(&private, &joiner.user_id).await;
        assert_eq!(invited.status, 200, "{}", invited.text);
        assert!(
            synapse::wait_for_invite(joiner, &private).await,
            "{}",
            logs()
        );
        let joined = joiner.join(&private).await;
        assert_eq!(joined.status, 200, "{}\n{}", joined.text, logs());

        // A knock, let in.
        let door = synapse::knock_room(owner, &format!("{alias} door")).await;
        let knocked = synapse::knock_via(joiner, &door, owner_server).await;
        assert_eq!(knocked.status, 200, "{}\n{}", knocked.text, logs());
        assert_eq!(
            synapse::wait_for_membership(owner, &door, &joiner.user_id, "knock").await,
            "knock"
        );

        // Media, byte for byte.
        let picture = crate::media::png(50, 40);
        let mxc = crate::media::upload_mxc(owner, "", "image/png", &picture).await;
        let fetched = synapse::fetch_media(joiner, "download", &mxc, "").await;
        assert_eq!(fetched.status, 200, "{}", logs());
        assert!(fetched.body == picture, "other bytes");

        // A space whose child room the joiner's server is not in.
        let space_alias = format!("{alias}-space");
        let child = format!("{alias} child");
        let space = synapse::space_with_children(owner, &space_alias, &child, owner_server).await;
        let joined = joiner.join(&format!("#{space_alias}:{owner_server}")).await;
        assert_eq!(joined.status, 200, "{}", joined.text);
        let names = synapse::hierarchy_names(joiner, &space, &child).await;
        assert!(names.contains(&child), "{names:?}\n{}", logs());
        assert!(!names.contains(&"Closed child".to_owned()), "{names:?}");
    }

    // A new device with keys: the other server's user's sync lists the
    // change, and their key query shows the device.
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let second_device = Client::new(&first.url()).login("alice", PASSWORD).await;
    let keys = crate::keys::upload_device_keys(&second_device, 12).await;
    assert!(
        synapse::wait_for_device_change(bob, &since, &alice.user_id).await,
        "{}",
        logs()
    );
    let queried = bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {&alice.user_id: []}}),
        )
        .await;
    assert_eq!(
        queried.body["device_keys"][&alice.user_id][&second_device.device_id]["keys"], keys["keys"],
        "{}",
        queried.text
    );

    // Power levels, kicks, bans and rejoins in a room of each.
    synapse::check_moderation(alice, first.server_name(), bob, second.server_name(), &logs).await;
}
