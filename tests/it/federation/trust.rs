//! What a server trusts about the others: keys passed on by a notary it
//! names in `trusted_key_servers` when the owner cannot be reached, TLS
//! certificates checked unless the peer's host is on
//! `federation_certificate_verification_whitelist`, and where a server
//! named without a port says it is (`/.well-known/matrix/server`).

use serde_json::{Value, json};

use super::rooms::Peer;
use super::synapse::wait_for_message;
use super::{
    Certificates, FAST_RETRIES, LOOPBACK_FEDERATION, PASSWORD, federating_myelin,
    federating_myelin_configured, federation_url, reqwest_insecure, user_with_name,
};
use crate::client::{Client, encode};
use crate::harness::{Server, free_port, metric_sum};

/// Loopback federation with `trust` instead of the tests' usual settings
/// for notaries and certificates.
async fn myelin_trusting(certificates: &Certificates, trust: &str) -> Server {
    let settings = format!("{trust}ip_range_whitelist: ['127.0.0.1/32']\n{FAST_RETRIES}");
    federating_myelin_configured(certificates, &settings).await
}

/// What `target`'s server answers a request for Alice's profile signed
/// as `origin` (with its real key, read from `origin`'s files).
async fn profile_asked_as(origin: &Server, target: &Server, alice: &Client) -> (u16, Value) {
    let peer = Peer::between(origin, target);
    let uri = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        encode(&alice.user_id)
    );
    peer.request("GET", &uri, None).await
}

/// A server whose key cannot be fetched from it (it is down) is still
/// believed when a notary named in `trusted_key_servers` passes its key
/// on; a server that names no notary refuses the same request.
#[tokio::test]
async fn the_key_of_a_server_that_is_down_comes_from_the_trusted_notary() {
    let certificates = Certificates::new();
    let mut owner = federating_myelin(&certificates).await;
    let notary = federating_myelin(&certificates).await;
    let trusting = myelin_trusting(
        &certificates,
        &format!(
            "trusted_key_servers:\n  - server_name: '{}'\nfederation_verify_certificates: false\n",
            notary.server_name()
        ),
    )
    .await;
    let alone = myelin_trusting(
        &certificates,
        "trusted_key_servers: []\nfederation_verify_certificates: false\n",
    )
    .await;
    let alice = user_with_name(&trusting.url(), "alice", "Alice").await;
    let carol = user_with_name(&alone.url(), "carol", "Carol").await;

    // The notary fetches the owner's key while the owner is up.
    let asked = reqwest_insecure()
        .get(format!(
            "{}/_matrix/key/v2/query/{}",
            federation_url(&notary),
            owner.server_name()
        ))
        .send()
        .await
        .expect("the notary answers");
    assert_eq!(asked.status(), 200);
    owner.kill();

    let notary_url = notary.url();
    let notarized = || metric_sum(&notary_url, "myelin_http_requests_total", "key/v2/query");
    let before = notarized().await;
    let (status, answer) = profile_asked_as(&owner, &trusting, &alice).await;
    assert_eq!(status, 200, "{answer}\n{}", trusting.logs());
    assert_eq!(answer["displayname"], "Alice", "{answer}");
    assert!(notarized().await > before, "the notary was not asked");

    let (status, answer) = profile_asked_as(&owner, &alone, &carol).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["errcode"], "M_UNAUTHORIZED", "{answer}");
}

/// Whether `asker`'s server reached `owner`'s for their keys: no entry in
/// `failures`, and the device keys they uploaded.
async fn keys_reached(asker: &Client, owner: &Client) -> bool {
    let answer = asker
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {owner.user_id.clone(): []}}),
        )
        .await
        .ok();
    let server = owner.user_id.split_once(':').expect("user ID").1;
    answer["failures"].get(server).is_none()
        && answer["device_keys"][&owner.user_id][&owner.device_id].is_object()
}

/// With certificate checks on, a peer with a self-signed certificate is
/// not reached; with its host on the whitelist, it is.
#[tokio::test]
async fn certificate_checks_refuse_a_self_signed_peer_unless_its_host_is_whitelisted() {
    let certificates = Certificates::new();
    let peer = federating_myelin(&certificates).await;
    let strict = myelin_trusting(
        &certificates,
        "trusted_key_servers: []\nfederation_verify_certificates: true\n",
    )
    .await;
    let listed = myelin_trusting(
        &certificates,
        "trusted_key_servers: []\nfederation_verify_certificates: true\n\
         federation_certificate_verification_whitelist: ['127.0.0.1']\n",
    )
    .await;
    let bob = Client::new(&peer.url()).register("bob", PASSWORD).await;
    crate::keys::upload_device_keys(&bob, 51).await;
    let alice = Client::new(&strict.url()).register("alice", PASSWORD).await;
    let carol = Client::new(&listed.url()).register("carol", PASSWORD).await;

    assert!(!keys_reached(&alice, &bob).await, "{}", strict.logs());
    assert!(keys_reached(&carol, &bob).await, "{}", listed.logs());
}

/// Another server found through `/.well-known/matrix/server`: Bob's server
/// is named `localhost`, with no port, answers the well-known on port 443
/// (naming itself `localhost:<port>`) and federates on that other port,
/// which only the delegation tells. Alice's server joins Bob's room by its
/// alias and messages cross both ways. Needs 127.0.0.1:443 (root, nothing
/// listening there): says so and stops otherwise.
#[tokio::test]
async fn a_server_named_without_a_port_is_found_through_its_well_known() {
    if std::net::TcpListener::bind("127.0.0.1:443").is_err() {
        eprintln!("skipped: this test cannot listen on 127.0.0.1:443 (not root, or taken)");
        return;
    }
    let certificates = Certificates::new();
    let federation_port = free_port();
    let listeners = format!(
        "listeners:\n  - port: {federation_port}\n    tls: true\n    type: http\n    \
         bind_addresses: ['127.0.0.1']\n    resources:\n      - names: [federation]\n  \
         - port: 443\n    tls: true\n    type: http\n    \
         bind_addresses: ['127.0.0.1']\n    resources:\n      - names: [client]\n"
    );
    let settings = format!(
        "{LOOPBACK_FEDERATION}{FAST_RETRIES}serve_server_wellknown: true\n\
         public_baseurl: \"https://localhost:{federation_port}/\"\n"
    );
    let delegated = Server::builder()
        .server_name("localhost")
        .open_registration()
        .edit_config("listeners:\n", &listeners)
        .edit_config(
            "trusted_key_servers:\n  - server_name: \"matrix.org\"\n",
            &settings,
        )
        .env("MYELIN_TLS_CERTIFICATE_PATH", &certificates.certificate)
        .env("MYELIN_TLS_PRIVATE_KEY_PATH", &certificates.key)
        .start()
        .await;
    let asking = federating_myelin(&certificates).await;
    let bob = user_with_name(&delegated.url(), "bob", "Bob behind a well-known").await;
    let alice = user_with_name(&asking.url(), "alice", "Alice").await;
    let logs = || format!("{}\n{}", delegated.logs(), asking.logs());

    let room_id = bob
        .create_room(&json!({"preset": "public_chat", "room_alias_name": "delegated"}))
        .await;
    let joined = alice.join("#delegated:localhost").await;
    assert_eq!(joined.status, 200, "{}\n{}", joined.text, logs());
    bob.send_text(&room_id, "found you").await;
    assert!(
        wait_for_message(&alice, &room_id, "found you").await,
        "{}",
        logs()
    );
    alice.send_text(&room_id, "and back").await;
    assert!(
        wait_for_message(&bob, &room_id, "and back").await,
        "{}",
        logs()
    );
}
