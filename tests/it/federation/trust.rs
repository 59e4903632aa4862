//! What a server trusts about the others: keys passed on by a notary it
//! names in `trusted_key_servers` when the owner cannot be reached, and
//! TLS certificates checked unless the peer's host is on
//! `federation_certificate_verification_whitelist`.

use serde_json::{Value, json};

use super::rooms::Peer;
use super::{
    Certificates, FAST_RETRIES, PASSWORD, federating_myelin, federating_myelin_configured,
    federation_url, reqwest_insecure, user_with_name,
};
use crate::client::{Client, encode};
use crate::harness::{Server, metric_sum};

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
