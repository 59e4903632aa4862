//! Sessions and secrets: logout, shared-secret registration, parser guards, preview addresses.

use serde_json::{Value, json};

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
