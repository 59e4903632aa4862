//! Sessions and secrets: logout, shared-secret registration, parser guards, preview addresses.

use serde_json::{Value, json};

use crate::client::{Client, Reply, encode};
use crate::harness::{Server, TempDir};
use crate::split::{self, Split};

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

const ADMIN_REGISTER: &str = "/_synapse/admin/v1/register";

/// A fresh nonce from `client`'s server.
async fn nonce(client: &Client) -> String {
    let issued = client.get(ADMIN_REGISTER).await.ok();
    issued["nonce"]
        .as_str()
        .unwrap_or_else(|| panic!("no nonce: {issued}"))
        .to_owned()
}

/// The `mac` `register_new_matrix_user` sends for a non-admin user.
fn mac(secret: &str, nonce: &str, user: &str, password: &str) -> String {
    mac_for(secret, nonce, user, password, false)
}

/// The `mac` `register_new_matrix_user` sends, for an admin or not.
fn mac_for(secret: &str, nonce: &str, user: &str, password: &str, admin: bool) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    for part in [nonce, user, password] {
        mac.update(part.as_bytes());
        mac.update(b"\x00");
    }
    mac.update(if admin { &b"admin"[..] } else { b"notadmin" });
    hex::encode(mac.finalize().into_bytes())
}

async fn register_with(client: &Client, nonce: &str, user: &str, mac: &str) -> Reply {
    client
        .post(
            ADMIN_REGISTER,
            &json!({"nonce": nonce, "username": user, "password": "pw", "mac": mac}),
        )
        .await
}

/// A nonce is spent by its first use: by a wrong MAC as much as by a
/// registration. `first` and `second` may be different replicas.
async fn nonces_are_single_use(first: &Client, second: &Client, secret: &str) {
    let guessed = nonce(first).await;
    register_with(second, &guessed, "mallory", &"0".repeat(40))
        .await
        .assert_error(403, "M_FORBIDDEN");
    register_with(
        first,
        &guessed,
        "mallory",
        &mac(secret, &guessed, "mallory", "pw"),
    )
    .await
    .assert_error(400, "M_UNKNOWN");

    let once = nonce(second).await;
    let registered = register_with(first, &once, "carol", &mac(secret, &once, "carol", "pw"))
        .await
        .ok();
    assert!(
        registered["access_token"].is_string(),
        "no session: {registered}"
    );
    for (client, user) in [(first, "dave"), (second, "erin")] {
        register_with(client, &once, user, &mac(secret, &once, user, "pw"))
            .await
            .assert_error(400, "M_UNKNOWN");
    }
    for user in ["mallory", "dave", "erin"] {
        first
            .login_reply(user, "pw")
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    first.login("carol", "pw").await;
}

#[tokio::test]
async fn a_registration_nonce_is_good_for_one_attempt() {
    let server = Server::builder().start().await;
    let client = server.client();
    nonces_are_single_use(&client, &client, &server.shared_secret()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_a_registration_nonce_is_good_for_one_attempt_on_any_replica() {
    let Some(settings) = split::settings() else {
        return;
    };
    let secret = "split-nonce-secret";
    let env_dir = TempDir::new("split-env");
    let env_file = env_dir.path().join("extra.env");
    std::fs::write(
        &env_file,
        format!("MYELIN_REGISTRATION_SHARED_SECRET={secret}\n"),
    )
    .expect("write the env file");
    let env_file = env_file.to_str().expect("UTF-8 temp path").to_owned();
    let split = Split::up_with(
        &settings,
        &[
            ("CLIENT_APIS", "2"),
            ("SYNCHROTRONS", "1"),
            ("PERSISTERS", "1"),
            ("GATEWAYS", "1"),
            ("SPLIT_ENV_FILE", &env_file),
        ],
    )
    .await;
    let replicas: Vec<Client> = split
        .processes("CLIENT_API")
        .into_iter()
        .map(|(_, url, _)| Client::new(&url))
        .collect();
    assert_eq!(replicas.len(), 2, "two client-api replicas");
    nonces_are_single_use(&replicas[0], &replicas[1], secret).await;

    // The admin flag API is routed through the gateway too.
    let through_gateway = split.client();
    let once = nonce(&through_gateway).await;
    let root = through_gateway
        .post(
            ADMIN_REGISTER,
            &json!({"nonce": once, "username": "root", "password": "pw", "admin": true,
                    "mac": mac_for(secret, &once, "root", "pw", true)}),
        )
        .await
        .ok();
    let carol = root["user_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no user ID: {root}"))
        .replace("@root:", "@carol:");
    let token = root["access_token"].as_str().expect("a session");
    let root = through_gateway.with_token(Some(token));
    let path = crate::admin::admin_path(&carol);
    root.put(&path, &json!({"admin": true})).await.ok();
    assert_eq!(root.get(&path).await.ok(), json!({"admin": true}));
    let carol_session = through_gateway.login("carol", "pw").await;
    carol_session
        .put(&path, &json!({"admin": "yes"}))
        .await
        .assert_error(400, "M_BAD_JSON");
}

/// IPv6 addresses that carry a loopback or private IPv4 address (NAT64,
/// 6to4, Teredo, IPv4-compatible and -translated) are refused like it.
#[tokio::test]
async fn previews_refuse_ipv6_addresses_that_lead_to_internal_ipv4_ones() {
    let server = Server::builder()
        .open_registration()
        .env("MYELIN_URL_PREVIEW_ENABLED", "true")
        .start()
        .await;
    let alice = server.client().register("alice", "pw-alice").await;
    for url in [
        "http://[64:ff9b::7f00:1]:8008/",
        "http://[2002:7f00:1::1]/",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        "http://[::7f00:1]/",
        "http://[::ffff:0:a00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
    ] {
        let path = format!("/_matrix/client/v1/media/preview_url?url={}", encode(url));
        alice.get(&path).await.assert_error(403, "M_FORBIDDEN");
    }
}
