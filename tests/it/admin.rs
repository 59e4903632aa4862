//! Synapse's admin API for server admins: reading and changing who is one
//! (`/_synapse/admin/v1/users/{userId}/admin`), next to `myelin set-admin`.

use serde_json::json;

use crate::client::{Client, encode};
use crate::harness::{Server, run_myelin};

pub fn admin_path(user_id: &str) -> String {
    format!("/_synapse/admin/v1/users/{}/admin", encode(user_id))
}

/// Makes `user_id` a server admin (or not) with `myelin set-admin`.
pub fn set_admin_by_command(server: &Server, user_id: &str, admin: bool) {
    let config = server.config_path().to_str().expect("UTF-8 path");
    let output = run_myelin(&["set-admin", user_id, &admin.to_string(), "-c", config]);
    assert!(
        output.status.success(),
        "myelin set-admin failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn is_admin(asker: &Client, user_id: &str) -> bool {
    let answer = asker.get(&admin_path(user_id)).await.ok();
    answer["admin"]
        .as_bool()
        .unwrap_or_else(|| panic!("no `admin` flag: {answer}"))
}

#[tokio::test]
async fn an_admin_grants_and_revokes_admin_over_http() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    let (alice_id, bob_id) = (server.user_id("alice"), server.user_id("bob"));
    set_admin_by_command(&server, &alice_id, true);

    assert!(is_admin(&alice, &alice_id).await);
    assert!(!is_admin(&alice, &bob_id).await);
    let granted = alice
        .put(&admin_path(&bob_id), &json!({"admin": true}))
        .await;
    assert_eq!(granted.ok(), json!({}));
    assert!(is_admin(&alice, &bob_id).await);
    // Bob's existing session is an admin's now.
    assert!(is_admin(&bob, &alice_id).await);

    bob.put(&admin_path(&alice_id), &json!({"admin": false}))
        .await
        .ok();
    assert!(!is_admin(&bob, &alice_id).await);
    alice
        .get(&admin_path(&bob_id))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // An admin may not demote themself (someone must stay admin).
    bob.put(&admin_path(&bob_id), &json!({"admin": false}))
        .await
        .assert_error(400, "M_UNKNOWN");
    assert!(is_admin(&bob, &bob_id).await);
    // Promoting oneself again is harmless.
    bob.put(&admin_path(&bob_id), &json!({"admin": true}))
        .await
        .ok();

    // The command line still works alongside, and the API sees it.
    set_admin_by_command(&server, &bob_id, false);
    bob.get(&admin_path(&bob_id))
        .await
        .assert_error(403, "M_FORBIDDEN");
}
