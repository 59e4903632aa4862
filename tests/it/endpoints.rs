//! Client-Server endpoints around rooms and calls: TURN credentials,
//! content reports, OpenID tokens, third-party identifiers, jumping to a
//! date and space hierarchies.

use serde_json::{Value, json};

use crate::harness::Server;

const PASSWORD: &str = "pw-endpoints";

/// The TURN REST API's password for `username`, computed here.
fn turn_password(secret: &str, username: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn turn_credentials_come_from_the_shared_secret() {
    let server = Server::builder()
        .open_registration()
        .edit_config(
            "report_stats:",
            "turn_uris: ['turn:turn.it.test?transport=udp', 'turns:turn.it.test']\nturn_user_lifetime: 1d\nreport_stats:",
        )
        .env("MYELIN_TURN_SHARED_SECRET", "turn-secret")
        .start()
        .await;
    let anonymous = server.client();
    anonymous
        .get("/_matrix/client/v3/voip/turnServer")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let alice = anonymous.register("turnalice", PASSWORD).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let answer = alice.get("/_matrix/client/v3/voip/turnServer").await.ok();
    assert_eq!(answer["ttl"], 86400);
    assert_eq!(
        answer["uris"],
        json!(["turn:turn.it.test?transport=udp", "turns:turn.it.test"])
    );
    let username = answer["username"].as_str().expect("username");
    let (expiry, user_id) = username.split_once(':').expect("<expiry>:<user>");
    assert_eq!(user_id, alice.user_id);
    let expiry: u64 = expiry.parse().expect("expiry in seconds");
    assert!(
        (before + 86400..=before + 86400 + 60).contains(&expiry),
        "{expiry} is a day from {before}"
    );
    assert_eq!(answer["password"], turn_password("turn-secret", username));
}

#[tokio::test]
async fn turn_without_uris_answers_an_empty_object() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("noturn", PASSWORD).await;
    let answer: Value = alice.get("/_matrix/client/v3/voip/turnServer").await.ok();
    assert_eq!(answer, json!({}));
}
