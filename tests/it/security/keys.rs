//! End-to-end encryption endpoints: another user's keys, signatures and
//! backups stay out of reach, and every endpoint refuses a missing token
//! and a body that is not JSON with a Matrix error.

use reqwest::Method;
use serde_json::json;

use crate::client::encode;
use crate::harness::Server;

const PASSWORD: &str = "pw-keys-security";

#[tokio::test]
async fn key_endpoints_refuse_strangers_and_bad_input() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("ksalice", PASSWORD).await;
    let mallory = anonymous.register("ksmallory", PASSWORD).await;
    let version = alice
        .post(
            "/_matrix/client/v3/room_keys/version",
            &json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}}),
        )
        .await
        .ok()["version"]
        .as_str()
        .unwrap()
        .to_owned();

    // Alice's backup is hers: mallory finds no such version.
    let version_path = format!("/_matrix/client/v3/room_keys/version/{}", encode(&version));
    mallory
        .get(&version_path)
        .await
        .assert_error(404, "M_NOT_FOUND");
    mallory
        .delete(&version_path)
        .await
        .assert_error(404, "M_NOT_FOUND");
    mallory
        .put(
            &format!(
                "/_matrix/client/v3/room_keys/keys?version={}",
                encode(&version)
            ),
            &json!({"rooms": {}}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    mallory
        .get("/_matrix/client/v3/room_keys/version")
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(
        alice.get(&version_path).await.ok()["version"],
        json!(version),
        "mallory's delete changed nothing"
    );

    // Mallory cannot publish keys as alice, nor sign alice's device.
    mallory
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            &json!({"master_key": {
                "user_id": alice.user_id,
                "usage": ["master"],
                "keys": {"ed25519:AAAA": "AAAA"},
            }}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let signed = mallory
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({ alice.user_id.clone(): { alice.device_id.clone(): {"user_id": alice.user_id} } }),
        )
        .await
        .ok();
    assert_eq!(
        signed["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE",
        "{signed}"
    );

    // Every endpoint: no token, then a body that is not JSON.
    let endpoints: &[(Method, String)] = &[
        (Method::POST, "/_matrix/client/v3/keys/upload".to_owned()),
        (Method::POST, "/_matrix/client/v3/keys/query".to_owned()),
        (Method::POST, "/_matrix/client/v3/keys/claim".to_owned()),
        (
            Method::POST,
            "/_matrix/client/v3/keys/device_signing/upload".to_owned(),
        ),
        (
            Method::POST,
            "/_matrix/client/v3/keys/signatures/upload".to_owned(),
        ),
        (
            Method::PUT,
            "/_matrix/client/v3/sendToDevice/m.test/t1".to_owned(),
        ),
        (
            Method::POST,
            "/_matrix/client/v3/room_keys/version".to_owned(),
        ),
        (Method::PUT, version_path.clone()),
        (
            Method::PUT,
            format!(
                "/_matrix/client/v3/room_keys/keys?version={}",
                encode(&version)
            ),
        ),
    ];
    for (method, path) in endpoints {
        anonymous
            .raw_json(method.clone(), path, "{}")
            .await
            .assert_error(401, "M_MISSING_TOKEN");
        let reply = alice.raw_json(method.clone(), path, "{not json").await;
        assert_eq!(reply.status, 400, "{method} {path}: {}", reply.text);
        assert!(
            matches!(
                reply.body["errcode"].as_str(),
                Some("M_NOT_JSON" | "M_BAD_JSON")
            ),
            "{method} {path}: {}",
            reply.text
        );
    }
    for path in [
        "/_matrix/client/v3/keys/changes?from=s0&to=s1",
        "/_matrix/client/v3/room_keys/version",
    ] {
        anonymous
            .get(path)
            .await
            .assert_error(401, "M_MISSING_TOKEN");
    }
}
