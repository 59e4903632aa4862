//! Pushers: one user's pushers are theirs alone, bad input is refused
//! whole, and a pushkey set again without `append` moves to its new user.

use serde_json::json;

use crate::client::Client;
use crate::harness::Server;
use crate::pushers::pusher_body;

const URL: &str = "https://push.example.org/_matrix/push/v1/notify";

async fn set(client: &Client, body: &serde_json::Value) -> crate::client::Reply {
    client.post("/_matrix/client/v3/pushers/set", body).await
}

async fn pushkeys(client: &Client) -> Vec<String> {
    client.get("/_matrix/client/v3/pushers").await.ok()["pushers"]
        .as_array()
        .expect("a pusher list")
        .iter()
        .map(|pusher| pusher["pushkey"].as_str().expect("a pushkey").to_owned())
        .collect()
}

#[tokio::test]
async fn pushers_refuse_bad_input_and_stay_with_their_user() {
    let server = Server::builder().open_registration().start().await;
    let anonymous = server.client();
    anonymous
        .get("/_matrix/client/v3/pushers")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    set(&anonymous, &pusher_body(URL, "k", json!({})))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let alice = anonymous.register("psalice", "pw-pushers").await;
    let bob = anonymous.register("psbob", "pw-pushers").await;

    let refused = [
        (
            pusher_body("https://push.example.org/notify", "k", json!({})),
            "M_INVALID_PARAM",
        ),
        (
            pusher_body("file:///_matrix/push/v1/notify", "k", json!({})),
            "M_INVALID_PARAM",
        ),
        (pusher_body(URL, "", json!({})), "M_INVALID_PARAM"),
        (
            pusher_body(URL, &"k".repeat(513), json!({})),
            "M_INVALID_PARAM",
        ),
        (
            pusher_body(URL, "k", json!({"blob": "x".repeat(5000)})),
            "M_INVALID_PARAM",
        ),
        (
            json!({"kind": "email", "app_id": "m.email", "pushkey": "a@example.org",
                "app_display_name": "E", "device_display_name": "E", "lang": "en",
                "data": {}}),
            "M_INVALID_PARAM",
        ),
        (json!({"kind": "http", "app_id": "a"}), "M_MISSING_PARAM"),
        (
            json!({"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
                "device_display_name": "D", "lang": "en", "data": {}}),
            "M_MISSING_PARAM",
        ),
        (
            json!({"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": 7,
                "device_display_name": "D", "lang": "en", "data": {"url": URL}}),
            "M_BAD_JSON",
        ),
    ];
    for (body, errcode) in refused {
        set(&alice, &body).await.assert_error(400, errcode);
    }
    let mut long_app = pusher_body(URL, "k", json!({}));
    long_app["app_id"] = json!("a".repeat(65));
    set(&alice, &long_app)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let not_json = alice
        .request_builder(reqwest::Method::POST, "/_matrix/client/v3/pushers/set")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("an answer");
    crate::client::Reply::read(not_json)
        .await
        .assert_error(400, "M_NOT_JSON");
    assert!(
        pushkeys(&alice).await.is_empty(),
        "nothing refused was kept"
    );

    // Each user sees only their own.
    set(&alice, &pusher_body(URL, "alice-key", json!({})))
        .await
        .ok();
    set(&bob, &pusher_body(URL, "bob-key", json!({})))
        .await
        .ok();
    assert_eq!(pushkeys(&alice).await, ["alice-key"]);
    assert_eq!(pushkeys(&bob).await, ["bob-key"]);
    // Deleting names only your own pusher.
    set(
        &bob,
        &json!({"kind": null, "app_id": "org.example.app", "pushkey": "alice-key"}),
    )
    .await
    .ok();
    assert_eq!(pushkeys(&alice).await, ["alice-key"]);
    // Set again without `append`, a pushkey moves to its new user...
    set(&bob, &pusher_body(URL, "alice-key", json!({})))
        .await
        .ok();
    assert!(pushkeys(&alice).await.is_empty());
    assert_eq!(pushkeys(&bob).await.len(), 2);
    // ...and with it, both keep it.
    let mut appended = pusher_body(URL, "alice-key", json!({}));
    appended["append"] = json!(true);
    set(&alice, &appended).await.ok();
    assert_eq!(pushkeys(&alice).await, ["alice-key"]);
    assert_eq!(pushkeys(&bob).await.len(), 2);
    set(
        &alice,
        &json!({"kind": null, "app_id": "org.example.app", "pushkey": "alice-key"}),
    )
    .await
    .ok();
    assert!(pushkeys(&alice).await.is_empty());
    assert_eq!(pushkeys(&bob).await.len(), 2);
}

/// A pusher goes with the device that set it.
#[tokio::test]
async fn logging_out_removes_the_devices_pushers() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("pslogout", "pw-pushers").await;
    let other = server.client().login("pslogout", "pw-pushers").await;
    set(&alice, &pusher_body(URL, "first-device", json!({})))
        .await
        .ok();
    set(&other, &pusher_body(URL, "second-device", json!({})))
        .await
        .ok();
    assert_eq!(pushkeys(&other).await.len(), 2);
    alice
        .post("/_matrix/client/v3/logout", &json!({}))
        .await
        .ok();
    assert_eq!(pushkeys(&other).await, ["second-device"]);
}
