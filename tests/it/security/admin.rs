//! The admin flag API: only server admins read or change it, about local
//! users that exist, with a body that says `true` or `false`.

use serde_json::json;

use crate::admin::{admin_path, set_admin_by_command};
use crate::harness::Server;

#[tokio::test]
async fn only_admins_touch_the_admin_flag_and_bad_input_is_refused() {
    let server = Server::builder().open_registration().start().await;
    let admin = server.client().register("root", "pw-root").await;
    let mallory = server.client().register("mallory", "pw-mallory").await;
    let (admin_id, mallory_id) = (server.user_id("root"), server.user_id("mallory"));
    set_admin_by_command(&server, &admin_id, true);

    // A user who is no admin cannot read, promote themself, or demote one.
    for target in [&mallory_id, &admin_id] {
        mallory
            .get(&admin_path(target))
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    mallory
        .put(&admin_path(&mallory_id), &json!({"admin": true}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    mallory
        .put(&admin_path(&admin_id), &json!({"admin": false}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Without a session, or with a forged one.
    let anonymous = server.client();
    anonymous
        .get(&admin_path(&admin_id))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    anonymous
        .with_token(Some("not-a-token"))
        .put(&admin_path(&mallory_id), &json!({"admin": true}))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    let flag = admin.get(&admin_path(&mallory_id)).await.ok();
    assert_eq!(
        flag,
        json!({"admin": false}),
        "a refused request changed it"
    );

    // Unknown local users, other servers' users, and what is no user ID.
    let ghost = server.user_id("ghost");
    admin
        .get(&admin_path(&ghost))
        .await
        .assert_error(404, "M_NOT_FOUND");
    admin
        .put(&admin_path(&ghost), &json!({"admin": true}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    admin
        .put(
            &admin_path("@alice:elsewhere.test"),
            &json!({"admin": true}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let not_a_user = admin.get(&admin_path("not-a-user-id")).await;
    assert_eq!(not_a_user.status, 400, "{}", not_a_user.text);
    assert!(
        not_a_user.body["errcode"].is_string(),
        "{}",
        not_a_user.text
    );

    // Bodies that do not say true or false.
    for body in [
        json!({}),
        json!({"admin": "true"}),
        json!({"admin": 1}),
        json!({"admin": null}),
        json!([true]),
    ] {
        let reply = admin.put(&admin_path(&mallory_id), &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert!(
            reply.body["errcode"]
                .as_str()
                .is_some_and(|code| code.starts_with("M_")),
            "{body}: {}",
            reply.text
        );
    }
    let not_json = admin
        .request_builder(reqwest::Method::PUT, &admin_path(&mallory_id))
        .body("admin=true")
        .send()
        .await
        .expect("send");
    assert_eq!(not_json.status(), 400);
    let flag = admin.get(&admin_path(&mallory_id)).await.ok();
    assert_eq!(flag, json!({"admin": false}), "a bad body changed it");
}
