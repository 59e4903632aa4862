//! Sessions and secrets: logout, shared-secret registration, parser guards, preview addresses.

use serde_json::{Value, json};

use crate::client::Client;
use crate::harness::Server;

/// Bodies of `/login` without the `type` that says which kind of login
/// they are.
fn logins_without_a_type() -> Vec<Value> {
    vec![
        json!({}),
        json!({"identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw"}),
        json!({"user": "alice", "password": "pw"}),
    ]
}

#[tokio::test]
async fn a_login_without_a_type_is_refused_before_any_parser_panics() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let alice = anonymous.register("alice", "pw-alice").await;
    for body in logins_without_a_type() {
        anonymous
            .post("/_matrix/client/v3/login", &body)
            .await
            .assert_error(400, "M_MISSING_PARAM");
        anonymous
            .post("/_matrix/client/r0/login", &body)
            .await
            .assert_error(400, "M_MISSING_PARAM");
    }
    // The other bodies that pick their type by a field: UIA `auth` dicts
    // and user identifiers without one.
    for auth in [
        json!({}),
        json!({"session": "nope"}),
        json!({"type": "m.login.password"}),
        json!({"type": "m.login.password", "identifier": {}, "password": "pw-alice"}),
    ] {
        let registration = anonymous
            .post(
                "/_matrix/client/v3/register",
                &json!({"username": "bob", "password": "pw", "auth": auth}),
            )
            .await;
        assert!(
            (400..500).contains(&registration.status) && registration.body["errcode"].is_string()
                || registration.status == 401,
            "register with auth {auth}: {} {}",
            registration.status,
            registration.text
        );
        let deletion = alice
            .post(
                "/_matrix/client/v3/delete_devices",
                &json!({"devices": ["NOPE"], "auth": auth}),
            )
            .await;
        assert!(
            (400..500).contains(&deletion.status),
            "delete_devices with auth {auth}: {} {}",
            deletion.status,
            deletion.text
        );
    }
    anonymous
        .post(
            "/_matrix/client/v3/login",
            &json!({"type": "m.login.password", "identifier": {}, "password": "pw"}),
        )
        .await
        .assert_error(400, "M_MISSING_PARAM");
    alice.whoami().await.ok();
    let logs = server.logs();
    assert!(
        !logs.contains("panicked"),
        "a request reached a panic:\n{logs}"
    );
}

/// The device IDs `GET /devices` lists for `client`'s user.
async fn listed_devices(client: &Client) -> Vec<String> {
    let listed = client.get("/_matrix/client/v3/devices").await.ok();
    let mut ids: Vec<String> = listed["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no device list: {listed}"))
        .iter()
        .map(|device| device["device_id"].as_str().expect("device_id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn logout_deletes_the_device_and_logout_all_every_device() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    let first = anonymous.register("alice", "pw-alice").await;
    let second = anonymous.login("alice", "pw-alice").await;
    let third = anonymous.login("alice", "pw-alice").await;
    let mut all = vec![
        first.device_id.clone(),
        second.device_id.clone(),
        third.device_id.clone(),
    ];
    all.sort();
    assert_eq!(listed_devices(&first).await, all);

    second
        .post("/_matrix/client/v3/logout", &json!({}))
        .await
        .ok();
    let listed = listed_devices(&first).await;
    assert!(
        !listed.contains(&second.device_id),
        "the logged-out device is still listed: {listed:?}"
    );
    assert_eq!(listed.len(), 2, "{listed:?}");
    second.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    second
        .post("/_matrix/client/v3/logout", &json!({}))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");

    third
        .post("/_matrix/client/v3/logout/all", &json!({}))
        .await
        .ok();
    for gone in [&first, &third] {
        gone.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    }
    let fresh = anonymous.login("alice", "pw-alice").await;
    assert_eq!(
        listed_devices(&fresh).await,
        vec![fresh.device_id.clone()],
        "logout/all left devices behind"
    );
}
